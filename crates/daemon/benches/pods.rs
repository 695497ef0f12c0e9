//! Pod-ready latency, pod throughput, ExecSync latency and memory, measured
//! through the CRI socket: berthd, and containerd 1.6 + runc (when
//! installed) on the same kind of CNI bridge, same image, same workload.
//!
//! Run with `sudo hack/bench-pods.sh [PODS=50]`. Figures are printed, never
//! asserted. `--handler`: containerd with berth-shim as its runtime
//! (handler mode) against containerd with runc's shim (`pods/handler.rs`);
//! `--cgroup-driver systemd`: berthd's two cgroup drivers (`pods/drivers.rs`);
//! `--userns`: berth's pods with a user namespace against without (`pods/userns.rs`);
//! `--density`: a node filling up to 110 pods, each step's share of a pod's
//! start, relist latency, threads and memory, against containerd (`pods/density.rs`).

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use k8s_cri::v1::{self, image_service_client::ImageServiceClient, runtime_service_client::RuntimeServiceClient};
use tonic::transport::Channel;

/// The tests' helpers: `channel` connects a tonic client to a unix socket.
#[path = "../../../tests/common/mod.rs"]
mod common;
use common::channel;

#[path = "pods/density.rs"]
mod density;
#[path = "pods/drivers.rs"]
mod drivers;
#[path = "pods/handler.rs"]
mod handler;
#[path = "pods/userns.rs"]
mod userns;

/// The pause process containerd needs (berth needs none).
const PAUSE_CMD: [&str; 2] = ["/bin/sleep", "2147483647"];

struct Daemon {
    name: &'static str,
    child: Child,
    socket: PathBuf,
    /// Every process of this runtime has this path in its command line.
    marker: String,
    cgroup_parent: String,
    logs: PathBuf,
    /// The runtime's state directory, a tmpfs of its own (see `state_tmpfs`).
    state: Option<PathBuf>,
}

impl Drop for Daemon {
    /// After a run every pod was removed through the CRI. After a panic,
    /// end what is left: the containers (by the bench's cgroup parent), the
    /// shims (by the marker in their command line) and their mounts.
    fn drop(&mut self) {
        let leftovers = runtime_processes(self);
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            self.end_leftovers(leftovers);
        }
        if let Some(state) = &self.state {
            let _ = nix::mount::umount2(state, nix::mount::MntFlags::MNT_DETACH);
        }
    }
}

impl Daemon {
    fn end_leftovers(&self, leftovers: Vec<i32>) {
        let mut doomed = leftovers;
        let mut dirs = berth_testkit::cgroups::HostCgroup::new(&self.cgroup_parent).dirs();
        while let Some(dir) = dirs.pop() {
            doomed.extend(std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default().lines().filter_map(|l| l.parse::<i32>().ok()));
            dirs.extend(std::fs::read_dir(&dir).into_iter().flatten().flatten().filter(|e| e.path().is_dir()).map(|e| e.path()));
        }
        for pid in doomed {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
        }
        std::thread::sleep(Duration::from_millis(300));
        let mounts: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split(' ').nth(4).filter(|m| m.contains(&self.marker)).map(String::from))
            .collect();
        for m in mounts.iter().rev() {
            let _ = nix::mount::umount2(m.as_str(), nix::mount::MntFlags::MNT_DETACH);
        }
    }
}

