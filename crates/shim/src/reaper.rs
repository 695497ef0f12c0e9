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
use tokio::{
    signal::unix::{signal, SignalKind},
    sync::Notify,
};

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
/// How often a blocking [`Reaper::wait`] reaps by itself.
const BLOCKING_POLL: Duration = Duration::from_millis(10);

#[derive(Default)]
struct Table {
    exits: HashMap<i32, (Exit, Instant)>,
    watched: std::collections::HashSet<i32>,
}

#[derive(Default)]
struct Shared {
    table: Mutex<Table>,
    /// Blocking waiters (RPCs on the blocking pool).
    cv: Condvar,
    /// Waiters on the event loop.
    notify: Notify,
}

#[derive(Clone, Default)]
pub struct Reaper {
    inner: Arc<Shared>,
}

impl Reaper {
    /// Starts reaping: a task on the shim's event loop woken by SIGCHLD.
    /// Must be called within the runtime. The signal is registered here,
    /// before any child exists, so no exit is missed.
    pub fn start() -> std::io::Result<Reaper> {
        let reaper = Reaper::default();
        let mut sigchld = signal(SignalKind::child())?;
        let r = reaper.clone();
        tokio::spawn(async move {
            r.reap();
            while sigchld.recv().await.is_some() {
                r.reap();
            }
        });
        Ok(reaper)
    }

    fn reap(&self) {
        let Shared { table: lock, cv, notify } = &*self.inner;
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
            notify.notify_waiters();
        }
    }

    /// Runs `spawn` with reaping held off. std's `Command::spawn` with a
    /// `pre_exec` waits itself for a child whose exec failed (and panics,
    /// aborting the shim, if someone else reaped it first): while `spawn`
    /// runs, no `waitpid(-1)` of ours may take it. `spawn` must not call
    /// the reaper.
    pub fn without_reaping<T>(&self, spawn: impl FnOnce() -> T) -> T {
        let _held = self.inner.table.lock().unwrap_or_else(|e| e.into_inner());
        spawn()
    }

    /// Marks a pid as one whose exit will be asked for: it is kept until
    /// [`Reaper::forget`].
    pub fn watch(&self, pid: i32) {
        self.inner.table.lock().unwrap_or_else(|e| e.into_inner()).watched.insert(pid);
    }

    pub fn forget(&self, pid: i32) {
        let mut t = self.inner.table.lock().unwrap_or_else(|e| e.into_inner());
        t.watched.remove(&pid);
        t.exits.remove(&pid);
    }

    /// The exit of `pid`, if it has exited.
    pub fn exit_of(&self, pid: i32) -> Option<Exit> {
        self.inner.table.lock().unwrap_or_else(|e| e.into_inner()).exits.get(&pid).map(|(e, _)| *e)
    }

    /// Returns once `pid` has exited (on the event loop: no thread waits).
    pub async fn exited(&self, pid: i32) -> Exit {
        self.exited_or_saved(pid, || None).await
    }

    /// [`Reaper::exited`], also looking at `saved`: where the caller keeps
    /// an exit it read. A Delete on the blocking pool can record the exit
    /// and [`Reaper::forget`] the pid between the wake-up and the look.
    pub async fn exited_or_saved(&self, pid: i32, saved: impl Fn() -> Option<Exit>) -> Exit {
        loop {
            let notified = self.inner.notify.notified();
            tokio::pin!(notified);
            // Registered before the look, so an exit between the two wakes us.
            notified.as_mut().enable();
            if let Some(exit) = self.exit_of(pid).or_else(&saved) {
                return exit;
            }
            notified.await;
        }
    }

    /// Blocks until `pid` exits (never call it on the event loop: the
    /// reaper runs there), or `timeout` passes (`None` = forever).
    pub fn wait(&self, pid: i32, timeout: Option<Duration>) -> Option<Exit> {
        let Shared { table: lock, cv, .. } = &*self.inner;
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            // Reaps here too: this wait must not depend on the event loop,
            // which may itself be waiting for a lock this caller holds.
            self.reap();
            let table = lock.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((exit, _)) = table.exits.get(&pid) {
                return Some(*exit);
            }
            let slice = match deadline {
                None => BLOCKING_POLL,
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return None;
                    }
                    (d - now).min(BLOCKING_POLL)
                }
            };
            drop(cv.wait_timeout(table, slice).unwrap_or_else(|e| e.into_inner()));
        }
    }
}
