//! The containerd shim v2 Task service. One file per verb; this file only
//! routes each RPC to it and turns errors into ttrpc statuses.

mod close_io;
mod connect;
mod create;
mod delete;
mod exec;
mod kill;
mod pids;
mod resize_pty;
mod shutdown;
mod start;
mod state;
mod stats;
mod update;
mod wait;

use std::{
    collections::HashMap,
    sync::{Arc, Condvar, Mutex, MutexGuard},
};

use containerd_shim_protos::{api, create_task, protobuf::well_known_types::empty::Empty, Task};
use ttrpc::TtrpcContext;

use crate::{
    containerd::ContainerdMode,
    error::{Result, ShimError},
    reaper::Reaper,
    state::Container,
};

/// Set once the shim should exit (its container deleted, or Shutdown).
#[derive(Default)]
pub struct ShutdownSignal {
    requested: Mutex<bool>,
    cv: Condvar,
}

impl ShutdownSignal {
    /// Returns whether this was the first request.
    pub fn request(&self) -> bool {
        let first = !std::mem::replace(&mut *self.requested.lock().unwrap_or_else(|e| e.into_inner()), true);
        self.cv.notify_all();
        first
    }

    pub fn wait(&self) {
        let mut r = self.requested.lock().unwrap_or_else(|e| e.into_inner());
        while !*r {
            r = self.cv.wait(r).unwrap_or_else(|e| e.into_inner());
        }
    }
}

pub struct TaskService {
    pub id: String,
    pub reaper: Reaper,
    container: Mutex<Option<Container>>,
    /// Notified (with `container`'s lock) when an added exec started, failed
    /// to start or was deleted, or the container went: a Wait on an exec
    /// that was not started yet waits on it. containerd calls Wait before
    /// Start (ExecSync does), so it must not fail then.
    exec_changed: Condvar,
    pub shutdown: Arc<ShutdownSignal>,
    /// Where attach clients of the container connect (none: no attach).
    pub attach_socket: Option<std::path::PathBuf>,
    /// The Task API socket this shim serves on, unlinked as soon as the
    /// shim decides to exit (see [`Self::request_exit`]).
    pub socket: Option<std::path::PathBuf>,
    /// Set when containerd drives the shim: events and bundle records.
    pub containerd: Option<ContainerdMode>,
}

impl TaskService {
    pub fn new(id: String, reaper: Reaper, shutdown: Arc<ShutdownSignal>) -> Self {
        Self { id, reaper, container: Mutex::new(None), exec_changed: Condvar::new(), shutdown, attach_socket: None, socket: None, containerd: None }
    }

    /// Has the shim exit once the current call has answered.
    ///
    /// The socket goes now, before that answer: the shim lives on for a
    /// moment (the answer must reach the client), and meanwhile a connect
    /// to its socket would still succeed. `berth-shim start` takes a
    /// connectable socket for a live shim and hands it out, so a Start
    /// retried right after a Delete or Shutdown (berthd's recovery undoing
    /// a Start a crash cut short, then the kubelet's retry) got this dying
    /// shim: its Create made an init and a cgroup, and the shim exited
    /// under it ("socket disconnected", init and cgroup left behind).
    /// Once the path is gone, `start` binds it anew for a new shim.
    fn request_exit(&self) {
        if let Some(mode) = &self.containerd {
            mode.release_shim_pid();
        }
        // Only at the first request: a later one (Shutdown after Delete)
        // could find the path bound again, by the next shim.
        if let (true, Some(socket)) = (self.shutdown.request(), &self.socket) {
            if let Err(e) = std::fs::remove_file(socket) {
                log::warn!("remove socket {}: {e}", socket.display());
            }
        }
    }

