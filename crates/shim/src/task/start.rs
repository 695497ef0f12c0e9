use berth_container::sync::{Bootstrap, ExecTarget};
use containerd_shim_protos::{
    api::{StartRequest, StartResponse},
    events::task::{TaskExecStarted, TaskStart},
    topics,
};

use super::TaskService;
use crate::{
    error::{Result, ShimError},
    io::ProcessIo,
    spawn::{self, spawn_init},
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
            let cgroup = self.with_container(id, |c| Ok(c.cgroup.as_ref().map(|cg| cg.cgroup().clone())))?;
            mode.watch_exit(self.reaper.clone(), id.to_string(), String::new(), init, cgroup);
        }
        Ok(spawned.pid)
    }

    fn start_exec(&self, id: &str, exec_id: &str) -> Result<i32> {
        let (pending, init, cgroup, bundle) = self.with_container(id, |c| {
            let pending = c.pending_execs.remove(exec_id).ok_or_else(|| match c.execs.contains_key(exec_id) {
                true => ShimError::FailedPrecondition(format!("exec {exec_id:?} was already started")),
                false => ShimError::NotFound(format!("exec {exec_id:?} not found")),
            })?;
            Ok((pending, c.init.clone(), c.cgroup.clone(), c.bundle.clone()))
        })?;
        let (init_status, init_pid, _) = init.status(&self.reaper);
        if init_status != Status::Running {
            return Err(ShimError::FailedPrecondition(format!("container {id} is {init_status:?}; exec needs it Running")));
        }
        let (io, child_stdio) = ProcessIo::prepare(&pending.stdio)?;
        let terminal = pending.stdio.terminal;
        let bootstrap = Bootstrap { bundle, terminal, exec: Some(ExecTarget { pid: init_pid, process: pending.process }) };
        let spawned = spawn_init(bootstrap, child_stdio, &io, cgroup.as_ref(), &self.reaper)?;
        let proc_ = Proc::new(io, ProcState { pid: spawned.pid, started: true, ..Default::default() });
        self.with_container(id, |c| {
            c.execs.insert(exec_id.to_string(), proc_.clone());
            Ok(())
        })?;
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
