//! Recording fakes of the seams: shims, CNI, the node's kernel and the
//! snapshotter. They share one [`World`]: the node as the fakes see it
//! (live shims, pinned namespaces), one journal of every call in order,
//! and the faults a test switches on.

use std::{
    collections::{HashMap, HashSet},
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use async_trait::async_trait;
use berth_network::{NamespaceSet, PodNamespaces, PodNetwork, SetupResult};
use containerd_shim_protos::{api, ttrpc};
use k8s_cri::v1;
use serde_json::Value;

use crate::{
    error::Result,
    seams::{PodHost, PodNetworks},
    shim_client::{ExecStdio, Shim, ShimError, Shims, TaskShim},
};

/// Every fault a test can switch on (`World::fail`).
pub const FAULTS: &[&str] = &[
    "shim.launch",      // ShimLauncher::start: the shim binary fails
    "shim.launch_slow", // ShimLauncher::start takes 300 ms (a loaded node)
    "shim.create",      // Task Create answers an error
    "shim.task_start",  // Task Start answers an error
    "shim.delete_dies", // the shim dies during Delete (a transport error)
    "shim.ignore_term", // the task ignores SIGTERM
    "shim.update",      // Task Update answers an error
    "cni.setup",
    "cni.teardown",
    "host.namespaces",
    "snapshot.prepare",
];

/// The pid every fake task gets.
pub const FAKE_PID: u32 = 4242;

type Hook = Box<dyn FnOnce(&str) + Send>;

/// The fake node.
#[derive(Default)]
pub struct World {
    calls: Mutex<Vec<String>>,
    faults: Mutex<HashSet<&'static str>>,
    /// Shims running, by id.
    shims: Mutex<HashMap<String, Arc<FakeShim>>>,
    /// Namespace pins the kernel holds.
    pins: Mutex<HashSet<PathBuf>>,
    /// berthd's lifetime: a Wait of an older one never returns (its
    /// connection died with it).
    generation: tokio::sync::watch::Sender<u64>,
    /// Runs once, after the next successful CNI ADD, with the pod id.
    after_cni_setup: Mutex<Option<Hook>>,
    /// What execs added from now on do.
    exec_script: Mutex<ExecScript>,
}

/// What an exec does once started (`World::script_execs`): writes its
/// output to the files it was given and exits, or runs until killed.
#[derive(Clone)]
pub struct ExecScript {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// None: it runs until a signal ends it.
    pub exit: Option<u32>,
}

impl Default for ExecScript {
    /// Exits at once, as if killed (what execs did before they were scripted).
    fn default() -> Self {
        Self { stdout: Vec::new(), stderr: Vec::new(), exit: Some(137) }
    }
}

impl World {
    fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
        m.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn record(&self, call: String) {
        Self::lock(&self.calls).push(call);
    }

    /// Every call so far, in order.
    pub fn calls(&self) -> Vec<String> {
        Self::lock(&self.calls).clone()
    }

    /// The calls that start with `prefix`.
    pub fn calls_of(&self, prefix: &str) -> Vec<String> {
        self.calls().into_iter().filter(|c| c.starts_with(prefix)).collect()
    }

    pub fn forget_calls(&self) {
        Self::lock(&self.calls).clear();
    }

    pub fn fail(&self, what: &'static str) {
        assert!(FAULTS.contains(&what), "unknown fault {what}");
        Self::lock(&self.faults).insert(what);
    }

    pub fn heal(&self, what: &'static str) {
        Self::lock(&self.faults).remove(what);
    }

    fn fails(&self, what: &str) -> bool {
        Self::lock(&self.faults).contains(what)
    }

    /// Execs added from now on follow `script`.
    pub fn script_execs(&self, script: ExecScript) {
        *Self::lock(&self.exec_script) = script;
    }

    pub fn after_cni_setup(&self, hook: impl FnOnce(&str) + Send + 'static) {
        *Self::lock(&self.after_cni_setup) = Some(Box::new(hook));
    }

    pub fn shim(&self, id: &str) -> Option<Arc<FakeShim>> {
        Self::lock(&self.shims).get(id).cloned()
    }

    pub fn live_shims(&self) -> Vec<String> {
        let mut ids: Vec<String> = Self::lock(&self.shims).keys().cloned().collect();
        ids.sort();
        ids
    }

    /// A shim of `id` runs, with its task in `status` (as a berthd that
    /// died left it).
    pub fn put_shim(self: &Arc<Self>, id: &str, socket: &Path, status: api::Status) -> Arc<FakeShim> {
        let shim = FakeShim::new(id, self, socket);
        Self::lock(&shim.task).status = status;
        std::fs::create_dir_all(socket.parent().unwrap()).unwrap();
        std::fs::write(socket, b"").unwrap();
        Self::lock(&self.shims).insert(id.into(), shim.clone());
        shim
    }

    /// The shim of `id` is SIGKILLed: its socket stays, its Wait fails.
    pub fn kill_shim(&self, id: &str) {
        if let Some(shim) = Self::lock(&self.shims).remove(id) {
            shim.exit.send_replace(Some(Err(())));
        }
    }

    /// berthd dies: its connections to the shims are gone; shims and pins
    /// stay.
    pub fn crash_berthd(&self) {
        self.generation.send_modify(|g| *g += 1);
    }

    /// The node reboots: berthd, every shim and every pin are gone (the
    /// records and shim sockets on disk stay, /run is not in the temp dir).
    pub fn reboot(&self) {
        self.crash_berthd();
        let shims: Vec<String> = Self::lock(&self.shims).keys().cloned().collect();
        for id in shims {
            self.kill_shim(&id);
        }
        Self::lock(&self.pins).clear();
    }
}

/// The shim launcher.
pub struct FakeShims(pub Arc<World>, pub berth_store::Paths);

#[async_trait]
impl Shims for FakeShims {
    async fn start(&self, id: &str, bundle: &Path) -> Result<Shim, ShimError> {
        self.0.record(format!("shim.launch {id} {}", bundle.display()));
        if self.0.fails("shim.launch") {
            return Err(ShimError::Start { id: id.into(), reason: "fake launch failure".into() });
        }
        let shim = match self.0.shim(id) {
            Some(shim) => shim,
            None => self.0.put_shim(id, &self.1.shim_socket(id), api::Status::UNKNOWN),
        };
        if self.0.fails("shim.launch_slow") {
            // The shim runs; berthd has not heard back yet.
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        }
        Ok(Conn::to(shim))
    }

    async fn find(&self, id: &str) -> Option<Shim> {
        self.0.record(format!("shim.find {id}"));
        self.0.shim(id).map(Conn::to)
    }
}

#[derive(Debug)]
struct Task {
    /// UNKNOWN: no task yet.
    status: api::Status,
    deleted: bool,
}

/// One shim and its task.
pub struct FakeShim {
    id: String,
    world: Arc<World>,
    socket: PathBuf,
    task: Mutex<Task>,
    /// The exit code once the task exited; Err: the shim died.
    exit: tokio::sync::watch::Sender<Option<Result<u32, ()>>>,
    /// Execs added and not deleted, by exec id.
    execs: Mutex<HashMap<String, FakeExec>>,
}

struct FakeExec {
    script: ExecScript,
    /// Where its output goes (`file://` URIs taken off); empty: nowhere.
    stdout: String,
    stderr: String,
    /// Its exit code, once it exited.
    exit: tokio::sync::watch::Sender<Option<u32>>,
}

impl FakeShim {
    fn new(id: &str, world: &Arc<World>, socket: &Path) -> Arc<Self> {
        Arc::new(Self {
            id: id.into(),
            world: world.clone(),
            socket: socket.into(),
            task: Mutex::new(Task { status: api::Status::UNKNOWN, deleted: false }),
            exit: tokio::sync::watch::channel(None).0,
            execs: Mutex::default(),
        })
    }

    /// The task's process exits with `code`.
    pub fn exit(&self, code: u32) {
        World::lock(&self.task).status = api::Status::STOPPED;
        self.exit.send_replace(Some(Ok(code)));
    }

    fn rpc_error(&self, what: &str) -> ShimError {
        ShimError::Rpc { id: self.id.clone(), status: format!("fake {what} failure"), code: ttrpc::Code::INTERNAL }
    }

    fn gone(&self) -> Result<(), ShimError> {
        if self.world.shim(&self.id).is_none_or(|s| !std::ptr::eq(Arc::as_ptr(&s), self)) {
            return Err(ShimError::Transport("connection reset (fake shim is gone)".into(), self.id.clone()));
        }
        Ok(())
    }

    /// The shim exits: its socket goes with it.
    fn exit_shim(&self) {
        let mut shims = World::lock(&self.world.shims);
        if shims.get(&self.id).is_some_and(|s| std::ptr::eq(Arc::as_ptr(s), self)) {
            shims.remove(&self.id);
            let _ = std::fs::remove_file(&self.socket);
        }
    }
}

/// A berthd's connection to a shim: it dies with that berthd (a Wait on
/// it never returns, any other call fails), as a ttrpc connection does.
struct Conn {
    shim: Arc<FakeShim>,
    generation: u64,
}

impl Conn {
    fn to(shim: Arc<FakeShim>) -> Shim {
        let generation = *shim.world.generation.borrow();
        Arc::new(Conn { shim, generation })
    }

    fn check(&self) -> Result<(), ShimError> {
        if *self.shim.world.generation.borrow() != self.generation {
            return Err(ShimError::Transport("the berthd of this connection is dead".into(), self.shim.id.clone()));
        }
        Ok(())
    }
}

#[async_trait]
impl TaskShim for Conn {
    async fn create(&self, req: api::CreateTaskRequest) -> Result<u32, ShimError> {
        self.check()?;
        self.shim.create(req).await
    }

    async fn start(&self, exec_id: &str) -> Result<u32, ShimError> {
        self.check()?;
        self.shim.start(exec_id).await
    }

    async fn wait(&self, exec_id: &str) -> Result<api::WaitResponse, ShimError> {
        self.shim.wait(exec_id, self.generation).await
    }

    async fn delete(&self) -> Result<api::DeleteResponse, ShimError> {
        self.check()?;
        self.shim.delete().await
    }

    async fn kill_exec(&self, exec_id: &str, signal: u32, all: bool) -> Result<(), ShimError> {
        self.check()?;
        self.shim.kill_exec(exec_id, signal, all).await
    }

    async fn exec_with_stdio(&self, exec_id: &str, process_json: Vec<u8>, stdio: ExecStdio) -> Result<(), ShimError> {
        self.check()?;
        self.shim.exec_with_stdio(exec_id, process_json, stdio).await
    }

    async fn resize_pty(&self, exec_id: &str, width: u32, height: u32) -> Result<(), ShimError> {
        self.check()?;
        self.shim.resize_pty(exec_id, width, height).await
    }

    async fn delete_exec(&self, exec_id: &str) -> Result<(), ShimError> {
        self.check()?;
        self.shim.delete_exec(exec_id).await
    }

    async fn state(&self) -> Result<api::StateResponse, ShimError> {
        self.check()?;
        self.shim.state().await
    }

    async fn update(&self, resources_json: Option<Vec<u8>>, annotations: Vec<(String, String)>) -> Result<(), ShimError> {
        self.check()?;
        self.shim.update(resources_json, annotations).await
    }

    async fn shutdown(&self) -> Result<(), ShimError> {
        self.check()?;
        self.shim.shutdown().await
    }
}

/// The shim's side of each call.
impl FakeShim {
    async fn create(&self, req: api::CreateTaskRequest) -> Result<u32, ShimError> {
        self.world.record(format!("shim.create {} rootfs={}", self.id, req.rootfs.len()));
        self.gone()?;
        if self.world.fails("shim.create") {
            return Err(self.rpc_error("create"));
        }
        World::lock(&self.task).status = api::Status::CREATED;
        Ok(FAKE_PID)
    }

    async fn start(&self, exec_id: &str) -> Result<u32, ShimError> {
        self.world.record(format!("shim.start {} {exec_id}", self.id));
        self.gone()?;
        if self.world.fails("shim.task_start") {
            return Err(self.rpc_error("start"));
        }
        if !exec_id.is_empty() {
            return self.start_exec(exec_id);
        }
        World::lock(&self.task).status = api::Status::RUNNING;
        Ok(FAKE_PID)
    }

    fn start_exec(&self, exec_id: &str) -> Result<u32, ShimError> {
        let execs = World::lock(&self.execs);
        let exec = execs.get(exec_id).ok_or_else(|| ShimError::Rpc {
            id: self.id.clone(),
            status: format!("exec {exec_id} not found"),
            code: ttrpc::Code::NOT_FOUND,
        })?;
        for (path, bytes) in [(&exec.stdout, &exec.script.stdout), (&exec.stderr, &exec.script.stderr)] {
            if !path.is_empty() {
                std::fs::write(path, bytes).unwrap();
            }
        }
        if let Some(code) = exec.script.exit {
            exec.exit.send_replace(Some(code));
        }
        Ok(FAKE_PID + 1)
    }

    async fn wait(&self, exec_id: &str, mine: u64) -> Result<api::WaitResponse, ShimError> {
        self.world.record(format!("shim.wait {} {exec_id}", self.id));
        self.gone()?;
        if !exec_id.is_empty() {
            return self.wait_exec(exec_id).await;
        }
        let mut generation = self.world.generation.subscribe();
        let mut exit = self.exit.subscribe();
        loop {
            if *generation.borrow_and_update() != mine {
                // This berthd is dead: its Wait never returns.
                std::future::pending::<()>().await;
            }
            if let Some(outcome) = *exit.borrow_and_update() {
                return match outcome {
                    Ok(code) => Ok(api::WaitResponse { exit_status: code, ..Default::default() }),
                    Err(()) => Err(ShimError::Transport("connection reset (fake shim died)".into(), self.id.clone())),
                };
            }
            tokio::select! {
                _ = exit.changed() => {}
                _ = generation.changed() => {}
            }
        }
    }

    async fn wait_exec(&self, exec_id: &str) -> Result<api::WaitResponse, ShimError> {
        let exit = World::lock(&self.execs).get(exec_id).map(|e| e.exit.subscribe());
        // One this fake never saw (an exec of a berthd before a restart):
        // it exited, killed.
        let Some(mut exit) = exit else { return Ok(api::WaitResponse { exit_status: 137, ..Default::default() }) };
        let code = *exit.wait_for(Option::is_some).await.map_err(|_| self.rpc_error("exec wait"))?;
        Ok(api::WaitResponse { exit_status: code.unwrap_or_default(), ..Default::default() })
    }

    async fn delete(&self) -> Result<api::DeleteResponse, ShimError> {
        self.world.record(format!("shim.delete {}", self.id));
        self.gone()?;
        if self.world.fails("shim.delete_dies") {
            self.world.kill_shim(&self.id);
            return Err(ShimError::Transport("connection reset (fake shim died in Delete)".into(), self.id.clone()));
        }
        let mut task = World::lock(&self.task);
        if task.status == api::Status::UNKNOWN || task.deleted {
            return Err(ShimError::Rpc { id: self.id.clone(), status: "no task".into(), code: ttrpc::Code::NOT_FOUND });
        }
        task.deleted = true;
        drop(task);
        // The shim exits once its task is deleted.
        self.exit_shim();
        Ok(api::DeleteResponse::default())
    }

    async fn kill_exec(&self, exec_id: &str, signal: u32, all: bool) -> Result<(), ShimError> {
        let exec = if exec_id.is_empty() { String::new() } else { format!(" exec={exec_id}") };
        self.world.record(format!("shim.kill {} {signal}{}{exec}", self.id, if all { " all" } else { "" }));
        self.gone()?;
        // An exec's kill ends the exec only.
        if let Some(exec) = World::lock(&self.execs).get(exec_id) {
            exec.exit.send_if_modified(|exit| match exit {
                None => {
                    *exit = Some(128 + signal);
                    true
                }
                Some(_) => false,
            });
        }
        let running = exec_id.is_empty() && World::lock(&self.task).status == api::Status::RUNNING;
        let ignored = signal == 15 && self.world.fails("shim.ignore_term");
        if running && !ignored {
            self.exit(128 + signal);
        }
        Ok(())
    }

    async fn exec_with_stdio(&self, exec_id: &str, _: Vec<u8>, stdio: ExecStdio) -> Result<(), ShimError> {
        self.world.record(format!("shim.exec {} {exec_id}", self.id));
        self.gone()?;
        let path = |uri: &str| uri.strip_prefix("file://").unwrap_or(uri).to_string();
        let exec = FakeExec {
            script: World::lock(&self.world.exec_script).clone(),
            stdout: path(&stdio.stdout),
            stderr: path(&stdio.stderr),
            exit: tokio::sync::watch::channel(None).0,
        };
        World::lock(&self.execs).insert(exec_id.into(), exec);
        Ok(())
    }

    async fn resize_pty(&self, exec_id: &str, _: u32, _: u32) -> Result<(), ShimError> {
        self.world.record(format!("shim.resize_pty {} {exec_id}", self.id));
        self.gone()
    }

    async fn delete_exec(&self, exec_id: &str) -> Result<(), ShimError> {
        self.world.record(format!("shim.delete_exec {} {exec_id}", self.id));
        self.gone()?;
        World::lock(&self.execs).remove(exec_id);
        Ok(())
    }

    async fn state(&self) -> Result<api::StateResponse, ShimError> {
        self.world.record(format!("shim.state {}", self.id));
        self.gone()?;
        let status = World::lock(&self.task).status;
        Ok(api::StateResponse { id: self.id.clone(), pid: FAKE_PID, status: status.into(), ..Default::default() })
    }

    async fn update(&self, resources: Option<Vec<u8>>, annotations: Vec<(String, String)>) -> Result<(), ShimError> {
        let resources = resources.map(|json| String::from_utf8_lossy(&json).into_owned()).unwrap_or_default();
        let annotations: String = annotations.iter().map(|(k, v)| format!(" {k}={v}")).collect();
        self.world.record(format!("shim.update {} {resources}{annotations}", self.id));
        self.gone()?;
        if self.world.fails("shim.update") {
            return Err(self.rpc_error("update"));
        }
        Ok(())
    }

    async fn shutdown(&self) -> Result<(), ShimError> {
        self.world.record(format!("shim.shutdown {}", self.id));
        self.gone()?;
        // A shim whose task still exists refuses to exit.
        let task = World::lock(&self.task);
        if task.status == api::Status::UNKNOWN || task.deleted {
            drop(task);
            self.exit_shim();
        }
        Ok(())
    }
}

/// CNI.
pub struct FakeNetwork(pub Arc<World>);

#[async_trait]
impl PodNetworks for FakeNetwork {
    fn status(&self) -> berth_network::Result<()> {
        Ok(())
    }

    async fn setup(&self, pod: &PodNetwork<'_>) -> berth_network::Result<SetupResult> {
        self.0.record(format!("cni.setup {}", pod.id));
        if self.0.fails("cni.setup") {
            return Err(berth_network::Error::Plugin { plugin: "fake".into(), command: "ADD", message: "fake ADD failure".into() });
        }
        if let Some(hook) = World::lock(&self.0.after_cni_setup).take() {
            hook(pod.id);
        }
        Ok(SetupResult { network: "fake".into(), ip: Some("10.88.0.7".into()), additional_ips: Vec::new(), result: serde_json::json!({ "fake": pod.id }) })
    }

    async fn teardown(&self, pod: &PodNetwork<'_>, prev: Option<&Value>) -> berth_network::Result<()> {
        self.0.record(format!("cni.teardown {} prev={}", pod.id, prev.is_some()));
        if self.0.fails("cni.teardown") {
            return Err(berth_network::Error::Plugin { plugin: "fake".into(), command: "DEL", message: "fake DEL failure".into() });
        }
        Ok(())
    }
}

/// The node's kernel: pins are files in the temp dir that the World
/// remembers as pinned (a reboot forgets them); mounts are directories.
pub struct FakeHost(pub Arc<World>);

impl PodHost for FakeHost {
    fn create_namespaces(&self, dir: &Path, want: NamespaceSet, _: Option<&str>) -> berth_network::Result<PodNamespaces> {
        self.0.record(format!("host.create_namespaces {}", dir.display()));
        if self.0.fails("host.namespaces") {
            return Err(berth_network::Error::Namespace("fake unshare failure".into()));
        }
        std::fs::create_dir_all(dir).map_err(|e| berth_network::Error::Namespace(e.to_string()))?;
        let mut pins = PodNamespaces::default();
        for (name, wanted, slot) in [("net", want.net, &mut pins.net), ("ipc", want.ipc, &mut pins.ipc), ("uts", want.uts, &mut pins.uts)] {
            if wanted {
                let path = dir.join(name);
                std::fs::write(&path, b"").map_err(|e| berth_network::Error::Namespace(e.to_string()))?;
                World::lock(&self.0.pins).insert(path.clone());
                *slot = Some(path);
            }
        }
        Ok(pins)
    }

    fn remove_namespaces(&self, dir: &Path) -> berth_network::Result<()> {
        self.0.record(format!("host.remove_namespaces {}", dir.display()));
        World::lock(&self.0.pins).retain(|p| !p.starts_with(dir));
        match std::fs::remove_dir_all(dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(berth_network::Error::Namespace(e.to_string())),
            _ => Ok(()),
        }
    }

    fn find_namespaces(&self, dir: &Path) -> PodNamespaces {
        let pins = World::lock(&self.0.pins);
        let pinned = |name: &str| Some(dir.join(name)).filter(|p| pins.contains(p));
        PodNamespaces { net: pinned("net"), ipc: pinned("ipc"), uts: pinned("uts"), user: pinned("user") }
    }

    fn mount_shm(&self, target: &Path) -> Result<()> {
        self.0.record(format!("host.mount_shm {}", target.display()));
        std::fs::create_dir_all(target).map_err(crate::error::Error::io("fake shm"))
    }

    fn unmount_shm(&self, target: &Path) -> Result<()> {
        self.0.record(format!("host.unmount_shm {}", target.display()));
        let _ = std::fs::remove_dir(target);
        Ok(())
    }

    fn unmount(&self, path: &Path) -> Result<()> {
        self.0.record(format!("host.unmount {}", path.display()));
        Ok(())
    }

    fn apparmor_profile(&self, _: Option<&v1::LinuxContainerSecurityContext>) -> Result<Option<String>> {
        Ok(None)
    }
}

/// The real overlay snapshotter (plain directories and records, no mount)
/// in the temp dir, with its calls recorded and faults injected.
pub struct FakeSnapshots(pub Arc<World>, pub Arc<berth_snapshot::Overlay>);

impl berth_snapshot::Snapshotter for FakeSnapshots {
    fn prepare(&self, key: &str, parent: Option<&str>) -> berth_snapshot::Result<Vec<berth_snapshot::Mount>> {
        self.0.record(format!("snapshot.prepare {key}"));
        if self.0.fails("snapshot.prepare") {
            return Err(berth_snapshot::Error::FailedPrecondition { key: key.into(), reason: "fake prepare failure".into() });
        }
        self.1.prepare(key, parent)
    }

    fn mounts(&self, key: &str) -> berth_snapshot::Result<Vec<berth_snapshot::Mount>> {
        self.1.mounts(key)
    }

    fn remove(&self, key: &str) -> berth_snapshot::Result<()> {
        self.0.record(format!("snapshot.remove {key}"));
        self.1.remove(key)
    }

    /// Recorded as a removal: to the runtime, the snapshot is gone.
    fn detach(&self, key: &str) -> berth_snapshot::Result<Option<PathBuf>> {
        self.0.record(format!("snapshot.remove {key}"));
        self.1.detach(key)
    }

    fn list(&self) -> berth_snapshot::Result<Vec<berth_snapshot::Info>> {
        self.1.list()
    }

    fn stat(&self, key: &str) -> berth_snapshot::Result<berth_snapshot::Info> {
        self.1.stat(key)
    }

    fn fs_dir(&self, info: &berth_snapshot::Info) -> PathBuf {
        self.1.fs_dir(info)
    }
}
