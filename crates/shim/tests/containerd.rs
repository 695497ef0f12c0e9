//! berth-shim run with containerd's shim v2 command line, by the test in
//! containerd's place (the whole path through a real containerd is in
//! tests/containerd_handler.rs): `start` with the bundle as
//! working directory, the Task API under containerd 1.6's service name
//! (`containerd.task.v2.Task`), and `delete` after the shim is gone.

mod common;

use std::{
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use common::{busybox_rootfs, require_root, shim_binary, spec};
use containerd_shim_protos::{
    api,
    protobuf::Message,
    ttrpc::{self, context},
};

const NAMESPACE: &str = "berth-test";

/// A bundle as containerd lays it out, and a containerd address of our own
/// (never served: the shim only uses it to name its socket).
struct Bundle {
    id: String,
    /// Holds the bundle (removed on drop).
    _dir: tempfile::TempDir,
    path: PathBuf,
    address: String,
}

impl Bundle {
    fn new(name: &str) -> Bundle {
        require_root();
        let id = format!("{name}-{}", std::process::id());
        let dir = tempfile::Builder::new().prefix("berth-ctd-shim").tempdir().unwrap();
        let path = dir.path().join(&id);
        std::fs::create_dir_all(path.join("rootfs")).unwrap();
        let address = dir.path().join("containerd.sock").display().to_string();
        Bundle { id, _dir: dir, path, address }
    }

    /// `containerd-shim-berth-v2 -namespace .. -address .. -publish-binary .. -id ID [more] ACTION`,
    /// in the bundle, as containerd runs it.
    fn shim(&self, more: &[&str], action: &str) -> Output {
        self.shim_with_env(&[], more, action)
    }

    fn shim_with_env(&self, env: &[(&str, &str)], more: &[&str], action: &str) -> Output {
        let out = Command::new(shim_binary())
            .envs(env.iter().copied())
            .args(["-namespace", NAMESPACE, "-address", &self.address, "-publish-binary", "/usr/bin/containerd", "-id", &self.id])
            .args(more)
            .arg(action)
            .current_dir(&self.path)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(out.status.success(), "{action}: {}", String::from_utf8_lossy(&out.stderr));
        out
    }

    fn start(&self) -> String {
        let out = self.shim(&["-debug"], "start");
        assert!(out.stderr.is_empty(), "containerd reads stderr as part of the address: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    fn delete(&self) -> api::DeleteResponse {
        let out = self.shim(&["-bundle", self.path.to_str().unwrap()], "delete");
        api::DeleteResponse::parse_from_bytes(&out.stdout).unwrap()
    }

    fn file(&self, name: &str) -> Option<String> {
        std::fs::read_to_string(self.path.join(name)).ok()
    }

    fn shim_pid(&self) -> i32 {
        self.file("shim.pid").unwrap().trim().parse().unwrap()
    }
}

impl Drop for Bundle {
    fn drop(&mut self) {
        for pid in serve_processes(&self.id) {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
        }
        let _ = nix::mount::umount2(&self.path.join("rootfs"), nix::mount::MntFlags::MNT_DETACH);
        // After a test that failed half way its container still runs.
        berth_testkit::end_cgroup_everywhere(&format!("/berth-test/{}", self.id));
    }
}

/// A Task API client speaking containerd 1.6's service name.
struct TaskV2 {
    client: ttrpc::Client,
}

impl TaskV2 {
    fn connect(address: &str) -> TaskV2 {
        TaskV2 { client: ttrpc::Client::connect(address).unwrap() }
    }

    fn call<Req: Message, Resp: Message>(&self, method: &str, req: &Req) -> ttrpc::Result<Resp> {
        let ctx = context::with_timeout(Duration::from_secs(30).as_nanos() as i64);
        let mut cres = Resp::new();
        ttrpc::client_request!(self, ctx, req, "containerd.task.v2.Task", method, cres);
        Ok(cres)
    }
}

fn serve_processes(id: &str) -> Vec<i32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else { continue };
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        if args.get(1) == Some(&&b"serve"[..]) && args.windows(2).any(|w| w[0] == b"--id" && w[1] == id.as_bytes()) {
            out.push(pid);
        }
    }
    out
}

/// Waits until `pid` is gone (or a zombie nobody reaped yet).
fn wait_gone(pid: i32) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        if stat.rsplit(')').next().and_then(|s| s.split_whitespace().next()).is_none_or(|s| s == "Z") {
            return;
        }
        assert!(Instant::now() < deadline, "process {pid} still there");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn is_mount_point(path: &Path) -> bool {
    let path = path.display().to_string();
    std::fs::read_to_string("/proc/self/mountinfo").unwrap().lines().any(|l| l.split(' ').nth(4) == Some(path.as_str()))
}