#[derive(Default)]
struct Figures {
    /// Per phase of the sequential run: RunPodSandbox, CreateContainer, StartContainer.
    phases: [Vec<Duration>; 3],
    ready_seq: Vec<Duration>,
    ready_par: Vec<Duration>,
    par_wall: Duration,
    exec: Vec<Duration>,
    /// Exec through the streaming server: the RPC, a WebSocket
    /// (v4.channel.k8s.io), the output and the exit status.
    stream_exec: Vec<Duration>,
    idle_rss_kib: u64,
    running_rss_kib: u64,
    running_pss_kib: u64,
    processes: usize,
    /// The shims alone (no daemon, no pause), per pod, and how many.
    shims_rss_kib: u64,
    shims_pss_kib: u64,
    shims: usize,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let density = args.iter().any(|a| a == "--density");
    // 110: the kubelet's default maxPods.
    let pods: usize = args.iter().find_map(|a| a.parse().ok()).unwrap_or(if density { 110 } else { 50 });
    assert!(nix::unistd::geteuid().is_root(), "run as root: sudo hack/bench-pods.sh");
    let registry = berth_testkit::Registry::start();
    let work = tempfile::tempdir().unwrap();
    berth_testkit::build_and_push(&registry, work.path(), "bench/busybox:1", None);
    berth_testkit::push_variant_with_cmd(&registry, work.path(), "bench/pause:1", &PAUSE_CMD);
    let image = format!("{}/bench/busybox:1", registry.host());
    if args.windows(2).any(|w| w[0] == "--cgroup-driver" && w[1] == "systemd") {
        drivers::compare(pods, &registry.host(), &image, work.path()).await;
        return;
    }
    if args.iter().any(|a| a == "--handler") {
        handler::compare(pods, &registry.host(), &image, work.path()).await;
        return;
    }
    if density {
        density::compare(pods, &registry.host(), &image, work.path()).await;
        return;
    }
    if args.iter().any(|a| a == "--userns") {
        userns::compare(pods, &registry.host(), &image, work.path()).await;
        return;
    }

    let berth = start_berthd(work.path(), &registry.host(), 201);
    let b = measure(&berth, &image, pods).await;
    drop(berth);
    print_figures("berth", &b, pods);

    if std::env::var_os("BENCH_BERTH_ONLY").is_some() {
        return;
    }
    let ctd = match start_containerd(work.path(), &registry.host(), 202, None) {
        Some(d) => d,
        None => {
            println!("\ncontainerd: not installed (apt-get install containerd runc), no comparison");
            return;
        }
    };
    let c = measure(&ctd, &image, pods).await;
    drop(ctd);
    print_figures("containerd 1.6 + runc", &c, pods);
    println!("\nberth vs containerd (same machine, same workload; < 1 is better for latency and memory):");
    println!("  pod-ready p50, in sequence : {:.2}x", ratio(p(&b.ready_seq, 50), p(&c.ready_seq, 50)));
    println!("  pods/s, 4 at a time        : {:.2}x (higher is better)", (pods as f64 / b.par_wall.as_secs_f64()) / (pods as f64 / c.par_wall.as_secs_f64()));
    println!("  ExecSync p50               : {:.2}x", ratio(p(&b.exec, 50), p(&c.exec, 50)));
    if !b.stream_exec.is_empty() && !c.stream_exec.is_empty() {
        println!("  Exec over WebSocket p50    : {:.2}x", ratio(p(&b.stream_exec, 50), p(&c.stream_exec, 50)));
    }
    println!("  daemon idle RSS            : {:.2}x", b.idle_rss_kib as f64 / c.idle_rss_kib.max(1) as f64);
    println!("  RSS per running pod        : {:.2}x", b.running_rss_kib as f64 / c.running_rss_kib.max(1) as f64);
    println!("  PSS per running pod        : {:.2}x", b.running_pss_kib as f64 / c.running_pss_kib.max(1) as f64);
}

fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64().max(1e-9)
}

