//! `berth-runtime`, the short-lived half of the shim (see its main.rs): where
//! it is, and running its `update`, `delete` and `join-cgroup`. `create`
//! and `init` are spawned by `spawn`, which talks to them over their channel.

use std::{
    ffi::OsStr,
    fs::File,
    io::{Read, Write},
    os::{
        fd::AsRawFd,
        unix::{
            fs::OpenOptionsExt,
            process::{CommandExt, ExitStatusExt},
        },
    },
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::Duration,
};

use berth_shim_protocol::InitMessage;

use crate::{
    error::{Result, ShimError},
    reaper::Reaper,
};

const BINARY: &str = "berth-runtime";

/// How long an update or delete may take after it closed its output. Its
/// output is read to the end first (a helper stuck in a D-Bus call holds
/// the call; systemd's jobs have a 30 s deadline, leftover processes 2 s):
/// this only keeps a helper stuck on its way out from holding it longer.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// What the helpers keep of the shim's environment: the rest is cleared
/// (the container's init must not inherit the shim's).
const PASSED_ENV: &[&str] = &["DBUS_SYSTEM_BUS_ADDRESS"];

/// The berth-runtime this shim runs, opened once and from then on run
/// through its fd (`/proc/self/fd/N`): an upgrade replaces the file beside
/// shims that keep running, and each must go on running the runtime of its
/// own build (what they say to each other is private to one build).
struct Pinned {
    path: PathBuf,
    file: File,
}

static PINNED: Mutex<Option<Arc<Pinned>>> = Mutex::new(None);

/// Opens the berth-runtime beside this executable, if not yet: `serve`
/// calls it at its start. A failure is not remembered: a later call tries
/// again (it may have been installed since).
pub fn pin() -> Result<()> {
    pinned().map(drop)
}

fn pinned() -> Result<Arc<Pinned>> {
    let mut pinned = PINNED.lock().unwrap_or_else(|e| e.into_inner());
    match &*pinned {
        Some(p) => Ok(p.clone()),
        None => Ok(pinned.insert(Arc::new(open_beside_exe()?)).clone()),
    }
}

/// `berth-runtime` beside this executable (the real file, so a link named
/// `containerd-shim-berth-v2` finds the one beside `berth-shim`), opened
/// without reading it (O_PATH).
fn open_beside_exe() -> Result<Pinned> {
    let exe = std::env::current_exe().map_err(ShimError::internal("locate berth-shim"))?;
    let path = exe.with_file_name(BINARY);
    let file = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_PATH).open(&path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => ShimError::Internal(format!("{} not found: it is installed beside berth-shim", path.display())),
        _ => ShimError::Internal(format!("open {}: {e}", path.display())),
    })?;
    if !file.metadata().is_ok_and(|m| m.is_file()) || nix::unistd::access(&path, nix::unistd::AccessFlags::X_OK).is_err() {
        return Err(ShimError::Internal(format!("{} is not an executable file", path.display())));
    }
    Ok(Pinned { path, file })
}

/// A command for `berth-runtime` (the pinned one) with a cleared
/// environment, and the path it was found at, for messages.
pub fn command() -> Result<(Command, PathBuf)> {
    let pinned = pinned()?;
    let mut cmd = Command::new(format!("/proc/self/fd/{}", pinned.file.as_raw_fd()));
    // What `ps` shows (the path is the fd's).
    cmd.arg0(BINARY).env_clear();
    for name in PASSED_ENV {
        if let Some(value) = std::env::var_os(name) {
            cmd.env(name, value);
        }
    }
    Ok((cmd, pinned.path.clone()))
}

/// What an Update changes.
pub struct Update<'a> {
    pub cgroups_path: &'a str,
    /// OCI LinuxResources as JSON, for the cgroup.
    pub resources_json: Option<&'a [u8]>,
    /// (pid, value): the container init's new oom_score_adj.
    pub oom_score_adj: Option<(i32, i32)>,
}

/// `berth-runtime update`: new limits for the container's cgroup and a new
/// oom_score_adj for its init. Nothing to change calls nothing.
pub fn update(change: &Update<'_>, reaper: &Reaper) -> Result<()> {
    let mut args: Vec<String> = Vec::new();
    if change.resources_json.is_some() {
        args.extend(["--cgroups-path".into(), change.cgroups_path.into()]);
    }
    if let Some((pid, adj)) = change.oom_score_adj {
        args.extend(["--pid".into(), pid.to_string(), "--oom-score-adj".into(), adj.to_string()]);
    }
    if args.is_empty() {
        return Ok(());
    }
    let args: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
    call("update", &args, change.resources_json, Some(reaper))
}

