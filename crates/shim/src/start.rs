//! `berth-shim start`: make the socket, hand it to a detached `serve`
//! process, print the address, exit. The caller waits only for this.

use std::{
    fs::OpenOptions,
    os::{
        fd::AsRawFd,
        unix::net::{UnixListener, UnixStream},
        unix::process::CommandExt,
    },
    process::{Command, Stdio},
};

use crate::args::{self, Args};

pub fn run(argv: &[String]) -> Result<(), String> {
    let a = args::parse(argv)?;
    let address = format!("unix://{}", a.socket.display());
    // Idempotent: a live shim already on this socket is the answer.
    if UnixStream::connect(&a.socket).is_ok() {
        println!("{address}");
        return Ok(());
    }
    if let Some(dir) = a.socket.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    }
    let _ = std::fs::remove_file(&a.socket);
    let listener = UnixListener::bind(&a.socket).map_err(|e| format!("listen on {}: {e}", a.socket.display()))?;
    let log: Stdio = match &a.bundle {
        Some(b) => {
            OpenOptions::new().create(true).append(true).open(b.join("shim.log")).map(Stdio::from).map_err(|e| format!("open {}/shim.log: {e}", b.display()))?
        }
        None => Stdio::null(),
    };
    spawn_serve(&listener, &a, log)?;
    println!("{address}");
    Ok(())
}

/// Starts `berth-shim serve` with `args`, detached in a session of its own,
/// serving on `listener` (its fd 3); its stderr is the shim's log. Returns
/// its pid.
pub fn spawn_serve(listener: &UnixListener, args: &Args, stderr: Stdio) -> Result<u32, String> {
    let fd = listener.as_raw_fd();
    let mut cmd = Command::new("/proc/self/exe");
    cmd.arg("serve").args(args.to_argv()).stdin(Stdio::null()).stdout(Stdio::null()).stderr(stderr);
    // SAFETY: `start` is single-threaded; between fork and exec we only make
    // a new session and move the listener to fd 3 (async-signal-safe calls).
    unsafe {
        cmd.pre_exec(move || {
            // dup2 onto itself would keep close-on-exec: clear it instead.
            let moved = if fd == 3 { libc::fcntl(3, libc::F_SETFD, 0) } else { libc::dup2(fd, 3) };
            if libc::setsid() < 0 || moved < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd.spawn().map_err(|e| format!("spawn serve: {e}"))?;
    // The shim is the child's parent only until we exit; init reaps it then.
    Ok(child.id())
}
