//! The systemd cgroup driver against a real systemd: berthd runs as the
//! `Type=notify` service of deploy/systemd/berthd.service inside a Debian
//! root booted by systemd-nspawn (berth_testkit::systemd), with
//! `cgroup_driver = "systemd"`, and the test drives it through the CRI
//! socket from the host, as a kubelet with `cgroupDriver: systemd` would.

mod common;

use std::{collections::HashMap, path::Path, time::Duration};

use berth_testkit::systemd::{MachineOptions, SystemdMachine};
use common::{channel, node::TestNet, shim_binary};
use k8s_cri::v1::{self, image_service_client::ImageServiceClient, runtime_service_client::RuntimeServiceClient};
use tonic::{transport::Channel, Code};

/// What the kubelet sends for a Burstable pod under the systemd driver.
const POD_SLICE: &str = "kubepods-burstable-podsdtest.slice";

struct SystemdNode {
    machine: SystemdMachine,
    rt: RuntimeServiceClient<Channel>,
    img: ImageServiceClient<Channel>,
    image: String,
    work: tempfile::TempDir,
    _registry: berth_testkit::Registry,
    _net: TestNet,
}

impl SystemdNode {
    async fn start() -> SystemdNode {
        let registry = berth_testkit::Registry::start();
        let work = tempfile::tempdir().unwrap();
        berth_testkit::build_and_push(&registry, work.path(), "sd/busybox:1", None);
        let net = TestNet::new(&work.path().join("net"), "");
        let bin_dir = Path::new(env!("CARGO_BIN_EXE_berthd")).parent().unwrap().to_path_buf();
        // The shim under test may live elsewhere (BERTH_SHIM_BIN: the
        // statically linked one); its directory goes in too.
        let shim = shim_binary();
        let shim_dir = shim.parent().unwrap().to_path_buf();
        // Host paths keep their names inside, so configs written here work there.
        let mut options = MachineOptions::new()
            .bind_ro(&bin_dir, &bin_dir)
            .bind_rw(work.path(), work.path())
            .bind_ro("/usr/lib/cni", "/usr/lib/cni")
            .scratch("/var/lib/berth");
        if shim_dir != bin_dir {
            options = options.bind_ro(&shim_dir, &shim_dir);
        }
        let machine = SystemdMachine::boot(options);
        machine.wait_running(Duration::from_secs(60));
        let config = format!(
            "socket = \"{w}/b.sock\"\ncgroup_driver = \"systemd\"\nlog_level = \"debug\"\nshim_binary = \"{s}\"\n[registry]\ninsecure = [\"{r}\"]\n[cni]\nconf_dir = \"{c}\"\n",
            w = work.path().display(),
            s = shim.display(),
            r = registry.host(),
            c = net.conf_dir.display()
        );
        std::fs::write(work.path().join("config.toml"), config).unwrap();
        // The project's own unit, pointed at this build.
        let unit = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/systemd/berthd.service")).unwrap();
        let exec_start = format!("ExecStart={} --config {}/config.toml", bin_dir.join("berthd").display(), work.path().display());
        let unit = unit.replace("ExecStart=/usr/bin/berthd", &exec_start);
        assert!(unit.contains(&exec_start), "the unit's ExecStart line moved");
        machine.start_service("berthd.service", &unit).unwrap_or_else(|e| panic!("{e}"));
        // Type=notify: systemctl start returned, so READY=1 came, so the socket serves.
        let ch = channel(&work.path().join("b.sock")).await;
        let (rt, mut img) = (RuntimeServiceClient::new(ch.clone()), ImageServiceClient::new(ch));
        let image = format!("{}/sd/busybox:1", registry.host());
        let pulled =
            img.pull_image(v1::PullImageRequest { image: Some(v1::ImageSpec { image: image.clone(), ..Default::default() }), ..Default::default() }).await;
        if let Err(e) = pulled {
            panic!("pull {image}: {e}\n--- berthd's journal\n{}", machine.exec_ok(&["journalctl", "--no-pager", "-u", "berthd.service", "-n", "40"]));
        }
        SystemdNode { machine, rt, img, image, work, _registry: registry, _net: net }
    }

