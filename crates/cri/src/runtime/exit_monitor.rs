//! One task per running container waits for its end, records how it
//! ended (exit code, OOM kill), deletes the task (the shim then unmounts
//! the rootfs, removes the cgroup and exits) and tells the watchers.

use std::sync::Arc;

use k8s_cri::v1;

use super::Runtime;
use crate::state::{now_nanos, Container, ContainerState, ExitInfo};

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
                if let Ok(cg) = self.cgroup_of(&cgroups_path) {
                    let _ = cg.kill_all();
                }
                ExitInfo { code: 255, at: now_nanos(), reason: "Unknown".into(), message: format!("lost the container's shim: {e}") }
            }
        };
        if oom_killed {
            exit.reason = "OOMKilled".into();
        }
        if let Err(e) = shim.delete().await {
            tracing::warn!(container_id = %container.id, error = %e, "delete task after exit");
        }
        exit
    }

    pub(crate) async fn record_exit(&self, container: &Container, exit: ExitInfo) {
        {
            let mut r = container.record();
            r.state = ContainerState::Exited;
            r.exit_code = exit.code;
            r.finished_at = exit.at;
            r.reason = exit.reason.clone();
            r.message = exit.message;
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
