//! A whole node for RuntimeService tests: berthd with a CNI bridge network
//! of its own, a local registry with the busybox test image already pulled,
//! and clients. `teardown` removes every pod and checks nothing is left.

use std::{
    collections::HashMap,
    io::{Read, Seek, Write},
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use k8s_cri::v1::{self, image_service_client::ImageServiceClient, runtime_service_client::RuntimeServiceClient};
use tonic::transport::Channel;

use super::{channel, Berthd};

/// A bridge and subnet no other test process uses at the same time.
pub struct TestNet {
    pub index: u32,
    pub bridge: String,
    pub conf_dir: PathBuf,
}

impl TestNet {
    pub fn new(dir: &Path, plugins_extra: &str) -> TestNet {
        let index = next_index();
        let bridge = format!("bt{index}");
        let conf_dir = dir.join("net.d");
        std::fs::create_dir_all(&conf_dir).unwrap();
        let conf = format!(
            r#"{{"cniVersion":"1.0.0","name":"berth-test-{index}","plugins":[
                {{"type":"bridge","bridge":"{bridge}","isGateway":true,"ipMasq":false,
                  "ipam":{{"type":"host-local","ranges":[[{{"subnet":"10.213.{index}.0/24"}}]],"dataDir":"{}"}}}}{plugins_extra}]}}"#,
            dir.join("ipam").display()
        );
        std::fs::write(conf_dir.join("10-test.conflist"), conf).unwrap();
        TestNet { index, bridge, conf_dir }
    }

    pub fn subnet_prefix(&self) -> String {
        format!("10.213.{}.", self.index)
    }
}

impl Drop for TestNet {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["link", "del", &self.bridge]).output();
    }
}

/// 1..=250, shared by every test process through a locked counter file.
fn next_index() -> u32 {
    let path = std::env::temp_dir().join("berth-test-net-counter");
    let mut f = std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path).unwrap();
    nix::fcntl::Flock::lock(f.try_clone().unwrap(), nix::fcntl::FlockArg::LockExclusive)
        .map(|lock| {
            let mut text = String::new();
            f.read_to_string(&mut text).unwrap();
            let n = text.trim().parse::<u32>().unwrap_or(0) % 250 + 1;
            f.set_len(0).unwrap();
            f.rewind().unwrap();
            write!(f, "{n}").unwrap();
            drop(lock);
            n
        })
        .unwrap()
}

pub struct Node {
    pub berthd: Berthd,
    pub registry: berth_testkit::Registry,
    pub net: TestNet,
    pub rt: RuntimeServiceClient<Channel>,
    pub img: ImageServiceClient<Channel>,
    pub image: String,
    pub cgroup_parent: String,
    pub logs: PathBuf,
    torn_down: bool,
    _work: tempfile::TempDir,
}

impl Node {
    pub async fn start() -> Node {
        Self::start_with("", "").await
    }

    /// `extra_config`: more berthd config lines; `plugins_extra`: more CNI
    /// plugins after the bridge (JSON, starting with a comma).
    pub async fn start_with(extra_config: &str, plugins_extra: &str) -> Node {
        assert!(nix::unistd::geteuid().is_root(), "run as root (README)");
        let registry = berth_testkit::Registry::start();
        let work = tempfile::tempdir().unwrap();
        berth_testkit::build_and_push(&registry, work.path(), "pods/busybox:1", None);
        let netdir = work.path().join("net");
        let net = TestNet::new(&netdir, plugins_extra);
        let config = format!(
            "{extra_config}\ndefault_cgroup_parent = \"/berth-test-{pid}-{idx}\"\n[registry]\ninsecure = [\"{host}\"]\n[cni]\nconf_dir = \"{conf}\"\n",
            pid = std::process::id(),
            idx = net.index,
            host = registry.host(),
            conf = net.conf_dir.display()
        );
        let berthd = Berthd::start(&config);
        let ch = channel(&berthd.socket).await;
        let (rt, mut img) = (RuntimeServiceClient::new(ch.clone()), ImageServiceClient::new(ch));
        let image = format!("{}/pods/busybox:1", registry.host());
        img.pull_image(v1::PullImageRequest { image: Some(v1::ImageSpec { image: image.clone(), ..Default::default() }), ..Default::default() }).await.unwrap();
        let logs = berthd.dir.path().join("logs");
        let cgroup_parent = format!("/berth-test-{}-{}", std::process::id(), net.index);
        Node { berthd, registry, net, rt, img, image, cgroup_parent, logs, torn_down: false, _work: work }
    }

