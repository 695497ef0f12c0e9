//! The kill -9 storm (issue 13): workers churn pods through the CRI, as a
//! kubelet would, while berthd is SIGKILLed at random moments and now and
//! then a shim (a container's, or a pod's pause) is SIGKILLed too. After
//! each restart, every pod and container whose creation was answered (and
//! whose removal was not) must be listed, in the state it really has; at
//! the end, once everything is removed through the CRI, nothing of the test
//! may be left: no shim, mount, netns, cgroup, IPAM address or state
//! directory.
//!
//! Bounded by default (`BERTH_STORM_SECONDS`, 40 s of storm). The seed is
//! printed; `BERTH_STORM_SEED` replays a run's choices (the timing of a
//! real machine still varies). `hack/kill-storm.sh` runs it for longer and
//! prints what it did and what it found.

mod common;

use std::{
    collections::{HashMap, HashSet},
    future::Future,
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use common::node::{container_config_for, leaf_cgroups, pod_config_for, Node};
use k8s_cri::v1::{self, runtime_service_client::RuntimeServiceClient};
use tokio::sync::RwLock;
use tonic::{transport::Channel, Code, Status};

/// Workers churning pods at the same time.
const WORKERS: usize = 4;
/// A worker keeps up to this many pods alive.
const PODS_PER_WORKER: usize = 3;
/// An RPC that takes longer than this while berthd is alive is a hang.
const HANG: Duration = Duration::from_secs(30);
/// What the short-lived containers exit with.
const SHORT_EXIT: i32 = 3;

/// splitmix64: small, seedable, good enough to pick moments and victims.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    fn millis(&mut self, from: u64, to: u64) -> Duration {
        Duration::from_millis(from + self.below(to - from))
    }
}