fn p(samples: &[Duration], pct: usize) -> Duration {
    let mut v = samples.to_vec();
    v.sort();
    v.get((v.len().saturating_sub(1)) * pct / 100).copied().unwrap_or_default()
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn print_figures(name: &str, f: &Figures, pods: usize) {
    println!("\n== {name} ==");
    println!(
        "pod ready (RunPodSandbox + CreateContainer + StartContainer), {pods} in sequence: p50 {} p90 {}",
        ms(p(&f.ready_seq, 50)),
        ms(p(&f.ready_seq, 90))
    );
    println!(
        "  p50 per call: RunPodSandbox {}, CreateContainer {}, StartContainer {}",
        ms(p(&f.phases[0], 50)),
        ms(p(&f.phases[1], 50)),
        ms(p(&f.phases[2], 50))
    );
    println!(
        "pod ready, {pods} with 4 at a time: p50 {} p90 {}; {:.1} pods/s",
        ms(p(&f.ready_par, 50)),
        ms(p(&f.ready_par, 90)),
        pods as f64 / f.par_wall.as_secs_f64()
    );
    println!("ExecSync (`true`), {} calls: p50 {} p90 {}", f.exec.len(), ms(p(&f.exec, 50)), ms(p(&f.exec, 90)));
    if !f.stream_exec.is_empty() {
        println!(
            "Exec over WebSocket (`true`: URL, upgrade, exit status), {} calls: p50 {} p90 {}",
            f.stream_exec.len(),
            ms(p(&f.stream_exec, 50)),
            ms(p(&f.stream_exec, 90))
        );
    }
    println!("daemon idle RSS (image pulled, one pod run and removed): {:.1} MiB", f.idle_rss_kib as f64 / 1024.0);
    println!(
        "with {pods} pods running: daemon + shims{} = {} processes, RSS {:.1} MiB, PSS {:.1} MiB; per pod RSS {:.2} MiB, PSS {:.2} MiB",
        if name.starts_with("containerd") { " + pause" } else { "" },
        f.processes,
        f.running_rss_kib as f64 * pods as f64 / 1024.0,
        f.running_pss_kib as f64 * pods as f64 / 1024.0,
        f.running_rss_kib as f64 / 1024.0,
        f.running_pss_kib as f64 / 1024.0,
    );
    println!(
        "  the shims alone: {} processes; per pod RSS {:.2} MiB, PSS {:.2} MiB",
        f.shims,
        f.shims_rss_kib as f64 / 1024.0,
        f.shims_pss_kib as f64 / 1024.0
    );
}

/// A CNI bridge network of its own for one runtime (index: the /24).
fn cni_dir(dir: &Path, index: u32) -> PathBuf {
    let conf = dir.join("net.d");
    std::fs::create_dir_all(&conf).unwrap();
    let text = format!(
        r#"{{"cniVersion":"1.0.0","name":"bench-{index}","plugins":[{{"type":"bridge","bridge":"bb{index}","isGateway":true,"ipMasq":false,
            "ipam":{{"type":"host-local","ranges":[[{{"subnet":"10.214.{index}.0/24"}}]],"dataDir":"{}"}}}}]}}"#,
        dir.join("ipam").display()
    );
    std::fs::write(conf.join("10-bench.conflist"), text).unwrap();
    conf
}

fn start_berthd(work: &Path, registry: &str, index: u32) -> Daemon {
    let dir = work.join("berth");
    std::fs::create_dir_all(&dir).unwrap();
    let conf = cni_dir(&dir, index);
    let berthd = PathBuf::from(env!("CARGO_BIN_EXE_berthd"));
    // The shim that ships (hack/build-dist.sh; hack/bench-pods.sh sets it).
    let shim = common::shim_binary();
    let config = dir.join("config.toml");
    std::fs::write(
        &config,
        format!(
            "socket = \"{0}/b.sock\"\nroot = \"{0}/root\"\nstate = \"{0}/state\"\nlog_level = \"warn\"\nshim_binary = \"{1}\"\n[registry]\ninsecure = [\"{registry}\"]\n[cni]\nconf_dir = \"{2}\"\n",
            dir.display(),
            shim.display(),
            conf.display()
        ),
    )
    .unwrap();
    let state = state_tmpfs(&dir);
    let child = Command::new(&berthd).arg("--config").arg(&config).stdout(Stdio::null()).spawn().unwrap();
    Daemon {
        name: "berthd",
        child,
        socket: dir.join("b.sock"),
        marker: dir.display().to_string(),
        cgroup_parent: "/berth-bench".into(),
        logs: dir.join("logs"),
        state: Some(state),
    }
}