    fn pod_config(&self, name: &str, parent: &str) -> v1::PodSandboxConfig {
        v1::PodSandboxConfig {
            metadata: Some(v1::PodSandboxMetadata { name: name.into(), uid: format!("uid-{name}"), namespace: "test".into(), attempt: 0 }),
            log_directory: self.work.path().join("logs").join(name).display().to_string(),
            linux: Some(v1::LinuxPodSandboxConfig { cgroup_parent: parent.into(), ..Default::default() }),
            ..Default::default()
        }
    }

    async fn run_pod(&mut self, config: &v1::PodSandboxConfig) -> String {
        let request = v1::RunPodSandboxRequest { config: Some(config.clone()), runtime_handler: String::new() };
        self.rt.run_pod_sandbox(request).await.unwrap().into_inner().pod_sandbox_id
    }

    fn container_config(&self, name: &str, cmd: &[&str], resources: Option<v1::LinuxContainerResources>) -> v1::ContainerConfig {
        v1::ContainerConfig {
            metadata: Some(v1::ContainerMetadata { name: name.into(), attempt: 0 }),
            image: Some(v1::ImageSpec { image: self.image.clone(), ..Default::default() }),
            command: cmd.iter().map(|s| s.to_string()).collect(),
            log_path: format!("{name}.log"),
            linux: Some(v1::LinuxContainerConfig { resources, ..Default::default() }),
            ..Default::default()
        }
    }

