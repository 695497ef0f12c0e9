//! `berth-shim serve`: the long-lived supervisor. Subreaper, out of its
//! parent's cgroup, serving the Task API on the socket `start` made (fd 3)
//! until its container is deleted.

use std::{sync::Arc, time::Duration};

use containerd_shim_protos::create_task;

use crate::{args, container_cgroup::ContainerCgroup, logger, reaper::Reaper, task::{ShutdownSignal, TaskService}};

const LISTENER_FD: i32 = 3;

pub fn run(argv: &[String]) -> Result<(), String> {
    let a = args::parse(argv)?;
    logger::init(&a.id);
    // Orphans of the container are reparented to us, not to the host init.
    nix::sys::prctl::set_child_subreaper(true).map_err(|e| format!("PR_SET_CHILD_SUBREAPER: {e}"))?;
    leave_parent_cgroup(&a.cgroup, &a.id);
    let reaper = Reaper::start().map_err(|e| format!("start reaper: {e}"))?;
    let shutdown = Arc::new(ShutdownSignal::default());
    let mut service = TaskService::new(a.id.clone(), reaper, shutdown.clone());
    // berthd finds it beside the Task API socket.
    service.attach_socket = Some(a.socket.with_extension("attach"));
    let service = Arc::new(service);
    // Wait and blocking Start calls each hold a handler thread; allow
    // plenty so one client's waits cannot starve its other calls.
    let mut server = ttrpc::Server::new()
        .add_listener(LISTENER_FD)
        .map_err(|e| format!("listener: {e}"))?
        .register_service(create_task(service))
        .set_thread_count_min(1)
        .set_thread_count_default(2)
        .set_thread_count_max(64);
    server.start().map_err(|e| format!("start ttrpc server: {e}"))?;
    log::info!("serving on {}", a.socket.display());
    shutdown.wait();
    // Let the reply to the Delete/Shutdown that got us here reach the client.
    std::thread::sleep(Duration::from_millis(50));
    let _ = std::fs::remove_file(&a.socket);
    log::info!("shim exiting");
    std::process::exit(0)
}

/// Moves the shim into its own cgroup so that stopping the process (or
/// pod) that started it does not kill it. Failing here is logged, not
/// fatal: the container still works, it just shares the parent's fate.
///
/// `path` has either driver's form: under systemd the shim gets a scope of
/// its own (`slice:berth-shim:<id>`), which systemd removes when the shim
/// exits.
fn leave_parent_cgroup(path: &str, id: &str) {
    let result = ContainerCgroup::new(path, None, format!("berth-shim of {id}")).and_then(|cg| cg.start_with(std::process::id() as i32));
    if let Err(e) = result {
        log::warn!("could not move to cgroup {path}: {e}");
    }
}
