//! Starting `berth-runtime create` (a new container) or `berth-runtime
//! init` (an exec) and holding the conversation with it (the protocol is
//! drawn in `berth_shim_protocol`).

use std::{os::unix::process::CommandExt, process::Stdio, time::Duration};

use berth_cgroups::Cgroup;
use berth_shim_protocol::{Bootstrap, Channel, InitMessage, Prepare, Prepared, ShimMessage, SYNC_FD_ENV};

use crate::{
    error::{Result, ShimError},
    io::{ChildStdio, ProcessIo},
    reaper::Reaper,
    runtime,
};

/// How long the init may take to report each step (mounts on a loaded
/// host can be slow; a hung init must still not hang the RPC forever).
const STEP_TIMEOUT: Duration = Duration::from_secs(60);

/// A container process whose init has reported; for a new container it
/// waits for Start on `channel`.
pub struct Spawned {
    pub pid: i32,
    pub channel: Channel,
}

/// The first stage of a container process: `berth-runtime` with the
/// container's stdio, before it forks the process itself.
pub struct Stage1 {
    pid: i32,
    channel: Channel,
}

/// Which way stage 1 starts.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A new container: `create` prepares the host, then becomes `init`.
    Create,
    /// A process in a running container: `init` at once.
    Exec,
}