#[test]
fn start_serves_the_task_api_v2_and_answers_again_for_a_live_shim() {
    let bundle = Bundle::new("ctd-start");
    let address = bundle.start();
    let socket = address.strip_prefix("unix://").expect("a unix address");
    assert!(socket.starts_with("/run/containerd/s/"), "containerd's shim socket dir: {address}");
    assert_eq!(bundle.file("address").as_deref(), Some(address.as_str()), "the bundle records the address");
    let pid = bundle.shim_pid();
    assert_eq!(serve_processes(&bundle.id), vec![pid]);

    // containerd may run `start` again: the same shim answers.
    assert_eq!(bundle.start(), address);
    assert_eq!(serve_processes(&bundle.id), vec![pid], "no second shim");

    let task = TaskV2::connect(&address);
    let connect: api::ConnectResponse = task.call("Connect", &api::ConnectRequest { id: bundle.id.clone(), ..Default::default() }).unwrap();
    assert_eq!((connect.shim_pid as i32, connect.task_pid), (pid, 0));

    // Shutdown with no container: the shim exits and takes its socket along.
    let _: api::Empty = task.call("Shutdown", &api::ShutdownRequest { id: bundle.id.clone(), ..Default::default() }).unwrap();
    wait_gone(pid);
    let deadline = Instant::now() + Duration::from_secs(5);
    while Path::new(socket).exists() {
        assert!(Instant::now() < deadline, "socket {socket} left behind");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(bundle.file("shim.pid"), None, "an exiting shim gives up its pid file");

    // `delete` with nothing left at all still answers.
    let resp = bundle.delete();
    assert_eq!((resp.pid, resp.exit_status), (0, 137));
    assert!(resp.exited_at.is_some());
}

#[test]
fn delete_after_a_killed_shim_kills_the_container_and_cleans_up() {
    let bundle = Bundle::new("ctd-delete");
    let mut spec = spec(&bundle.id, &["sleep", "3600"]);
    // The rootfs comes as containerd sends it: a mount for <bundle>/rootfs.
    spec.root_mut().as_mut().unwrap().set_path(PathBuf::from("rootfs"));
    std::fs::write(bundle.path.join("config.json"), serde_json::to_vec(&spec).unwrap()).unwrap();
    let address = bundle.start();
    let task = TaskV2::connect(&address);
    let rootfs =
        api::Mount { type_: "bind".into(), source: busybox_rootfs().display().to_string(), options: vec!["rbind".into(), "ro".into()], ..Default::default() };
    let create = api::CreateTaskRequest { id: bundle.id.clone(), bundle: bundle.path.display().to_string(), rootfs: vec![rootfs], ..Default::default() };
    let created: api::CreateTaskResponse = task.call("Create", &create).unwrap();
    let _: api::StartResponse = task.call("Start", &api::StartRequest { id: bundle.id.clone(), ..Default::default() }).unwrap();
    assert_eq!(bundle.file("init.pid").unwrap().trim(), created.pid.to_string(), "the init's pid is in the bundle for `delete`");
    assert!(is_mount_point(&bundle.path.join("rootfs")));
    let cgroup = berth_testkit::cgroups::HostCgroup::new(&format!("/berth-test/{}", bundle.id));
    assert_eq!(cgroup.procs(), vec![created.pid as i32]);
    let stats: api::StatsResponse = task.call("Stats", &api::StatsRequest { id: bundle.id.clone(), ..Default::default() }).unwrap();
    assert!(stats.stats.type_url.starts_with("io.containerd.cgroups.v"), "containerd's Metrics: {}", stats.stats.type_url);

    let shim = bundle.shim_pid();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(shim), nix::sys::signal::Signal::SIGKILL).unwrap();
    wait_gone(shim);
    let resp = bundle.delete();
    assert_eq!((resp.pid, resp.exit_status), (created.pid, 137));
    wait_gone(created.pid as i32);
    assert!(cgroup.existing_dirs().is_empty(), "the container's cgroup is gone: {:?}", cgroup.existing_dirs());
    assert!(!is_mount_point(&bundle.path.join("rootfs")), "the rootfs is unmounted");
    assert!(!Path::new(address.strip_prefix("unix://").unwrap()).exists(), "the dead shim's socket is removed");
    // Once more, with nothing left: the same answer.
    assert_eq!(bundle.delete().pid, created.pid);
}

