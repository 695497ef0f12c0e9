//! `/metrics` after a scripted workload shows what the workload did:
//! pulls (and the failed one, by cause), gRPC requests by method and code,
//! pods and containers by state, shims, exec sessions, the process; and a
//! container whose log disk fills up is reported (with ContainerStatus and
//! Status). The exposition is read by the Prometheus project's own parser
//! (Python `prometheus_client`, from the venv hack/setup.sh makes).

mod common;

use std::{
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Duration,
};

use common::node::Node;
use k8s_cri::v1;
use serde_json::Value;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn scrape(port: u16) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(stream, "GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.to_ascii_lowercase().contains("content-type: text/plain; version=0.0.4"), "{head}");
    body.to_string()
}

/// The samples, as the Prometheus parser reads them.
fn parse(text: &str) -> Vec<Value> {
    let python = std::env::var_os("BERTH_TEST_PYTHON").map(PathBuf::from).unwrap_or_else(|| "/var/cache/berth/python/bin/python3".into());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/parse_metrics.py");
    let mut child = Command::new(python).arg(script).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "the Prometheus parser refused the exposition: {}\n{text}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The value of the sample `name` whose labels include `labels`.
fn value(samples: &[Value], name: &str, labels: &[(&str, &str)]) -> f64 {
    let found: Vec<&Value> = samples.iter().filter(|s| s["name"] == name && labels.iter().all(|(k, v)| s["labels"][*k] == *v)).collect();
    assert_eq!(found.len(), 1, "one sample {name}{labels:?}, found {found:?}");
    found[0]["value"].as_f64().unwrap()
}

#[tokio::test]
async fn the_workload_is_counted() {
    let port = free_port();
    let mut node = Node::start_with(&format!("metrics.address = \"127.0.0.1:{port}\""), "").await; // pulls the image once

    // Two pods; three containers, one of which exits; two ExecSyncs; a
    // pull of a tag that does not exist; a status of an unknown container.
    let a = node.run_pod("a").await;
    let b = node.run_pod("b").await;
    let first = node.run(&a, "one", &["sleep", "1000"]).await;
    node.run(&b, "two", &["sleep", "1000"]).await;
    let done = node.run(&b, "done", &["true"]).await;
    node.wait_exited(&done, Duration::from_secs(20)).await;
    for _ in 0..2 {
        assert_eq!(node.exec(&first, &["true"], 10).await.unwrap().exit_code, 0);
    }
    let missing = format!("{}/pods/busybox:nope", node.registry.host());
    let err = node
        .img
        .pull_image(v1::PullImageRequest { image: Some(v1::ImageSpec { image: missing, ..Default::default() }), ..Default::default() })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);
    let err = node.rt.container_status(v1::ContainerStatusRequest { container_id: "nonexistent".into(), verbose: false }).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);

    let samples = parse(&scrape(port));
    assert_eq!(value(&samples, "berth_image_pulls_total", &[("result", "success")]), 1.0);
    assert_eq!(value(&samples, "berth_image_pulls_total", &[("result", "failure")]), 1.0);
    assert_eq!(value(&samples, "berth_image_pull_failures_total", &[("cause", "not_found")]), 1.0);
    assert!(value(&samples, "berth_image_pull_bytes_total", &[]) > 100_000.0, "the test image's layers were downloaded");
    assert_eq!(value(&samples, "berth_image_pull_duration_seconds_count", &[]), 1.0);
    let rpc = |method: &'static str, code: &'static str| [("service", "runtime.v1.RuntimeService"), ("method", method), ("code", code)];
    assert_eq!(value(&samples, "berth_grpc_requests_total", &rpc("RunPodSandbox", "Ok")), 2.0);
    assert_eq!(value(&samples, "berth_grpc_requests_total", &rpc("ExecSync", "Ok")), 2.0);
    assert_eq!(value(&samples, "berth_grpc_requests_total", &rpc("ContainerStatus", "NotFound")), 1.0);
    let image_rpc = [("service", "runtime.v1.ImageService"), ("method", "PullImage"), ("code", "NotFound")];
    assert_eq!(value(&samples, "berth_grpc_requests_total", &image_rpc), 1.0);
    let timed = [("service", "runtime.v1.RuntimeService"), ("method", "StartContainer")];
    assert_eq!(value(&samples, "berth_grpc_request_duration_seconds_count", &timed), 3.0);
    assert!(value(&samples, "berth_grpc_request_duration_seconds_sum", &timed) > 0.0);
    assert_eq!(value(&samples, "berth_pods", &[("state", "ready")]), 2.0);
    assert_eq!(value(&samples, "berth_containers", &[("state", "running")]), 2.0);
    assert_eq!(value(&samples, "berth_containers", &[("state", "exited")]), 1.0);
    assert_eq!(value(&samples, "berth_shims", &[]), 2.0, "one per running container");
    assert_eq!(value(&samples, "berth_exec_sessions_total", &[("kind", "sync")]), 2.0);
    assert_eq!(value(&samples, "berth_exec_sessions_active", &[("kind", "sync")]), 0.0);
    assert!(value(&samples, "process_resident_memory_bytes", &[]) > 1e6);
    assert!(value(&samples, "process_open_fds", &[]) > 3.0);
    node.teardown().await;
}

