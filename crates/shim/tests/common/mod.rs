//! Test harness: a real berth-shim on a temp dir, a busybox rootfs, and a
//! ttrpc client. Every helper has a timeout; `Drop` tears everything down
//! so a failing test leaves nothing behind either.

#![allow(dead_code)]

use std::{
    fs,
    os::unix::fs::symlink,
    path::{Path, PathBuf},
    process::Command,
    sync::OnceLock,
    time::{Duration, Instant},
};

use containerd_shim_protos::{
    api,
    protobuf::{well_known_types::any::Any, MessageField},
    ttrpc::{self, context},
    TaskClient,
};
use oci_spec::runtime::Spec;

pub const BUSYBOX: &str = "/bin/busybox";
const RPC_TIMEOUT: Duration = Duration::from_secs(30);

pub fn require_root() {
    assert!(nix::unistd::geteuid().is_root(), "these tests create namespaces, mounts and cgroups: run them as root (README)");
    assert!(Path::new(BUSYBOX).exists(), "{BUSYBOX} missing: install busybox-static (hack/setup.sh)");
}

/// A rootfs with busybox and its applets as symlinks, built once under
/// the target dir and shared read-only by every test (tests that write use
/// an overlay, a tmpfs or a bind mount).
pub fn busybox_rootfs() -> &'static Path {
    static ROOTFS: OnceLock<PathBuf> = OnceLock::new();
    ROOTFS.get_or_init(|| {
        let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join("busybox-rootfs");
        if root.join("bin/sh").exists() {
            return root;
        }
        // Build beside it and rename: concurrent test processes race here.
        let staging = root.with_extension(format!("tmp{}", std::process::id()));
        let _ = fs::remove_dir_all(&staging);
        for d in ["bin", "etc", "tmp", "proc", "sys", "dev", "root", "var"] {
            fs::create_dir_all(staging.join(d)).unwrap();
        }
        fs::copy(BUSYBOX, staging.join("bin/busybox")).unwrap();
        let list = Command::new(BUSYBOX).arg("--list").output().unwrap();
        for applet in String::from_utf8_lossy(&list.stdout).lines() {
            if applet != "busybox" {
                let _ = symlink("busybox", staging.join("bin").join(applet));
            }
        }
        fs::write(staging.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n").unwrap();
        fs::write(staging.join("etc/group"), "root:x:0:\nnogroup:x:65534:\n").unwrap();
        fs::set_permissions(staging.join("tmp"), std::os::unix::fs::PermissionsExt::from_mode(0o1777)).unwrap();
        if fs::rename(&staging, &root).is_err() {
            // Another process won the race; its rootfs is as good as ours.
            let _ = fs::remove_dir_all(&staging);
        }
        root
    })
}

/// The spec tests start from: berth's defaults, the RuntimeDefault seccomp
/// profile, and a cgroup of its own.
pub fn spec(id: &str, args: &[&str]) -> Spec {
    let mut spec = berth_oci::spec::default_spec(busybox_rootfs().to_str().unwrap(), args);
    let linux = spec.linux_mut().as_mut().unwrap();
    linux.set_cgroups_path(Some(PathBuf::from(format!("/berth-test/{id}"))));
    let caps: Vec<String> = berth_oci::spec::DEFAULT_CAPABILITIES.iter().map(|s| s.to_string()).collect();
    linux.set_seccomp(Some(berth_oci::seccomp::runtime_default(&caps)));
    spec
}

/// Names another build of the shim to test (see `shim_binary`).
pub const SHIM_BIN_ENV: &str = "BERTH_SHIM_BIN";

/// The shim under test: this build's, or `BERTH_SHIM_BIN` (to measure
/// another build, e.g. a release binary, with the same harness).
pub fn shim_binary() -> PathBuf {
    std::env::var_os(SHIM_BIN_ENV).map(PathBuf::from).unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_berth-shim")))
}

