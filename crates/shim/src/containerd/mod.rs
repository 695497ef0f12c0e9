//! berth-shim as a runtime of containerd (`runtime_type =
//! "io.containerd.berth.v2"`, binary `containerd-shim-berth-v2`): containerd's
//! shim v2 command line, the `start` and `delete` actions, and the task
//! events the serving shim publishes back. The Task API itself is the same
//! as under berthd (`task/`), served as `containerd.task.v2.Task` (what
//! containerd 1.6, and 2.x for a shim that answers `start` with a bare
//! address, call) and `containerd.task.v3.Task`.
//!
//! One shim per container: containerd's runc shim groups a pod's
//! containers into one shim by the sandbox-id annotation; berth-shim does
//! not, so `start` always names the socket after the container.

mod bundle_files;
mod delete;
mod events;
mod invocation;
mod mode;
mod start;

use std::process::ExitCode;

pub use events::Publisher;
pub use invocation::is_containerd_style;
pub use mode::{oom_killed, ContainerdMode};

/// Runs containerd's `start` or `delete` (argv without argv[0]).
pub fn run(args: &[String]) -> ExitCode {
    let inv = match invocation::parse(args) {
        Ok(invocation::Parsed::Run(inv)) => inv,
        Ok(invocation::Parsed::Version) => {
            println!("containerd-shim-berth-v2 (berth-shim {})", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("containerd-shim-berth-v2: {e}");
            return ExitCode::from(2);
        }
    };
    let result = match inv.action {
        invocation::Action::Start => start::run(&inv),
        invocation::Action::Delete => delete::run(&inv),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("containerd-shim-berth-v2 {:?} {}: {e}", inv.action, inv.id);
            ExitCode::FAILURE
        }
    }
}
