//! `hack/bench-pods.sh PODS --density` (PODS defaults to 110, the
//! kubelet's default maxPods): a node filling up, for berthd and then
//! containerd 1.6 + runc, on CNI bridges of their own.
//!
//! Printed for each runtime:
//! - the steps of one pod, in sequence on an idle node, and each one's
//!   share of the whole: RunPodSandbox (its CNI part: RunPodSandbox with
//!   the pod network less RunPodSandbox of a host-network pod), then
//!   CreateContainer, StartContainer and the first ExecSync;
//! - PODS pods started 8 at a time (the kubelet's pod workers run in
//!   parallel): time until all run, pod-ready p50 and p99;
//! - relist (ListPodSandbox + ListContainers, what the kubelet's PLEG calls
//!   every second) p99 while the pods start, and with all of them running;
//! - the daemon's threads with one pod running and with PODS;
//! - the memory of the daemon and its shims (and containerd's pause
//!   processes) with PODS running, in all and per pod;
//! - the time to stop and remove every pod.

use std::{
    path::Path,
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use k8s_cri::v1::{self, image_service_client::ImageServiceClient, runtime_service_client::RuntimeServiceClient};
use tonic::transport::Channel;

use super::{channel, container_config, memory_of, ms, p, pod_config, pod_ready, remove_all, runtime_processes, start_berthd, start_containerd, Daemon};

/// Pods in the sequential steps run, each way.
const STEP_PODS: usize = 20;
/// Pods started at once.
const WORKERS: usize = 8;

#[derive(Default)]
struct Density {
    /// p50 of RunPodSandbox with the pod network, of a host-network pod,
    /// then CreateContainer, StartContainer, first ExecSync.
    steps: [Duration; 5],
    all_ready: Duration,
    ready: Vec<Duration>,
    relist_starting: Vec<Duration>,
    relist_running: Vec<Duration>,
    threads_one: usize,
    threads_all: usize,
    processes: usize,
    rss_kib: u64,
    pss_kib: u64,
    remove_all: Duration,
}

pub async fn compare(pods: usize, registry: &str, image: &str, work: &Path) {
    let berth = start_berthd(work, registry, 203);
    let b = measure(&berth, image, pods).await;
    drop(berth);
    print(&b, "berth", pods);
    if std::env::var_os("BENCH_BERTH_ONLY").is_some() {
        return;
    }
    let Some(containerd) = start_containerd(work, registry, 204, None) else {
        println!("\ncontainerd: not installed (apt-get install containerd runc), no comparison");
        return;
    };
    let c = measure(&containerd, image, pods).await;
    drop(containerd);
    print(&c, "containerd 1.6 + runc", pods);
    let r = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64().max(1e-9);
    println!("\nberth vs containerd, {pods} pods (< 1 is better):");
    println!("  time to all ready     : {:.2}x", r(b.all_ready, c.all_ready));
    println!("  pod-ready p50 / p99   : {:.2}x / {:.2}x", r(p(&b.ready, 50), p(&c.ready, 50)), r(p(&b.ready, 99), p(&c.ready, 99)));
    println!("  relist p99, starting  : {:.2}x", r(p(&b.relist_starting, 99), p(&c.relist_starting, 99)));
    println!("  relist p99, running   : {:.2}x", r(p(&b.relist_running, 99), p(&c.relist_running, 99)));
    println!("  memory, RSS / PSS     : {:.2}x / {:.2}x", b.rss_kib as f64 / c.rss_kib.max(1) as f64, b.pss_kib as f64 / c.pss_kib.max(1) as f64);
    println!("  remove all            : {:.2}x", r(b.remove_all, c.remove_all));
}

async fn measure(d: &Daemon, image: &str, pods: usize) -> Density {
    let ch = channel(&d.socket).await;
    let (mut rt, mut img) = (RuntimeServiceClient::new(ch.clone()), ImageServiceClient::new(ch));
    img.pull_image(v1::PullImageRequest { image: Some(v1::ImageSpec { image: image.into(), ..Default::default() }), ..Default::default() }).await.unwrap();
    let mut f = Density::default();
    // First-use costs (the bridge, containerd's pause image) out of the way.
    let _ = pod_ready(&mut rt, d, "warmup", image).await;
    let _ = run_pod(&mut rt, d, "warmup-host", true).await;
    remove_all(&mut rt).await;

    f.steps = steps(&mut rt, d, image).await;

    // One pod running, then the rest 8 at a time.
    let (_, _, first) = pod_ready(&mut rt, d, "dense-0", image).await;
    exec_true(&mut rt, &first).await;
    f.threads_one = threads_settled(d).await;
    let starting = Arc::new(AtomicBool::new(true));
    let relister = tokio::spawn(relist_while(rt.clone(), starting.clone()));
    let started = Instant::now();
    let next = Arc::new(AtomicUsize::new(1));
    let mut workers = Vec::new();
    for _ in 0..WORKERS {
        let (mut rt, next, image) = (rt.clone(), next.clone(), image.to_string());
        let (logs, parent) = (d.logs.clone(), d.cgroup_parent.clone());
        workers.push(tokio::spawn(async move {
            let mut ready = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= pods {
                    return ready;
                }
                let name = format!("dense-{i}");
                let (t, _, _) = super::pod_ready_in(&mut rt, &logs, &format!("{parent}/{name}"), &name, &image).await;
                ready.push(t);
            }
        }));
    }
    for w in workers {
        f.ready.extend(w.await.unwrap());
    }
    f.all_ready = started.elapsed();
    starting.store(false, Ordering::SeqCst);
    f.relist_starting = relister.await.unwrap();
    let running = rt.list_containers(v1::ListContainersRequest::default()).await.unwrap().into_inner().containers;
    assert_eq!(running.iter().filter(|c| c.state == v1::ContainerState::ContainerRunning as i32).count(), pods, "{}: every container runs", d.name);
    for _ in 0..200 {
        f.relist_running.push(relist(&mut rt).await);
    }
    f.threads_all = threads_settled(d).await;
    let processes = runtime_processes(d);
    f.processes = processes.len();
    (f.rss_kib, f.pss_kib) = memory_of(&processes);

    let t = Instant::now();
    remove_all(&mut rt).await;
    f.remove_all = t.elapsed();
    f
}