/// What a worker knows of a pod: its creation was answered.
#[derive(Debug, Clone)]
struct Pod {
    name: String,
    shared_pid: bool,
    /// StopPodSandbox answered OK.
    stopped: bool,
    /// A StopPodSandbox went unanswered: it may or may not have happened.
    stopping: bool,
    /// A RemovePodSandbox was sent: the pod may be gone.
    removing: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Want {
    Created,
    /// StartContainer went unanswered.
    Starting,
    Started,
    /// StopContainer went unanswered.
    Stopping,
    Stopped,
}

/// What a worker knows of a container: its creation was answered.
#[derive(Debug, Clone)]
struct Ctr {
    pod: String,
    name: String,
    /// Exits by itself with [`SHORT_EXIT`] after a second.
    short: bool,
    want: Want,
    removing: bool,
    /// Its shim was killed (generation of berthd then).
    shim_killed: Option<u64>,
}

#[derive(Debug, Default)]
struct Model {
    pods: HashMap<String, Pod>,
    containers: HashMap<String, Ctr>,
    /// Pod names, and `pod-id/container-name`s, whose creation went
    /// unanswered: listed or not, both are right until the worker knows.
    unsure: HashSet<String>,
}

#[derive(Debug, Default)]
struct Stats {
    berthd_kills: AtomicU64,
    shim_kills: AtomicU64,
    pause_kills: AtomicU64,
    pods_run: AtomicU64,
    pods_removed: AtomicU64,
    containers_created: AtomicU64,
    containers_started: AtomicU64,
    containers_removed: AtomicU64,
    rpcs: AtomicU64,
    rpcs_lost: AtomicU64,
    adopted: AtomicU64,
    checks: AtomicU64,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

struct Shared {
    socket: PathBuf,
    dir: String,
    ipam: PathBuf,
    logs: PathBuf,
    cgroup_parent: String,
    image: String,
    /// Workers hold it (shared) for each RPC; the checker takes it
    /// (exclusive) so it looks at a berthd nobody is changing.
    gate: RwLock<()>,
    model: Mutex<Model>,
    /// berthd's generation: how many times it was started.
    generation: AtomicU64,
    stop: AtomicBool,
    problems: Mutex<Vec<String>>,
    stats: Stats,
}

impl Shared {
    fn problem(&self, p: String) {
        println!("storm: PROBLEM: {p}");
        self.problems.lock().unwrap().push(p);
    }
}

enum Answer<T> {
    Ok(T),
    /// berthd answered with an error.
    Refused(Status),
    /// No answer (berthd was killed, or the connection broke): the call
    /// may or may not have happened.
    Lost,
}

/// A status that says berthd did not answer, rather than berthd refusing.
fn no_answer(s: &Status) -> bool {
    matches!(s.code(), Code::Unavailable | Code::Unknown | Code::Cancelled)
}

/// Connects to berthd's socket, waiting for it to be back (it may be down
/// for a moment, or recovering).
async fn connect(socket: &Path) -> Result<RuntimeServiceClient<Channel>, String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let path = socket.to_path_buf();
        let result = tonic::transport::Endpoint::try_from("http://berth.invalid")
            .unwrap()
            .connect_with_connector(tower::service_fn(move |_: tonic::transport::Uri| {
                let path = path.clone();
                async move { Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(tokio::net::UnixStream::connect(path).await?)) }
            }))
            .await;
        match result {
            Ok(c) => return Ok(RuntimeServiceClient::new(c)),
            Err(e) if Instant::now() > deadline => return Err(format!("berthd did not come back within 60 s: {e}")),
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

struct Worker {
    index: usize,
    shared: Arc<Shared>,
    rt: RuntimeServiceClient<Channel>,
    rng: Rng,
    /// Pods this worker keeps alive (ids).
    live: Vec<String>,
    next_pod: usize,
}

impl Worker {
    /// One RPC under the gate, with a hang limit.
    async fn call<T, F, Fut>(&mut self, what: &str, f: F) -> Answer<T>
    where
        F: FnOnce(RuntimeServiceClient<Channel>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, Status>>,
    {
        bump(&self.shared.stats.rpcs);
        let answer = {
            let _gate = self.shared.gate.read().await;
            let generation = self.shared.generation.load(Ordering::SeqCst);
            match tokio::time::timeout(HANG, f(self.rt.clone())).await {
                Ok(Ok(r)) => Answer::Ok(r.into_inner()),
                Ok(Err(s)) if no_answer(&s) => Answer::Lost,
                Ok(Err(s)) => Answer::Refused(s),
                Err(_) => {
                    // Only a hang if berthd was not killed meanwhile.
                    if self.shared.generation.load(Ordering::SeqCst) == generation {
                        self.shared.problem(format!("worker {}: {what} hung for {HANG:?}", self.index));
                    }
                    Answer::Lost
                }
            }
        };
        if let Answer::Lost = answer {
            bump(&self.shared.stats.rpcs_lost);
            // A fresh connection: the old one died with berthd.
            tokio::time::sleep(Duration::from_millis(50)).await;
            match connect(&self.shared.socket).await {
                Ok(rt) => self.rt = rt,
                Err(e) => self.shared.problem(e),
            }
        }
        answer
    }

    fn model(&self) -> std::sync::MutexGuard<'_, Model> {
        self.shared.model.lock().unwrap()
    }

    async fn run(mut self) {
        while !self.shared.stop.load(Ordering::SeqCst) {
            let room = self.live.len() < PODS_PER_WORKER;
            if self.live.len() < 2 || (room && self.rng.chance(50)) {
                self.new_pod().await;
            } else {
                let i = self.rng.below(self.live.len() as u64) as usize;
                let id = self.live.swap_remove(i);
                self.end_pod(&id).await;
            }
            let pause = self.rng.millis(0, 200);
            tokio::time::sleep(pause).await;
        }
    }

    async fn new_pod(&mut self) {
        let name = format!("s{}-{}", self.index, self.next_pod);
        self.next_pod += 1;
        let shared_pid = self.rng.chance(30);
        let mut attempt = 0;
        let pod_id = loop {
            let mut config = pod_config_for(&name, &self.shared.logs, &self.shared.cgroup_parent);
            if let Some(meta) = config.metadata.as_mut() {
                meta.attempt = attempt;
            }
            if shared_pid {
                let ns = config.linux.as_mut().and_then(|l| l.security_context.as_mut()).and_then(|s| s.namespace_options.as_mut()).unwrap();
                ns.pid = v1::NamespaceMode::Pod as i32;
            }
            let key = format!("{name}#{attempt}");
            self.model().unsure.insert(key.clone());
            let req = v1::RunPodSandboxRequest { config: Some(config), runtime_handler: String::new() };
            match self.call("RunPodSandbox", |mut rt| async move { rt.run_pod_sandbox(req).await }).await {
                Answer::Ok(r) => {
                    let mut m = self.model();
                    m.unsure.remove(&key);
                    let pod = Pod { name: name.clone(), shared_pid, stopped: false, stopping: false, removing: false };
                    m.pods.insert(r.pod_sandbox_id.clone(), pod);
                    bump(&self.shared.stats.pods_run);
                    break r.pod_sandbox_id;
                }
                Answer::Refused(s) => {
                    self.model().unsure.remove(&key);
                    self.shared.problem(format!("RunPodSandbox {name} attempt {attempt} refused: {s:?}"));
                    return;
                }
                Answer::Lost => {
                    // As a kubelet does after a restart: look for the pod
                    // before making it again.
                    let found = self.find_pod(&name, attempt).await;
                    let Some((id, ready)) = found else { continue };
                    bump(&self.shared.stats.adopted);
                    {
                        let mut m = self.model();
                        m.unsure.remove(&key);
                        let pod = Pod { name: name.clone(), shared_pid, stopped: false, stopping: false, removing: false };
                        m.pods.insert(id.clone(), pod);
                    }
                    if ready {
                        break id;
                    }
                    // Half made: the kubelet removes it and runs the next
                    // attempt.
                    self.end_pod(&id).await;
                    attempt += 1;
                }
            }
        };
        for j in 0..1 + self.rng.below(2) {
            let short = self.rng.chance(25);
            let Some(id) = self.create(&pod_id, &format!("c{j}"), short).await else { continue };
            if self.rng.chance(80) {
                self.start(&id).await;
            }
        }
        self.live.push(pod_id);
    }

    /// The pod named `name` at `attempt`, if berthd lists one: (id, ready).
    async fn find_pod(&mut self, name: &str, attempt: u32) -> Option<(String, bool)> {
        loop {
            let req = v1::ListPodSandboxRequest::default();
            match self.call("ListPodSandbox", |mut rt| async move { rt.list_pod_sandbox(req).await }).await {
                Answer::Ok(r) => {
                    return r.items.into_iter().find_map(|p| {
                        let meta = p.metadata.as_ref()?;
                        (meta.name == name && meta.attempt == attempt).then(|| (p.id.clone(), p.state == v1::PodSandboxState::SandboxReady as i32))
                    })
                }
                Answer::Refused(s) => {
                    self.shared.problem(format!("ListPodSandbox refused: {s:?}"));
                    return None;
                }
                Answer::Lost => continue,
            }
        }
    }

    async fn create(&mut self, pod_id: &str, name: &str, short: bool) -> Option<String> {
        let pod_name = self.model().pods[pod_id].name.clone();
        let cmd: &[&str] = if short { &["/bin/sh", "-c", "sleep 1; exit 3"] } else { &["/bin/sh", "-c", "trap 'exit 0' TERM; while :; do sleep 0.2; done"] };
        let key = format!("{pod_id}/{name}");
        loop {
            let config = container_config_for(name, &self.shared.image, cmd);
            let sandbox = pod_config_for(&pod_name, &self.shared.logs, &self.shared.cgroup_parent);
            let req = v1::CreateContainerRequest { pod_sandbox_id: pod_id.into(), config: Some(config), sandbox_config: Some(sandbox) };
            self.model().unsure.insert(key.clone());
            match self.call("CreateContainer", |mut rt| async move { rt.create_container(req).await }).await {
                Answer::Ok(r) => {
                    let mut m = self.model();
                    m.unsure.remove(&key);
                    let c = Ctr { pod: pod_id.into(), name: name.into(), short, want: Want::Created, removing: false, shim_killed: None };
                    m.containers.insert(r.container_id.clone(), c);
                    bump(&self.shared.stats.containers_created);
                    return Some(r.container_id);
                }
                Answer::Refused(s) => {
                    self.model().unsure.remove(&key);
                    self.shared.problem(format!("CreateContainer {key} refused: {s:?}"));
                    return None;
                }
                Answer::Lost => {
                    let filter = v1::ContainerFilter { pod_sandbox_id: pod_id.into(), ..Default::default() };
                    let req = v1::ListContainersRequest { filter: Some(filter) };
                    let listed = match self.call("ListContainers", |mut rt| async move { rt.list_containers(req).await }).await {
                        Answer::Ok(r) => r.containers,
                        _ => continue,
                    };
                    let Some(found) = listed.into_iter().find(|c| c.metadata.as_ref().is_some_and(|m| m.name == name)) else { continue };
                    bump(&self.shared.stats.adopted);
                    let mut m = self.model();
                    m.unsure.remove(&key);
                    let want = if found.state == v1::ContainerState::ContainerCreated as i32 { Want::Created } else { Want::Starting };
                    m.containers.insert(found.id.clone(), Ctr { pod: pod_id.into(), name: name.into(), short, want, removing: false, shim_killed: None });
                    bump(&self.shared.stats.containers_created);
                    return Some(found.id);
                }
            }
        }
    }

    async fn start(&mut self, id: &str) {
        self.set_want(id, Want::Starting);
        loop {
            let req = v1::StartContainerRequest { container_id: id.into() };
            match self.call("StartContainer", |mut rt| async move { rt.start_container(req).await }).await {
                Answer::Ok(_) => {
                    self.set_want(id, Want::Started);
                    bump(&self.shared.stats.containers_started);
                    return;
                }
                Answer::Refused(s) => {
                    self.shared.problem(format!("StartContainer {id} refused: {s:?}"));
                    return;
                }
                Answer::Lost => {
                    let req = v1::ContainerStatusRequest { container_id: id.into(), verbose: false };
                    match self.call("ContainerStatus", |mut rt| async move { rt.container_status(req).await }).await {
                        Answer::Ok(r) if r.status.as_ref().is_some_and(|s| s.state == v1::ContainerState::ContainerCreated as i32) => continue,
                        Answer::Ok(r) if r.status.as_ref().is_some_and(|s| s.reason == "StartError") => {
                            // The start failed (berthd's answer was lost):
                            // it must stay EXITED, with nothing left running.
                            self.set_want(id, Want::Stopped);
                            return;
                        }
                        Answer::Ok(_) => {
                            // It ran (or failed to): the start happened.
                            self.set_want(id, Want::Started);
                            bump(&self.shared.stats.containers_started);
                            return;
                        }
                        Answer::Refused(s) => {
                            self.shared.problem(format!("ContainerStatus {id} after a lost start: {s:?}"));
                            return;
                        }
                        Answer::Lost => continue,
                    }
                }
            }
        }
    }

    fn set_want(&self, id: &str, want: Want) {
        if let Some(c) = self.model().containers.get_mut(id) {
            c.want = want;
        }
    }

    /// Retries an idempotent RPC until berthd answers it; false if berthd
    /// refused it.
    async fn until_answered<T, F, Fut>(&mut self, what: &str, f: F) -> bool
    where
        F: Fn(RuntimeServiceClient<Channel>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, Status>>,
    {
        loop {
            match self.call(what, &f).await {
                Answer::Ok(_) => return true,
                Answer::Refused(s) => {
                    self.shared.problem(format!("{what} refused: {s:?}"));
                    return false;
                }
                Answer::Lost => continue,
            }
        }
    }

    /// Stops and removes a pod the way a kubelet does: some containers
    /// stopped and removed first, then the pod stopped, then removed.
    async fn end_pod(&mut self, pod_id: &str) {
        let ids: Vec<String> = self.model().containers.iter().filter(|(_, c)| c.pod == pod_id).map(|(id, _)| id.clone()).collect();
        for id in ids {
            if self.rng.chance(50) {
                let timeout = self.rng.below(2) as i64;
                // Stopping one that never started leaves it CREATED.
                let ran = self.model().containers.get(&id).is_some_and(|c| c.want != Want::Created);
                if ran {
                    self.set_want(id.as_str(), Want::Stopping);
                }
                let req = v1::StopContainerRequest { container_id: id.clone(), timeout };
                if !self
                    .until_answered("StopContainer", |mut rt| {
                        let req = req.clone();
                        async move { rt.stop_container(req).await }
                    })
                    .await
                {
                    return;
                }
                if ran {
                    self.set_want(&id, Want::Stopped);
                }
            }
            if self.rng.chance(50) {
                if let Some(c) = self.model().containers.get_mut(&id) {
                    c.removing = true;
                }
                let req = v1::RemoveContainerRequest { container_id: id.clone() };
                if !self
                    .until_answered("RemoveContainer", |mut rt| {
                        let req = req.clone();
                        async move { rt.remove_container(req).await }
                    })
                    .await
                {
                    return;
                }
                self.model().containers.remove(&id);
                bump(&self.shared.stats.containers_removed);
            }
        }
        if self.rng.chance(85) {
            if let Some(p) = self.model().pods.get_mut(pod_id) {
                p.stopping = true;
            }
            let req = v1::StopPodSandboxRequest { pod_sandbox_id: pod_id.into() };
            if !self
                .until_answered("StopPodSandbox", |mut rt| {
                    let req = req.clone();
                    async move { rt.stop_pod_sandbox(req).await }
                })
                .await
            {
                return;
            }
            let mut m = self.model();
            if let Some(p) = m.pods.get_mut(pod_id) {
                p.stopped = true;
                p.stopping = false;
            }
            for c in m.containers.values_mut().filter(|c| c.pod == pod_id) {
                if matches!(c.want, Want::Started | Want::Starting | Want::Stopping) {
                    c.want = Want::Stopped;
                }
            }
        }
        if let Some(p) = self.model().pods.get_mut(pod_id) {
            p.removing = true;
        }
        let req = v1::RemovePodSandboxRequest { pod_sandbox_id: pod_id.into() };
        if !self
            .until_answered("RemovePodSandbox", |mut rt| {
                let req = req.clone();
                async move { rt.remove_pod_sandbox(req).await }
            })
            .await
        {
            return;
        }
        let mut m = self.model();
        m.pods.remove(pod_id);
        let before = m.containers.len();
        m.containers.retain(|_, c| c.pod != pod_id);
        self.shared.stats.containers_removed.fetch_add((before - m.containers.len()) as u64, Ordering::Relaxed);
        bump(&self.shared.stats.pods_removed);
    }
}

/// The pids of this test's shims: `berth-shim serve --id ID` with a socket
/// under the test's directory.
fn shims(dir: &str) -> HashMap<String, i32> {
    let mut out = HashMap::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else { continue };
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let args: Vec<String> = cmdline.split(|b| *b == 0).map(|a| String::from_utf8_lossy(a).into_owned()).collect();
        if args.iter().any(|a| a == "serve") && args.iter().any(|a| a.contains(dir)) {
            if let Some(i) = args.iter().position(|a| a == "--id") {
                out.insert(args.get(i + 1).cloned().unwrap_or_default(), pid);
            }
        }
    }
    out
}

/// SIGKILLs the shim of a random started container, or now and then of a
/// shared-PID pod's pause.
fn kill_a_shim(shared: &Shared, rng: &mut Rng) {
    let generation = shared.generation.load(Ordering::SeqCst);
    let running = shims(&shared.dir);
    let mut m = shared.model.lock().unwrap();
    if rng.chance(25) {
        let pauses: Vec<String> =
            m.pods.iter().filter(|(id, p)| p.shared_pid && !p.stopped && !p.removing && running.contains_key(*id)).map(|(id, _)| id.clone()).collect();
        if !pauses.is_empty() {
            let id = pauses[rng.below(pauses.len() as u64) as usize].clone();
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(running[&id]), nix::sys::signal::Signal::SIGKILL);
            println!("storm: killed the pause shim of pod {id} (pid {})", running[&id]);
            bump(&shared.stats.pause_kills);
            // The pause itself outlives its shim (it is reparented, not
            // killed), and with it the pod's PID namespace and containers:
            // nothing changes until the pod stops, which must then end it.
            return;
        }
    }
    let started: Vec<String> = m.containers.iter().filter(|(id, c)| c.want == Want::Started && running.contains_key(*id)).map(|(id, _)| id.clone()).collect();
    if started.is_empty() {
        return;
    }
    let id = started[rng.below(started.len() as u64) as usize].clone();
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(running[&id]), nix::sys::signal::Signal::SIGKILL);
    println!("storm: killed the shim of container {id} (pid {})", running[&id]);
    bump(&shared.stats.shim_kills);
    m.containers.get_mut(&id).unwrap().shim_killed.get_or_insert(generation);
}

