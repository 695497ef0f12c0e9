use containerd_shim_protos::api::KillRequest;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use protobuf::well_known_types::empty::Empty;

use super::TaskService;
use crate::{
    error::{Result, ShimError},
    state::Status,
};

impl TaskService {
    /// Signals one process, or with `all` every process in the container's
    /// cgroup (SIGKILL freezes the cgroup first so nothing forks away).
    pub(super) fn kill_process(&self, req: &KillRequest) -> Result<Empty> {
        let signal = Signal::try_from(req.signal as i32).map_err(|_| ShimError::InvalidArgument(format!("invalid signal {}", req.signal)))?;
        let (p, cgroup) = self.with_container(&req.id, |c| {
            if c.pending_execs.contains_key(&req.exec_id) {
                return Err(ShimError::FailedPrecondition(format!("exec {:?} has not been started", req.exec_id)));
            }
            let p = c.process(&req.exec_id).ok_or_else(|| ShimError::NotFound(format!("exec {:?} not found", req.exec_id)))?;
            Ok((p, c.cgroup.clone()))
        })?;
        let (status, pid, _) = p.status(&self.reaper);
        if req.all && req.exec_id.is_empty() {
            if let Some(cg) = cgroup {
                if signal == Signal::SIGKILL {
                    cg.kill_all()?;
                } else {
                    for pid in cg.procs()? {
                        let _ = kill(Pid::from_raw(pid), signal);
                    }
                }
                return Ok(Empty::new());
            }
        }
        if status == Status::Stopped {
            return Err(ShimError::NotFound(format!("process {pid} already finished")));
        }
        match kill(Pid::from_raw(pid), signal) {
            Ok(()) => Ok(Empty::new()),
            Err(nix::Error::ESRCH) => Err(ShimError::NotFound(format!("process {pid} already finished"))),
            Err(e) => Err(ShimError::Internal(format!("kill {pid} with {signal}: {e}"))),
        }
    }
}
