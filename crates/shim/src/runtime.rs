//! `berth-runtime`, the short-lived half of the shim (see its main.rs): where
//! it is, and running its `update`, `delete` and `join-cgroup`. `create` and `init` are
//! spawned by `spawn`, which talks to them over their channel.

use std::{
    ffi::OsStr,
    io::{Read, Write},
    os::unix::process::ExitStatusExt,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::Duration,
};

use berth_shim_protocol::InitMessage;

use crate::{
    error::{Result, ShimError},
    reaper::Reaper,
};

const BINARY: &str = "berth-runtime";

/// How long an update or delete may take after it closed its output. The
/// helper bounds its own waits (a systemd job 30 s, leftover processes to
/// die 2 s), and its output is read to the end first: this only keeps a
/// helper stuck on its way out from holding the call.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// `berth-runtime` beside this executable (the real file, so a link named
/// `containerd-shim-berth-v2` finds the one beside `berth-shim`).
pub fn binary() -> Result<PathBuf> {
    let exe = std::env::current_exe().map_err(ShimError::internal("locate berth-shim"))?;
    let runtime = exe.with_file_name(BINARY);
    if !runtime.is_file() {
        return Err(ShimError::Internal(format!("{} not found: it is installed beside berth-shim", runtime.display())));
    }
    Ok(runtime)
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

/// `berth-runtime delete`: kill what is left in the cgroup, remove it,
/// unmount the rootfs. `reaper` is None in a shim that serves nothing
/// (containerd's `delete`), where the child is waited for directly.
pub fn delete(args: &[&OsStr], reaper: Option<&Reaper>) -> Result<()> {
    call("delete", args, None, reaper)
}

/// `berth-runtime join-cgroup`: `pid` into a cgroup (scope) of its own.
/// Before the reaper runs (the child is waited for directly).
pub fn join_cgroup(cgroups_path: &str, pid: u32, description: &str) -> Result<()> {
    let pid = pid.to_string();
    let args = ["--cgroups-path", cgroups_path, "--pid", &pid, "--description", description].map(OsStr::new);
    call("join-cgroup", &args, None, None)
}

fn call(verb: &str, args: &[&OsStr], stdin: Option<&[u8]>, reaper: Option<&Reaper>) -> Result<()> {
    let what = format!("berth-runtime {verb}");
    let mut child = Command::new(binary()?)
        .arg(verb)
        .args(args)
        .env_clear()
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(ShimError::internal(&what))?;
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
            let exit = reaper.wait(pid, Some(CALL_TIMEOUT));
            reaper.forget(pid);
            exit.map(|e| e.status)
        }
        None => child.wait().ok().map(|s| s.code().map_or_else(|| 128 + s.signal().unwrap_or(0) as u32, |c| c as u32)),
    };
    match status {
        Some(0) => {
            // Warnings (a clamped oom_score_adj) go to the shim's log.
            for line in String::from_utf8_lossy(&words).lines().filter(|l| !l.is_empty()) {
                log::warn!("{line}");
            }
            Ok(())
        }
        Some(status) => Err(match serde_json::from_slice::<InitMessage>(&answer) {
            Ok(InitMessage::Error { kind, message }) => ShimError::from_init(kind, message),
            _ => ShimError::Internal(format!("{what} exited with status {status}: {}", String::from_utf8_lossy(&words).trim())),
        }),
        None => {
            // SAFETY: kill(2) has no memory-safety preconditions.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            Err(ShimError::DeadlineExceeded(format!("{what} did not finish in {}s", CALL_TIMEOUT.as_secs())))
        }
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