    /// A pod config as the kubelet sends it (metadata, log dir, hostname,
    /// cgroup parent).
    pub fn pod_config(&self, name: &str) -> v1::PodSandboxConfig {
        pod_config_for(name, &self.logs, &self.cgroup_parent)
    }

    pub fn container_config(&self, name: &str, cmd: &[&str]) -> v1::ContainerConfig {
        container_config_for(name, &self.image, cmd)
    }

    /// The pod's IP address, from PodSandboxStatus.
    pub async fn pod_ip(&mut self, pod_id: &str) -> String {
        let request = v1::PodSandboxStatusRequest { pod_sandbox_id: pod_id.into(), verbose: false };
        let status = self.rt.pod_sandbox_status(request).await.unwrap().into_inner().status.unwrap();
        status.network.expect("the pod's network status").ip
    }

    pub async fn run_pod(&mut self, name: &str) -> (String, v1::PodSandboxConfig) {
        let config = self.pod_config(name);
        self.run_pod_with(config).await
    }

    /// RunPodSandbox with a config the test shaped.
    pub async fn run_pod_with(&mut self, config: v1::PodSandboxConfig) -> (String, v1::PodSandboxConfig) {
        let id = self
            .rt
            .run_pod_sandbox(v1::RunPodSandboxRequest { config: Some(config.clone()), runtime_handler: String::new() })
            .await
            .unwrap()
            .into_inner()
            .pod_sandbox_id;
        (id, config)
    }

    pub async fn create(&mut self, pod: &(String, v1::PodSandboxConfig), config: v1::ContainerConfig) -> Result<String, tonic::Status> {
        let req = v1::CreateContainerRequest { pod_sandbox_id: pod.0.clone(), config: Some(config), sandbox_config: Some(pod.1.clone()) };
        self.rt.create_container(req).await.map(|r| r.into_inner().container_id)
    }

    /// Create + Start.
    pub async fn run(&mut self, pod: &(String, v1::PodSandboxConfig), name: &str, cmd: &[&str]) -> String {
        let id = self.create(pod, self.container_config(name, cmd)).await.unwrap();
        self.rt.start_container(v1::StartContainerRequest { container_id: id.clone() }).await.unwrap();
        id
    }

    pub async fn exec(&mut self, id: &str, cmd: &[&str], timeout: i64) -> Result<v1::ExecSyncResponse, tonic::Status> {
        super::cri_calls::exec_sync(&mut self.rt, id, cmd, timeout).await
    }

    pub async fn status(&mut self, id: &str) -> v1::ContainerStatus {
        super::cri_calls::container_status(&mut self.rt, id).await
    }

    /// Polls until the container has exited.
    pub async fn wait_exited(&mut self, id: &str, within: Duration) -> v1::ContainerStatus {
        super::cri_calls::wait_exited(&mut self.rt, id, within, String::new).await
    }

    /// The log lines' messages (CRI format: time stream tag message).
    pub fn log_lines(&self, pod: &str, container: &str) -> Vec<String> {
        let text = std::fs::read_to_string(self.logs.join(pod).join(format!("{container}.log"))).unwrap_or_default();
        text.lines().map(|l| l.splitn(4, ' ').nth(3).unwrap_or("").to_string()).collect()
    }

    /// Removes every pod through the CRI, then checks nothing is left: no
    /// mount, pinned namespace, cgroup or shim of this berthd.
    pub async fn teardown(mut self) {
        let pods = self.rt.list_pod_sandbox(v1::ListPodSandboxRequest::default()).await.unwrap().into_inner().items;
        for p in pods {
            self.rt.stop_pod_sandbox(v1::StopPodSandboxRequest { pod_sandbox_id: p.id.clone() }).await.unwrap();
            self.rt.remove_pod_sandbox(v1::RemovePodSandboxRequest { pod_sandbox_id: p.id }).await.unwrap();
        }
        assert!(self.rt.list_containers(v1::ListContainersRequest::default()).await.unwrap().into_inner().containers.is_empty());
        let dir = self.berthd.dir.path().display().to_string();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let mounts: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo").unwrap().lines().filter(|l| l.contains(&dir)).map(String::from).collect();
            let shims = std::fs::read_dir(self.berthd.dir.path().join("state/s")).map(|d| d.count()).unwrap_or(0);
            if mounts.is_empty() && shims == 0 {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "left behind: mounts {mounts:?}, {shims} shim sockets");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Every hierarchy of this host (v1 controllers, named ones, cgroup2).
        for parent in berth_testkit::cgroups::HostCgroup::new(&self.cgroup_parent).dirs() {
            let leftovers = leaf_cgroups(&parent);
            assert!(leftovers.is_empty(), "container cgroups left: {leftovers:?}");
        }
        berth_testkit::remove_cgroup_everywhere(&self.cgroup_parent);
        let ns_dir = self.berthd.dir.path().join("state/sandboxes");
        assert_eq!(std::fs::read_dir(&ns_dir).map(|d| d.count()).unwrap_or(0), 0, "pod state left in {}", ns_dir.display());
        self.torn_down = true;
    }
}