pub struct Shim {
    pub id: String,
    pub dir: tempfile::TempDir,
    pub bundle: PathBuf,
    pub socket: PathBuf,
    pub client: TaskClient,
    pub shim_pid: i32,
    pub log: PathBuf,
    deleted: bool,
}

impl Shim {
    /// Starts a shim for container `name` (made unique per process).
    pub fn start(name: &str) -> Shim {
        Self::start_binary(name, &shim_binary())
    }

    /// As `start`, with the shim executable at `binary`.
    pub fn start_binary(name: &str, binary: &Path) -> Shim {
        require_root();
        let id = format!("{name}-{}", std::process::id());
        let dir = tempfile::Builder::new().prefix("berth-shim-test").tempdir().unwrap();
        let bundle = dir.path().join("bundle");
        fs::create_dir_all(&bundle).unwrap();
        let socket = dir.path().join("shim.sock");
        let out =
            Command::new(binary).args(["start", "--id", &id, "--socket", socket.to_str().unwrap(), "--bundle", bundle.to_str().unwrap()]).output().unwrap();
        assert!(out.status.success(), "shim start: {}", String::from_utf8_lossy(&out.stderr));
        let address = String::from_utf8(out.stdout).unwrap().trim().to_string();
        assert_eq!(address, format!("unix://{}", socket.display()));
        let client = TaskClient::new(ttrpc::Client::connect(&address).unwrap());
        let log = dir.path().join("logs/0.log");
        let mut shim = Shim { id, dir, bundle, socket, client, shim_pid: 0, log, deleted: false };
        shim.shim_pid = shim.connect().shim_pid as i32;
        shim
    }

    pub fn ctx() -> context::Context {
        context::with_timeout(RPC_TIMEOUT.as_nanos() as i64)
    }

    pub fn connect(&self) -> api::ConnectResponse {
        let req = api::ConnectRequest { id: self.id.clone(), ..Default::default() };
        self.client.connect(Self::ctx(), &req).unwrap()
    }

    pub fn write_spec(&self, spec: &Spec) {
        fs::write(self.bundle.join("config.json"), serde_json::to_vec_pretty(spec).unwrap()).unwrap();
    }

    pub fn create_request(&self) -> api::CreateTaskRequest {
        let log = format!("cri-log://{}", self.log.display());
        api::CreateTaskRequest { id: self.id.clone(), bundle: self.bundle.display().to_string(), stdout: log.clone(), stderr: log, ..Default::default() }
    }

    /// Writes a spec of `args` with a terminal and returns the Create
    /// request for it (a pty carries stdout and stderr both).
    pub fn terminal_request(&self, args: &[&str]) -> api::CreateTaskRequest {
        let mut spec = spec(&self.id, args);
        spec.process_mut().as_mut().unwrap().set_terminal(Some(true));
        self.write_spec(&spec);
        let mut req = self.create_request();
        req.terminal = true;
        req.stderr = String::new();
        req
    }

    pub fn create(&self, spec: &Spec) -> ttrpc::Result<u32> {
        self.write_spec(spec);
        self.client.create(Self::ctx(), &self.create_request()).map(|r| r.pid)
    }

    pub fn start_task(&self, exec_id: &str) -> ttrpc::Result<u32> {
        let req = api::StartRequest { id: self.id.clone(), exec_id: exec_id.into(), ..Default::default() };
        self.client.start(Self::ctx(), &req).map(|r| r.pid)
    }

    /// Create + Start.
    pub fn run(&self, spec: &Spec) -> u32 {
        self.create(spec).unwrap();
        self.start_task("").unwrap()
    }

    pub fn wait(&self, exec_id: &str) -> u32 {
        let req = api::WaitRequest { id: self.id.clone(), exec_id: exec_id.into(), ..Default::default() };
        self.client.wait(Self::ctx(), &req).unwrap().exit_status
    }

    pub fn state(&self, exec_id: &str) -> api::StateResponse {
        let req = api::StateRequest { id: self.id.clone(), exec_id: exec_id.into(), ..Default::default() };
        self.client.state(Self::ctx(), &req).unwrap()
    }

