use std::sync::Arc;

use k8s_cri::v1;

use berth_oci::spec::REOPEN_LOG_ANNOTATION;

use super::Runtime;
use crate::error::{Error, Result};

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
