//! A pod that shares one PID namespace needs a process to hold it: the
//! pod's pause, a berth-runtime init that stays as pid 1 and reaps (no image;
//! see berth-container's `pause`). It gets its own shim, keyed by the pod
//! id, and lives until the pod stops.

use berth_oci::container::{pause_spec, Namespace};
use containerd_shim_protos::api;
use k8s_cri::v1;

use super::Runtime;
use crate::{
    error::{blocking, Error, Result},
    state::{Sandbox, SandboxRecord},
};

impl Runtime {
    /// The pause's cgroup: the pod's id under the pod's parent.
    fn pause_cgroups_path(&self, record: &SandboxRecord) -> String {
        self.cgroups_path(&self.cgroup_parent_of(&record.config), &record.id)
    }

    pub(crate) async fn start_pause(&self, sandbox: &Sandbox) -> Result<u32> {
        let record = sandbox.snapshot();
        let pin = |p: &Option<std::path::PathBuf>| p.as_ref().map(|p| Namespace::Join(p.display().to_string())).unwrap_or(Namespace::Host);
        let cgroups_path = self.pause_cgroups_path(&record);
        let spec = pause_spec(&pin(&record.netns), &pin(&record.ipcns), &pin(&record.utsns), record.user_namespace().as_ref(), &cgroups_path);
        let bundle = self.paths.sandbox_state(&record.id)?.join("pause");
        let json = serde_json::to_vec(&spec).map_err(|e| Error::Internal(e.to_string()))?;
        let dir = bundle.clone();
        // In a user namespace the pause's (empty) root must be its root's,
        // or it cannot make /dev in it.
        let owner = record.id_map().map(|m| (m.host_uid(0), m.host_gid(0)));
        blocking(move || {
            std::fs::create_dir_all(dir.join("rootfs")).map_err(Error::io(format!("create {}", dir.display())))?;
            if let Some((uid, gid)) = owner {
                nix::unistd::chown(&dir.join("rootfs"), uid.map(Into::into), gid.map(Into::into))
                    .map_err(Error::io(format!("give {} to the pod's user namespace", dir.display())))?;
            }
            Ok(berth_store::atomic_write(&dir.join("config.json"), &json, 0o600)?)
        })
        .await?;
        let shim = self.shims.start(&record.id, &bundle).await?;
        let create = api::CreateTaskRequest { id: record.id.clone(), bundle: bundle.display().to_string(), ..Default::default() };
        let started = async {
            shim.create(create).await?;
            Ok::<u32, Error>(shim.start("").await?)
        }
        .await;
        if started.is_err() {
            let _ = shim.kill(9, true).await;
            let _ = shim.delete().await;
            let _ = shim.shutdown().await;
        }
        started.map_err(|e| e.context(format!("start the pause of pod {}", record.id)))
    }

    /// Ends the pod's pause (which ends every process left in its PID
    /// namespace) and its shim. No pause, or one already gone, is fine.
    ///
    /// The shim is looked for even when the record names no pause: a
    /// RunPodSandbox killed between starting the pause and saving its pid
    /// leaves one that only its socket tells of. A pause whose shim died
    /// is still running, holding the pod's namespaces: its cgroup is
    /// emptied and removed instead.
    pub(crate) async fn stop_pause(&self, sandbox: &Sandbox) {
        let record = sandbox.snapshot();
        if record.namespace_options().pid != v1::NamespaceMode::Pod as i32 {
            return;
        }
        match self.shims.find(&sandbox.id).await {
            Some(shim) => {
                let _ = shim.kill(9, true).await;
                let _ = shim.wait("").await;
                if let Err(e) = shim.delete().await {
                    tracing::warn!(pod_id = %sandbox.id, error = %e, "delete the pod's pause");
                }
                // The shim of a RunPodSandbox killed before it created the
                // task has nothing to delete and would wait for ever: it
                // exits on Shutdown (a no-op for one that exits after
                // Delete).
                let _ = shim.shutdown().await;
            }
            None => {
                self.clean_up_after_dead_shim(&record.id, &self.pause_cgroups_path(&record), None).await;
            }
        }
        sandbox.record().pause_pid = None;
    }
}
