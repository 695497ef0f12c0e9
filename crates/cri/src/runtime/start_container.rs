use std::sync::Arc;

use containerd_shim_protos::api;
use k8s_cri::v1;

use super::Runtime;
use crate::{
    error::{blocking, Error, Result},
    shim_client::ShimError,
    state::{now_nanos, Container},
};

/// How long StartContainer waits for clients that attached to the Created
/// container (and were given a URL) to be connected to the shim.
const EARLY_ATTACH_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

impl Runtime {
    /// Starts the container's shim, creates the task on the container's
    /// thin layer and starts it; an exit monitor then waits for its end.
    /// A container that fails to start is Exited with reason StartError,
    /// as the kubelet expects, and the error is returned.
    pub(crate) async fn start_container(self: &Arc<Self>, req: v1::StartContainerRequest) -> Result<v1::StartContainerResponse> {
        let container = self.containers.get(&req.container_id)?;
        let sandbox = self.sandboxes.get(&container.sandbox_id)?;
        // Lock order: pod, then container. Holding the pod's lock keeps a
        // concurrent StopPodSandbox from missing this container.
        let _pod = sandbox.op.lock().await;
        let _op = container.op.lock().await;
        let state = container.state();
        if !state.can_start() {
            return Err(Error::FailedPrecondition(format!("container {} is {state:?}; only a Created container can start", container.id)));
        }
        if !sandbox.is_ready() {
            return Err(Error::FailedPrecondition(format!("pod sandbox {} of container {} is not ready", container.sandbox_id, container.id)));
        }
        match self.launch(&container).await {
            Ok(pid) => {
                container.record().mark_started(pid, now_nanos())?;
                self.save_container(&container).await?;
                self.spawn_exit_monitor(container.clone());
                self.emit(v1::ContainerEventType::ContainerStartedEvent, &container);
                tracing::info!(container_id = %container.id, pid, "container started");
                Ok(v1::StartContainerResponse {})
            }
            Err(e) => {
                container.record().mark_start_failed(e.to_string(), now_nanos())?;
                container.mark_exited();
                if let Err(save) = self.save_container(&container).await {
                    tracing::error!(container_id = %container.id, error = %save, "save failed start");
                }
                self.emit(v1::ContainerEventType::ContainerStoppedEvent, &container);
                Err(e)
            }
        }
    }

    async fn launch(&self, container: &Container) -> Result<u32> {
        let record = container.snapshot();
        if !record.log_path.is_empty() {
            let dir = std::path::Path::new(&record.log_path).parent().map(|p| p.to_path_buf());
            blocking(move || {
                if let Some(dir) = dir {
                    std::fs::create_dir_all(&dir).map_err(Error::io(format!("create log dir {}", dir.display())))?;
                }
                Ok(())
            })
            .await?;
        }
        let bundle = self.paths.bundle(&record.id)?;
        let (snapshots, key) = (self.snapshots.clone(), record.id.clone());
        let rootfs = blocking(move || Ok(snapshots.mounts(&key)?)).await?;
        let shim = self.shims.start(&record.id, &bundle).await?;
        let output = if record.log_path.is_empty() { String::new() } else { format!("cri-log://{}", record.log_path) };
        let create = api::CreateTaskRequest {
            id: record.id.clone(),
            bundle: bundle.display().to_string(),
            rootfs: rootfs
                .iter()
                .map(|m| api::Mount { type_: m.typ.clone(), source: m.source.clone(), options: m.options.clone(), ..Default::default() })
                .collect(),
            // With stdin, attach clients feed it (the shim holds it open).
            stdin: if record.config.stdin { berth_oci::attach::ATTACH_STDIN.into() } else { String::new() },
            stdout: output.clone(),
            stderr: output,
            terminal: record.config.tty,
            ..Default::default()
        };
        let started = async {
            shim.create(create).await?;
            // The task's stdio exists: clients that attached before Start
            // connect now, and the process starts once they are in.
            container.early_attach.set_task_created();
            if !container.early_attach.wait_registered(EARLY_ATTACH_WAIT).await {
                tracing::warn!(container_id = %record.id, "an attach asked for before start did not connect within {EARLY_ATTACH_WAIT:?}; starting without it");
            }
            Ok::<u32, Error>(shim.start("").await?)
        }
        .await;
        match started {
            Ok(pid) => {
                container.set_shim(Some(shim));
                Ok(pid)
            }
            Err(e) => {
                // Leave no shim behind: delete the task (if it was made),
                // which ends the shim.
                let _ = shim.kill(9, true).await;
                let deleted = shim.delete().await;
                let _ = shim.shutdown().await;
                // If the shim itself died half way (the storm saw "socket
                // disconnected" here), the init it made may be left in the
                // container's cgroup: do its Delete for it. Only then: a
                // live shim undid what it made, and the cgroup at the
                // container's path may not be berth's at all (systemd
                // refusing a scope whose name another runtime holds).
                if matches!(deleted, Err(ShimError::Transport(..))) {
                    self.clean_up_after_dead_shim(&record.id, &record.cgroups_path, Some(bundle.join("rootfs"))).await;
                }
                Err(e.context(format!("start container {}", record.id)))
            }
        }
    }
}
