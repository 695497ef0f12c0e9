//! The shim's one reaper. The shim is a child subreaper, so every process of
//! its container that exits (or is orphaned, then exits) ends up here.
//!
//! Exits are recorded as they happen, whether or not anyone asked yet: a
//! container process can exit before the shim has even learnt its pid from
//! the init, and that exit must not be lost.

use std::{
    collections::HashMap,
    sync::{Arc, Condvar, Mutex},
    time::{Duration, Instant, SystemTime},
};

use nix::{
    sys::wait::{waitpid, WaitPidFlag, WaitStatus},
    unistd::Pid,
};
use signal_hook::{consts::SIGCHLD, iterator::Signals};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exit {
    /// As containerd reports it: the exit code, or 128 + signal number.
    pub status: u32,
    pub signal: Option<i32>,
    pub at: SystemTime,
}

/// Exits of pids nobody claims (e.g. the init's intermediate stage) are
/// dropped after this long.
const UNCLAIMED_TTL: Duration = Duration::from_secs(60);

#[derive(Default)]
struct Table {
    exits: HashMap<i32, (Exit, Instant)>,
    watched: std::collections::HashSet<i32>,
}

#[derive(Clone, Default)]
pub struct Reaper {
    inner: Arc<(Mutex<Table>, Condvar)>,
}

impl Reaper {
    /// Starts the reaping thread. SIGCHLD is registered before the thread
    /// exists so that no exit between here and the first wait is missed.
    pub fn start() -> std::io::Result<Reaper> {
        let reaper = Reaper::default();
        let mut signals = Signals::new([SIGCHLD])?;
        let r = reaper.clone();
        std::thread::Builder::new().name("reaper".into()).stack_size(64 * 1024).spawn(move || {
            r.reap();
            for _ in signals.forever() {
                r.reap();
            }
        })?;
        Ok(reaper)
    }

    fn reap(&self) {
        let (lock, cv) = &*self.inner;
        let mut reaped = false;
        let mut table = lock.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            let exit = match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) => (pid, Exit { status: code as u32, signal: None, at: SystemTime::now() }),
                Ok(WaitStatus::Signaled(pid, sig, _)) => (pid, Exit { status: 128 + sig as u32, signal: Some(sig as i32), at: SystemTime::now() }),
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(_) => continue,
            };
            log::debug!("reaped pid={} status={}", exit.0, exit.1.status);
            table.exits.insert(exit.0.as_raw(), (exit.1, Instant::now()));
            reaped = true;
        }
        if reaped {
            let Table { exits, watched } = &mut *table;
            exits.retain(|pid, (_, at)| watched.contains(pid) || at.elapsed() < UNCLAIMED_TTL);
            cv.notify_all();
        }
    }

    /// Marks a pid as one whose exit will be asked for: it is kept until
    /// [`Reaper::forget`].
    pub fn watch(&self, pid: i32) {
        self.inner.0.lock().unwrap_or_else(|e| e.into_inner()).watched.insert(pid);
    }

    pub fn forget(&self, pid: i32) {
        let mut t = self.inner.0.lock().unwrap_or_else(|e| e.into_inner());
        t.watched.remove(&pid);
        t.exits.remove(&pid);
    }

    /// The exit of `pid`, if it has exited.
    pub fn exit_of(&self, pid: i32) -> Option<Exit> {
        self.inner.0.lock().unwrap_or_else(|e| e.into_inner()).exits.get(&pid).map(|(e, _)| *e)
    }

    /// Blocks until `pid` exits, or `timeout` passes (`None` = forever).
    pub fn wait(&self, pid: i32, timeout: Option<Duration>) -> Option<Exit> {
        let (lock, cv) = &*self.inner;
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut table = lock.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some((exit, _)) = table.exits.get(&pid) {
                return Some(*exit);
            }
            table = match deadline {
                None => cv.wait(table).unwrap_or_else(|e| e.into_inner()),
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return None;
                    }
                    cv.wait_timeout(table, d - now).unwrap_or_else(|e| e.into_inner()).0
                }
            };
        }
    }
}