/// host-local's reservations: address -> the id it was reserved for.
fn ipam_reservations(dir: &Path) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for net in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        for f in std::fs::read_dir(net.path()).into_iter().flatten().flatten() {
            let name = f.file_name().to_string_lossy().into_owned();
            if name.parse::<std::net::IpAddr>().is_ok() {
                let text = std::fs::read_to_string(f.path()).unwrap_or_default();
                out.insert(name, text.lines().next().unwrap_or("").trim().to_string());
            }
        }
    }
    out
}

/// The processes in a container's cgroup, in every hierarchy.
fn cgroup_procs(cgroups_path: &str) -> Vec<i32> {
    let mut pids: Vec<i32> = berth_testkit::cgroups::HostCgroup::new(cgroups_path)
        .existing_dirs()
        .iter()
        .flat_map(|d| std::fs::read_to_string(d.join("cgroup.procs")).unwrap_or_default().lines().filter_map(|l| l.parse().ok()).collect::<Vec<i32>>())
        .collect();
    pids.sort_unstable();
    pids.dedup();
    pids
}

fn state_name(s: i32) -> &'static str {
    match v1::ContainerState::try_from(s) {
        Ok(v1::ContainerState::ContainerCreated) => "CREATED",
        Ok(v1::ContainerState::ContainerRunning) => "RUNNING",
        Ok(v1::ContainerState::ContainerExited) => "EXITED",
        _ => "UNKNOWN",
    }
}

