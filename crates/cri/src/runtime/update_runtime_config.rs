use k8s_cri::v1::{UpdateRuntimeConfigRequest, UpdateRuntimeConfigResponse};

use super::Runtime;

impl Runtime {
    /// The kubelet tells the node's pod CIDR. berth's CNI config is the
    /// operator's file, so the CIDR is kept and shown (`crictl info`), not
    /// written into the network config.
    pub(crate) fn update_runtime_config(&self, req: UpdateRuntimeConfigRequest) -> UpdateRuntimeConfigResponse {
        let cidr = req.runtime_config.and_then(|c| c.network_config).map(|n| n.pod_cidr).unwrap_or_default();
        if !cidr.is_empty() {
            tracing::info!(pod_cidr = %cidr, "pod CIDR from the kubelet");
            *self.pod_cidr.lock().unwrap_or_else(|e| e.into_inner()) = cidr;
        }
        UpdateRuntimeConfigResponse {}
    }
}
