//! A node whose CRI runtime is containerd (Debian's 1.6, started on temp
//! dirs and sockets of its own) with berth-shim registered as runtime
//! handler `berth` by berth's own installer (`deploy/installer/berth-install
//! install --mode handler`, run with `--host-root /` and every path in the
//! temp dir): `containerd-shim-berth-v2`, a copy of the built berth-shim,
//! and beside it a copy of the built berth-runtime (which the shim runs
//! from its own directory), and `runtime_type = "io.containerd.berth.v2"`
//! plus `runtime_path` in containerd's config. Its own CNI bridge, the
//! local registry as containerd's mirror (busybox and a pause image built
//! from it), and CRI clients on containerd's socket.
//!
//! containerd is started with the installed shim's directory first on its
//! PATH, as `/usr/local/bin` is on a node's: containerd 1.6.0 to 1.6.20
//! (Debian 12's) and 1.7.0 read `runtime_path` but never hand it to the
//! task service (fixed in 1.6.21 and 1.7.1), so they find the shim by its
//! name on PATH only.
//!
//! `teardown` removes every pod through the CRI and checks that nothing of
//! berth's is left; `Drop` cleans up after a test that failed before.

use std::{
    collections::HashMap,
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use k8s_cri::v1::{self, image_service_client::ImageServiceClient, runtime_service_client::RuntimeServiceClient};
use sha2::Digest;
use tonic::transport::Channel;

use super::{
    channel, cri_calls,
    node::{container_config_for, kill_cgroup_tree, leaf_cgroups, pod_config_for, TestNet},
    shim_binary,
};

/// The RuntimeClass handler name the installer registers.
pub const HANDLER: &str = "berth";
/// containerd's CRI namespace.
pub const NAMESPACE: &str = "k8s.io";
/// Where containerd's shims (berth-shim too) put their sockets.
const SHIM_SOCKET_DIR: &str = "/run/containerd/s";
/// The pause image's command: the same busybox, sleeping.
const PAUSE_CMD: [&str; 2] = ["/bin/sleep", "2147483647"];

pub struct ContainerdNode {
    pub child: Child,
    pub dir: tempfile::TempDir,
    pub socket: PathBuf,
    pub registry: berth_testkit::Registry,
    pub net: TestNet,
    pub rt: RuntimeServiceClient<Channel>,
    pub img: ImageServiceClient<Channel>,
    pub image: String,
    pub cgroup_parent: String,
    pub logs: PathBuf,
    /// Pods and containers this node made: their shim sockets are checked.
    pub ids: Vec<String>,
    /// `ctr events` on this containerd, when started.
    events: Option<EventLog>,
    /// containerd's config before the installer ran.
    original_config: String,
    torn_down: bool,
    _work: tempfile::TempDir,
}

impl ContainerdNode {
    pub async fn start() -> ContainerdNode {
        assert!(nix::unistd::geteuid().is_root(), "run as root (README)");
        assert!(Command::new("containerd").arg("--version").output().is_ok_and(|o| o.status.success()), "containerd missing: hack/setup.sh installs it");
        let registry = berth_testkit::Registry::start();
        let work = tempfile::tempdir().unwrap();
        berth_testkit::build_and_push(&registry, work.path(), "ctd/busybox:1", None);
        berth_testkit::push_variant_with_cmd(&registry, work.path(), "ctd/pause:1", &PAUSE_CMD);
        let net = TestNet::new(&work.path().join("net"), "");
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("config.toml");
        let original = config_toml(dir.path(), &registry.host(), &net.conf_dir);
        std::fs::write(&config, &original).unwrap();
        installer(dir.path(), "install");
        let installed = std::fs::read_to_string(&config).unwrap();
        assert!(installed.starts_with(&original), "the installer appends berth's runtime to a version 2 config:\n{installed}");
        let socket = dir.path().join("c.sock");
        let child = spawn(dir.path(), &config);
        let ch = channel(&socket).await;
        let (mut rt, mut img) = (RuntimeServiceClient::new(ch.clone()), ImageServiceClient::new(ch));
        wait_ready(&mut rt).await;
        let image = format!("{}/ctd/busybox:1", registry.host());
        img.pull_image(v1::PullImageRequest { image: Some(v1::ImageSpec { image: image.clone(), ..Default::default() }), ..Default::default() }).await.unwrap();
        let cgroup_parent = format!("/berth-ctd-test-{}-{}", std::process::id(), net.index);
        let logs = dir.path().join("logs");
        ContainerdNode {
            child,
            dir,
            socket,
            registry,
            net,
            rt,
            img,
            image,
            cgroup_parent,
            logs,
            ids: Vec::new(),
            events: None,
            original_config: original,
            torn_down: false,
            _work: work,
        }
    }

    /// The `containerd-shim-berth-v2` the installer put in place.
    pub fn installed_shim(&self) -> PathBuf {
        self.dir.path().join(INSTALL_PREFIX).join("bin/containerd-shim-berth-v2")
    }

    /// Kills containerd (SIGKILL, like a crash) and starts it again on the
    /// same config and directories; the shims keep running meanwhile.
    pub async fn restart_containerd(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let config = self.dir.path().join("config.toml");
        self.child = spawn(self.dir.path(), &config);
        let ch = channel(&self.socket).await;
        self.rt = RuntimeServiceClient::new(ch.clone());
        self.img = ImageServiceClient::new(ch);
        wait_ready(&mut self.rt).await;
    }

    /// containerd's ttrpc socket, which berth-shim publishes events to.
    pub fn ttrpc_address(&self) -> PathBuf {
        self.dir.path().join("c.sock.ttrpc")
    }

    /// Starts `ctr events` on this containerd; see [`Self::events`].
    pub fn watch_events(&mut self) {
        self.events = Some(EventLog::start(&self.socket));
    }

    /// Task events containerd received so far, as `(topic, event JSON)`.
    pub fn events(&self) -> Vec<(String, serde_json::Value)> {
        self.events.as_ref().map(|e| e.lines.lock().unwrap().clone()).unwrap_or_default()
    }

    /// Polls until `pred` holds for the events, or panics after `within`.
    pub async fn wait_for_event(&self, what: &str, within: Duration, pred: impl Fn(&str, &serde_json::Value) -> bool) -> serde_json::Value {
        let deadline = Instant::now() + within;
        loop {
            if let Some((_, e)) = self.events().into_iter().find(|(t, e)| pred(t, e)) {
                return e;
            }
            assert!(Instant::now() < deadline, "no {what} event within {within:?}; got {:#?}", self.events());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn pod_config(&self, name: &str) -> v1::PodSandboxConfig {
        pod_config_for(name, &self.logs, &self.cgroup_parent)
    }

    pub fn container_config(&self, name: &str, cmd: &[&str]) -> v1::ContainerConfig {
        container_config_for(name, &self.image, cmd)
    }

    /// RunPodSandbox with berth's handler: the pod's pause runs under
    /// berth-shim too.
    pub async fn run_pod(&mut self, name: &str) -> (String, v1::PodSandboxConfig) {
        let config = self.pod_config(name);
        let req = v1::RunPodSandboxRequest { config: Some(config.clone()), runtime_handler: HANDLER.into() };
        let id =
            self.rt.run_pod_sandbox(req).await.unwrap_or_else(|e| panic!("RunPodSandbox: {e}\n{}", self.containerd_log_tail())).into_inner().pod_sandbox_id;
        self.ids.push(id.clone());
        (id, config)
    }

    pub async fn create(&mut self, pod: &(String, v1::PodSandboxConfig), config: v1::ContainerConfig) -> Result<String, tonic::Status> {
        let req = v1::CreateContainerRequest { pod_sandbox_id: pod.0.clone(), config: Some(config), sandbox_config: Some(pod.1.clone()) };
        let id = self.rt.create_container(req).await.map(|r| r.into_inner().container_id)?;
        self.ids.push(id.clone());
        Ok(id)
    }

    /// Create + Start.
    pub async fn run(&mut self, pod: &(String, v1::PodSandboxConfig), name: &str, cmd: &[&str]) -> String {
        let config = self.container_config(name, cmd);
        let id = self.create(pod, config).await.unwrap_or_else(|e| panic!("CreateContainer: {e}"));
        self.start_container(&id).await;
        id
    }

    pub async fn start_container(&mut self, id: &str) {
        let req = v1::StartContainerRequest { container_id: id.into() };
        if let Err(e) = self.rt.start_container(req).await {
            panic!("StartContainer: {e}\n{}", self.containerd_log_tail());
        }
    }

    pub async fn exec(&mut self, id: &str, cmd: &[&str], timeout: i64) -> Result<v1::ExecSyncResponse, tonic::Status> {
        cri_calls::exec_sync(&mut self.rt, id, cmd, timeout).await
    }

    pub async fn status(&mut self, id: &str) -> v1::ContainerStatus {
        cri_calls::container_status(&mut self.rt, id).await
    }

    /// Polls until the container has exited.
    pub async fn wait_exited(&mut self, id: &str, within: Duration) -> v1::ContainerStatus {
        let log = self.dir.path().join("containerd.log");
        cri_calls::wait_exited(&mut self.rt, id, within, || format!("\n{}", log_tail(&log))).await
    }

    /// Polls until the container's CRI log holds `line` (containerd's CRI
    /// copies the shim's fifos into it).
    pub async fn wait_for_log_line(&self, pod: &str, container: &str, stream: &str, line: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let lines = self.log_records(pod, container);
            if lines.iter().any(|(s, m)| s == stream && m == line) {
                return;
            }
            assert!(Instant::now() < deadline, "no {stream} line {line:?} in the log of {container}: {lines:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The CRI log's records as (stream, message).
    pub fn log_records(&self, pod: &str, container: &str) -> Vec<(String, String)> {
        let text = std::fs::read_to_string(self.logs.join(pod).join(format!("{container}.log"))).unwrap_or_default();
        text.lines()
            .filter_map(|l| {
                let mut f = l.splitn(4, ' ');
                let (_time, stream, _tag, msg) = (f.next()?, f.next()?, f.next()?, f.next()?);
                Some((stream.to_string(), msg.to_string()))
            })
            .collect()
    }

    /// The socket berth-shim serves `id` on under this containerd.
    pub fn shim_socket(&self, id: &str) -> PathBuf {
        let key = format!("{}/{NAMESPACE}/{id}", self.socket.display());
        Path::new(SHIM_SOCKET_DIR).join(hex::encode(sha2::Sha256::digest(key.as_bytes())))
    }

    /// Running `berth-shim serve` processes started by this containerd, by
    /// container (or pod) id.
    pub fn shims(&self) -> HashMap<String, i32> {
        let marker = self.ttrpc_address().display().to_string();
        let mut out = HashMap::new();
        for (pid, args) in processes() {
            if args.get(1).map(String::as_str) == Some("serve") && args.contains(&marker) {
                if let Some(i) = args.iter().position(|a| a == "--id") {
                    out.insert(args.get(i + 1).cloned().unwrap_or_default(), pid);
                }
            }
        }
        out
    }

    /// containerd's own runc shims serving this containerd, by pid: a
    /// `containerd-shim-runc-v2` whose `-address` is this containerd's.
    pub fn runc_shims(&self) -> Vec<i32> {
        let address = self.socket.display().to_string();
        processes()
            .into_iter()
            .filter(|(_, args)| args.first().is_some_and(|a| a.ends_with("containerd-shim-runc-v2")) && args.contains(&address))
            .map(|(pid, _)| pid)
            .collect()
    }

    /// RunPodSandbox with containerd's default handler (runc).
    pub async fn run_runc_pod(&mut self, name: &str) -> (String, v1::PodSandboxConfig) {
        let config = self.pod_config(name);
        let req = v1::RunPodSandboxRequest { config: Some(config.clone()), runtime_handler: String::new() };
        let id = self
            .rt
            .run_pod_sandbox(req)
            .await
            .unwrap_or_else(|e| panic!("RunPodSandbox (runc): {e}\n{}", self.containerd_log_tail()))
            .into_inner()
            .pod_sandbox_id;
        (id, config)
    }

    /// The bundle containerd made for a task.
    pub fn bundle(&self, id: &str) -> PathBuf {
        self.dir.path().join("state/io.containerd.runtime.v2.task").join(NAMESPACE).join(id)
    }

    /// Mounts under containerd's root or state dirs.
    pub fn mounts(&self) -> Vec<String> {
        let dir = self.dir.path().display().to_string();
        std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap()
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .filter(|m| m.starts_with(&dir))
            .map(String::from)
            .collect()
    }

    /// Whether containerd still answers its CRI as healthy.
    pub async fn assert_healthy(&mut self) {
        assert!(self.child.try_wait().unwrap().is_none(), "containerd exited\n{}", self.containerd_log_tail());
        let status = self.rt.status(v1::StatusRequest { verbose: false }).await.unwrap().into_inner().status.unwrap();
        assert!(status.conditions.iter().all(|c| c.status), "containerd not ready: {:?}", status.conditions);
        self.rt.version(v1::VersionRequest::default()).await.unwrap();
    }

    pub fn containerd_log_tail(&self) -> String {
        log_tail(&self.dir.path().join("containerd.log"))
    }

    /// Removes every pod through the CRI, then checks nothing of berth's is
    /// left: no berth-shim process or socket, no mount under containerd's
    /// dirs, no container cgroup; and containerd is still healthy.
    pub async fn teardown(mut self) {
        let pods = self.rt.list_pod_sandbox(v1::ListPodSandboxRequest::default()).await.unwrap().into_inner().items;
        for p in pods {
            self.rt.stop_pod_sandbox(v1::StopPodSandboxRequest { pod_sandbox_id: p.id.clone() }).await.unwrap();
            self.rt.remove_pod_sandbox(v1::RemovePodSandboxRequest { pod_sandbox_id: p.id }).await.unwrap();
        }
        assert!(self.rt.list_containers(v1::ListContainersRequest::default()).await.unwrap().into_inner().containers.is_empty());
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let shims = self.shims();
            let sockets: Vec<PathBuf> = self.ids.iter().map(|id| self.shim_socket(id)).filter(|s| s.exists()).collect();
            let mounts = self.mounts();
            if shims.is_empty() && sockets.is_empty() && mounts.is_empty() {
                break;
            }
            assert!(Instant::now() < deadline, "left behind: shims {shims:?}, sockets {sockets:?}, mounts {mounts:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        for parent in berth_testkit::cgroups::HostCgroup::new(&self.cgroup_parent).dirs() {
            let leftovers = leaf_cgroups(&parent);
            assert!(leftovers.is_empty(), "container cgroups left: {leftovers:?}");
        }
        self.assert_healthy().await;
        // The chart's pre-delete hook: the node's config as it was, the shim gone.
        installer(self.dir.path(), "uninstall");
        assert_eq!(std::fs::read_to_string(self.dir.path().join("config.toml")).unwrap(), self.original_config, "uninstall restores containerd's config");
        assert!(!self.installed_shim().exists(), "uninstall removes containerd-shim-berth-v2");
        assert!(!self.installed_shim().with_file_name("berth-runtime").exists(), "uninstall removes berth-runtime");
        berth_testkit::remove_cgroup_everywhere(&self.cgroup_parent);
        self.torn_down = true;
    }
}

impl Drop for ContainerdNode {
    /// A test that failed before `teardown` must leave nothing running:
    /// containerd, the shims (by containerd's ttrpc address in their command
    /// line), the containers (by cgroup), their mounts and shim sockets.
    fn drop(&mut self) {
        if let Some(events) = self.events.take() {
            events.stop();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        if self.torn_down {
            return;
        }
        if std::thread::panicking() {
            eprintln!("{}", self.containerd_log_tail());
        }
        let marker = self.dir.path().display().to_string();
        for (pid, args) in processes() {
            if args.iter().any(|a| a.contains(&marker)) {
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
            }
        }
        for parent in berth_testkit::cgroups::HostCgroup::new(&self.cgroup_parent).dirs() {
            kill_cgroup_tree(&parent);
        }
        std::thread::sleep(Duration::from_millis(200));
        for m in self.mounts().iter().rev() {
            let _ = nix::mount::umount2(m.as_str(), nix::mount::MntFlags::MNT_DETACH);
        }
        for id in &self.ids {
            let _ = std::fs::remove_file(self.shim_socket(id));
        }
        berth_testkit::remove_cgroup_everywhere(&self.cgroup_parent);
    }
}

/// `ctr events` on a containerd, its output parsed as it comes:
/// `<time> <namespace> <topic> <event as JSON>`.
struct EventLog {
    child: Child,
    lines: Arc<Mutex<Vec<(String, serde_json::Value)>>>,
}

impl EventLog {
    fn start(socket: &Path) -> EventLog {
        let mut child = Command::new("ctr").arg("--address").arg(socket).arg("events").stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
        let out = child.stdout.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        std::thread::spawn(move || {
            // The time has spaces in it; the topic is the first word that is a path.
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let Some(at) = line.find(" /") else { continue };
                let (topic, json) = line[at + 1..].split_once(' ').unwrap_or((&line[at + 1..], ""));
                let value = serde_json::from_str(json).unwrap_or(serde_json::Value::String(json.to_string()));
                sink.lock().unwrap().push((topic.to_string(), value));
            }
        });
        // ctr subscribes as it starts; give it a moment before events flow.
        std::thread::sleep(Duration::from_millis(300));
        EventLog { child, lines }
    }

    fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Where the installer puts binaries, under the node's temp dir (its
/// `--prefix`; `/usr/local` on a real node).
const INSTALL_PREFIX: &str = "usr";

/// Runs berth's installer in handler mode against this node's containerd
/// config, as the chart's DaemonSet (install) and pre-delete hook
/// (uninstall) do: `--host-root /` with every path inside `dir`, the
/// built berth-shim and the berth-runtime beside it as the image's
/// binaries, and a systemctl that does nothing (the test starts containerd
/// itself, after the install).
fn installer(dir: &Path, action: &str) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/installer/berth-install");
    let out = Command::new(&script)
        .arg(action)
        .args(["--mode", "handler", "--host-root", "/", "--runtime-name", HANDLER])
        .arg("--bin-dir")
        .arg(shim_binary().parent().unwrap())
        .arg("--prefix")
        .arg(dir.join(INSTALL_PREFIX))
        .arg("--containerd-config")
        .arg(dir.join("config.toml"))
        .arg("--state-dir")
        .arg(dir.join("berth-install"))
        .env("BERTH_INSTALL_SYSTEMCTL", "true")
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", script.display()));
    assert!(out.status.success(), "berth-install {action}: {}\n{}{}", out.status, String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
}

/// containerd's config before berth's installer: the CRI plugin with runc
/// only, as on a node.
fn config_toml(dir: &Path, registry: &str, cni_conf_dir: &Path) -> String {
    format!(
        r#"version = 2
root = "{dir}/root"
state = "{dir}/state"
[grpc]
  address = "{dir}/c.sock"
[debug]
  level = "debug"
[plugins."io.containerd.internal.v1.opt"]
  path = "{dir}/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{registry}/ctd/pause:1"
  # A port of its own, so several containerds can run at once.
  stream_server_port = "0"
  # Pod network namespaces under the state dir, not the host's /run/netns.
  netns_mounts_under_state_dir = true
  # This host forbids lowering oom_score_adj (no CAP_SYS_RESOURCE).
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{cni}"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    default_runtime_name = "runc"
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
    runtime_type = "io.containerd.runc.v2"
  [plugins."io.containerd.grpc.v1.cri".registry.mirrors."{registry}"]
    endpoint = ["http://{registry}"]
"#,
        dir = dir.display(),
        cni = cni_conf_dir.display(),
    )
}

/// containerd on `config`, logging to `containerd.log`, with the
/// installer's bin dir first on its PATH (see the module's comment).
fn spawn(dir: &Path, config: &Path) -> Child {
    let log = std::fs::OpenOptions::new().create(true).append(true).open(dir.join("containerd.log")).unwrap();
    let path = format!("{}:{}", dir.join(INSTALL_PREFIX).join("bin").display(), std::env::var("PATH").unwrap_or_default());
    Command::new("containerd").arg("--config").arg(config).env("PATH", path).stdout(log.try_clone().unwrap()).stderr(log).spawn().unwrap()
}

/// containerd's socket comes up before its CRI plugin is ready.
async fn wait_ready(rt: &mut RuntimeServiceClient<Channel>) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = rt.status(v1::StatusRequest { verbose: false }).await {
            if r.into_inner().status.is_some_and(|s| s.conditions.iter().all(|c| c.status)) {
                return;
            }
        }
        assert!(Instant::now() < deadline, "containerd's CRI not ready within 30 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every process's pid and arguments.
fn processes() -> Vec<(i32, Vec<String>)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else { continue };
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let args: Vec<String> = cmdline.split(|b| *b == 0).filter(|a| !a.is_empty()).map(|a| String::from_utf8_lossy(a).into_owned()).collect();
        out.push((pid, args));
    }
    out
}

/// The last 60 lines of containerd's log, for failure messages.
fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    format!("--- containerd.log (last 60 lines) ---\n{}", lines[lines.len().saturating_sub(60)..].join("\n"))
}
