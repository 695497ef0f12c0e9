use std::sync::Arc;

use berth_network::PodNetwork;
use k8s_cri::v1;

use super::{run_pod_sandbox::pod_ports, Runtime};
use crate::{
    error::{blocking, Error, Result},
    state::Sandbox,
};

impl Runtime {
    /// Kills every container of the pod, takes its network down and unpins
    /// its namespaces. Idempotent; an unknown pod is success (CRI).
    pub(crate) async fn stop_pod_sandbox(self: &Arc<Self>, req: v1::StopPodSandboxRequest) -> Result<v1::StopPodSandboxResponse> {
        let Some(sandbox) = self.sandboxes.find(&req.pod_sandbox_id)? else { return Ok(v1::StopPodSandboxResponse {}) };
        // The pod's lock first: no container can be created or started in
        // it while it stops (lock order: pod, then container).
        let _op = sandbox.op.lock().await;
        for container in self.containers_of(&sandbox.id) {
            self.stop(&container, 0).await?;
        }
        self.tear_down_pod(&sandbox).await?;
        sandbox.record().mark_not_ready();
        self.save_sandbox(&sandbox).await?;
        tracing::info!(pod_id = %sandbox.id, "pod sandbox stopped");
        Ok(v1::StopPodSandboxResponse {})
    }

    /// Network down (CNI DEL), namespaces unpinned, /dev/shm unmounted.
    /// Each step runs even when an earlier one failed, and steps already
    /// done are skipped, so calling it again finishes what is left. A
    /// failing CNI DEL is reported, and everything else is still undone.
    pub(crate) async fn tear_down_pod(&self, sandbox: &Sandbox) -> Result<()> {
        self.stop_pause(sandbox).await;
        let record = sandbox.snapshot();
        // Also without a CNI result: a RunPodSandbox killed during (or right
        // after) CNI ADD saved the netns but not the result, and the plugins
        // may hold an address and a veth for the pod. DEL without a previous
        // result is what the CNI spec allows for that, and it is idempotent:
        // host-local releases by the pod's id, bridge skips a gone netns.
        if let Some(netns) = record.netns.as_ref() {
            let meta = record.metadata();
            let ports = pod_ports(&record.config).unwrap_or_default();
            let pod = PodNetwork { id: &record.id, netns, name: &meta.name, namespace: &meta.namespace, uid: &meta.uid, port_mappings: &ports };
            if let Err(e) = self.cni.teardown(&pod, record.cni_result.as_ref()).await {
                // The kubelet would retry a failed Stop for ever if a plugin
                // is broken for good; removing the namespace still frees
                // the pod's interfaces, so berth goes on and says so.
                tracing::warn!(pod_id = %record.id, error = %e, "pod network teardown failed; removing the namespace anyway");
            }
        }
        let state_dir = self.paths.sandbox_state(&record.id)?;
        let (shm, host) = (record.shm.clone(), self.host.clone());
        blocking(move || {
            host.remove_namespaces(&state_dir.join("ns")).map_err(Error::from)?;
            if let Some(shm) = shm {
                host.unmount_shm(&shm)?;
            }
            Ok(())
        })
        .await?;
        {
            let mut r = sandbox.record();
            r.cni_result = None;
            r.netns = None;
            r.ipcns = None;
            r.utsns = None;
            r.shm = None;
        }
        Ok(())
    }

    /// Forgets a pod entirely: record, directories, name.
    pub(crate) async fn remove_sandbox_state(&self, sandbox: &Sandbox) {
        let record = sandbox.snapshot();
        let (dir, state_dir) = (self.paths.sandbox_dir(&record.id), self.paths.sandbox_state(&record.id));
        let removed = blocking(move || {
            for d in [dir?, state_dir?] {
                match std::fs::remove_dir_all(&d) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(Error::io(format!("remove {}", d.display()))(e)),
                }
            }
            Ok(())
        })
        .await;
        if let Err(e) = removed {
            tracing::error!(pod_id = %record.id, error = %e, "remove pod directories");
        }
        self.sandboxes.remove(&record.id);
        self.pod_names.release(&record.name, &record.id);
    }
}
