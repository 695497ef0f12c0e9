use std::{sync::Arc, time::Duration};

use k8s_cri::v1;

use super::Runtime;
use crate::{
    error::{Error, Result},
    state::Container,
};

/// After SIGKILL, how long to wait for the exit to be recorded.
const KILL_GRACE: Duration = Duration::from_secs(30);

impl Runtime {
    /// The image's stop signal, then SIGKILL to every process of the
    /// container after `timeout` seconds. Not running (or unknown) is
    /// success, as the CRI says.
    pub(crate) async fn stop_container(self: &Arc<Self>, req: v1::StopContainerRequest) -> Result<v1::StopContainerResponse> {
        let Some(container) = self.containers.find(&req.container_id)? else { return Ok(v1::StopContainerResponse {}) };
        if req.timeout < 0 {
            return Err(Error::InvalidArgument(format!("timeout {} is negative", req.timeout)));
        }
        self.stop(&container, req.timeout).await?;
        Ok(v1::StopContainerResponse {})
    }

    pub(crate) async fn stop(&self, container: &Container, timeout_secs: i64) -> Result<()> {
        let _op = container.op.lock().await;
        if !container.state().needs_stop() {
            return Ok(());
        }
        let Some(shim) = container.shim() else {
            // Running without a shim: the monitor is recording its loss.
            container.wait_exited().await;
            return Ok(());
        };
        let signal = container.record().stop_signal;
        if timeout_secs > 0 {
            if let Err(e) = shim.kill(signal, false).await {
                tracing::debug!(container_id = %container.id, error = %e, "stop signal");
            }
            if tokio::time::timeout(Duration::from_secs(timeout_secs as u64), container.wait_exited()).await.is_ok() {
                return Ok(());
            }
        }
        if let Err(e) = shim.kill(9, true).await {
            tracing::debug!(container_id = %container.id, error = %e, "SIGKILL");
        }
        tokio::time::timeout(KILL_GRACE, container.wait_exited())
            .await
            .map_err(|_| Error::DeadlineExceeded(format!("container {} did not exit {KILL_GRACE:?} after SIGKILL", container.id)))
    }
}