#[test]
fn the_task_api_v2_runs_a_container_to_its_end() {
    let bundle = Bundle::new("ctd-run");
    let spec = spec(&bundle.id, &["sh", "-c", "exit 5"]);
    std::fs::write(bundle.path.join("config.json"), serde_json::to_vec(&spec).unwrap()).unwrap();
    let address = bundle.start();
    let task = TaskV2::connect(&address);
    let create = api::CreateTaskRequest { id: bundle.id.clone(), bundle: bundle.path.display().to_string(), ..Default::default() };
    let _: api::CreateTaskResponse = task.call("Create", &create).unwrap();
    let _: api::StartResponse = task.call("Start", &api::StartRequest { id: bundle.id.clone(), ..Default::default() }).unwrap();
    let waited: api::WaitResponse = task.call("Wait", &api::WaitRequest { id: bundle.id.clone(), ..Default::default() }).unwrap();
    assert_eq!(waited.exit_status, 5);
    let deadline = Instant::now() + Duration::from_secs(5);
    while bundle.file("init.exit").is_none() {
        assert!(Instant::now() < deadline, "the init's exit is recorded in the bundle for `delete`");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(bundle.file("init.exit").unwrap().split_whitespace().next(), Some("5"));
    let shim = bundle.shim_pid();
    let deleted: api::DeleteResponse = task.call("Delete", &api::DeleteRequest { id: bundle.id.clone(), ..Default::default() }).unwrap();
    assert_eq!(deleted.exit_status, 5);
    assert!(deleted.exited_at.is_some());
    wait_gone(shim);
    // After a normal delete containerd 1.6 runs `delete` too: it finds the
    // real exit, and nothing to clean.
    let resp = bundle.delete();
    assert_eq!(resp.exit_status, 5);
}

/// containerd's events service, served by the test: the topics it was
/// forwarded, in order.
#[derive(Clone, Default)]
struct EventsRecorder(Arc<Mutex<Vec<String>>>);

impl containerd_shim_protos::Events for EventsRecorder {
    fn forward(&self, _: &ttrpc::TtrpcContext, req: api::ForwardRequest) -> ttrpc::Result<api::Empty> {
        self.0.lock().unwrap().push(req.envelope.topic.clone());
        Ok(api::Empty::new())
    }
}

impl EventsRecorder {
    fn serve(&self, socket: &Path) -> ttrpc::Server {
        let service = containerd_shim_protos::create_events(Arc::new(self.clone()));
        let mut server = ttrpc::Server::new().bind(&format!("unix://{}", socket.display())).unwrap().register_service(service);
        server.start().unwrap();
        server
    }

    fn topics(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

fn threads_of(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task")).map(|t| t.count()).unwrap_or(0)
}

/// Task events go to `TTRPC_ADDRESS` in order, from the shim's one thread,
/// and one sent while containerd is away (restarting) arrives once it is
/// back.
#[test]
fn task_events_reach_containerd_in_order_from_the_one_thread() {
    let bundle = Bundle::new("ctd-events");
    let spec = spec(&bundle.id, &["sleep", "1000"]);
    std::fs::write(bundle.path.join("config.json"), serde_json::to_vec(&spec).unwrap()).unwrap();
    let events_socket = bundle.path.parent().unwrap().join("events.sock");
    let out = bundle.shim_with_env(&[("TTRPC_ADDRESS", events_socket.to_str().unwrap())], &["-debug"], "start");
    let address = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let task = TaskV2::connect(&address);
    let shim = bundle.shim_pid();

    // Nothing serves the events socket yet: TaskCreate waits in the queue.
    let create = api::CreateTaskRequest { id: bundle.id.clone(), bundle: bundle.path.display().to_string(), ..Default::default() };
    let _: api::CreateTaskResponse = task.call("Create", &create).unwrap();
    let recorder = EventsRecorder::default();
    let _server = recorder.serve(&events_socket);
    let _: api::StartResponse = task.call("Start", &api::StartRequest { id: bundle.id.clone(), ..Default::default() }).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while recorder.topics().len() < 2 {
        assert!(Instant::now() < deadline, "events so far: {:?}", recorder.topics());
        std::thread::sleep(Duration::from_millis(20));
    }
    // The publisher is a task on the loop; the blocking pool's thread goes
    // half a second after Start.
    let deadline = Instant::now() + Duration::from_secs(5);
    while threads_of(shim) != 1 {
        assert!(Instant::now() < deadline, "the shim has {} threads, not 1", threads_of(shim));
        std::thread::sleep(Duration::from_millis(50));
    }

    let _: api::Empty = task.call("Kill", &api::KillRequest { id: bundle.id.clone(), signal: 9, ..Default::default() }).unwrap();
    let waited: api::WaitResponse = task.call("Wait", &api::WaitRequest { id: bundle.id.clone(), ..Default::default() }).unwrap();
    assert_eq!(waited.exit_status, 137);
    let _: api::DeleteResponse = task.call("Delete", &api::DeleteRequest { id: bundle.id.clone(), ..Default::default() }).unwrap();
    // The shim sends what is queued before it exits.
    wait_gone(shim);
    assert_eq!(recorder.topics(), ["/tasks/create", "/tasks/start", "/tasks/exit", "/tasks/delete"]);
}
