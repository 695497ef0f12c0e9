use containerd_shim_protos::api::{StateRequest, StateResponse, Status as ApiStatus};

use super::{timestamp, TaskService};
use crate::{
    error::{Result, ShimError},
    state::Status,
};

impl TaskService {
    pub(super) fn state_of(&self, req: &StateRequest) -> Result<StateResponse> {
        self.with_container(&req.id, |c| {
            let mut resp = StateResponse::new();
            resp.id = c.id.clone();
            resp.bundle = c.bundle.display().to_string();
            resp.exec_id = req.exec_id.clone();
            if let Some(pending) = c.pending_execs.get(&req.exec_id) {
                resp.status = ApiStatus::CREATED.into();
                resp.stdin = pending.stdio.stdin.clone();
                resp.stdout = pending.stdio.stdout.clone();
                resp.stderr = pending.stdio.stderr.clone();
                resp.terminal = pending.stdio.terminal;
                return Ok(resp);
            }
            let p = c.process(&req.exec_id).ok_or_else(|| ShimError::NotFound(format!("exec {:?} not found", req.exec_id)))?;
            let (status, pid, exit) = p.status(&self.reaper);
            resp.pid = pid as u32;
            resp.status = match status {
                Status::Created => ApiStatus::CREATED,
                Status::Running => ApiStatus::RUNNING,
                Status::Stopped => ApiStatus::STOPPED,
            }
            .into();
            let cfg = p.io.config();
            resp.stdin = cfg.stdin.clone();
            resp.stdout = cfg.stdout.clone();
            resp.stderr = cfg.stderr.clone();
            resp.terminal = cfg.terminal;
            if let Some(exit) = exit {
                resp.exit_status = exit.status;
                resp.exited_at = Some(timestamp(exit.at)).into();
            }
            Ok(resp)
        })
    }
}
