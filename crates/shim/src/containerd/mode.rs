//! What the Task service does besides its answers when containerd drives
//! it: publish task events, keep records in the bundle for `delete`, and
//! watch each process so its TaskExit goes out when it exits (containerd's
//! CRI learns of exits from TaskExit; berthd, which uses Wait, gets no
//! events at all).

use std::{
    path::PathBuf,
    sync::{atomic::Ordering, Arc},
    time::Duration,
};

use berth_cgroups::Cgroup;
use containerd_shim_protos::{
    events::task::{TaskExit, TaskOOM},
    protobuf::MessageField,
    topics,
};

use super::{
    bundle_files,
    events::{Publisher, TaskEvent},
};
use crate::{
    reaper::{Exit, Reaper},
    state::Proc,
    task::timestamp,
};

/// How long a TaskExit waits for the process's output to be copied (as
/// Wait does), so a client that reacts to it finds the log complete.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Clone)]
pub struct ContainerdMode {
    /// None when containerd gave no `TTRPC_ADDRESS`: then nothing is sent.
    publisher: Option<Arc<Publisher>>,
    /// The bundle `start` ran in, where `delete` looks for our records.
    bundle: PathBuf,
}

impl ContainerdMode {
    pub fn new(publisher: Option<Publisher>, bundle: PathBuf) -> Self {
        Self { publisher: publisher.map(Arc::new), bundle }
    }

    pub fn publish<E: TaskEvent>(&self, topic: &str, event: &E) {
        if let Some(p) = &self.publisher {
            p.publish(topic, event);
        }
    }

    /// Before the shim exits: give queued events a moment to go out.
    pub async fn flush(&self, timeout: Duration) {
        if let Some(p) = &self.publisher {
            p.flush(timeout).await;
        }
    }

    pub fn record_init_pid(&self, pid: i32) {
        if let Err(e) = bundle_files::write_atomic(&self.bundle, bundle_files::INIT_PID, &pid.to_string()) {
            log::warn!("record init pid in {}: {e}", self.bundle.display());
        }
    }

    /// The init's exit, for a `delete` after this shim is gone.
    pub fn record_init_exit(&self, exit: &Exit) {
        if let Err(e) = bundle_files::record_exit(&self.bundle, exit) {
            log::warn!("record init exit in {}: {e}", self.bundle.display());
        }
    }

    /// The shim is about to exit on its own (its container was deleted, or
    /// Shutdown): `delete` must not take it for a shim containerd lost and
    /// kill it while it sends its last events.
    pub fn release_shim_pid(&self) {
        let _ = std::fs::remove_file(self.bundle.join(bundle_files::SHIM_PID));
    }

    /// Publishes TaskExit for `proc_` unless that was done already (by its
    /// watcher, or by Delete, which must not let TaskDelete go first);
    /// TaskOOM before it when the kernel OOM-killed in the container
    /// (containerd's CRI then reports the container OOMKilled).
    ///
    /// Callers read `oom_killed` from the cgroup before calling, and Delete
    /// calls before removing the cgroup: whoever sends, read it intact.
    pub fn publish_exit_once(&self, container_id: &str, exec_id: &str, proc_: &Proc, exit: &Exit, oom_killed: bool) {
        if proc_.exit_event_sent.swap(true, Ordering::SeqCst) {
            return;
        }
        if oom_killed {
            let mut oom = TaskOOM::new();
            oom.container_id = container_id.to_string();
            self.publish(topics::TASK_OOM_EVENT_TOPIC, &oom);
        }
        let mut event = TaskExit::new();
        event.container_id = container_id.to_string();
        event.id = if exec_id.is_empty() { container_id.to_string() } else { exec_id.to_string() };
        event.pid = proc_.state().pid as u32;
        event.exit_status = exit.status;
        event.exited_at = MessageField::some(timestamp(exit.at));
        self.publish(topics::TASK_EXIT_EVENT_TOPIC, &event);
    }

    /// Starts a task that publishes the process's TaskExit once it exits
    /// (for the container's init: with TaskOOM, and its exit recorded in
    /// the bundle). Called within the shim's runtime.
    pub fn watch_exit(&self, reaper: Reaper, container_id: String, exec_id: String, proc_: Arc<Proc>, cgroup: Option<Cgroup>) {
        let mode = self.clone();
        tokio::spawn(async move {
            let pid = proc_.state().pid;
            let exited = reaper.exited(pid);
            tokio::pin!(exited);
            let exit = loop {
                // Delete published it (and may have forgotten the pid): done.
                if proc_.exit_event_sent.load(Ordering::SeqCst) {
                    return;
                }
                if let Ok(exit) = tokio::time::timeout(Duration::from_secs(1), exited.as_mut()).await {
                    break exit;
                }
            };
            if exec_id.is_empty() {
                mode.record_init_exit(&exit);
            }
            proc_.io.drained(DRAIN_TIMEOUT).await;
            let oom_killed = exec_id.is_empty() && oom_killed(cgroup.as_ref());
            mode.publish_exit_once(&container_id, &exec_id, &proc_, &exit, oom_killed);
        });
    }
}

/// Whether the kernel OOM-killed a process in the container's cgroup. An
/// OOM kill shows only once the container exits (the CRI reports it with
/// the exit), so reading the counter then is enough.
pub fn oom_killed(cgroup: Option<&Cgroup>) -> bool {
    cgroup.and_then(|cg| cg.stats().ok()).is_some_and(|s| s.memory.oom_kills > 0)
}
