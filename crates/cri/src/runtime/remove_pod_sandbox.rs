use std::sync::Arc;

use k8s_cri::v1;

use super::Runtime;
use crate::error::Result;

impl Runtime {
    /// Removes the pod and all its containers, stopping what still runs.
    /// An unknown pod is success (CRI).
    pub(crate) async fn remove_pod_sandbox(self: &Arc<Self>, req: v1::RemovePodSandboxRequest) -> Result<v1::RemovePodSandboxResponse> {
        let Some(sandbox) = self.sandboxes.find(&req.pod_sandbox_id)? else { return Ok(v1::RemovePodSandboxResponse {}) };
        // The pod's lock first: no container can be created or started in
        // it while it goes (lock order: pod, then container).
        let _op = sandbox.op.lock().await;
        for container in self.containers_of(&sandbox.id) {
            self.remove(&container).await?;
        }
        self.tear_down_pod(&sandbox).await?;
        self.remove_sandbox_state(&sandbox).await;
        tracing::info!(pod_id = %sandbox.id, "pod sandbox removed");
        Ok(v1::RemovePodSandboxResponse {})
    }
}
