//! One task per running container waits for its end, records how it
//! ended (exit code, OOM kill), deletes the task (the shim then unmounts
//! the rootfs, removes the cgroup and exits) and tells the watchers.

use std::{path::PathBuf, sync::Arc, time::Duration};

use k8s_cri::v1;

use super::Runtime;
use crate::{
    error::blocking,
    state::{now_nanos, Container, ExitInfo},
};

impl Runtime {
    pub(crate) fn spawn_exit_monitor(self: &Arc<Self>, container: Arc<Container>) {
        let rt = self.clone();
        tokio::spawn(async move {
            let exit = rt.wait_for_exit(&container).await;
            rt.record_exit(&container, exit).await;
        });
    }

    async fn wait_for_exit(&self, container: &Container) -> ExitInfo {
        let Some(shim) = container.shim() else {
            return ExitInfo { code: 255, at: now_nanos(), reason: "Unknown".into(), message: "no shim supervises this container".into() };
        };
        let waited = shim.wait("").await;
        // The cgroup still exists until Delete: read the OOM kill count now.
        let cgroups_path = container.record().cgroups_path.clone();
        let oom_killed = self.cgroup_of(&cgroups_path).ok().and_then(|cg| cg.stats().ok()).is_some_and(|s| s.memory.oom_kills > 0);
        let mut exit = match waited {
            Ok(w) => {
                let code = w.exit_status as i32;
                let at = w.exited_at.as_ref().map(|t| t.seconds * 1_000_000_000 + i64::from(t.nanos)).filter(|t| *t > 0).unwrap_or_else(now_nanos);
                let reason = if code == 0 { "Completed" } else { "Error" };
                ExitInfo { code, at, reason: reason.into(), message: String::new() }
            }
            Err(e) => {
                tracing::error!(container_id = %container.id, error = %e, "lost the container's shim");
                let rootfs = self.paths.bundle(&container.id).ok().map(|b| b.join("rootfs"));
                self.clean_up_after_dead_shim(&container.id, &cgroups_path, rootfs).await;
                ExitInfo { code: 255, at: now_nanos(), reason: "Unknown".into(), message: format!("lost the container's shim: {e}") }
            }
        };
        if oom_killed {
            exit.reason = "OOMKilled".into();
        }
        // Saved before Delete, which takes a while (the shim drains the
        // container's output, empties and removes its cgroup) and after
        // which the shim is gone: a berthd killed meanwhile must find the
        // real exit in the record, not a Running record without a shim. In
        // memory the container stays Running until Delete is done, so a
        // Remove cannot race with the shim's teardown.
        let mut ahead = container.snapshot();
        if let Err(e) = ahead.mark_exited(&exit) {
            tracing::error!(container_id = %container.id, error = %e, "record an exit");
        }
        let saved = match self.paths.container_record(&ahead.id) {
            Ok(path) => blocking(move || Ok(berth_store::save_record(&path, &ahead)?)).await,
            Err(e) => Err(e.into()),
        };
        if let Err(e) = saved {
            tracing::error!(container_id = %container.id, error = %e, "save exit before delete");
        }
        if let Err(e) = shim.delete().await {
            tracing::warn!(container_id = %container.id, error = %e, "delete task after exit");
        }
        exit
    }

    pub(crate) async fn record_exit(&self, container: &Container, exit: ExitInfo) {
        if let Err(e) = container.record().mark_exited(&exit) {
            // Only a Running container has an exit monitor: a bug if seen.
            tracing::error!(container_id = %container.id, error = %e, "record an exit");
        }
        container.set_shim(None);
        if let Err(e) = self.save_container(container).await {
            tracing::error!(container_id = %container.id, error = %e, "save exit");
        }
        container.mark_exited();
        tracing::info!(container_id = %container.id, exit_code = exit.code, reason = %exit.reason, "container exited");
        self.emit(v1::ContainerEventType::ContainerStoppedEvent, container);
    }
}

impl Runtime {
    /// What a shim does at Delete, done by berthd when the shim itself died
    /// (SIGKILL, the OOM killer). Its processes outlive it (they are
    /// reparented, not killed), so whatever is left in its cgroup is
    /// killed and the cgroup removed; the rootfs the shim mounted is
    /// unmounted; the dead shim's sockets are removed. `rootfs`: None for a
    /// pod's pause, which has none. Best effort: each step is logged.
    pub(crate) async fn clean_up_after_dead_shim(&self, id: &str, cgroups_path: &str, rootfs: Option<PathBuf>) {
        let cgroup = self.cgroup_of(cgroups_path);
        let sockets = [self.paths.shim_socket(id), self.paths.attach_socket(id)];
        let (id, host) = (id.to_string(), self.host.clone());
        let _ = blocking(move || {
            match cgroup {
                Ok(cg) => {
                    if cg.exists() {
                        if let Err(e) = cg.kill_all() {
                            tracing::warn!(id = %id, error = %e, "kill what a dead shim left in its cgroup");
                        }
                        // SIGKILLed processes take a moment to leave the
                        // cgroup; until then it cannot be removed.
                        let deadline = std::time::Instant::now() + Duration::from_secs(2);
                        while cg.procs().is_ok_and(|p| !p.is_empty()) && std::time::Instant::now() < deadline {
                            std::thread::sleep(Duration::from_millis(10));
                        }
                    }
                    // In every hierarchy, even without the main one: a shim
                    // that died while making the cgroup made only some.
                    if let Err(e) = cg.delete() {
                        tracing::warn!(id = %id, error = %e, "remove the cgroup of a dead shim");
                    }
                }
                Err(e) => tracing::warn!(id = %id, error = %e, "the cgroup of a dead shim"),
            }
            if let Some(rootfs) = rootfs {
                if let Err(e) = host.unmount(&rootfs) {
                    tracing::warn!(id = %id, path = %rootfs.display(), error = %e, "unmount the rootfs of a dead shim");
                }
            }
            for socket in sockets {
                match std::fs::remove_file(&socket) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => tracing::warn!(id = %id, path = %socket.display(), error = %e, "remove the socket of a dead shim"),
                }
            }
            Ok(())
        })
        .await;
    }
}
