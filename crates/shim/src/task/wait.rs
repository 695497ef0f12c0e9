use std::time::Duration;

use containerd_shim_protos::api::{WaitRequest, WaitResponse};

use super::{timestamp, TaskService};
use crate::error::{Result, ShimError};

/// How long Wait lets output copiers finish after the process exited.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

impl TaskService {
    /// Blocks until the process exits and its output is in the log. Holds
    /// no lock while blocked: other RPCs go on.
    pub(super) fn wait_process(&self, req: &WaitRequest) -> Result<WaitResponse> {
        let p = self.with_container(&req.id, |c| {
            if c.pending_execs.contains_key(&req.exec_id) {
                return Err(ShimError::FailedPrecondition(format!("exec {:?} has not been started", req.exec_id)));
            }
            c.process(&req.exec_id).ok_or_else(|| ShimError::NotFound(format!("exec {:?} not found", req.exec_id)))
        })?;
        let pid = p.state().pid;
        let exit = self.reaper.wait(pid, None).ok_or_else(|| ShimError::Internal("wait ended without an exit".into()))?;
        p.io.wait_drained(DRAIN_TIMEOUT);
        p.state().exit = Some(exit);
        let mut resp = WaitResponse::new();
        resp.exit_status = exit.status;
        resp.exited_at = Some(timestamp(exit.at)).into();
        Ok(resp)
    }
}
