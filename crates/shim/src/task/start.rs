use berth_shim_protocol::{Bootstrap, ExecTarget};
use containerd_shim_protos::{
    api::{StartRequest, StartResponse},
    events::task::{TaskExecStarted, TaskStart},
    topics,
};

use super::TaskService;
use crate::{
    error::{Result, ShimError},
    io::ProcessIo,
    spawn::{self, Role, Stage1},
    state::{Proc, ProcState, Status},
};

impl TaskService {
    /// Start the init (tell the waiting container process to exec) or an
    /// exec (spawn it now, in the container's namespaces and cgroup).
    pub(super) fn start_process(&self, req: &StartRequest) -> Result<StartResponse> {
        let pid = if req.exec_id.is_empty() { self.start_init(&req.id)? } else { self.start_exec(&req.id, &req.exec_id)? };
        let mut resp = StartResponse::new();
        resp.pid = pid as u32;
        Ok(resp)
    }

    fn start_init(&self, id: &str) -> Result<i32> {
        let init = self.with_container(id, |c| Ok(c.init.clone()))?;
        let (status, _, _) = init.status(&self.reaper);
        if status != Status::Created {
            return Err(ShimError::FailedPrecondition(format!("container {id} is {status:?}, not Created")));
        }
        let spawned = init.state().pending_start.take().ok_or_else(|| ShimError::FailedPrecondition(format!("container {id} is already starting")))?;
        spawn::start(&spawned, &self.reaper)?;
        init.state().started = true;
        log::info!("started container {id} pid={}", spawned.pid);
        if let Some(mode) = &self.containerd {
            let mut event = TaskStart::new();
            event.container_id = id.to_string();
            event.pid = spawned.pid as u32;
            mode.publish(topics::TASK_START_EVENT_TOPIC, &event);
            let cgroup = self.with_container(id, |c| Ok(c.cgroup.clone()))?;
            mode.watch_exit(self.reaper.clone(), id.to_string(), String::new(), init, cgroup);
        }
        Ok(spawned.pid)
    }

    fn start_exec(&self, id: &str, exec_id: &str) -> Result<i32> {
        // The exec stays pending (marked starting) until it is in `execs`:
        // a Wait that came before this Start never sees it missing.
        let (stdio, process, init, cgroup, bundle) = self.with_container(id, |c| {
            let pending = c.pending_execs.get_mut(exec_id).ok_or_else(|| match c.execs.contains_key(exec_id) {
                true => ShimError::FailedPrecondition(format!("exec {exec_id:?} was already started")),
                false => ShimError::NotFound(format!("exec {exec_id:?} not found")),
            })?;
            if pending.starting {
                return Err(ShimError::FailedPrecondition(format!("exec {exec_id:?} is already starting")));
            }
            pending.starting = true;
            Ok((pending.stdio.clone(), pending.process.clone(), c.init.clone(), c.cgroup.clone(), c.bundle.clone()))
        })?;
        let spawned = (|| {
            let (init_status, init_pid, _) = init.status(&self.reaper);
            if init_status != Status::Running {
                return Err(ShimError::FailedPrecondition(format!("container {id} is {init_status:?}; exec needs it Running")));
            }
            let (io, child_stdio) = ProcessIo::prepare(&stdio)?;
            let stage1 = Stage1::spawn(Role::Exec, child_stdio, &self.reaper)?;
            if let Some(cg) = &cgroup {
                stage1.join(cg)?;
            }
            let bootstrap = Bootstrap { bundle, terminal: stdio.terminal, exec: Some(ExecTarget { pid: init_pid, process }) };
            let spawned = stage1.bootstrap(bootstrap, &io, &self.reaper)?;
            Ok((io, spawned))
        })();
        let mut guard = self.lock();
        let container = guard.as_mut().filter(|c| c.id == id);
        let (io, spawned) = match spawned {
            Ok(s) => s,
            Err(e) => {
                // A failed Start ends the exec: a waiting Wait answers NotFound.
                if let Some(c) = container {
                    c.pending_execs.remove(exec_id);
                }
                self.exec_changed.notify_waiters();
                return Err(e);
            }
        };
        let proc_ = Proc::new(io, ProcState { pid: spawned.pid, started: true, ..Default::default() });
        match container {
            Some(c) => {
                c.pending_execs.remove(exec_id);
                c.execs.insert(exec_id.to_string(), proc_.clone());
            }
            // Deleted while it was spawned: teardown killed the cgroup it joined.
            None => return Err(ShimError::NotFound(format!("container {id:?} not found in this shim"))),
        }
        self.exec_changed.notify_waiters();
        drop(guard);
        log::info!("started exec {exec_id} in {id} pid={}", spawned.pid);
        if let Some(mode) = &self.containerd {
            let mut event = TaskExecStarted::new();
            event.container_id = id.to_string();
            event.exec_id = exec_id.to_string();
            event.pid = spawned.pid as u32;
            mode.publish(topics::TASK_EXEC_STARTED_EVENT_TOPIC, &event);
            mode.watch_exit(self.reaper.clone(), id.to_string(), exec_id.to_string(), proc_, None);
        }
        Ok(spawned.pid)
    }
}