/// p50 of each step, over [`STEP_PODS`] pods in sequence (each removed
/// before the next, so the node stays idle).
async fn steps(rt: &mut RuntimeServiceClient<Channel>, d: &Daemon, image: &str) -> [Duration; 5] {
    let mut samples: [Vec<Duration>; 5] = Default::default();
    for i in 0..STEP_PODS {
        let (_, host_run) = run_pod(rt, d, &format!("step-host-{i}"), true).await;
        samples[1].push(host_run);
        let name = format!("step-{i}");
        let (pod, run) = run_pod(rt, d, &name, false).await;
        samples[0].push(run);
        let config = pod_config(&d.logs, &format!("{}/{name}", d.cgroup_parent), &name);
        let t = Instant::now();
        let req = v1::CreateContainerRequest { pod_sandbox_id: pod, config: Some(container_config(image)), sandbox_config: Some(config) };
        let id = rt.create_container(req).await.unwrap().into_inner().container_id;
        samples[2].push(t.elapsed());
        let t = Instant::now();
        rt.start_container(v1::StartContainerRequest { container_id: id.clone() }).await.unwrap();
        samples[3].push(t.elapsed());
        samples[4].push(exec_true(rt, &id).await);
        remove_all(rt).await;
    }
    samples.map(|s| p(&s, 50))
}

/// RunPodSandbox of a pod on the pod network, or on the node's.
async fn run_pod(rt: &mut RuntimeServiceClient<Channel>, d: &Daemon, name: &str, host_network: bool) -> (String, Duration) {
    let mut config = pod_config(&d.logs, &format!("{}/{name}", d.cgroup_parent), name);
    if host_network {
        let options = config.linux.as_mut().unwrap().security_context.as_mut().unwrap().namespace_options.as_mut().unwrap();
        options.network = v1::NamespaceMode::Node as i32;
        // As the kubelet sends it: a host-network pod has the node's name
        // (runc refuses to set one without a UTS namespace of its own).
        config.hostname.clear();
    }
    let t = Instant::now();
    let id = rt.run_pod_sandbox(v1::RunPodSandboxRequest { config: Some(config), runtime_handler: String::new() }).await.unwrap().into_inner().pod_sandbox_id;
    (id, t.elapsed())
}