/// `dir/state` on a tmpfs of its own: as installed, both runtimes keep
/// their volatile state (bundles, shim sockets, pinned namespaces) under
/// /run, a tmpfs, and their records and layers on disk (`dir/root`). On
/// this machine's disk (ext4 without a journal) every file made there
/// costs a scan of recently deleted inodes, which would bill both
/// runtimes for a layout no node has.
fn state_tmpfs(dir: &Path) -> PathBuf {
    let state = dir.join("state");
    std::fs::create_dir_all(&state).unwrap();
    nix::mount::mount(Some("tmpfs"), &state, Some("tmpfs"), nix::mount::MsFlags::empty(), Some("mode=0711")).expect("mount a tmpfs for the runtime's state");
    state
}

/// containerd 1.6 on directories of its own under `work`, running pods
/// with runc's shim, or, given `berth_shim`, with berth-shim as its
/// default runtime: `containerd-shim-berth-v2` (a link to it) first on
/// containerd's PATH, where containerd 1.6.20 looks for it (it ignores
/// `runtime_path`), and `runtime_type = "io.containerd.berth.v2"` as
/// berth's installer registers it.
fn start_containerd(work: &Path, registry: &str, index: u32, berth_shim: Option<&Path>) -> Option<Daemon> {
    Command::new("containerd").arg("--version").output().ok()?;
    let dir = work.join(if berth_shim.is_some() { "containerd-berth" } else { "containerd" });
    std::fs::create_dir_all(dir.join("bin")).unwrap();
    let conf = cni_dir(&dir, index);
    let berth_runtime = match berth_shim {
        Some(shim) => {
            let link = dir.join("bin/containerd-shim-berth-v2");
            // A link, not a copy: the shim finds berth-runtime beside its
            // own executable with the link resolved (current_exe), so the
            // one beside `shim` (target/dist) serves.
            std::os::unix::fs::symlink(shim, &link).unwrap();
            format!(
                "  [plugins.\"io.containerd.grpc.v1.cri\".containerd]\n    default_runtime_name = \"berth\"\n  [plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.berth]\n    runtime_type = \"io.containerd.berth.v2\"\n    runtime_path = \"{}\"\n",
                link.display()
            )
        }
        None => String::new(),
    };
    let config = dir.join("config.toml");
    std::fs::write(
        &config,
        format!(
            r#"version = 2
root = "{0}/root"
state = "{0}/state"
[grpc]
  address = "{0}/c.sock"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{registry}/bench/pause:1"
  # This host forbids lowering oom_score_adj (no CAP_SYS_RESOURCE).
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{1}"
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
    runtime_type = "io.containerd.runc.v2"
{2}  [plugins."io.containerd.grpc.v1.cri".registry.mirrors."{registry}"]
    endpoint = ["http://{registry}"]
"#,
            dir.display(),
            conf.display(),
            berth_runtime
        ),
    )
    .unwrap();
    let state = state_tmpfs(&dir);
    let log = std::fs::File::create(dir.join("containerd.log")).unwrap();
    let path = format!("{}:{}", dir.join("bin").display(), std::env::var("PATH").unwrap_or_default());
    let child = Command::new("containerd").arg("--config").arg(&config).env("PATH", path).stdout(log.try_clone().unwrap()).stderr(log).spawn();
    let Ok(child) = child else {
        let _ = nix::mount::umount2(&state, nix::mount::MntFlags::MNT_DETACH);
        return None;
    };
    let (name, cgroup_parent) = match berth_shim {
        Some(_) => ("containerd + berth-shim", "/berth-bench-containerd-berth"),
        None => ("containerd", "/berth-bench-containerd"),
    };
    Some(Daemon {
        name,
        child,
        socket: dir.join("c.sock"),
        marker: dir.display().to_string(),
        cgroup_parent: cgroup_parent.into(),
        logs: dir.join("logs"),
        state: Some(state),
    })
}

