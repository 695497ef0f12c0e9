use std::sync::Arc;

use k8s_cri::v1;

use super::Runtime;
use crate::error::{Error, Result};

/// The shim's Update annotation for "reopen your log" (berth-shim's
/// contract, docs/architecture.md).
const REOPEN_LOG_ANNOTATION: &str = "io.berth.log.reopen";

impl Runtime {
    /// After the kubelet rotated the log file, the shim opens it anew.
    pub(crate) async fn reopen_container_log(self: &Arc<Self>, req: v1::ReopenContainerLogRequest) -> Result<v1::ReopenContainerLogResponse> {
        let container = self.containers.get(&req.container_id)?;
        let state = container.state();
        let shim = match (state.can_exec(), container.shim()) {
            (true, Some(shim)) => shim,
            _ => return Err(Error::FailedPrecondition(format!("container {} is {state:?}; only a running container's log can be reopened", container.id))),
        };
        shim.update(None, vec![(REOPEN_LOG_ANNOTATION.into(), "true".into())]).await?;
        Ok(v1::ReopenContainerLogResponse {})
    }
}
