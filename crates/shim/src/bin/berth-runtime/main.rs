//! `berth-runtime`: the half of berth's shim that builds and tears down
//! containers. `berth-shim` stays resident beside each container and runs
//! this for each such step, as containerd's shim runs runc; it exits when
//! the step is done, so the code for specs, mounts, cgroup drivers,
//! seccomp and D-Bus is mapped in no resident process.
//!
//! ```text
//! berth-runtime create     stage 1 of a new container: rootfs, cgroup, then `init`
//! berth-runtime init       the container's init (berth_container::init)
//! berth-runtime update [--cgroups-path PATH < resources.json] [--pid PID --oom-score-adj N]
//! berth-runtime delete --cgroups-path PATH [--rootfs DIR]
//! berth-runtime join-cgroup --cgroups-path PATH --pid PID --description TEXT
//! ```
//! `create` and `init` talk to the shim over the socket in `_BERTH_SYNC_FD`
//! (their stdio is the container's); the others answer with their exit
//! status and, on failure, one error message on stdout.

// The init forks and execs; create hands its channel on across an exec.
#![allow(unsafe_code)]

mod container_cgroup;
mod create;
mod delete;
mod error;
mod join_cgroup;
mod rootfs_mount;
mod update;

use std::{io::Write, process::ExitCode};

use berth_container::sync::{Channel, SYNC_FD_ENV};

fn main() -> ExitCode {
    // The kernel names a process after the file it exec'd: the shim execs
    // this one as /proc/self/fd/N (or /proc/self/exe), so top and ps -o comm
    // would show "4" or "exe" for every step and for a pod's pause.
    let _ = nix::sys::prctl::set_name(c"berth-runtime");
    let argv: Vec<String> = std::env::args().collect();
    match argv.get(1).map(String::as_str) {
        Some("init") => match channel_from_env() {
            Some(channel) => berth_container::init::run(channel),
            None => missing_channel("init"),
        },
        Some("create") => match channel_from_env() {
            Some(channel) => create::run(channel),
            None => missing_channel("create"),
        },
        Some("update") => {
            warnings_to_stderr();
            answer(update::run(&argv[2..]))
        }
        Some("delete") => {
            warnings_to_stderr();
            answer(delete::run(&argv[2..]))
        }
        Some("join-cgroup") => {
            warnings_to_stderr();
            answer(join_cgroup::run(&argv[2..]))
        }
        Some("--version") | Some("version") => {
            println!("berth-runtime {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!("berth-runtime is run by berth-shim: create | init | update | delete | join-cgroup (see its source)");
            ExitCode::from(2)
        }
    }
}

fn channel_from_env() -> Option<Channel> {
    let fd = std::env::var(SYNC_FD_ENV).ok()?.parse().ok()?;
    // SAFETY: berth-shim passed this fd to us and nothing else uses it.
    Some(unsafe { Channel::from_raw_fd(fd) })
}

fn missing_channel(role: &str) -> ExitCode {
    eprintln!("berth-runtime {role} is started by berth-shim ({SYNC_FD_ENV} missing)");
    ExitCode::from(2)
}

/// The answer of `update` and `delete`: success, or the error as one JSON
/// message on stdout for the shim and in words on stderr for a person.
fn answer(result: error::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if let Ok(json) = serde_json::to_vec(&e.to_message()) {
                let _ = std::io::stdout().lock().write_all(&json);
            }
            eprintln!("berth-runtime: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Warnings of the libraries (a cgroup that did not freeze in time) on
/// stderr, which the shim copies to its log. Only for the steps whose
/// stderr is the shim's: `create` and `init` have the container's.
fn warnings_to_stderr() {
    if log::set_logger(&StderrWarnings).is_ok() {
        log::set_max_level(log::LevelFilter::Warn);
    }
}

struct StderrWarnings;

impl log::Log for StderrWarnings {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::Level::Warn
    }

    fn log(&self, record: &log::Record<'_>) {
        if self.enabled(record.metadata()) {
            eprintln!("{}", record.args());
        }
    }

    fn flush(&self) {}
}

/// The value of `--name VALUE` in `args`.
fn flag<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    args.windows(2).find(|w| w[0] == name).map(|w| w[1].as_str())
}