    pub fn kill(&self, exec_id: &str, signal: u32, all: bool) -> ttrpc::Result<()> {
        let req = api::KillRequest { id: self.id.clone(), exec_id: exec_id.into(), signal, all, ..Default::default() };
        self.client.kill(Self::ctx(), &req).map(drop)
    }

    pub fn delete(&mut self) -> ttrpc::Result<api::DeleteResponse> {
        let req = api::DeleteRequest { id: self.id.clone(), ..Default::default() };
        let r = self.client.delete(Self::ctx(), &req);
        if r.is_ok() {
            self.deleted = true;
        }
        r
    }

    pub fn exec(&self, exec_id: &str, args: &[&str], stdout: &Path) -> ttrpc::Result<()> {
        let process = berth_oci::spec::default_spec("/", args).process().clone().unwrap();
        let spec = Any {
            type_url: "types.containerd.io/opencontainers/runtime-spec/1/Process".into(),
            value: serde_json::to_vec(&process).unwrap(),
            ..Default::default()
        };
        let req = api::ExecProcessRequest {
            id: self.id.clone(),
            exec_id: exec_id.into(),
            stdout: stdout.display().to_string(),
            stderr: stdout.display().to_string(),
            spec: MessageField::some(spec),
            ..Default::default()
        };
        self.client.exec(Self::ctx(), &req).map(drop)
    }

    /// The CRI log as (stream, tag, text) records.
    pub fn log_records(&self) -> Vec<(String, String, String)> {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        text.lines()
            .map(|l| {
                let mut it = l.splitn(4, ' ');
                let _ts = it.next();
                (it.next().unwrap_or("").into(), it.next().unwrap_or("").into(), it.next().unwrap_or("").into())
            })
            .collect()
    }

    pub fn log_text(&self) -> String {
        self.log_records().into_iter().map(|r| r.2).collect::<Vec<_>>().join("\n")
    }

    /// The container's cgroup (`berth-test/<id>` in the test specs) in
    /// whatever hierarchies this host has.
    pub fn cgroup(&self) -> berth_testkit::cgroups::HostCgroup {
        berth_testkit::cgroups::HostCgroup::new(&format!("berth-test/{}", self.id))
    }

    /// Stops and deletes the container, then asserts that nothing of it is
    /// left: shim process, container processes, cgroup, mounts, socket.
    pub fn delete_and_assert_clean(mut self, container_pid: u32) {
        let _ = self.kill("", 9, true);
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.delete().is_err() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(self.deleted, "delete kept failing");
        self.assert_clean(container_pid);
    }

    pub fn assert_clean(&self, container_pid: u32) {
        wait_until("shim exits", || !alive(self.shim_pid));
        assert!(!self.socket.exists(), "shim socket left behind");
        if container_pid > 0 {
            assert!(!alive(container_pid as i32), "container process {container_pid} still alive");
        }
        let left = self.cgroup().existing_dirs();
        assert!(left.is_empty(), "cgroup left behind: {left:?}");
        let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap();
        let dir = self.dir.path().display().to_string();
        assert!(!mounts.contains(&dir), "mount under {dir} left behind");
    }
}

impl Drop for Shim {
    fn drop(&mut self) {
        if !self.deleted {
            let _ = self.kill("", 9, true);
            std::thread::sleep(Duration::from_millis(50));
            let _ = self.delete();
            let req = api::ShutdownRequest { id: self.id.clone(), now: true, ..Default::default() };
            let _ = self.client.shutdown(Self::ctx(), &req);
        }
    }
}

pub fn alive(pid: i32) -> bool {
    // A zombie counts as gone: only its parent can reap it.
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat.rsplit(')').next().unwrap_or("").trim_start().starts_with('Z'),
        Err(_) => false,
    }
}

pub fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

pub fn code(e: &ttrpc::Error) -> (ttrpc::Code, String) {
    match e {
        ttrpc::Error::RpcStatus(s) => (s.code(), s.message().to_string()),
        other => (ttrpc::Code::UNKNOWN, other.to_string()),
    }
}