/// `berth-runtime delete`: kill what is left in the container's cgroup,
/// remove it (stop its scope), unmount its rootfs; either may be missing.
/// `reaper` is None in a shim that serves nothing (containerd's `delete`),
/// where the child is waited for directly.
pub fn delete(cgroups_path: Option<&str>, rootfs: Option<&Path>, reaper: Option<&Reaper>) -> Result<()> {
    let mut args = Vec::new();
    if let Some(path) = cgroups_path {
        args.extend([OsStr::new("--cgroups-path"), OsStr::new(path)]);
    }
    if let Some(target) = rootfs {
        args.extend([OsStr::new("--rootfs"), target.as_os_str()]);
    }
    if args.is_empty() {
        return Ok(());
    }
    call("delete", &args, None, reaper)
}

/// containerd's `delete` after a lost shim: the cgroup path comes from the
/// bundle's spec (berth-runtime reads it).
pub fn delete_by_bundle(bundle: &Path, id: &str, rootfs: &Path) -> Result<()> {
    let args = [OsStr::new("--bundle"), bundle.as_os_str(), OsStr::new("--id"), OsStr::new(id), OsStr::new("--rootfs"), rootfs.as_os_str()];
    call("delete", &args, None, None)
}

/// `berth-runtime join-cgroup`: `pid` into a cgroup (scope) of its own.
/// Before the reaper runs (the child is waited for directly).
pub fn join_cgroup(cgroups_path: &str, pid: u32, description: &str) -> Result<()> {
    let pid = pid.to_string();
    let args = ["--cgroups-path", cgroups_path, "--pid", &pid, "--description", description].map(OsStr::new);
    call("join-cgroup", &args, None, None)
}

fn call(verb: &str, args: &[&OsStr], stdin: Option<&[u8]>, reaper: Option<&Reaper>) -> Result<()> {
    let (mut cmd, path) = command()?;
    let what = format!("{} {verb}", path.display());
    cmd.arg(verb).args(args).stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() }).stdout(Stdio::piped()).stderr(Stdio::piped());
    // A failed exec is waited for by std itself: no reaping meanwhile.
    let spawned = match reaper {
        Some(reaper) => reaper.without_reaping(|| cmd.spawn()),
        None => cmd.spawn(),
    };
    let mut child = spawned.map_err(ShimError::internal(&what))?;
    let pid = child.id() as i32;
    if let Some(reaper) = reaper {
        reaper.watch(pid);
    }
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        // A helper that failed before reading gives EPIPE: its answer says why.
        let _ = pipe.write_all(input);
    }
    let (answer, words) = read_output(&mut child);
    let status = match reaper {
        // The reaper owns waiting in a serving shim: never child.wait() there.
        Some(reaper) => {
            let exit = reaper.wait(pid, Some(CALL_TIMEOUT)).or_else(|| {
                // Killed (it was not reaped a moment ago, so the pid is
                // still its own), then reaped.
                // SAFETY: kill(2) has no memory-safety preconditions.
                unsafe { libc::kill(pid, libc::SIGKILL) };
                reaper.wait(pid, Some(Duration::from_secs(5)));
                None
            });
            reaper.forget(pid);
            exit.map(|e| e.status)
        }
        None => child.wait().ok().map(|s| s.code().map_or_else(|| 128 + s.signal().unwrap_or(0) as u32, |c| c as u32)),
    };
    match status {
        Some(0) => {
            // Warnings (a clamped oom_score_adj, a slow freeze) go to the
            // shim's log.
            for line in String::from_utf8_lossy(&words).lines().filter(|l| !l.is_empty()) {
                log::warn!("{line}");
            }
            Ok(())
        }
        Some(status) => Err(match serde_json::from_slice::<InitMessage>(&answer) {
            Ok(InitMessage::Error { kind, message }) => ShimError::from_init(kind, message),
            _ => ShimError::Internal(format!("{what} exited with status {status}: {}", String::from_utf8_lossy(&words).trim())),
        }),
        None => Err(ShimError::DeadlineExceeded(format!("{what} did not finish in {}s", CALL_TIMEOUT.as_secs()))),
    }
}

/// Its stdout (the answer) and stderr (words for the log), read to their
/// end: the helper writes a line at most to each, so one after the other
/// cannot fill a pipe.
fn read_output(child: &mut Child) -> (Vec<u8>, Vec<u8>) {
    let (mut answer, mut words) = (Vec::new(), Vec::new());
    if let Some(mut out) = child.stdout.take() {
        let _ = out.read_to_end(&mut answer);
    }
    if let Some(mut err) = child.stderr.take() {
        let _ = err.read_to_end(&mut words);
    }
    (answer, words)
}
