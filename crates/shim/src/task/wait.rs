use std::time::Duration;

use containerd_shim_protos::api::{WaitRequest, WaitResponse};

use super::{timestamp, TaskService};
use crate::error::{Result, ShimError};

/// How long Wait lets output copiers finish after the process exited.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

impl TaskService {
    /// Blocks until the process exits and its output is in the log. Holds
    /// no lock while blocked: other RPCs go on. An exec that was added but
    /// not started is waited for until its Start (containerd's ExecSync
    /// calls Wait first, as runc's shim allows), and fails only if it is
    /// deleted, fails to start, or the container goes first.
    pub(super) fn wait_process(&self, req: &WaitRequest) -> Result<WaitResponse> {
        let p = self.await_started(&req.id, &req.exec_id)?;
        let pid = p.state().pid;
        let exit = self.reaper.wait(pid, None).ok_or_else(|| ShimError::Internal("wait ended without an exit".into()))?;
        p.io.wait_drained(DRAIN_TIMEOUT);
        p.state().exit = Some(exit);
        let mut resp = WaitResponse::new();
        resp.exit_status = exit.status;
        resp.exited_at = Some(timestamp(exit.at)).into();
        Ok(resp)
    }

    /// The process, once it exists (see `wait_process`).
    fn await_started(&self, id: &str, exec_id: &str) -> Result<std::sync::Arc<crate::state::Proc>> {
        let mut guard = self.lock();
        loop {
            let c = match guard.as_ref() {
                Some(c) if c.id == id => c,
                _ => return Err(ShimError::NotFound(format!("container {id:?} not found in this shim"))),
            };
            if let Some(p) = c.process(exec_id) {
                return Ok(p);
            }
            if !c.pending_execs.contains_key(exec_id) {
                return Err(ShimError::NotFound(format!("exec {exec_id:?} not found")));
            }
            guard = self.exec_changed.wait(guard).unwrap_or_else(|e| e.into_inner());
        }
    }
}