    fn lock(&self) -> MutexGuard<'_, Option<Container>> {
        self.container.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` on the container, checking the id the caller named.
    fn with_container<T>(&self, id: &str, f: impl FnOnce(&mut Container) -> Result<T>) -> Result<T> {
        let mut guard = self.lock();
        match guard.as_mut() {
            Some(c) if c.id == id => f(c),
            _ => Err(ShimError::NotFound(format!("container {id:?} not found in this shim"))),
        }
    }
}

/// The Task API's handlers, under both names containerd calls the service:
/// `containerd.task.v2.Task` (containerd 1.6; 2.x for shims that answer
/// `start` with a bare address) and `containerd.task.v3.Task` (berthd;
/// containerd 2.x). The two protos have the same messages and methods.
pub fn methods(service: Arc<TaskService>) -> HashMap<String, Box<dyn ttrpc::MethodHandler + Send + Sync>> {
    const V3: &str = "/containerd.task.v3.Task/";
    const V2: &str = "/containerd.task.v2.Task/";
    let mut all = create_task(service.clone());
    let v2: Vec<_> =
        create_task(service).into_iter().filter_map(|(path, handler)| path.strip_prefix(V3).map(|method| (format!("{V2}{method}"), handler))).collect();
    all.extend(v2);
    all
}

/// Logs a failed call once, at the boundary, and converts the error.
fn reply<T>(verb: &str, id: &str, result: Result<T>) -> ttrpc::Result<T> {
    result.map_err(|e| {
        log::warn!("{verb} {id}: {e}");
        e.into()
    })
}

impl Task for TaskService {
    fn state(&self, _: &TtrpcContext, req: api::StateRequest) -> ttrpc::Result<api::StateResponse> {
        reply("state", &req.id, self.state_of(&req))
    }

    fn create(&self, _: &TtrpcContext, req: api::CreateTaskRequest) -> ttrpc::Result<api::CreateTaskResponse> {
        reply("create", &req.id.clone(), self.create_task(req))
    }

    fn start(&self, _: &TtrpcContext, req: api::StartRequest) -> ttrpc::Result<api::StartResponse> {
        reply("start", &req.id, self.start_process(&req))
    }

    fn delete(&self, _: &TtrpcContext, req: api::DeleteRequest) -> ttrpc::Result<api::DeleteResponse> {
        reply("delete", &req.id, self.delete_process(&req))
    }

    fn pids(&self, _: &TtrpcContext, req: api::PidsRequest) -> ttrpc::Result<api::PidsResponse> {
        reply("pids", &req.id, self.list_pids(&req))
    }

    fn kill(&self, _: &TtrpcContext, req: api::KillRequest) -> ttrpc::Result<Empty> {
        reply("kill", &req.id, self.kill_process(&req))
    }

    fn exec(&self, _: &TtrpcContext, req: api::ExecProcessRequest) -> ttrpc::Result<Empty> {
        reply("exec", &req.id.clone(), self.add_exec(req))
    }

    fn resize_pty(&self, _: &TtrpcContext, req: api::ResizePtyRequest) -> ttrpc::Result<Empty> {
        reply("resize_pty", &req.id, self.resize(&req))
    }

    fn close_io(&self, _: &TtrpcContext, req: api::CloseIORequest) -> ttrpc::Result<Empty> {
        reply("close_io", &req.id, self.close_stdin(&req))
    }

    fn update(&self, _: &TtrpcContext, req: api::UpdateTaskRequest) -> ttrpc::Result<Empty> {
        reply("update", &req.id, self.update_task(&req))
    }

    fn wait(&self, _: &TtrpcContext, req: api::WaitRequest) -> ttrpc::Result<api::WaitResponse> {
        reply("wait", &req.id, self.wait_process(&req))
    }

    fn stats(&self, _: &TtrpcContext, req: api::StatsRequest) -> ttrpc::Result<api::StatsResponse> {
        reply("stats", &req.id, self.stats_of(&req))
    }

    fn connect(&self, _: &TtrpcContext, req: api::ConnectRequest) -> ttrpc::Result<api::ConnectResponse> {
        reply("connect", &req.id, self.connect_info(&req))
    }

    fn shutdown(&self, _: &TtrpcContext, req: api::ShutdownRequest) -> ttrpc::Result<Empty> {
        reply("shutdown", &req.id, self.shutdown_shim(&req))
    }
}

/// A protobuf Timestamp for an instant.
pub(crate) fn timestamp(t: std::time::SystemTime) -> protobuf::well_known_types::timestamp::Timestamp {
    let d = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let mut ts = protobuf::well_known_types::timestamp::Timestamp::new();
    ts.seconds = d.as_secs() as i64;
    ts.nanos = d.subsec_nanos() as i32;
    ts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_method_is_served_under_both_service_names() {
        let service = Arc::new(TaskService::new("c".into(), Reaper::default(), Arc::default()));
        let methods = methods(service);
        for verb in ["Create", "Start", "Delete", "Wait", "Kill", "Exec", "State", "Stats", "Connect", "Shutdown", "Update", "Pids", "CloseIO", "ResizePty"] {
            for service in ["containerd.task.v2.Task", "containerd.task.v3.Task"] {
                assert!(methods.contains_key(&format!("/{service}/{verb}")), "/{service}/{verb} missing");
            }
        }
        assert_eq!(methods.keys().filter(|k| k.starts_with("/containerd.task.v2.Task/")).count(), methods.len() / 2);
    }
}
