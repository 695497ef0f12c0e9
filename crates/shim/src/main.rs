//! `berth-shim`: one per container, resident while it lives. It serves the
//! Task API, reaps, copies stdio to the CRI log and serves attach; the work
//! that builds and removes the container (specs, mounts, cgroup drivers,
//! the init) is `berth-runtime`'s, exec'd beside it per step
//! (src/bin/berth-runtime), so none of that code is mapped in the shims a
//! node keeps running.
//!
//! ```text
//! berth-shim start --id ID --socket PATH [--bundle DIR] [--cgroup PATH]
//!     daemonizes `serve`, prints the ttrpc address, exits
//! berth-shim serve ...        (internal) the Task API server
//! berth-shim -namespace NS -address A -publish-binary B -id ID ... start|delete
//!     containerd's shim v2 invocation (as containerd-shim-berth-v2)
//! ```

// The shim handles raw fds (ptys, pipes, the reaper) and passes one to
// berth-runtime across an exec: one of the crates where unsafe code is
// allowed, each block with its SAFETY reasoning.
#![allow(unsafe_code)]

mod args;
mod attach;
mod containerd;
mod cri_log;
mod error;
mod fdio;
mod io;
mod logger;
mod metrics;
mod reaper;
mod runtime;
mod serve;
mod spawn;
mod start;
mod state;
mod task;
mod timestamp;

use std::process::ExitCode;

fn main() -> ExitCode {
    // `serve` is exec'd as /proc/self/exe: without this every shim is "exe"
    // in top and ps -o comm.
    let _ = nix::sys::prctl::set_name(c"berth-shim");
    let argv: Vec<String> = std::env::args().collect();
    match argv.get(1).map(String::as_str) {
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
