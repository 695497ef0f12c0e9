//! `berth-shim`: one per container. Its role comes from argv before any
//! thread exists, so the `init` role is a single-threaded process in which
//! forking is safe (DESIGN.md, "Rules that keep it correct").
//!
//! ```text
//! berth-shim start --id ID --socket PATH [--bundle DIR] [--cgroup PATH]
//!     daemonizes `serve`, prints the ttrpc address, exits
//! berth-shim serve ...        (internal) the Task API server
//! berth-shim init             (internal) container init, driven over a socket
//! berth-shim -namespace NS -address A -publish-binary B -id ID ... start|delete
//!     containerd's shim v2 invocation (as containerd-shim-berth-v2)
//! ```

// The shim forks its init and handles raw fds (ptys, pipes, the reaper):
// one of the three crates where unsafe code is allowed, each block with
// its SAFETY reasoning.
#![allow(unsafe_code)]

mod args;
mod attach;
mod container_cgroup;
mod containerd;
mod cri_log;
mod error;
mod fdio;
mod io;
mod logger;
mod metrics;
mod reaper;
mod rootfs_mount;
mod serve;
mod spawn;
mod start;
mod state;
mod task;
mod timestamp;

use std::process::ExitCode;

use berth_container::sync::{Channel, SYNC_FD_ENV};

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().collect();
    match argv.get(1).map(String::as_str) {
        Some("init") => run_init(),
        Some("start") => report(start::run(&argv[2..])),
        Some("serve") => report(serve::run(&argv[2..])),
        Some("--version") | Some("version") => {
            println!("berth-shim {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        // containerd runs us by the name containerd-shim-berth-v2; the
        // arguments, not argv[0], tell its invocation from berthd's.
        _ if containerd::is_containerd_style(&argv[1..]) => containerd::run(&argv[1..]),
        _ => {
            eprintln!("usage: berth-shim start --id ID --socket PATH [--bundle DIR] [--cgroup PATH]");
            eprintln!("   or: containerd-shim-berth-v2 -namespace NS -address ADDR -publish-binary BIN -id ID [-bundle DIR] [-debug] start|delete");
            ExitCode::from(2)
        }
    }
}

fn run_init() -> ExitCode {
    let fd = std::env::var(SYNC_FD_ENV).ok().and_then(|v| v.parse().ok());
    let Some(fd) = fd else {
        eprintln!("berth-shim init is started by berth-shim itself ({SYNC_FD_ENV} missing)");
        return ExitCode::from(2);
    };
    // SAFETY: the shim passed this fd to us and nothing else uses it.
    let channel = unsafe { Channel::from_raw_fd(fd) };
    berth_container::init::run(channel)
}

/// Prints the error of `start`/`serve` (a message for stderr) and exits.
fn report(result: Result<(), String>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("berth-shim: {e}");
            ExitCode::FAILURE
        }
    }
}
