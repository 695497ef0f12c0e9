//! `delete` as containerd runs it after it lost a shim (containerd 1.6
//! also runs it after every task it deleted normally): end a serving shim
//! containerd gave up on, kill what is left of the container, unmount its
//! rootfs, remove the shim's socket, and print a `DeleteResponse` (protobuf)
//! on stdout. It must work when nothing is left at all; problems are
//! warnings on stderr (containerd logs them) and the exit status stays 0.

use std::{
    io::Write,
    path::Path,
    time::{Duration, Instant, SystemTime},
};

use containerd_shim_protos::{api::DeleteResponse, protobuf::Message};
use nix::{
    sys::signal::{kill, Signal},
    unistd::Pid,
};

use super::{bundle_files, invocation::Invocation, start};
use crate::{runtime, task::timestamp};

/// What containerd reports for a container whose end nobody saw: SIGKILL.
const UNKNOWN_EXIT_STATUS: u32 = 128 + libc::SIGKILL as u32;

pub fn run(inv: &Invocation) -> Result<(), String> {
    let bundle = inv.bundle_dir()?;
    let mut warnings = Vec::new();
    if let Err(e) = stop_lost_shim(&bundle, &inv.id) {
        warnings.push(e);
    }
    // The cgroup path comes from the bundle's spec (without one there is
    // no cgroup to clean: start failed early).
    if let Err(e) = runtime::delete_by_bundle(&bundle, &inv.id, &bundle.join("rootfs")) {
        warnings.push(e.to_string());
    }
    if let Err(e) = remove_dead_socket(&bundle, inv) {
        warnings.push(e);
    }

    let mut resp = DeleteResponse::new();
    resp.pid = bundle_files::read_pid(&bundle, bundle_files::INIT_PID).unwrap_or(0) as u32;
    let (status, at) = bundle_files::read_exit(&bundle).unwrap_or((UNKNOWN_EXIT_STATUS, SystemTime::now()));
    resp.exit_status = status;
    resp.exited_at = Some(timestamp(at)).into();
    let bytes = resp.write_to_bytes().map_err(|e| format!("encode DeleteResponse: {e}"))?;
    for w in &warnings {
        eprintln!("berth-shim delete {}: {w}", inv.id);
    }
    std::io::stdout().lock().write_all(&bytes).map_err(|e| format!("write DeleteResponse: {e}"))
}

/// Kills the serving shim of this container if it still runs: containerd
/// has given up on it (its connection broke), so nothing would ever delete
/// its container through it. A shim that is exiting on its own removed its
/// pid file first and is left to finish sending its events.
fn stop_lost_shim(bundle: &Path, id: &str) -> Result<(), String> {
    let Some(pid) = bundle_files::read_pid(bundle, bundle_files::SHIM_PID) else { return Ok(()) };
    // The pid may have been reused since: only a `berth-shim serve` of this
    // container is ours to kill.
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    let is_our_shim = args.get(1) == Some(&&b"serve"[..]) && args.windows(2).any(|w| w[0] == b"--id" && w[1] == id.as_bytes());
    if !is_our_shim {
        return Ok(());
    }
    match kill(Pid::from_raw(pid), Signal::SIGKILL) {
        Ok(()) | Err(nix::Error::ESRCH) => {}
        Err(e) => return Err(format!("kill lost shim {pid}: {e}")),
    }
    // Not our child: wait until it is gone or a zombie its reaper will collect.
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        if state.rsplit(')').next().and_then(|rest| rest.split_whitespace().next()).is_none_or(|s| s == "Z" || s == "X") {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Err(format!("lost shim {pid} still running after SIGKILL"))
}

/// The shim's socket, unless a shim still answers on it. Only a socket in
/// containerd's shim directory is removed, whatever the address file says.
fn remove_dead_socket(bundle: &Path, inv: &Invocation) -> Result<(), String> {
    let recorded = std::fs::read_to_string(bundle.join(bundle_files::ADDRESS)).ok();
    let socket = match recorded.as_deref().and_then(|a| a.trim().strip_prefix("unix://")) {
        Some(path) => Path::new(path).to_path_buf(),
        None => start::socket_path(&inv.address, &inv.namespace, &inv.id),
    };
    if !socket.starts_with(start::SOCKET_DIR) || !socket.exists() {
        return Ok(());
    }
    if std::os::unix::net::UnixStream::connect(&socket).is_ok() {
        return Ok(());
    }
    match std::fs::remove_file(&socket) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(format!("remove {}: {e}", socket.display())),
    }
}
