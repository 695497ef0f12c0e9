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
    sync::{Arc, Mutex, MutexGuard},
};

use containerd_shim_protos::{
    api,
    protobuf::well_known_types::empty::Empty,
    shim_async::{create_task, Task},
};
use tokio::sync::Notify;
use ttrpc::r#async::TtrpcContext;

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
    notify: Notify,
}

impl ShutdownSignal {
    /// Returns whether this was the first request.
    pub fn request(&self) -> bool {
        let first = !std::mem::replace(&mut *self.requested.lock().unwrap_or_else(|e| e.into_inner()), true);
        self.notify.notify_waiters();
        first
    }

    pub async fn requested(&self) {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if *self.requested.lock().unwrap_or_else(|e| e.into_inner()) {
                return;
            }
            notified.await;
        }
    }
}

pub struct TaskService {
    pub id: String,
    pub reaper: Reaper,
    container: Mutex<Option<Container>>,
    /// Notified when an added exec started, failed to start or was
    /// deleted, or the container went: a Wait on an exec that was not
    /// started yet waits on it. containerd calls Wait before Start
    /// (ExecSync does), so it must not fail then.
    exec_changed: Notify,
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
        Self { id, reaper, container: Mutex::new(None), exec_changed: Notify::new(), shutdown, attach_socket: None, socket: None, containerd: None }
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
pub fn methods(service: Arc<TaskService>) -> HashMap<String, ttrpc::r#async::Service> {
    const V3: &str = "containerd.task.v3.Task";
    const V2: &str = "containerd.task.v2.Task";
    let handlers = Arc::new(Handlers(service));
    let mut all = create_task(handlers.clone());
    if let Some(v3) = create_task(handlers).remove(V3) {
        all.insert(V2.to_string(), v3);
    }
    all
}

/// Logs a failed call once, at the boundary, and converts the error.
fn reply<T>(verb: &str, id: &str, result: Result<T>) -> ttrpc::Result<T> {
    result.map_err(|e| {
        log::warn!("{verb} {id}: {e}");
        e.into()
    })
}

/// The service as the event loop calls it. Calls that may block (fork and
/// exec, mounts, cgroup writes and removal, waiting for a process to go)
/// run on tokio's blocking pool, whose threads exist only while there is
/// such a call (and a moment after); Wait and the calls that only read
/// (the shim's state, cgroup counters) run on the loop.
struct Handlers(Arc<TaskService>);

impl Handlers {
    async fn blocking<T: Send + 'static>(
        &self,
        verb: &'static str,
        id: String,
        f: impl FnOnce(&TaskService) -> Result<T> + Send + 'static,
    ) -> ttrpc::Result<T> {
        let service = self.0.clone();
        let result = tokio::task::spawn_blocking(move || {
            let result = f(&service);
            crate::serve::release_free_memory();
            result
        })
        .await
        .unwrap_or_else(|e| Err(ShimError::Internal(format!("{verb} failed: {e}"))));
        reply(verb, &id, result)
    }
}

#[async_trait::async_trait]
impl Task for Handlers {
    async fn state(&self, _: &TtrpcContext, req: api::StateRequest) -> ttrpc::Result<api::StateResponse> {
        reply("state", &req.id, self.0.state_of(&req))
    }

    async fn create(&self, _: &TtrpcContext, req: api::CreateTaskRequest) -> ttrpc::Result<api::CreateTaskResponse> {
        self.blocking("create", req.id.clone(), move |s| s.create_task(req)).await
    }

    async fn start(&self, _: &TtrpcContext, req: api::StartRequest) -> ttrpc::Result<api::StartResponse> {
        self.blocking("start", req.id.clone(), move |s| s.start_process(&req)).await
    }

    async fn delete(&self, _: &TtrpcContext, req: api::DeleteRequest) -> ttrpc::Result<api::DeleteResponse> {
        self.blocking("delete", req.id.clone(), move |s| s.delete_process(&req)).await
    }

    async fn pids(&self, _: &TtrpcContext, req: api::PidsRequest) -> ttrpc::Result<api::PidsResponse> {
        reply("pids", &req.id, self.0.list_pids(&req))
    }

    async fn kill(&self, _: &TtrpcContext, req: api::KillRequest) -> ttrpc::Result<Empty> {
        self.blocking("kill", req.id.clone(), move |s| s.kill_process(&req)).await
    }

    async fn exec(&self, _: &TtrpcContext, req: api::ExecProcessRequest) -> ttrpc::Result<Empty> {
        reply("exec", &req.id.clone(), self.0.add_exec(req))
    }

    async fn resize_pty(&self, _: &TtrpcContext, req: api::ResizePtyRequest) -> ttrpc::Result<Empty> {
        reply("resize_pty", &req.id, self.0.resize(&req))
    }

    async fn close_io(&self, _: &TtrpcContext, req: api::CloseIORequest) -> ttrpc::Result<Empty> {
        reply("close_io", &req.id, self.0.close_stdin(&req))
    }

    async fn update(&self, _: &TtrpcContext, req: api::UpdateTaskRequest) -> ttrpc::Result<Empty> {
        self.blocking("update", req.id.clone(), move |s| s.update_task(&req)).await
    }

    async fn wait(&self, _: &TtrpcContext, req: api::WaitRequest) -> ttrpc::Result<api::WaitResponse> {
        reply("wait", &req.id, self.0.wait_process(&req).await)
    }

    async fn stats(&self, _: &TtrpcContext, req: api::StatsRequest) -> ttrpc::Result<api::StatsResponse> {
        reply("stats", &req.id, self.0.stats_of(&req))
    }

    async fn connect(&self, _: &TtrpcContext, req: api::ConnectRequest) -> ttrpc::Result<api::ConnectResponse> {
        reply("connect", &req.id, self.0.connect_info(&req))
    }

    async fn shutdown(&self, _: &TtrpcContext, req: api::ShutdownRequest) -> ttrpc::Result<Empty> {
        reply("shutdown", &req.id, self.0.shutdown_shim(&req))
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
        let services = methods(service);
        assert_eq!(services.len(), 2);
        for verb in ["Create", "Start", "Delete", "Wait", "Kill", "Exec", "State", "Stats", "Connect", "Shutdown", "Update", "Pids", "CloseIO", "ResizePty"] {
            for service in ["containerd.task.v2.Task", "containerd.task.v3.Task"] {
                assert!(services[service].methods.contains_key(verb), "/{service}/{verb} missing");
            }
        }
        assert_eq!(services["containerd.task.v2.Task"].methods.len(), services["containerd.task.v3.Task"].methods.len());
    }
}