async fn exec_true(rt: &mut RuntimeServiceClient<Channel>, id: &str) -> Duration {
    let t = Instant::now();
    let r = rt.exec_sync(v1::ExecSyncRequest { container_id: id.into(), cmd: vec!["/bin/true".into()], timeout: 10 }).await.unwrap().into_inner();
    assert_eq!(r.exit_code, 0);
    t.elapsed()
}

async fn relist(rt: &mut RuntimeServiceClient<Channel>) -> Duration {
    let t = Instant::now();
    rt.list_pod_sandbox(v1::ListPodSandboxRequest::default()).await.unwrap();
    rt.list_containers(v1::ListContainersRequest::default()).await.unwrap();
    t.elapsed()
}

/// Relists every 100 ms until `running` turns false.
async fn relist_while(mut rt: RuntimeServiceClient<Channel>, running: Arc<AtomicBool>) -> Vec<Duration> {
    let mut out = Vec::new();
    while running.load(Ordering::SeqCst) {
        out.push(relist(&mut rt).await);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    out
}

/// The daemon's threads once short-lived ones (berthd's blocking pool
/// keeps an idle thread 3 s) have gone.
async fn threads_settled(d: &Daemon) -> usize {
    tokio::time::sleep(Duration::from_secs(4)).await;
    std::fs::read_dir(format!("/proc/{}/task", d.child.id())).map(|t| t.count()).unwrap_or(0)
}

fn print(f: &Density, name: &str, pods: usize) {
    println!("\n== {name}: {pods} pods (density) ==");
    let [run, run_host, create, start, exec] = f.steps;
    let cni = run.saturating_sub(run_host);
    let total = run + create + start + exec;
    let share = |d: Duration| 100.0 * d.as_secs_f64() / total.as_secs_f64().max(1e-9);
    println!("one pod on an idle node, p50 of {STEP_PODS}: pod ready + first exec {}", ms(total));
    println!("  RunPodSandbox   {} ({:.0}%), of which CNI {} ({:.0}%; a host-network pod takes {})", ms(run), share(run), ms(cni), share(cni), ms(run_host));
    println!("  CreateContainer {} ({:.0}%)", ms(create), share(create));
    println!("  StartContainer  {} ({:.0}%)", ms(start), share(start));
    println!("  first ExecSync  {} ({:.0}%)", ms(exec), share(exec));
    println!(
        "{pods} pods, {WORKERS} at a time: all ready in {:.2} s; pod-ready p50 {} p99 {}",
        f.all_ready.as_secs_f64(),
        ms(p(&f.ready, 50)),
        ms(p(&f.ready, 99))
    );
    println!(
        "relist (ListPodSandbox + ListContainers) p99: {} while starting ({} samples), {} with {pods} running",
        ms(p(&f.relist_starting, 99)),
        f.relist_starting.len(),
        ms(p(&f.relist_running, 99))
    );
    println!("daemon threads: {} with 1 pod running, {} with {pods}", f.threads_one, f.threads_all);
    println!(
        "memory with {pods} running ({} processes: daemon + shims{}): RSS {:.1} MiB, PSS {:.1} MiB; per pod RSS {:.2} MiB, PSS {:.2} MiB",
        f.processes,
        if name.starts_with("containerd") { " + pause" } else { "" },
        f.rss_kib as f64 / 1024.0,
        f.pss_kib as f64 / 1024.0,
        f.rss_kib as f64 / 1024.0 / pods as f64,
        f.pss_kib as f64 / 1024.0 / pods as f64
    );
    println!("stop and remove all {pods} pods: {:.2} s", f.remove_all.as_secs_f64());
}
