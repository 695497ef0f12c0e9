use std::time::Duration;

use containerd_shim_protos::{
    api::{DeleteRequest, DeleteResponse},
    events::task::TaskDelete,
    topics,
};

use super::{create::remove_from_host, timestamp, TaskService};
use crate::{
    containerd,
    error::{Result, ShimError},
    reaper::Reaper,
    state::{Container, Status},
};

impl TaskService {
    /// Deletes an exec record, or the container: after it no process,
    /// cgroup, mount or socket of the container remains, and the shim exits.
    pub(super) fn delete_process(&self, req: &DeleteRequest) -> Result<DeleteResponse> {
        if !req.exec_id.is_empty() {
            return self.delete_exec(req);
        }
        let mut guard = self.lock();
        let c = match guard.as_ref() {
            Some(c) if c.id == req.id => c,
            _ => return Err(ShimError::NotFound(format!("container {:?} not found in this shim", req.id))),
        };
        let (status, pid, _) = c.init.status(&self.reaper);
        if status == Status::Running {
            return Err(ShimError::FailedPrecondition(format!("container {} is running; stop it before Delete", c.id)));
        }
        if status == Status::Created {
            // The init is parked waiting for Start: end it.
            // SAFETY: kill(2) has no memory-safety preconditions.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        let exit = self.reaper.wait(pid, Some(Duration::from_secs(5)));
        let Some(container) = guard.take() else { return Err(ShimError::NotFound(format!("container {:?} not found in this shim", req.id))) };
        drop(guard);
        // Waits on execs that never started end (NotFound).
        self.exec_changed.notify_waiters();
        if let (Some(mode), Some(exit)) = (&self.containerd, exit.filter(|_| container.init.state().started)) {
            // TaskExit (if the watcher has not sent it) goes before
            // TaskDelete, and reads the OOM count before the cgroup goes.
            let oom_killed = containerd::oom_killed(container.cgroup.as_ref());
            mode.record_init_exit(&exit);
            mode.publish_exit_once(&container.id, "", &container.init, &exit, oom_killed);
        }
        if let Err(e) = teardown(&container, &self.reaper) {
            // Kept, so that Delete can be asked again (the cgroup, a mount
            // may be left); the exit is the reaper's still.
            self.lock().get_or_insert(container);
            return Err(e);
        }
        self.reaper.forget(pid);
        log::info!("deleted container {}", container.id);
        let mut resp = DeleteResponse::new();
        resp.pid = pid as u32;
        if let Some(exit) = exit {
            resp.exit_status = exit.status;
            resp.exited_at = Some(timestamp(exit.at)).into();
        }
        if let Some(mode) = &self.containerd {
            let mut event = TaskDelete::new();
            event.container_id = container.id.clone();
            event.id = container.id.clone();
            event.pid = resp.pid;
            event.exit_status = resp.exit_status;
            event.exited_at = resp.exited_at.clone();
            mode.publish(topics::TASK_DELETE_EVENT_TOPIC, &event);
        }
        self.request_exit();
        Ok(resp)
    }

    fn delete_exec(&self, req: &DeleteRequest) -> Result<DeleteResponse> {
        self.with_container(&req.id, |c| {
            let mut resp = DeleteResponse::new();
            match c.pending_execs.get(&req.exec_id) {
                Some(p) if p.starting => return Err(ShimError::FailedPrecondition(format!("exec {:?} is being started", req.exec_id))),
                Some(_) => {
                    c.pending_execs.remove(&req.exec_id);
                    // A Wait on it ends (NotFound).
                    self.exec_changed.notify_waiters();
                    return Ok(resp);
                }
                None => {}
            }
            let p = c.execs.get(&req.exec_id).ok_or_else(|| ShimError::NotFound(format!("exec {:?} not found", req.exec_id)))?;
            let (status, pid, exit) = p.status(&self.reaper);
            if status != Status::Stopped {
                return Err(ShimError::FailedPrecondition(format!("exec {:?} is still running", req.exec_id)));
            }
            p.io.close();
            if let (Some(mode), Some(exit)) = (&self.containerd, exit) {
                mode.publish_exit_once(&c.id, &req.exec_id, p, &exit, false);
            }
            self.reaper.forget(pid);
            c.execs.remove(&req.exec_id);
            resp.pid = pid as u32;
            if let Some(exit) = exit {
                resp.exit_status = exit.status;
                resp.exited_at = Some(timestamp(exit.at)).into();
            }
            Ok(resp)
        })
    }
}

/// Kills whatever is left in the cgroup, removes it, unmounts the rootfs
/// (`berth-runtime delete`), and closes stdio, also when the first failed.
fn teardown(c: &Container, reaper: &Reaper) -> Result<()> {
    let removed = remove_from_host(&c.host, reaper);
    c.init.io.wait_drained(Duration::from_secs(1));
    c.init.io.close();
    for p in c.execs.values() {
        p.io.close();
    }
    removed
}
