//! The pid 1 of a pod that shares one PID namespace: it only reaps the
//! orphans the kernel hands it and exits on SIGTERM/SIGINT. It is the init
//! process itself (no image, nothing exec'd), chosen by the spec annotation
//! `io.berth.pause`.

use nix::sys::{
    signal::{SigSet, Signal},
    wait::{waitpid, WaitPidFlag, WaitStatus},
};

/// Never returns. Every fd above stderr is closed first: the shim learns
/// from the channel's EOF that the process is running.
pub fn run() -> ! {
    // SAFETY: close_range on fds this process owns; nothing uses them after.
    unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32) };
    let all = SigSet::all();
    let _ = all.thread_block();
    loop {
        match all.wait() {
            Ok(Signal::SIGCHLD) => reap(),
            Ok(Signal::SIGTERM | Signal::SIGINT) => {
                // SAFETY: _exit ends this single-threaded process at once.
                unsafe { libc::_exit(0) }
            }
            _ => {}
        }
    }
}

fn reap() {
    while let Ok(status) = waitpid(None, Some(WaitPidFlag::WNOHANG)) {
        if status == WaitStatus::StillAlive {
            break;
        }
    }
}