/// A tmpfs of `size` on `path`, unmounted when dropped (lazily: the shim
/// may still hold a log open when a failing test unwinds).
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(path: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(path).unwrap();
        nix::mount::mount(Some("tmpfs"), path, Some("tmpfs"), nix::mount::MsFlags::empty(), Some(format!("size={size}").as_str())).unwrap();
        Tmpfs(path.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
    }
}

/// Zeros into `path` until the filesystem is full.
fn fill(path: &Path) {
    let mut f = std::fs::File::create(path).unwrap();
    let chunk = vec![0u8; 4096];
    while let Ok(n) = f.write(&chunk) {
        if n == 0 {
            break;
        }
    }
}

async fn log_condition(node: &mut Node) -> v1::RuntimeCondition {
    let status = node.rt.status(v1::StatusRequest { verbose: false }).await.unwrap().into_inner().status.unwrap();
    status.conditions.into_iter().find(|c| c.r#type == "ContainerLogsWritable").expect("the ContainerLogsWritable condition")
}

/// `logDrops` of ContainerStatus's verbose info.
async fn verbose_drops(node: &mut Node, id: &str) -> Value {
    let info = node.rt.container_status(v1::ContainerStatusRequest { container_id: id.into(), verbose: true }).await.unwrap().into_inner().info;
    let info: Value = serde_json::from_str(&info["info"]).unwrap();
    info["logDrops"].clone()
}

async fn poll<T>(what: &str, mut f: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(std::time::Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_container_log_on_a_full_disk_is_reported() {
    let port = free_port();
    let mut node = Node::start_with(&format!("metrics.address = \"127.0.0.1:{port}\""), "").await;
    // The pod's log directory is a small filesystem of its own.
    let disk = Tmpfs::mount(&node.logs.join("full"), "1m");
    let pod = node.run_pod("full").await;
    let script = "i=0; while :; do echo \"seq $i\"; i=$((i+1)); usleep 500; done";
    let id = node.run(&pod, "writer", &["sh", "-c", script]).await;
    poll("the first lines", async || (node.log_lines("full", "writer").len() >= 5).then_some(())).await;
    assert!(log_condition(&mut node).await.status, "nothing dropped yet");
    assert_eq!(verbose_drops(&mut node, &id).await, Value::Null);

    let filler = disk.0.join("filler");
    fill(&filler);
    let condition = poll("Status reports the dropping log", async || Some(log_condition(&mut node).await).filter(|c| !c.status)).await;
    assert_eq!(condition.reason, "ContainerLogDropping");
    assert!(condition.message.contains(&id[..12]) && condition.message.contains("no space left on device"), "{condition:?}");
    let drops = verbose_drops(&mut node, &id).await;
    assert_eq!((drops["dropping"].as_bool(), drops["lastError"].as_str()), (Some(true), Some("no space left on device")), "{drops}");
    let labels = [("container_id", id.as_str()), ("container", "writer"), ("pod", "full"), ("namespace", "test")];
    // The shim refreshes its counts at most once a second while it drops.
    let samples = poll("dropped lines counted", async || {
        let samples = parse(&scrape(port));
        (value(&samples, "berth_container_log_dropped_lines_total", &labels) >= 1.0).then_some(samples)
    })
    .await;
    assert_eq!(value(&samples, "berth_container_logs_dropping", &[]), 1.0);
    assert_eq!(node.status(&id).await.state, v1::ContainerState::ContainerRunning as i32);

    // Space returns: the marker in the log, and every report says so.
    std::fs::remove_file(&filler).unwrap();
    let marker = poll("the marker line", async || node.log_lines("full", "writer").into_iter().find(|l| l.starts_with("berth: dropped "))).await;
    let marked: f64 = marker.trim_start_matches("berth: dropped ").split(' ').next().unwrap().parse().unwrap();
    poll("Status reports the log writable again", async || log_condition(&mut node).await.status.then_some(())).await;
    let drops = verbose_drops(&mut node, &id).await;
    assert_eq!((drops["dropping"].as_bool(), drops["lines"].as_f64()), (Some(false), Some(marked)), "{drops} vs {marker}");
    let samples = parse(&scrape(port));
    assert_eq!(value(&samples, "berth_container_logs_dropping", &[]), 0.0);
    assert_eq!(value(&samples, "berth_container_log_dropped_lines_total", &labels), marked);
    assert!(value(&samples, "berth_container_log_dropped_bytes_total", &labels) > marked);
    assert_eq!(node.status(&id).await.state, v1::ContainerState::ContainerRunning as i32, "the container ran through it all");

    drop(disk);
    node.teardown().await;
}

#[test]
fn a_metrics_address_in_use_stops_berthd_at_start() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("c.toml");
    std::fs::write(
        &config,
        format!("socket = \"{0}/b.sock\"\nroot = \"{0}/root\"\nstate = \"{0}/state\"\n[metrics]\naddress = \"{address}\"\n", dir.path().display()),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_berthd")).arg("--config").arg(&config).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("[metrics] address {address}")) && err.contains("Address already in use"), "{err}");
}
