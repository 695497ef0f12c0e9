//! ExecSync and UpdateContainerResources on the fakes: what reaches the
//! shim, what the caller is told, what is kept, and what is left behind.

use k8s_cri::v1;

use super::{container_request, fakes::ExecScript, node_with_running_container, ready_pod, running_container, state_of, Node};
use crate::{error::Error, state::ContainerState};

fn exec_request(id: &str, cmd: &[&str], timeout: i64) -> v1::ExecSyncRequest {
    v1::ExecSyncRequest { container_id: id.into(), cmd: cmd.iter().map(|s| s.to_string()).collect(), timeout }
}

/// Files in the container's bundle other than its spec and rootfs (an
/// exec's output files, while it runs).
fn bundle_leftovers(node: &Node, id: &str) -> Vec<String> {
    super::ls(&node.paths.bundle(id).unwrap()).into_iter().filter(|n| n != "config.json" && n != "rootfs").collect()
}

fn spec_resources(node: &Node, id: &str) -> serde_json::Value {
    let spec: serde_json::Value = serde_json::from_slice(&std::fs::read(node.paths.bundle(id).unwrap().join("config.json")).unwrap()).unwrap();
    spec["linux"]["resources"].clone()
}

// ---- ExecSync ----

#[tokio::test]
async fn exec_sync_answers_the_output_and_exit_code_and_leaves_nothing() {
    let (node, rt, id) = node_with_running_container().await;
    node.world.script_execs(ExecScript { stdout: b"out\n".to_vec(), stderr: b"err\n".to_vec(), exit: Some(3) });
    node.world.forget_calls();

    let answer = rt.exec_sync(exec_request(&id, &["sh", "-c", "exit 3"], 0)).await.unwrap();
    assert_eq!((answer.stdout.as_slice(), answer.stderr.as_slice(), answer.exit_code), (&b"out\n"[..], &b"err\n"[..], 3));
    // The calls for the exec (the container's own Wait is the exit monitor's).
    let exec_id = node.world.calls_of("shim.exec")[0].rsplit(' ').next().unwrap().to_string();
    let calls: Vec<String> = node.world.calls().into_iter().filter(|c| c.ends_with(&format!(" {exec_id}"))).collect();
    assert_eq!(calls, ["exec", "start", "wait", "delete_exec"].map(|verb| format!("shim.{verb} {id} {exec_id}")));
    assert_eq!(bundle_leftovers(&node, &id), Vec::<String>::new(), "the exec's output files stay");
    assert_eq!(state_of(&rt, &id), ContainerState::Running);
}

#[tokio::test]
async fn an_exec_sync_past_its_timeout_is_killed_deleted_and_deadline_exceeded() {
    let (node, rt, id) = node_with_running_container().await;
    node.world.script_execs(ExecScript { exit: None, ..Default::default() });
    node.world.forget_calls();

    let err = rt.exec_sync(exec_request(&id, &["sleep", "1000"], 1)).await.unwrap_err();
    assert!(matches!(&err, Error::DeadlineExceeded(m) if m.contains("timed out after 1s")), "{err:?}");
    let exec_id = node.world.calls_of("shim.exec")[0].rsplit(' ').next().unwrap().to_string();
    assert_eq!(node.world.calls_of("shim.kill"), [format!("shim.kill {id} 9 exec={exec_id}")]);
    assert_eq!(node.world.calls_of("shim.delete_exec"), [format!("shim.delete_exec {id} {exec_id}")]);
    assert_eq!(bundle_leftovers(&node, &id), Vec::<String>::new());
    // Only the exec ended.
    assert_eq!(state_of(&rt, &id), ContainerState::Running);
}

#[tokio::test]
async fn exec_sync_needs_a_command_and_a_running_container() {
    let node = Node::new().await;
    let rt = node.start().await;
    let pod = ready_pod(&node, &rt, "web").await;
    let running = running_container(&rt, &pod, "app").await;
    let created = rt.create_container(container_request(&pod, "idle")).await.unwrap().container_id;
    node.world.forget_calls();

    let err = rt.exec_sync(exec_request(&running, &[], 0)).await.unwrap_err();
    assert!(matches!(&err, Error::InvalidArgument(m) if m.contains("cmd")), "{err:?}");
    let err = rt.exec_sync(exec_request(&running, &["true"], -1)).await.unwrap_err();
    assert!(matches!(&err, Error::InvalidArgument(m) if m.contains("timeout")), "{err:?}");
    let err = rt.exec_sync(exec_request(&created, &["true"], 0)).await.unwrap_err();
    assert!(matches!(&err, Error::FailedPrecondition(m) if m.contains("Created")), "{err:?}");
    let err = rt.exec_sync(exec_request(&"e".repeat(64), &["true"], 0)).await.unwrap_err();
    assert!(matches!(&err, Error::NotFound(_)), "{err:?}");
    node.world.shim(&running).unwrap().exit(0);
    rt.containers.get(&running).unwrap().wait_exited().await;
    let err = rt.exec_sync(exec_request(&running, &["true"], 0)).await.unwrap_err();
    assert!(matches!(&err, Error::FailedPrecondition(m) if m.contains("Exited")), "{err:?}");
    assert_eq!(node.world.calls_of("shim.exec"), Vec::<String>::new());
}

// ---- UpdateContainerResources ----

