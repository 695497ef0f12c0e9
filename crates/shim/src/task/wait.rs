use std::time::Duration;

use containerd_shim_protos::api::{WaitRequest, WaitResponse};

use super::{timestamp, TaskService};
use crate::error::{Result, ShimError};

/// How long Wait lets output copiers finish after the process exited.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

impl TaskService {
    /// Returns once the process exited and its output is in the log: a
    /// future on the event loop, no thread, while it waits. An exec that was added but
    /// not started is waited for until its Start (containerd's ExecSync
    /// calls Wait first, as runc's shim allows), and fails only if it is
    /// deleted, fails to start, or the container goes first.
    pub(super) async fn wait_process(&self, req: &WaitRequest) -> Result<WaitResponse> {
        let p = self.await_started(&req.id, &req.exec_id).await?;
        let pid = p.state().pid;
        // The exit saved on the process counts too: an exec's Delete may
        // have read it and forgotten the pid before this task ran.
        let exit = self.reaper.exited_or_saved(pid, || p.state().exit).await;
        p.io.drained(DRAIN_TIMEOUT).await;
        p.state().exit = Some(exit);
        let mut resp = WaitResponse::new();
        resp.exit_status = exit.status;
        resp.exited_at = Some(timestamp(exit.at)).into();
        Ok(resp)
    }

    /// The process, once it exists (see `wait_process`).
    async fn await_started(&self, id: &str, exec_id: &str) -> Result<std::sync::Arc<crate::state::Proc>> {
        loop {
            let changed = self.exec_changed.notified();
            tokio::pin!(changed);
            // Registered before the look: a change in between wakes us.
            changed.as_mut().enable();
            if let Some(found) = self.started(id, exec_id) {
                return found;
            }
            changed.await;
        }
    }

    /// The process, an error, or None while the exec is pending.
    fn started(&self, id: &str, exec_id: &str) -> Option<Result<std::sync::Arc<crate::state::Proc>>> {
        let guard = self.lock();
        let c = match guard.as_ref() {
            Some(c) if c.id == id => c,
            _ => return Some(Err(ShimError::NotFound(format!("container {id:?} not found in this shim")))),
        };
        if let Some(p) = c.process(exec_id) {
            return Some(Ok(p));
        }
        if !c.pending_execs.contains_key(exec_id) {
            return Some(Err(ShimError::NotFound(format!("exec {exec_id:?} not found"))));
        }
        None
    }
}
