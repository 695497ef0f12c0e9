//! berthd's threads do not grow with the containers it runs: a running
//! container's exit monitor waits on its shim as a future, not on a thread
//! (issue 15). And with fifty containers running, SIGTERM stops berthd
//! cleanly and promptly: no thread of it is stuck in a shim's Wait.
//! berthd runs with one malloc arena (see crates/daemon/src/malloc_arenas.rs).

mod common;

use std::time::{Duration, Instant};

use common::node::Node;
use k8s_cri::v1;

const CONTAINERS: usize = 50;

/// Idle threads of tokio's blocking pool end 3 s after their last task
/// (berthd's keep-alive): wait that out, then read the count.
const SETTLE: Duration = Duration::from_secs(5);

fn thread_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task")).unwrap().count()
}

/// The lowest thread count seen over `within`: a steady state, not one
/// caught in a short burst of blocking work.
async fn settled_thread_count(pid: u32, within: Duration) -> usize {
    tokio::time::sleep(SETTLE).await;
    let deadline = Instant::now() + within;
    let mut lowest = thread_count(pid);
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        lowest = lowest.min(thread_count(pid));
    }
    lowest
}

#[tokio::test(flavor = "multi_thread")]
async fn fifty_running_containers_take_no_more_threads_than_one() {
    let mut node = Node::start().await;
    let pid = node.berthd.child.id();
    let pod = node.run_pod("threads").await;
    let mut ids = vec![node.run(&pod, "c0", &["sleep", "3600"]).await];
    let with_one = settled_thread_count(pid, Duration::from_secs(2)).await;

    for i in 1..CONTAINERS {
        ids.push(node.run(&pod, &format!("c{i}"), &["sleep", "3600"]).await);
    }
    let running = node.rt.list_containers(v1::ListContainersRequest::default()).await.unwrap().into_inner().containers;
    assert_eq!(running.iter().filter(|c| c.state == v1::ContainerState::ContainerRunning as i32).count(), CONTAINERS, "all containers running");
    let with_fifty = settled_thread_count(pid, Duration::from_secs(2)).await;
    println!("berthd threads: {with_one} with 1 container running, {with_fifty} with {CONTAINERS}");
    assert!(with_fifty <= with_one, "berthd's threads grew with its containers: {with_one} with one running, {with_fifty} with {CONTAINERS}");

    // A graceful stop with every container still running: berthd exits 0
    // within its shutdown grace, and the containers keep running.
    let stop_started = Instant::now();
    node.berthd.stop_gracefully();
    let stop_took = stop_started.elapsed();
    assert!(stop_took < Duration::from_secs(8), "berthd took {stop_took:?} to stop with {CONTAINERS} containers running");
    node.berthd.start_again();
    node.rt = v1::runtime_service_client::RuntimeServiceClient::new(common::channel(&node.berthd.socket).await);
    for id in &ids {
        let status = node.status(id).await;
        assert_eq!(status.state, v1::ContainerState::ContainerRunning as i32, "container {id} still running after berthd's restart");
    }
    node.teardown().await;
}

/// berthd started without MALLOC_ARENA_MAX runs with it at 1, under its
/// own name and arguments; an operator's own value is kept.
#[tokio::test(flavor = "multi_thread")]
async fn berthd_runs_with_one_malloc_arena_unless_told_otherwise() {
    let environ = |pid: u32| std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    let has = |env: &[u8], entry: &str| env.split(|b| *b == 0).any(|e| e == entry.as_bytes());
    for (given, expected) in [(None, "MALLOC_ARENA_MAX=1"), (Some("3"), "MALLOC_ARENA_MAX=3")] {
        let berthd = common::Berthd::start_with_env("", &[("MALLOC_ARENA_MAX", given)]);
        let _ = common::channel(&berthd.socket).await;
        let pid = berthd.child.id();
        assert!(has(&environ(pid), expected), "{expected} not in berthd's environment (given {given:?})");
        assert_eq!(std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap().trim(), "berthd");
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
        assert!(cmdline.split(|b| *b == 0).any(|a| a == b"--config"), "berthd lost its arguments: {cmdline:?}");
    }
}
