//! What the shim knows about its container and the processes in it. The
//! kernel (through the reaper) is the truth on whether a process lives.

use std::{
    collections::HashMap,
    path::PathBuf,
    sync::{atomic::AtomicBool, Arc, Mutex, MutexGuard},
};

use berth_cgroups::Cgroup;
use berth_shim_protocol::Prepared;

use crate::{
    io::{ProcessIo, StdioConfig},
    reaper::Exit,
    spawn::Spawned,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Created,
    Running,
    Stopped,
}

/// The init or an exec'd process.
pub struct Proc {
    pub io: ProcessIo,
    state: Mutex<ProcState>,
    /// Under containerd: whether its TaskExit went out (exactly once).
    pub exit_event_sent: AtomicBool,
}

#[derive(Default)]
pub struct ProcState {
    /// 0 until the process exists (an exec before its Start).
    pub pid: i32,
    pub started: bool,
    pub exit: Option<Exit>,
    /// Init only: the channel on which Start is sent.
    pub pending_start: Option<Spawned>,
}

impl Proc {
    pub fn new(io: ProcessIo, state: ProcState) -> Arc<Proc> {
        Arc::new(Proc { io, state: Mutex::new(state), exit_event_sent: AtomicBool::new(false) })
    }

    pub fn state(&self) -> MutexGuard<'_, ProcState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Status, refreshing the exit from the reaper.
    pub fn status(&self, reaper: &crate::reaper::Reaper) -> (Status, i32, Option<Exit>) {
        let mut s = self.state();
        if s.exit.is_none() && s.pid > 0 {
            s.exit = reaper.exit_of(s.pid);
        }
        let status = match (&s.exit, s.started) {
            (Some(_), _) => Status::Stopped,
            (None, true) => Status::Running,
            (None, false) => Status::Created,
        };
        (status, s.pid, s.exit)
    }
}

pub struct Container {
    pub id: String,
    pub bundle: PathBuf,
    /// What `berth-runtime create` made on the host (the rootfs mount, the
    /// cgroup), for `berth-runtime delete` to undo.
    pub host: Prepared,
    /// The container's cgroup, read for stats and pids, joined by execs.
    pub cgroup: Option<Cgroup>,
    pub init: Arc<Proc>,
    pub execs: HashMap<String, Arc<Proc>>,
    /// Execs added but not started: nothing exists for them yet.
    pub pending_execs: HashMap<String, PendingExec>,
}

pub struct PendingExec {
    pub stdio: StdioConfig,
    /// The OCI process as JSON, parsed by `berth-runtime init`.
    pub process: String,
    /// Its Start is spawning it: it stays here, so a Wait that came first
    /// keeps waiting, until it moves to `execs` (or Start failed).
    pub starting: bool,
}

impl Container {
    pub fn process(&self, exec_id: &str) -> Option<Arc<Proc>> {
        if exec_id.is_empty() {
            Some(self.init.clone())
        } else {
            self.execs.get(exec_id).cloned()
        }
    }
}
