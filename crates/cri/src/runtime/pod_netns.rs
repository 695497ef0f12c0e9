//! Work done inside a pod's network namespace (port-forward's dial, the
//! pod's network counters): on a fresh thread that enters the pinned
//! namespace, does the work and exits. Only that thread ever changes
//! namespace, so nothing else in berthd can end up in the pod's.

use std::path::PathBuf;

use crate::error::{Error, Result};

/// Runs `work` in the network namespace pinned at `netns` (the host's when
/// None) and returns its result.
pub(crate) async fn in_pod_netns<T: Send + 'static>(netns: Option<PathBuf>, work: impl FnOnce() -> Result<T, String> + Send + 'static) -> Result<T> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("pod-netns".into())
        .spawn(move || {
            let result = (|| {
                if let Some(ns) = &netns {
                    let file = std::fs::File::open(ns).map_err(|e| format!("open {}: {e}", ns.display()))?;
                    nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNET).map_err(|e| format!("enter {}: {e}", ns.display()))?;
                }
                work()
            })();
            let _ = tx.send(result);
        })
        .map_err(Error::io("spawn a thread for the pod's netns"))?;
    rx.await.map_err(|_| Error::Internal("the pod netns thread died".into()))?.map_err(Error::Unavailable)
}