/// After a restart, with every worker held at the gate: what berthd lists
/// against what the workers know, and against the kernel.
async fn check(shared: &Shared, rt: &mut RuntimeServiceClient<Channel>, when: &str) {
    bump(&shared.stats.checks);
    let generation = shared.generation.load(Ordering::SeqCst);
    let pods = match rt.list_pod_sandbox(v1::ListPodSandboxRequest::default()).await {
        Ok(r) => r.into_inner().items,
        Err(e) => return shared.problem(format!("{when}: ListPodSandbox: {e:?}")),
    };
    let containers = match rt.list_containers(v1::ListContainersRequest::default()).await {
        Ok(r) => r.into_inner().containers,
        Err(e) => return shared.problem(format!("{when}: ListContainers: {e:?}")),
    };
    let model = { shared.model.lock().unwrap().pods.clone() };
    let ctrs = { shared.model.lock().unwrap().containers.clone() };
    let unsure = { shared.model.lock().unwrap().unsure.clone() };
    let listed_pods: HashMap<&str, &v1::PodSandbox> = pods.iter().map(|p| (p.id.as_str(), p)).collect();
    let listed_ctrs: HashMap<&str, &v1::Container> = containers.iter().map(|c| (c.id.as_str(), c)).collect();

    for (id, pod) in &model {
        let Some(listed) = listed_pods.get(id.as_str()) else {
            if !pod.removing {
                shared.problem(format!("{when}: pod {id} ({}) was created and not removed, but is not listed", pod.name));
            }
            continue;
        };
        let ready = listed.state == v1::PodSandboxState::SandboxReady as i32;
        if !pod.removing && !pod.stopping && ready == pod.stopped {
            shared.problem(format!(
                "{when}: pod {id} ({}) is listed {}, but was {}",
                pod.name,
                if ready { "READY" } else { "NOTREADY" },
                if pod.stopped { "stopped" } else { "not stopped" }
            ));
        }
    }
    for p in &pods {
        let meta = p.metadata.clone().unwrap_or_default();
        if !model.contains_key(&p.id) && !unsure.contains(&format!("{}#{}", meta.name, meta.attempt)) {
            shared.problem(format!("{when}: pod {} ({} attempt {}) is listed, but nobody created it or it was removed", p.id, meta.name, meta.attempt));
        }
    }
    // Every address host-local holds is a listed pod's; every ready pod
    // holds one.
    let reserved = ipam_reservations(&shared.ipam);
    let holders: HashSet<&str> = reserved.values().map(String::as_str).collect();
    for (ip, holder) in &reserved {
        if !listed_pods.contains_key(holder.as_str()) {
            shared.problem(format!("{when}: IPAM address {ip} is reserved for {holder}, which is not a listed pod"));
        }
    }
    for p in pods.iter().filter(|p| p.state == v1::PodSandboxState::SandboxReady as i32) {
        // (A pod being stopped may have its address released already.)
        let settled = model.get(&p.id).is_some_and(|m| !m.stopping && !m.removing);
        if settled && !holders.contains(p.id.as_str()) {
            shared.problem(format!("{when}: pod {} is READY but holds no IPAM address", p.id));
        }
    }

    for (id, c) in &ctrs {
        let pod = model.get(&c.pod);
        let pod_going = pod.is_none_or(|p| p.removing);
        let Some(listed) = listed_ctrs.get(id.as_str()) else {
            if !c.removing && !pod_going {
                shared.problem(format!("{when}: container {id} ({}) was created and not removed, but is not listed", c.name));
            }
            continue;
        };
        if c.removing || pod_going {
            continue;
        }
        let pod = pod.unwrap();
        let state = listed.state;
        let (running, exited, created) = (
            state == v1::ContainerState::ContainerRunning as i32,
            state == v1::ContainerState::ContainerExited as i32,
            state == v1::ContainerState::ContainerCreated as i32,
        );
        let killed_before_restart = c.shim_killed.is_some_and(|g| g < generation);
        let want = match c.want {
            Want::Created => Some((created, "CREATED")),
            Want::Stopped => Some((exited, "EXITED")),
            Want::Started if killed_before_restart || pod.stopped => Some((exited, "EXITED (its shim or pod is gone)")),
            Want::Started if !c.short && c.shim_killed.is_none() && !pod.stopping => Some((running, "RUNNING")),
            Want::Started | Want::Starting | Want::Stopping => None,
        };
        if let Some((ok, name)) = want {
            if !ok {
                shared.problem(format!("{when}: container {id} ({}/{}) is listed {}, but must be {name} ({c:?})", pod.name, c.name, state_name(state)));
            }
        }
        // An exit that happened by itself keeps its code, whenever berthd
        // was killed.
        let undisturbed = c.want == Want::Started && c.shim_killed.is_none() && !pod.stopped && !pod.stopping;
        if c.short && undisturbed && exited {
            let status = rt.container_status(v1::ContainerStatusRequest { container_id: id.clone(), verbose: false }).await;
            let code = status.ok().and_then(|r| r.into_inner().status).map(|s| (s.exit_code, s.reason, s.message));
            if code.as_ref().is_none_or(|(code, _, _)| *code != SHORT_EXIT) {
                shared.problem(format!("{when}: container {id} ({}/{}) exited with {SHORT_EXIT} by itself, but is listed as {code:?}", pod.name, c.name));
            }
        }
    }
    for c in &containers {
        let name = c.metadata.as_ref().map(|m| m.name.clone()).unwrap_or_default();
        if !ctrs.contains_key(&c.id) && !unsure.contains(&format!("{}/{name}", c.pod_sandbox_id)) {
            shared.problem(format!("{when}: container {} ({name}) is listed, but nobody created it or it was removed", c.id));
        }
    }

    // The kernel's view: a RUNNING container's process runs in its cgroup;
    // no process runs in the cgroup of one that is CREATED or EXITED.
    for c in &containers {
        let status = match rt.container_status(v1::ContainerStatusRequest { container_id: c.id.clone(), verbose: true }).await {
            Ok(r) => r.into_inner(),
            Err(e) => {
                shared.problem(format!("{when}: ContainerStatus {}: {e:?}", c.id));
                continue;
            }
        };
        let info: serde_json::Value = serde_json::from_str(status.info.get("info").map(String::as_str).unwrap_or("{}")).unwrap_or_default();
        let pid = info["pid"].as_u64().unwrap_or(0);
        let cgroups_path = info["cgroupsPath"].as_str().unwrap_or("").to_string();
        let state = status.status.map(|s| s.state).unwrap_or(-1);
        if state == v1::ContainerState::ContainerRunning as i32 {
            let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
            if pid == 0 || !cgroup.contains(&c.id) {
                // It may have just ended: only a problem if still RUNNING.
                tokio::time::sleep(Duration::from_millis(500)).await;
                let again = rt.container_status(v1::ContainerStatusRequest { container_id: c.id.clone(), verbose: false }).await;
                if again.is_ok_and(|r| r.into_inner().status.is_some_and(|s| s.state == v1::ContainerState::ContainerRunning as i32)) {
                    shared.problem(format!("{when}: container {} is listed RUNNING, but its process {pid} does not run in its cgroup", c.id));
                }
            }
        } else if !cgroups_path.is_empty() {
            // A SIGKILLed process takes a moment to leave its cgroup.
            let deadline = Instant::now() + Duration::from_secs(3);
            let mut procs = cgroup_procs(&cgroups_path);
            while !procs.is_empty() && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(50)).await;
                procs = cgroup_procs(&cgroups_path);
            }
            if !procs.is_empty() {
                shared.problem(format!("{when}: container {} is listed {}, but processes {procs:?} run in its cgroup", c.id, state_name(state)));
            }
        }
    }
}