/// A pod as the kubelet sends it: logs under `logs`, cgroup parent
/// `parent` (a path for cgroupfs, a slice for systemd).
fn pod_config(logs: &Path, parent: &str, name: &str) -> v1::PodSandboxConfig {
    v1::PodSandboxConfig {
        metadata: Some(v1::PodSandboxMetadata { name: name.into(), uid: format!("uid-{name}"), namespace: "bench".into(), attempt: 0 }),
        hostname: name.into(),
        log_directory: logs.join(name).display().to_string(),
        linux: Some(v1::LinuxPodSandboxConfig {
            cgroup_parent: parent.into(),
            security_context: Some(v1::LinuxSandboxSecurityContext {
                namespace_options: Some(v1::NamespaceOption { pid: v1::NamespaceMode::Container as i32, ..Default::default() }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The kubelet-shaped config of the tests; the command absolute: the
/// image sets no PATH, and runc has no default.
fn container_config(image: &str) -> v1::ContainerConfig {
    common::node::container_config_for("main", image, &["/bin/sleep", "3600"])
}

/// RunPodSandbox + CreateContainer + StartContainer: returns the time until
/// the container runs, the time of each call, and the container id.
async fn pod_ready(rt: &mut RuntimeServiceClient<Channel>, d: &Daemon, name: &str, image: &str) -> (Duration, [Duration; 3], String) {
    pod_ready_in(rt, &d.logs, &format!("{}/{name}", d.cgroup_parent), name, image).await
}

/// [`pod_ready`] for a pod with cgroup parent `parent`.
async fn pod_ready_in(rt: &mut RuntimeServiceClient<Channel>, logs: &Path, parent: &str, name: &str, image: &str) -> (Duration, [Duration; 3], String) {
    pod_ready_with(rt, pod_config(logs, parent, name), image).await
}

/// [`pod_ready`] for a pod config the caller shaped.
async fn pod_ready_with(rt: &mut RuntimeServiceClient<Channel>, config: v1::PodSandboxConfig, image: &str) -> (Duration, [Duration; 3], String) {
    let started = Instant::now();
    let pod = rt
        .run_pod_sandbox(v1::RunPodSandboxRequest { config: Some(config.clone()), runtime_handler: String::new() })
        .await
        .unwrap()
        .into_inner()
        .pod_sandbox_id;
    let ran = started.elapsed();
    let req = v1::CreateContainerRequest { pod_sandbox_id: pod, config: Some(container_config(image)), sandbox_config: Some(config) };
    let id = rt.create_container(req).await.unwrap().into_inner().container_id;
    let created = started.elapsed();
    rt.start_container(v1::StartContainerRequest { container_id: id.clone() }).await.unwrap();
    let total = started.elapsed();
    (total, [ran, created - ran, total - created], id)
}

async fn remove_all(rt: &mut RuntimeServiceClient<Channel>) {
    for p in rt.list_pod_sandbox(v1::ListPodSandboxRequest::default()).await.unwrap().into_inner().items {
        rt.stop_pod_sandbox(v1::StopPodSandboxRequest { pod_sandbox_id: p.id.clone() }).await.unwrap();
        rt.remove_pod_sandbox(v1::RemovePodSandboxRequest { pod_sandbox_id: p.id }).await.unwrap();
    }
}

async fn measure(d: &Daemon, image: &str, pods: usize) -> Figures {
    let ch = channel(&d.socket).await;
    let (mut rt, mut img) = (RuntimeServiceClient::new(ch.clone()), ImageServiceClient::new(ch));
    let verbose = std::env::var_os("BENCH_VERBOSE").is_some();
    if verbose {
        println!("{}: RSS at start {} KiB", d.name, memory_of(&[d.child.id() as i32]).0);
    }
    img.pull_image(v1::PullImageRequest { image: Some(v1::ImageSpec { image: image.into(), ..Default::default() }), ..Default::default() }).await.unwrap();
    let mut f = Figures::default();

    // Warm-up (first-use costs: CNI bridge creation, containerd's pause pull).
    if verbose {
        tokio::time::sleep(Duration::from_millis(500)).await;
        println!("{}: RSS after the pull {} KiB", d.name, memory_of(&[d.child.id() as i32]).0);
        let rollup = std::fs::read_to_string(format!("/proc/{}/smaps_rollup", d.child.id())).unwrap_or_default();
        println!(
            "{}",
            rollup
                .lines()
                .filter(|l| l.starts_with("Anonymous") || l.starts_with("Private_Clean") || l.starts_with("Shared_Clean") || l.starts_with("Private_Dirty"))
                .collect::<Vec<_>>()
                .join("; ")
        );
        let threads = std::fs::read_dir(format!("/proc/{}/task", d.child.id())).map(|t| t.count()).unwrap_or(0);
        tokio::time::sleep(Duration::from_secs(12)).await;
        let later = std::fs::read_dir(format!("/proc/{}/task", d.child.id())).map(|t| t.count()).unwrap_or(0);
        println!("{}: {threads} threads after the pull; 12 s later {later} threads, RSS {} KiB", d.name, memory_of(&[d.child.id() as i32]).0);
    }
    let _ = pod_ready(&mut rt, d, "warmup", image).await;
    remove_all(&mut rt).await;
    // Idle: the image pulled, one pod run and removed, nothing running.
    tokio::time::sleep(Duration::from_millis(500)).await;
    f.idle_rss_kib = memory_of(&[d.child.id() as i32]).0;

    for i in 0..pods {
        let (total, phases, _) = pod_ready(&mut rt, d, &format!("seq-{i}"), image).await;
        f.ready_seq.push(total);
        for (all, one) in f.phases.iter_mut().zip(phases) {
            all.push(one);
        }
    }
    remove_all(&mut rt).await;

    let started = Instant::now();
    let queue = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut workers = Vec::new();
    for _ in 0..4 {
        let (mut rt, queue) = (rt.clone(), queue.clone());
        let (d_logs, d_parent, image) = (d.logs.clone(), d.cgroup_parent.clone(), image.to_string());
        workers.push(tokio::spawn(async move {
            let shadow = Daemon {
                name: "",
                child: Command::new("true").spawn().unwrap(),
                socket: PathBuf::new(),
                marker: String::new(),
                cgroup_parent: d_parent,
                logs: d_logs,
                state: None,
            };
            let mut out = Vec::new();
            loop {
                let i = queue.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                if i >= pods {
                    break;
                }
                out.push(pod_ready(&mut rt, &shadow, &format!("par-{i}"), &image).await);
            }
            out
        }));
    }
    let mut ids = Vec::new();
    for w in workers {
        for (t, _, id) in w.await.unwrap() {
            f.ready_par.push(t);
            ids.push(id);
        }
    }
    f.par_wall = started.elapsed();

    for _ in 0..100 {
        let t = Instant::now();
        let r = rt.exec_sync(v1::ExecSyncRequest { container_id: ids[0].clone(), cmd: vec!["/bin/true".into()], timeout: 10 }).await.unwrap().into_inner();
        assert_eq!(r.exit_code, 0);
        f.exec.push(t.elapsed());
    }

    for _ in 0..50 {
        let t = Instant::now();
        let req = v1::ExecRequest { container_id: ids[0].clone(), cmd: vec!["/bin/true".into()], stdout: true, stderr: true, ..Default::default() };
        let url = rt.exec(req).await.unwrap().into_inner().url;
        match common::stream_client::websocket(&url, "v4.channel.k8s.io").await {
            Ok((mut ws, _)) => {
                let got = common::stream_client::collect_ws(&mut ws, None, Duration::from_secs(10)).await;
                assert_eq!(got.exit_code(), Some(0), "{:?}", got.status);
            }
            Err(refused) => {
                println!("{}: streamed exec over WebSocket refused: {refused:?}", d.name);
                break;
            }
        }
        f.stream_exec.push(t.elapsed());
    }

    tokio::time::sleep(Duration::from_millis(500)).await;
    let pids = runtime_processes(d);
    let (rss, pss) = memory_of(&pids);
    if verbose {
        let daemon = memory_of(&[d.child.id() as i32]);
        let threads = std::fs::read_dir(format!("/proc/{}/task", d.child.id())).map(|t| t.count()).unwrap_or(0);
        println!("{}: with the pods running, the daemon alone: RSS {} KiB, PSS {} KiB, {threads} threads", d.name, daemon.0, daemon.1);
    }
    f.processes = pids.len();
    f.running_rss_kib = rss / pods as u64;
    f.running_pss_kib = pss / pods as u64;
    let shims = shim_processes(d, &pids);
    if verbose {
        // Two shims in detail: where a shim's memory goes.
        for pid in shims.iter().take(2) {
            let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
            let threads = std::fs::read_dir(format!("/proc/{pid}/task")).map(|t| t.count()).unwrap_or(0);
            let cmd = String::from_utf8_lossy(&std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default()).replace('\0', " ");
            let keep = ["Rss", "Pss:", "Pss_Anon", "Pss_File", "Shared_Clean", "Private_Clean", "Private_Dirty", "Anonymous"];
            let lines: Vec<&str> = rollup.lines().filter(|l| keep.iter().any(|k| l.starts_with(k))).collect();
            println!("{}: shim {pid} ({threads} threads) {}: {}", d.name, cmd.chars().take(60).collect::<String>(), lines.join("; "));
        }
    }
    let (rss, pss) = memory_of(&shims);
    (f.shims, f.shims_rss_kib, f.shims_pss_kib) = (shims.len(), rss / pods as u64, pss / pods as u64);
    remove_all(&mut rt).await;
    let _ = d.name;
    f
}

/// The daemon, its shims and (containerd) its pause processes: every
/// process whose command line names the runtime's directory, plus pause
/// processes whose parent is one of those. Workload processes are not
/// counted.
fn runtime_processes(d: &Daemon) -> Vec<i32> {
    let mut procs: HashMap<i32, (i32, String)> = HashMap::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else { continue };
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        let ppid = stat.rsplit(')').next().and_then(|s| s.split_whitespace().nth(1)).and_then(|s| s.parse().ok()).unwrap_or(0);
        procs.insert(pid, (ppid, cmdline));
    }
    let mut ours: Vec<i32> = procs.iter().filter(|(_, (_, c))| c.contains(&d.marker)).map(|(p, _)| *p).collect();
    ours.push(d.child.id() as i32);
    let pause = PAUSE_CMD.join(" ");
    let pauses: Vec<i32> = procs.iter().filter(|(_, (pp, c))| ours.contains(pp) && c.trim() == pause).map(|(p, _)| *p).collect();
    ours.extend(pauses);
    ours.sort_unstable();
    ours.dedup();
    ours
}

/// Of the runtime's processes, the shims: not the daemon, not a pause.
fn shim_processes(d: &Daemon, runtime: &[i32]) -> Vec<i32> {
    let pause = PAUSE_CMD.join(" ");
    runtime
        .iter()
        .copied()
        .filter(|pid| *pid != d.child.id() as i32)
        .filter(|pid| String::from_utf8_lossy(&std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default()).replace('\0', " ").trim() != pause)
        .collect()
}

/// Total (RSS, PSS) in KiB of `pids`, from smaps_rollup.
fn memory_of(pids: &[i32]) -> (u64, u64) {
    let (mut rss, mut pss) = (0, 0);
    for pid in pids {
        let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
        for line in text.lines() {
            let value = |l: &str| l.split_whitespace().nth(1).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
            if line.starts_with("Rss:") {
                rss += value(line);
            } else if line.starts_with("Pss:") {
                pss += value(line);
            }
        }
    }
    (rss, pss)
}