    /// `systemctl show UNIT` as a map of the properties asked for.
    fn unit(&self, unit: &str, properties: &[&str]) -> HashMap<String, String> {
        let mut argv = vec!["systemctl", "show", unit];
        let props: Vec<String> = properties.iter().map(|p| format!("--property={p}")).collect();
        argv.extend(props.iter().map(String::as_str));
        let text = self.machine.exec_ok(&argv);
        text.lines().filter_map(|l| l.split_once('=')).map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    /// A cgroup file as the machine sees it (`/sys/fs/cgroup/<controller><cgroup>/<file>`).
    fn cgroup_file(&self, controller: &str, cgroup: &str, file: &str) -> String {
        self.machine.exec_ok(&["cat", &format!("/sys/fs/cgroup/{controller}{cgroup}/{file}")]).trim().to_string()
    }

    /// Waits until systemd no longer knows `unit` (a scope goes once its
    /// last process exits).
    async fn wait_unit_gone(&self, unit: &str, why: &str) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while self.unit(unit, &["LoadState"])["LoadState"] != "not-found" {
            assert!(std::time::Instant::now() < deadline, "{unit} still loaded: {why}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn cgroup_dir_exists(&self, controller: &str, cgroup: &str) -> bool {
        self.machine.exec(&["test", "-d", &format!("/sys/fs/cgroup/{controller}{cgroup}")]).status.success()
    }

    async fn container_pid(&mut self, id: &str) -> u32 {
        let info = self.rt.container_status(v1::ContainerStatusRequest { container_id: id.into(), verbose: true }).await.unwrap().into_inner().info;
        serde_json::from_str::<serde_json::Value>(&info["info"]).unwrap()["pid"].as_u64().unwrap() as u32
    }
}

#[tokio::test]
async fn containers_run_in_transient_scopes_of_the_pods_slice() {
    let mut node = SystemdNode::start().await;
    let config = node.rt.runtime_config(v1::RuntimeConfigRequest::default()).await.unwrap().into_inner();
    assert_eq!(config.linux.unwrap().cgroup_driver, v1::CgroupDriver::Systemd as i32);

    // A pod in the kubelet's slice, a container with limits.
    let pod_config = node.pod_config("web", POD_SLICE);
    let pod = node.run_pod(&pod_config).await;
    let resources =
        v1::LinuxContainerResources { memory_limit_in_bytes: 64 << 20, cpu_shares: 512, cpu_quota: 50_000, cpu_period: 100_000, ..Default::default() };
    let create = v1::CreateContainerRequest {
        pod_sandbox_id: pod.clone(),
        config: Some(node.container_config("app", &["sleep", "1000"], Some(resources))),
        sandbox_config: Some(pod_config.clone()),
    };
    let id = node.rt.create_container(create).await.unwrap().into_inner().container_id;
    node.rt.start_container(v1::StartContainerRequest { container_id: id.clone() }).await.unwrap();

    let scope = format!("berth-{id}.scope");
    let unit = node.unit(&scope, &["ActiveState", "Slice", "Delegate", "MemoryLimit", "CPUShares", "CPUQuotaPerSecUSec", "ControlGroup"]);
    assert_eq!(unit["ActiveState"], "active", "{unit:?}");
    assert_eq!(unit["Slice"], POD_SLICE);
    assert_eq!(unit["Delegate"], "yes");
    assert_eq!(unit["MemoryLimit"], (64u64 << 20).to_string());
    assert_eq!(unit["CPUShares"], "512");
    assert_eq!(unit["CPUQuotaPerSecUSec"], "500ms");
    let cgroup = unit["ControlGroup"].clone();
    assert_eq!(cgroup, format!("/kubepods.slice/kubepods-burstable.slice/{POD_SLICE}/{scope}"));
    // The limits are in force, in the controllers systemd manages and in
    // those it leaves to berth (cpuset, freezer: the same path).
    assert_eq!(node.cgroup_file("memory", &cgroup, "memory.limit_in_bytes"), (64u64 << 20).to_string());
    assert_eq!(node.cgroup_file("cpu", &cgroup, "cpu.cfs_quota_us"), "50000");
    let pid = node.container_pid(&id).await;
    let placed = node.machine.exec_ok(&["cat", &format!("/proc/{pid}/cgroup")]);
    for controller in ["memory", "cpuset", "freezer", "pids", "name=systemd"] {
        let line = placed.lines().find(|l| l.split(':').nth(1).is_some_and(|c| c.split(',').any(|c| c == controller)));
        assert_eq!(line.and_then(|l| l.splitn(3, ':').nth(2)), Some(cgroup.as_str()), "{controller} in {placed}");
    }
    // The container's shim has a scope of its own, outside berthd.service.
    let shim = node.unit(&format!("berth-shim-{id}.scope"), &["ActiveState", "Slice"]);
    assert_eq!((shim["ActiveState"].as_str(), shim["Slice"].as_str()), ("active", "system.slice"), "{shim:?}");

    // UpdateContainerResources goes to the unit and to the files.
    let update = v1::LinuxContainerResources { memory_limit_in_bytes: 96 << 20, ..Default::default() };
    node.rt
        .update_container_resources(v1::UpdateContainerResourcesRequest { container_id: id.clone(), linux: Some(update), ..Default::default() })
        .await
        .unwrap();
    assert_eq!(node.unit(&scope, &["MemoryLimit"])["MemoryLimit"], (96u64 << 20).to_string());
    assert_eq!(node.cgroup_file("memory", &cgroup, "memory.limit_in_bytes"), (96u64 << 20).to_string());

    // Restarting the service (KillMode=process) keeps the container, and
    // the new berthd finds it.
    node.machine.exec_ok(&["systemctl", "restart", "berthd.service"]);
    let ch = channel(&node.work.path().join("b.sock")).await;
    node.rt = RuntimeServiceClient::new(ch.clone());
    node.img = ImageServiceClient::new(ch);
    let status = node.rt.container_status(v1::ContainerStatusRequest { container_id: id.clone(), verbose: false }).await.unwrap().into_inner().status.unwrap();
    assert_eq!(status.state, v1::ContainerState::ContainerRunning as i32);
    let exec = node
        .rt
        .exec_sync(v1::ExecSyncRequest { container_id: id.clone(), cmd: vec!["cat".into(), "/proc/self/cgroup".into()], timeout: 10 })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(exec.exit_code, 0);
    assert!(
        String::from_utf8_lossy(&exec.stdout).lines().any(|l| l.contains(":memory:")),
        "an exec joins the scope's cgroup: {}",
        String::from_utf8_lossy(&exec.stdout)
    );
    assert_eq!(node.unit(&scope, &["ActiveState"])["ActiveState"], "active");

    // Pod removal stops the scopes; systemd removes their cgroups.
    node.rt.stop_pod_sandbox(v1::StopPodSandboxRequest { pod_sandbox_id: pod.clone() }).await.unwrap();
    node.rt.remove_pod_sandbox(v1::RemovePodSandboxRequest { pod_sandbox_id: pod.clone() }).await.unwrap();
    assert_eq!(node.unit(&scope, &["LoadState"])["LoadState"], "not-found");
    for controller in ["memory", "cpuset", "freezer", "systemd"] {
        assert!(!node.cgroup_dir_exists(controller, &cgroup), "{controller} cgroup of the container left");
    }
    node.wait_unit_gone(&format!("berth-shim-{id}.scope"), "the shim's scope outlived the container").await;
}

#[tokio::test]
async fn parents_that_do_not_fit_and_units_systemd_refuses() {
    let mut node = SystemdNode::start().await;
    // A cgroupfs parent under the systemd driver names the field and the driver.
    let bad = node.pod_config("bad", "/kubepods/burstable/podbad");
    let err = node.rt.run_pod_sandbox(v1::RunPodSandboxRequest { config: Some(bad), runtime_handler: String::new() }).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("config.linux.cgroup_parent") && err.message().contains("systemd"), "{}", err.message());

    // A scope of the container's name exists already (say, left by another
    // runtime): systemd refuses berth's, in its own words, and berth leaves
    // the other scope alone and nothing of its own behind.
    let pod_config = node.pod_config("clash", POD_SLICE);
    let pod = node.run_pod(&pod_config).await;
    let create = v1::CreateContainerRequest {
        pod_sandbox_id: pod.clone(),
        config: Some(node.container_config("c", &["sleep", "1000"], None)),
        sandbox_config: Some(pod_config),
    };
    let id = node.rt.create_container(create).await.unwrap().into_inner().container_id;
    let scope = format!("berth-{id}.scope");
    node.machine.exec_ok(&[
        "systemd-run",
        "--unit",
        &scope.replace(".scope", ".service"),
        "--slice",
        POD_SLICE,
        "--",
        "sh",
        "-c",
        &format!("exec systemd-run --scope --unit {scope} --slice {POD_SLICE} sleep 600"),
    ]);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while node.unit(&scope, &["ActiveState"])["ActiveState"] != "active" {
        assert!(std::time::Instant::now() < deadline, "the blocking scope never started");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let err = node.rt.start_container(v1::StartContainerRequest { container_id: id.clone() }).await.unwrap_err();
    // systemd 252 says "Unit X was already loaded or has a fragment file."
    let words = format!("systemd refused unit {scope}: Unit {scope} was already loaded");
    assert!(err.message().contains(&words) && err.message().contains("org.freedesktop.systemd1.UnitExists"), "systemd's own words: {}", err.message());
    assert_eq!(node.unit(&scope, &["ActiveState"])["ActiveState"], "active", "the other scope is untouched");
    let status = node.rt.container_status(v1::ContainerStatusRequest { container_id: id.clone(), verbose: false }).await.unwrap().into_inner().status.unwrap();
    assert_eq!(status.reason, "StartError");
    node.wait_unit_gone(&format!("berth-shim-{id}.scope"), "the failed container's shim is gone").await;
    node.machine.exec_ok(&["systemctl", "stop", &scope]);
    let cgroup = format!("/kubepods.slice/kubepods-burstable.slice/{POD_SLICE}/{scope}");
    for controller in ["memory", "cpuset", "freezer", "hugetlb", "systemd"] {
        assert!(!node.cgroup_dir_exists(controller, &cgroup), "{controller} cgroup of the refused container left");
    }
    node.rt.remove_pod_sandbox(v1::RemovePodSandboxRequest { pod_sandbox_id: pod }).await.unwrap();
}

/// Start-up checks, on the test host itself: a driver that cannot work, or
/// a default parent of the other driver's form, stops berthd at once with
/// the reason.
#[test]
fn berthd_refuses_a_driver_that_cannot_work() {
    let dir = tempfile::tempdir().unwrap();
    let run = |extra: &str| {
        let config = dir.path().join("c.toml");
        std::fs::write(&config, format!("socket = \"{0}/b.sock\"\nroot = \"{0}/root\"\nstate = \"{0}/state\"\n{extra}\n", dir.path().display())).unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_berthd")).arg("--config").arg(&config).output().unwrap();
        assert!(!out.status.success(), "berthd started with {extra:?}");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let err = run("cgroup_driver = \"systemd\"\ndefault_cgroup_parent = \"/berth\"");
    assert!(err.contains("default_cgroup_parent \"/berth\" is not a systemd slice"), "{err}");
    let err = run("default_cgroup_parent = \"berth.slice\"");
    assert!(err.contains("default_cgroup_parent \"berth.slice\" is a systemd slice"), "{err}");
    // This project's test hosts do not run systemd as init.
    if !Path::new("/run/systemd/system").exists() {
        let err = run("cgroup_driver = \"systemd\"");
        assert!(err.contains("systemd is not this host's init") && err.contains("use cgroup_driver = \"cgroupfs\""), "{err}");
    }
}