impl Stage1 {
    pub fn spawn(role: Role, stdio: ChildStdio, reaper: &Reaper) -> Result<Stage1> {
        let (shim_end, init_end) = Channel::pair()?;
        set_recv_timeout(&shim_end, STEP_TIMEOUT);
        let init_fd = init_end.as_raw_fd();
        let (mut cmd, path) = runtime::command()?;
        cmd.arg(if role == Role::Create { "create" } else { "init" })
            .env(SYNC_FD_ENV, init_fd.to_string())
            .stdin(Stdio::from(stdio.stdin))
            .stdout(Stdio::from(stdio.stdout))
            .stderr(Stdio::from(stdio.stderr));
        // SAFETY: runs between fork and exec; fcntl is async-signal-safe and
        // touches only the fd we pass on.
        unsafe {
            cmd.pre_exec(move || {
                if libc::fcntl(init_fd, libc::F_SETFD, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = reaper.without_reaping(|| cmd.spawn()).map_err(|e| ShimError::Internal(format!("spawn {}: {e}", path.display())))?;
        // Our copy of the init's end must go, or we would never see EOF.
        drop(init_end);
        let pid = child.id() as i32;
        // The reaper owns waiting: never call child.wait().
        drop(child);
        Ok(Stage1 { pid, channel: shim_end })
    }

    fn kill(&self) {
        // SAFETY: kill(2) has no memory-safety preconditions.
        unsafe { libc::kill(self.pid, libc::SIGKILL) };
    }

    /// A new container's host side: the rootfs mounted and the cgroup made
    /// with stage 1 in it. Undoing it is the caller's from the answer on;
    /// before it, a create that answered its error undid its work itself,
    /// and one that died or hung is killed and its work undone here: the
    /// rootfs mount it was asked for and the cgroup it said it joined.
    pub fn prepare(&self, prepare: Prepare, reaper: &Reaper) -> Result<Prepared> {
        let rootfs = (!prepare.rootfs.is_empty()).then(|| prepare.bundle.join("rootfs"));
        if let Err(e) = self.channel.send(&ShimMessage::Prepare(prepare)) {
            self.kill();
            return Err(e.into());
        }
        let mut cgroups_path = None;
        let failed = loop {
            match self.channel.recv::<InitMessage>() {
                Ok(Some((InitMessage::Prepared(prepared), _))) => return Ok(prepared),
                Ok(Some((InitMessage::CgroupJoined { cgroups_path: path }, _))) => cgroups_path = Some(path),
                Ok(Some((InitMessage::Warning(w), _))) => log::warn!("{w}"),
                Ok(Some((InitMessage::Error { kind, message }, _))) => return Err(ShimError::from_init(kind, message)),
                Ok(Some((other, _))) => break ShimError::Internal(format!("berth-runtime create answered {other:?} before Prepared")),
                Ok(None) => break ShimError::Internal("berth-runtime create exited before the container was prepared".into()),
                Err(e) if e.is_timeout() => break ShimError::DeadlineExceeded(format!("berth-runtime create: {e}")),
                Err(e) => break ShimError::Internal(format!("berth-runtime create: {e}")),
            }
        };
        self.kill();
        reaper.wait(self.pid, Some(Duration::from_secs(5)));
        if let Err(e) = runtime::delete(cgroups_path.as_deref(), rootfs.as_deref(), Some(reaper)) {
            log::warn!("undo a create that did not finish: {e}");
        }
        Err(failed)
    }

    /// Puts an exec's stage 1 in the container's cgroup (before it forks).
    pub fn join(&self, cgroup: &Cgroup) -> Result<()> {
        cgroup.add_process(self.pid).map_err(|e| {
            self.kill();
            ShimError::from(e)
        })
    }

    /// Sends the Bootstrap and drives the init until the container process
    /// is Ready (create) or has exec'd (exec).
    pub fn bootstrap(self, bootstrap: Bootstrap, io: &ProcessIo, reaper: &Reaper) -> Result<Spawned> {
        let is_exec = bootstrap.exec.is_some();
        if let Err(e) = self.channel.send(&ShimMessage::Bootstrap(bootstrap)) {
            self.kill();
            return Err(e.into());
        }
        let shim_end = self.channel;
        let mut pid = None;
        // Pid comes from stage 1 after its fork and Ready from the forked init:
        // two processes on one socket, so under load Ready can come first.
        let mut ready = false;
        let fail = |pid: Option<i32>, err: ShimError| -> ShimError {
            if let Some(p) = pid {
                // SAFETY: kill(2) has no memory-safety preconditions.
                unsafe { libc::kill(p, libc::SIGKILL) };
                reaper.wait(p, Some(Duration::from_secs(5)));
                reaper.forget(p);
            }
            err
        };
        loop {
            let msg = shim_end.recv::<InitMessage>().map_err(|e| {
                let what = format!("container init: {e}");
                fail(pid, if e.is_timeout() { ShimError::DeadlineExceeded(what) } else { ShimError::Internal(what) })
            })?;
            match msg {
                Some((InitMessage::Pid(p), _)) => {
                    reaper.watch(p);
                    pid = Some(p);
                    if ready {
                        break;
                    }
                }
                Some((InitMessage::Console, Some(fd))) => {
                    io.attach_console(fd).map_err(|e| fail(pid, e))?;
                }
                Some((InitMessage::Console, None)) => return Err(fail(pid, ShimError::Internal("init sent Console without a pty fd".into()))),
                Some((InitMessage::Warning(w), _)) => log::warn!("{w}"),
                Some((InitMessage::Ready, _)) if !is_exec => {
                    ready = true;
                    if pid.is_some() {
                        break;
                    }
                }
                Some((InitMessage::Ready, _)) => {}
                Some((InitMessage::Prepared(_) | InitMessage::CgroupJoined { .. }, _)) => {
                    return Err(fail(pid, ShimError::Internal("the init answered as berth-runtime create after Bootstrap".into())))
                }
                Some((InitMessage::Error { kind, message }, _)) => return Err(fail(pid, ShimError::from_init(kind, message))),
                None => {
                    // For an exec, EOF after the pid means the execve succeeded
                    // (the socket is close-on-exec).
                    if is_exec && pid.is_some() {
                        break;
                    }
                    let why = match pid.and_then(|p| reaper.wait(p, Some(Duration::from_secs(1)))) {
                        Some(exit) => format!("container init exited with status {} before it was ready", exit.status),
                        None => "container init closed the channel before it was ready".to_string(),
                    };
                    return Err(fail(pid, ShimError::Internal(why)));
                }
            }
        }
        let pid = pid.ok_or_else(|| ShimError::Internal("init never reported the container pid".into()))?;
        Ok(Spawned { pid, channel: shim_end })
    }
}

/// Sends Start and waits for the exec: EOF means it happened; an Error
/// message means it failed (and the process is gone).
pub fn start(spawned: &Spawned, reaper: &Reaper) -> Result<()> {
    spawned.channel.send(&ShimMessage::Start)?;
    loop {
        match spawned.channel.recv::<InitMessage>()? {
            None => return Ok(()),
            Some((InitMessage::Warning(w), _)) => log::warn!("{w}"),
            Some((InitMessage::Error { kind, message }, _)) => {
                reaper.wait(spawned.pid, Some(Duration::from_secs(5)));
                return Err(ShimError::from_init(kind, message));
            }
            Some((other, _)) => log::debug!("ignoring {other:?} after Start"),
        }
    }
}

fn set_recv_timeout(channel: &Channel, timeout: Duration) {
    let tv = nix::sys::time::TimeVal::new(timeout.as_secs() as _, 0);
    if let Err(e) = nix::sys::socket::setsockopt(channel, nix::sys::socket::sockopt::ReceiveTimeout, &tv) {
        log::warn!("set a receive timeout on the init's socket: {e}");
    }
}