impl Drop for Node {
    /// A test that failed before `teardown` must not leave its workloads
    /// running on the machine: kill the containers (by cgroup) and the
    /// shims (by their socket path), and unmount what they held.
    fn drop(&mut self) {
        if self.torn_down {
            return;
        }
        let _ = self.berthd.child.kill();
        let _ = self.berthd.child.wait();
        let dir = self.berthd.dir.path().display().to_string();
        for parent in berth_testkit::cgroups::HostCgroup::new(&self.cgroup_parent).dirs() {
            kill_cgroup_tree(&parent);
        }
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else { continue };
            let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            if String::from_utf8_lossy(&cmdline).contains(&dir) {
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
            }
        }
        std::thread::sleep(Duration::from_millis(200));
        let mounts: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split(' ').nth(4).filter(|m| m.starts_with(&dir)).map(String::from))
            .collect();
        for m in mounts.iter().rev() {
            let _ = nix::mount::umount2(m.as_str(), nix::mount::MntFlags::MNT_DETACH);
        }
        berth_testkit::remove_cgroup_everywhere(&self.cgroup_parent);
    }
}

/// A pod config as the kubelet sends it (metadata, log dir under `logs`,
/// hostname, cgroup parent under `cgroup_parent`).
pub fn pod_config_for(name: &str, logs: &Path, cgroup_parent: &str) -> v1::PodSandboxConfig {
    v1::PodSandboxConfig {
        metadata: Some(v1::PodSandboxMetadata { name: name.into(), uid: format!("uid-{name}"), namespace: "test".into(), attempt: 0 }),
        hostname: name.into(),
        log_directory: logs.join(name).display().to_string(),
        labels: HashMap::from([("app".to_string(), name.to_string())]),
        linux: Some(v1::LinuxPodSandboxConfig {
            cgroup_parent: format!("{cgroup_parent}/{name}"),
            // What the kubelet sends for a pod without shareProcessNamespace.
            security_context: Some(v1::LinuxSandboxSecurityContext {
                namespace_options: Some(v1::NamespaceOption { pid: v1::NamespaceMode::Container as i32, ..Default::default() }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A container config as the kubelet sends it, running `cmd` in `image`.
pub fn container_config_for(name: &str, image: &str, cmd: &[&str]) -> v1::ContainerConfig {
    v1::ContainerConfig {
        metadata: Some(v1::ContainerMetadata { name: name.into(), attempt: 0 }),
        image: Some(v1::ImageSpec { image: image.into(), ..Default::default() }),
        command: cmd.iter().map(|s| s.to_string()).collect(),
        log_path: format!("{name}.log"),
        labels: HashMap::from([("container".to_string(), name.to_string())]),
        linux: Some(v1::LinuxContainerConfig {
            security_context: Some(v1::LinuxContainerSecurityContext {
                namespace_options: Some(v1::NamespaceOption { pid: v1::NamespaceMode::Container as i32, ..Default::default() }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub fn kill_cgroup_tree(dir: &Path) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.path().is_dir() {
            kill_cgroup_tree(&e.path());
        }
    }
    for pid in std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default().lines().filter_map(|l| l.parse::<i32>().ok()) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
    }
}

/// Container cgroups (depth 2 under the test parent: pod/container).
pub fn leaf_cgroups(parent: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for pod in std::fs::read_dir(parent).into_iter().flatten().flatten().filter(|e| e.path().is_dir()) {
        for c in std::fs::read_dir(pod.path()).into_iter().flatten().flatten().filter(|e| e.path().is_dir()) {
            out.push(c.path());
        }
    }
    out
}