fn update(id: &str, resources: v1::LinuxContainerResources) -> v1::UpdateContainerResourcesRequest {
    v1::UpdateContainerResourcesRequest { container_id: id.into(), linux: Some(resources), ..Default::default() }
}

#[tokio::test]
async fn an_update_of_a_running_container_goes_to_its_shim_and_survives_a_restart() {
    let (node, rt, id) = node_with_running_container().await;
    node.world.forget_calls();

    let limits = v1::LinuxContainerResources { cpu_shares: 512, memory_limit_in_bytes: 64 << 20, oom_score_adj: 500, ..Default::default() };
    rt.update_container_resources(update(&id, limits.clone())).await.unwrap();
    assert_eq!(
        node.world.calls_of("shim.update"),
        [format!(r#"shim.update {id} {{"cpu":{{"shares":512}},"memory":{{"limit":67108864}}}} io.berth.oom-score-adj=500"#)]
    );
    // A later update that sets only the CPU keeps the memory limit, in the
    // cgroup (the shim leaves what the update does not name) and so in
    // the status.
    rt.update_container_resources(update(&id, v1::LinuxContainerResources { cpu_shares: 1024, ..Default::default() })).await.unwrap();
    let limits = v1::LinuxContainerResources { cpu_shares: 1024, ..limits };
    assert_eq!(rt.containers.get(&id).unwrap().snapshot().resources, limits);
    drop(rt);
    node.world.crash_berthd();
    let rt = node.start().await;
    assert_eq!(rt.containers.get(&id).unwrap().snapshot().resources, limits);
}

#[tokio::test]
async fn an_update_of_a_created_container_reaches_the_spec_its_start_uses() {
    let node = Node::new().await;
    let rt = node.start().await;
    let pod = ready_pod(&node, &rt, "web").await;
    let id = rt.create_container(container_request(&pod, "app")).await.unwrap().container_id;
    let devices = spec_resources(&node, &id)["devices"].clone();
    node.world.forget_calls();

    let limits =
        v1::LinuxContainerResources { cpu_quota: 50_000, cpu_period: 100_000, memory_limit_in_bytes: 32 << 20, oom_score_adj: 300, ..Default::default() };
    rt.update_container_resources(update(&id, limits.clone())).await.unwrap();
    assert_eq!(node.world.calls_of("shim."), Vec::<String>::new(), "a created container has no task to update");
    let resources = spec_resources(&node, &id);
    assert_eq!(resources["cpu"], serde_json::json!({ "quota": 50_000, "period": 100_000 }));
    assert_eq!(resources["memory"], serde_json::json!({ "limit": 32 << 20 }));
    assert_eq!(resources["devices"], devices, "the device rules are not the update's");
    let spec: serde_json::Value = serde_json::from_slice(&std::fs::read(node.paths.bundle(&id).unwrap().join("config.json")).unwrap()).unwrap();
    assert_eq!(spec["process"]["oomScoreAdj"], 300);
    assert_eq!(rt.containers.get(&id).unwrap().snapshot().resources, limits);
    rt.start_container(v1::StartContainerRequest { container_id: id.clone() }).await.unwrap();
    assert_eq!(state_of(&rt, &id), ContainerState::Running);
}

#[tokio::test]
async fn an_update_the_shim_refuses_changes_no_record() {
    let (node, rt, id) = node_with_running_container().await;
    let before = rt.containers.get(&id).unwrap().snapshot().resources;
    node.world.fail("shim.update");

    let err = rt.update_container_resources(update(&id, v1::LinuxContainerResources { cpu_shares: 4, ..Default::default() })).await.unwrap_err();
    assert!(err.to_string().contains("fake update failure"), "{err}");
    assert_eq!(rt.containers.get(&id).unwrap().snapshot().resources, before);
    let saved: crate::state::ContainerRecord = berth_store::load_record(&node.paths.container_record(&id).unwrap()).unwrap();
    assert_eq!(saved.resources, before);
}

#[tokio::test]
async fn updates_need_valid_limits_and_a_container_that_has_not_exited() {
    let (node, rt, id) = node_with_running_container().await;
    node.world.forget_calls();

    let err = rt.update_container_resources(v1::UpdateContainerResourcesRequest { container_id: id.clone(), ..Default::default() }).await.unwrap_err();
    assert!(matches!(&err, Error::InvalidArgument(m) if m.contains("linux")), "{err:?}");
    let err = rt.update_container_resources(update(&id, v1::LinuxContainerResources { cpu_period: 5, ..Default::default() })).await.unwrap_err();
    assert!(matches!(&err, Error::InvalidArgument(m) if m.contains("cpu_period")), "{err:?}");
    node.world.shim(&id).unwrap().exit(0);
    rt.containers.get(&id).unwrap().wait_exited().await;
    let err = rt.update_container_resources(update(&id, v1::LinuxContainerResources { cpu_shares: 512, ..Default::default() })).await.unwrap_err();
    assert!(matches!(&err, Error::FailedPrecondition(m) if m.contains("Exited")), "{err:?}");
    let err = rt.update_container_resources(update(&"f".repeat(64), v1::LinuxContainerResources::default())).await.unwrap_err();
    assert!(matches!(&err, Error::NotFound(_)), "{err:?}");
    assert_eq!(node.world.calls_of("shim.update"), Vec::<String>::new());
}
