//! Execs a previous berthd started and never finished: their client went
//! with that berthd, so nobody reads their output or waits for them. At
//! start-up they are found by their stdio files in the bundle (the
//! streaming `exec-<id>.in/.out/.err` fifos, ExecSync's `sync-<id>.out/.err`),
//! killed, deleted from the shim, and their files removed.

use std::{collections::BTreeSet, sync::Arc, time::Duration};

use super::Runtime;
use crate::{error::blocking, shim_client::Shim, state::Container};

const KILL_WAIT: Duration = Duration::from_secs(5);

impl Runtime {
    pub(super) async fn end_orphaned_execs(self: &Arc<Self>, container: &Container, shim: &Shim) {
        let Ok(bundle) = self.paths.bundle(&container.id) else { return };
        let listed = {
            let bundle = bundle.clone();
            blocking(move || {
                let mut files = Vec::new();
                for entry in std::fs::read_dir(&bundle).into_iter().flatten().flatten() {
                    let name = entry.file_name().to_string_lossy().into_owned();
                    if let Some((exec_id, _)) = name.split_once('.').filter(|(id, ext)| is_exec_id(id) && matches!(*ext, "in" | "out" | "err")) {
                        files.push((exec_id.to_string(), entry.path()));
                    }
                }
                Ok(files)
            })
            .await
            .unwrap_or_default()
        };
        let exec_ids: BTreeSet<&str> = listed.iter().map(|(id, _)| id.as_str()).collect();
        for exec_id in exec_ids {
            tracing::info!(container_id = %container.id, exec_id, "ending an exec whose client left with the previous berthd");
            let _ = shim.kill_exec(exec_id, 9, false).await;
            let _ = tokio::time::timeout(KILL_WAIT, shim.wait(exec_id)).await;
            let _ = shim.delete_exec(exec_id).await;
        }
        let _ = blocking(move || {
            for (_, path) in listed {
                let _ = std::fs::remove_file(path);
            }
            Ok(())
        })
        .await;
    }
}

/// `exec-<16 hex>` or `sync-<16 hex>`, as stream_exec and exec_sync name
/// their execs.
fn is_exec_id(name: &str) -> bool {
    let hex = name.strip_prefix("exec-").or_else(|| name.strip_prefix("sync-"));
    hex.is_some_and(|h| h.len() == 16 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    #[test]
    fn exec_ids_are_told_by_their_form() {
        assert!(super::is_exec_id("exec-0123456789abcdef") && super::is_exec_id("sync-0123456789abcdef"));
        assert!(!super::is_exec_id("exec-short") && !super::is_exec_id("config") && !super::is_exec_id("rootfs"));
    }
}