/// Polls `f` until it finds nothing left (an empty list), for up to 10 s.
async fn nothing_left(shared: &Shared, what: &str, f: impl Fn() -> Vec<String>) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = f();
        if left.is_empty() {
            return;
        }
        if Instant::now() > deadline {
            return shared.problem(format!("left behind after removing everything: {what}: {left:?}"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn entries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir).into_iter().flatten().flatten().map(|e| e.path().display().to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_storm_under_pod_churn_loses_nothing_and_leaves_nothing() {
    let seconds: u64 = std::env::var("BERTH_STORM_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(40);
    let seed: u64 = std::env::var("BERTH_STORM_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64);
    println!("storm: seed {seed} (BERTH_STORM_SEED={seed} replays its choices), {seconds} s of storm, {WORKERS} workers");
    // Every e2e test has a bound: the storm, then up to two minutes to
    // settle, check and clean up.
    let bound = Duration::from_secs(seconds + 120);
    tokio::time::timeout(bound, storm(seconds, seed)).await.unwrap_or_else(|_| panic!("the storm (seed {seed}) did not end within {bound:?}: a hang"));
}

async fn storm(seconds: u64, seed: u64) {
    let mut node = Node::start().await;
    let dir = node.berthd.dir.path().display().to_string();
    let shared = Arc::new(Shared {
        socket: node.berthd.socket.clone(),
        dir: dir.clone(),
        ipam: node.net.conf_dir.parent().unwrap().join("ipam"),
        logs: node.logs.clone(),
        cgroup_parent: node.cgroup_parent.clone(),
        image: node.image.clone(),
        gate: RwLock::new(()),
        model: Mutex::new(Model::default()),
        generation: AtomicU64::new(1),
        stop: AtomicBool::new(false),
        problems: Mutex::new(Vec::new()),
        stats: Stats::default(),
    });
    let mut workers = Vec::new();
    for index in 0..WORKERS {
        let worker = Worker {
            index,
            shared: shared.clone(),
            rt: node.rt.clone(),
            rng: Rng(seed.wrapping_add(index as u64 + 1).wrapping_mul(0x2545_f491_4f6c_dd1d)),
            live: Vec::new(),
            next_pod: 0,
        };
        workers.push(tokio::spawn(worker.run()));
    }

    let mut rng = Rng(seed);
    let started = Instant::now();
    let storm_end = started + Duration::from_secs(seconds);
    while Instant::now() < storm_end {
        let calm = rng.millis(100, 1500);
        tokio::time::sleep(calm).await;
        if rng.chance(30) {
            kill_a_shim(&shared, &mut rng);
        }
        node.berthd.kill();
        bump(&shared.stats.berthd_kills);
        // Now and then a shim dies while berthd is down.
        if rng.chance(20) {
            kill_a_shim(&shared, &mut rng);
        }
        let down = rng.millis(0, 300);
        tokio::time::sleep(down).await;
        shared.generation.fetch_add(1, Ordering::SeqCst);
        node.berthd.start_again();
        let n = shared.stats.berthd_kills.load(Ordering::Relaxed);
        let mut rt = match connect(&shared.socket).await {
            Ok(rt) => rt,
            Err(e) => {
                shared.problem(format!("restart {n}: {e}"));
                break;
            }
        };
        let _gate = shared.gate.write().await;
        check(&shared, &mut rt, &format!("after kill {n}")).await;
    }

    // The workers finish what they are doing; berthd is killed once more,
    // with the workers quiet, and checked.
    shared.stop.store(true, Ordering::SeqCst);
    for w in workers {
        if tokio::time::timeout(Duration::from_secs(60), w).await.is_err() {
            shared.problem("a worker did not finish within 60 s after the storm".into());
        }
    }
    node.berthd.kill();
    bump(&shared.stats.berthd_kills);
    shared.generation.fetch_add(1, Ordering::SeqCst);
    node.berthd.start_again();
    let mut rt = connect(&shared.socket).await.expect("berthd back after the storm");
    check(&shared, &mut rt, "after the storm").await;

    // Everything goes, through the CRI, as a kubelet would remove it.
    let (pods_left, containers_left) = {
        let m = shared.model.lock().unwrap();
        (m.pods.len(), m.containers.len())
    };
    let pods = rt.list_pod_sandbox(v1::ListPodSandboxRequest::default()).await.expect("ListPodSandbox").into_inner().items;
    for p in &pods {
        if let Err(e) = rt.stop_pod_sandbox(v1::StopPodSandboxRequest { pod_sandbox_id: p.id.clone() }).await {
            shared.problem(format!("final StopPodSandbox {}: {e:?}", p.id));
        }
        if let Err(e) = rt.remove_pod_sandbox(v1::RemovePodSandboxRequest { pod_sandbox_id: p.id.clone() }).await {
            shared.problem(format!("final RemovePodSandbox {}: {e:?}", p.id));
        }
    }
    let containers = rt.list_containers(v1::ListContainersRequest::default()).await.expect("ListContainers").into_inner().containers;
    if !containers.is_empty() {
        shared.problem(format!("containers listed after every pod was removed: {:?}", containers.iter().map(|c| &c.id).collect::<Vec<_>>()));
    }

    let state = node.berthd.dir.path().join("state");
    let root = node.berthd.root();
    nothing_left(&shared, "shims", || shims(&dir).into_iter().map(|(id, pid)| format!("{id} (pid {pid})")).collect()).await;
    nothing_left(&shared, "mounts", || {
        std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default().lines().filter(|l| l.contains(&dir)).map(String::from).collect()
    })
    .await;
    let bridge = node.net.bridge.clone();
    // A pod's veth goes only with its network namespace.
    nothing_left(&shared, "interfaces on the bridge (live pod netns)", || entries(&Path::new("/sys/class/net").join(&bridge).join("brif"))).await;
    nothing_left(&shared, "IPAM addresses", || ipam_reservations(&shared.ipam).into_iter().map(|(ip, id)| format!("{ip} for {id}")).collect()).await;
    let cgroup_parent = node.cgroup_parent.clone();
    nothing_left(&shared, "container and pause cgroups", || {
        berth_testkit::cgroups::HostCgroup::new(&cgroup_parent).dirs().iter().flat_map(|d| leaf_cgroups(d)).map(|p| p.display().to_string()).collect()
    })
    .await;
    for d in [state.join("sandboxes"), state.join("containers"), state.join("s"), root.join("sandboxes"), root.join("containers")] {
        nothing_left(&shared, "state directories", || entries(&d)).await;
    }

    let s = &shared.stats;
    let problems = shared.problems.lock().unwrap().clone();
    println!(
        "storm: did: {:.0} s, seed {seed}; berthd killed {} times, shims killed {} (pauses {}); pods run {}, removed {}; containers created {}, started {}, removed {}; {} RPCs, {} unanswered (killed under them), {} half-made objects found and adopted after a restart; {} checks; {} pods and {} containers alive at the end",
        Instant::now().duration_since(started).as_secs_f64(),
        s.berthd_kills.load(Ordering::Relaxed),
        s.shim_kills.load(Ordering::Relaxed),
        s.pause_kills.load(Ordering::Relaxed),
        s.pods_run.load(Ordering::Relaxed),
        s.pods_removed.load(Ordering::Relaxed),
        s.containers_created.load(Ordering::Relaxed),
        s.containers_started.load(Ordering::Relaxed),
        s.containers_removed.load(Ordering::Relaxed),
        s.rpcs.load(Ordering::Relaxed),
        s.rpcs_lost.load(Ordering::Relaxed),
        s.adopted.load(Ordering::Relaxed),
        s.checks.load(Ordering::Relaxed),
        pods_left,
        containers_left,
    );
    println!("storm: found: {} problems", problems.len());
    for p in &problems {
        println!("storm:   {p}");
    }
    assert!(problems.is_empty(), "the kill -9 storm (seed {seed}) found {} problems:\n{}", problems.len(), problems.join("\n"));
    node.rt = rt;
    node.teardown().await;
}
