use std::sync::Arc;

use berth_streaming::Pending;
use k8s_cri::v1;

use super::Runtime;
use crate::error::{Error, Result};

impl Runtime {
    /// A single-use URL for forwarding ports of a ready pod. The ports
    /// themselves come with each stream, as the protocols define.
    pub(crate) async fn port_forward(self: &Arc<Self>, req: v1::PortForwardRequest) -> Result<v1::PortForwardResponse> {
        let sandbox = self.sandboxes.get(&req.pod_sandbox_id)?;
        if let Some(bad) = req.port.iter().find(|p| !(1..=65535).contains(*p)) {
            return Err(Error::InvalidArgument(format!("port {bad} is not a TCP port")));
        }
        if !sandbox.is_ready() {
            return Err(Error::FailedPrecondition(format!("pod sandbox {} is not ready", sandbox.id)));
        }
        let url = self.streaming.url_for(Pending::PortForward { pod_id: sandbox.id.clone() }).map_err(Error::io("streaming token"))?;
        Ok(v1::PortForwardResponse { url })
    }
}
