//! `berth-shim serve`: the long-lived supervisor. Subreaper, serving the
//! Task API on the socket `start` made (fd 3) until its container is
//! deleted. Under berthd it leaves berthd's cgroup; under containerd it
//! stays in containerd's and publishes task events back to it.

use std::{sync::Arc, time::Duration};

use crate::{
    args::{self, ContainerdLink},
    containerd::{ContainerdMode, Publisher},
    logger,
    reaper::Reaper,
    runtime,
    task::{self, ShutdownSignal, TaskService},
};

const LISTENER_FD: i32 = 3;
/// How long an exiting shim waits for its last events (TaskExit,
/// TaskDelete) to reach containerd.
const EVENTS_FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// Idle threads of the blocking pool (running Create, Start, Delete...)
/// exit after this long: an idle shim is one thread.
const BLOCKING_KEEP_ALIVE: Duration = Duration::from_millis(500);
/// Calls on the blocking pool at once; more wait for a thread.
const MAX_BLOCKING_THREADS: usize = 64;

pub fn run(argv: &[String]) -> Result<(), String> {
    let a = args::parse(argv)?;
    logger::init(&a.id);
    one_malloc_arena();
    // Orphans of the container are reparented to us, not to the host init.
    nix::sys::prctl::set_child_subreaper(true).map_err(|e| format!("PR_SET_CHILD_SUBREAPER: {e}"))?;
    // The berth-runtime of this shim's build, whatever replaces it later.
    if let Err(e) = runtime::pin() {
        log::warn!("{e}: containers cannot be created");
    }
    if !a.cgroup.is_empty() {
        leave_parent_cgroup(&a.cgroup, &a.id);
    }
    // One thread: the Task API, the reaper, stdio copies and attach
    // clients are all tasks of this loop.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .thread_name("shim-blocking")
        .thread_keep_alive(BLOCKING_KEEP_ALIVE)
        .max_blocking_threads(MAX_BLOCKING_THREADS)
        .build()
        .map_err(|e| format!("start event loop: {e}"))?;
    runtime.block_on(serve(a))
}

async fn serve(a: args::Args) -> Result<(), String> {
    let reaper = Reaper::start().map_err(|e| format!("start reaper: {e}"))?;
    let shutdown = Arc::new(ShutdownSignal::default());
    let mut service = TaskService::new(a.id.clone(), reaper, shutdown.clone());
    // Unlinked when the shim decides to exit, not when it does.
    service.socket = Some(a.socket.clone());
    match &a.containerd {
        // berthd finds it beside the Task API socket.
        None => service.attach_socket = Some(a.socket.with_extension("attach")),
        Some(link) => {
            let bundle = a.bundle.clone().ok_or("a shim started by containerd needs --bundle")?;
            service.containerd = Some(ContainerdMode::new(publisher(link), bundle));
            yield_to_parent_under_oom();
        }
    }
    let service = Arc::new(service);
    // SAFETY: fd 3 is the listening socket `start` bound for us; nothing
    // else in this process uses or closes it.
    let server = unsafe { ttrpc::asynchronous::Server::new().add_unix_listener(LISTENER_FD) };
    let mut server = server.map_err(|e| format!("listener: {e}"))?.register_service(task::methods(service.clone()));
    server.start().await.map_err(|e| format!("start ttrpc server: {e}"))?;
    log::info!("serving on {}", a.socket.display());
    shutdown.requested().await;
    // Let the reply to the Delete/Shutdown that got us here reach the client.
    tokio::time::sleep(Duration::from_millis(50)).await;
    if let Some(mode) = service.containerd.clone() {
        mode.flush(EVENTS_FLUSH_TIMEOUT).await;
    }
    // The socket is gone already (`request_exit`); removing the path again
    // now could remove the socket of the shim `start` made next.
    log::info!("shim exiting");
    std::process::exit(0)
}

/// Hands the heap's free pages back to the kernel. Create and Start
/// allocate (the spec, the seccomp profile, protobuf messages) and free it
/// again, but the freed chunks lie below live ones, where glibc's automatic
/// trim (only the heap's top) never reaches: without this an idle shim
/// keeps about a megabyte of freed heap resident.
pub fn release_free_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only returns free memory to the kernel; it takes
    // the arena's lock like any malloc call.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// glibc gives each thread that allocates an arena of its own (up to
/// 8 per core), each a heap that keeps pages after its thread is gone.
/// The shim allocates little and rarely from more than one thread at
/// once: one arena keeps its heap in one place.
fn one_malloc_arena() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only sets a malloc parameter; called before any
    // other thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

/// Within the runtime: the publisher is a task on it.
fn publisher(link: &ContainerdLink) -> Option<Publisher> {
    if link.events_address.is_empty() {
        log::warn!("containerd gave no TTRPC_ADDRESS: no task events will be published");
        return None;
    }
    Some(Publisher::start(link.namespace.clone(), &link.events_address))
}

/// Moves the shim into its own cgroup so that stopping the process (or
/// pod) that started it does not kill it. Failing here is logged, not
/// fatal: the container still works, it just shares the parent's fate.
///
/// `path` has either driver's form: under systemd the shim gets a scope of
/// its own (`slice:berth-shim:<id>`), which systemd removes when the shim
/// exits; `berth-runtime` asks for it (the D-Bus client stays out of the
/// shim; called before the reaper starts, so it is waited for directly).
/// A cgroupfs path the shim joins itself: a directory and a write, on the
/// path of every container's start.
fn leave_parent_cgroup(path: &str, id: &str) {
    let result = match berth_cgroups::CgroupsPath::parse(path) {
        Ok(berth_cgroups::CgroupsPath::Cgroupfs(dir)) => join_cgroupfs(&dir),
        _ => runtime::join_cgroup(path, std::process::id(), &format!("berth-shim of {id}")),
    };
    if let Err(e) = result {
        log::warn!("could not move to cgroup {path}: {e}");
    }
}

fn join_cgroupfs(dir: &std::path::Path) -> crate::error::Result<()> {
    let cgroup = berth_cgroups::Cgroup::new(berth_cgroups::Hierarchy::detect()?, dir)?;
    cgroup.make()?;
    Ok(cgroup.add_process(0)?)
}

/// One point above containerd's oom_score_adj (which we inherited), as
/// containerd's own shims do: under memory pressure the kernel picks a
/// shim before containerd. Raising it needs no privilege.
fn yield_to_parent_under_oom() {
    let path = "/proc/self/oom_score_adj";
    let current: i32 = match std::fs::read_to_string(path).map(|s| s.trim().parse()) {
        Ok(Ok(v)) => v,
        _ => return,
    };
    if current < 1000 {
        if let Err(e) = std::fs::write(path, (current + 1).to_string()) {
            log::warn!("set oom_score_adj to {}: {e}", current + 1);
        }
    }
}
