//! Create, start, stop, recovery and rollback of the RuntimeService, on
//! the fakes: every test asserts what was made, what was undone, and what
//! the caller was told.

use std::time::Duration;

use containerd_shim_protos::api;
use k8s_cri::v1;

use super::{
    container_config, container_request, eventually, fakes::FAKE_PID, node_with_running_container, pod_request, pod_request_with_pid, ready_pod,
    running_container, state_of, Node,
};
use crate::{
    error::Error,
    state::{ContainerState, SandboxState},
};

fn id_of(call: &str) -> &str {
    call.split_whitespace().nth(1).unwrap_or_default()
}

// ---- RunPodSandbox ----

#[tokio::test]
async fn run_pod_sandbox_makes_namespaces_shm_and_network_and_saves_a_ready_record() {
    let node = Node::new().await;
    let rt = node.start().await;
    let id = ready_pod(&node, &rt, "web").await;
    let sandbox = rt.sandboxes.get(&id).unwrap();
    let record = sandbox.snapshot();
    assert_eq!(record.state, SandboxState::Ready);
    assert_eq!(record.ip.as_deref(), Some("10.88.0.7"));
    assert!(record.netns.is_some() && record.ipcns.is_some() && record.utsns.is_some() && record.shm.is_some());
    let calls = node.world.calls();
    let order: Vec<&str> = calls.iter().map(|c| c.split_whitespace().next().unwrap()).filter(|c| !c.starts_with("shim.find")).collect();
    assert_eq!(order, ["host.create_namespaces", "host.mount_shm", "cni.setup"], "{calls:?}");
    assert_eq!(node.pod_records(), [id.as_str()]);
    let saved: crate::state::SandboxRecord = berth_store::load_record(&node.paths.sandbox_record(&id).unwrap()).unwrap();
    assert_eq!(saved.state, SandboxState::Ready);
    assert!(saved.cni_result.is_some());
}

#[tokio::test]
async fn a_failed_cni_add_undoes_the_namespaces_and_shm_and_frees_the_name() {
    let node = Node::new().await;
    let rt = node.start().await;
    node.world.fail("cni.setup");
    let err = rt.run_pod_sandbox(pod_request("web")).await.unwrap_err();
    assert!(err.to_string().contains("fake ADD failure"), "{err}");
    let setup = node.world.calls_of("cni.setup");
    let pod = id_of(&setup[0]).to_string();
    let state_dir = node.paths.sandbox_state(&pod).unwrap();
    let calls = node.world.calls();
    // DEL after a failed ADD (the plugins that succeeded release what they
    // took), then the namespaces and the shm go.
    assert!(calls.contains(&format!("cni.teardown {pod} prev=false")), "{calls:?}");
    assert!(calls.contains(&format!("host.remove_namespaces {}", state_dir.join("ns").display())), "{calls:?}");
    assert!(calls.contains(&format!("host.unmount_shm {}", state_dir.join("shm").display())), "{calls:?}");
    assert!(rt.sandboxes.list().is_empty(), "the failed pod is still listed");
    assert!(node.pod_records().is_empty(), "a record of the failed pod is on disk: {:?}", node.pod_records());
    assert!(!state_dir.exists(), "the failed pod's state dir is left");
    // The name is free again: the kubelet's retry succeeds.
    node.world.heal("cni.setup");
    rt.run_pod_sandbox(pod_request("web")).await.unwrap();
}

#[tokio::test]
async fn a_failure_after_cni_add_tears_the_network_down() {
    let node = Node::new().await;
    let rt = node.start().await;
    // The save of the Ready record fails: its path is a non-empty directory.
    let paths = node.paths.clone();
    node.world.after_cni_setup(move |pod| {
        let record = paths.sandbox_record(pod).unwrap();
        let _ = std::fs::remove_file(&record);
        std::fs::create_dir_all(record.join("in-the-way")).unwrap();
    });
    let err = rt.run_pod_sandbox(pod_request("web")).await.unwrap_err();
    let pod = id_of(&node.world.calls_of("cni.setup")[0]).to_string();
    let calls = node.world.calls();
    let setup = calls.iter().position(|c| c.starts_with("cni.setup")).unwrap();
    // The DEL gets the ADD's result.
    let teardown = calls.iter().position(|c| c == &format!("cni.teardown {pod} prev=true")).unwrap_or_else(|| panic!("no CNI DEL after {err}: {calls:?}"));
    let unpin = calls.iter().position(|c| c.starts_with("host.remove_namespaces")).unwrap();
    assert!(setup < teardown && teardown < unpin, "{calls:?}");
    assert!(rt.sandboxes.list().is_empty());
    assert!(node.pod_records().is_empty(), "{:?}", node.pod_records());
    rt.run_pod_sandbox(pod_request("web")).await.unwrap();
}

#[tokio::test]
async fn failing_namespaces_leave_nothing_and_never_reach_cni() {
    let node = Node::new().await;
    let rt = node.start().await;
    node.world.fail("host.namespaces");
    rt.run_pod_sandbox(pod_request("web")).await.unwrap_err();
    assert!(node.world.calls_of("cni.").is_empty(), "{:?}", node.world.calls());
    assert!(rt.sandboxes.list().is_empty());
    assert!(node.pod_records().is_empty());
    node.world.heal("host.namespaces");
    rt.run_pod_sandbox(pod_request("web")).await.unwrap();
}

#[tokio::test]
async fn a_pause_that_fails_to_start_is_ended_and_the_pod_undone() {
    let node = Node::new().await;
    let rt = node.start().await;
    node.world.fail("shim.task_start");
    rt.run_pod_sandbox(pod_request_with_pid("shared", v1::NamespaceMode::Pod)).await.unwrap_err();
    let pod = id_of(&node.world.calls_of("shim.launch")[0]).to_string();
    let calls = node.world.calls();
    for call in [format!("shim.kill {pod} 9 all"), format!("shim.delete {pod}"), format!("shim.shutdown {pod}")] {
        assert!(calls.contains(&call), "{call} missing: {calls:?}");
    }
    assert!(node.world.calls_of("cni.setup").is_empty(), "{calls:?}");
    assert!(node.world.calls_of("host.remove_namespaces").len() == 1, "{calls:?}");
    assert!(node.world.live_shims().is_empty(), "a pause shim is left: {:?}", node.world.live_shims());
    assert!(rt.sandboxes.list().is_empty() && node.pod_records().is_empty());
}

#[tokio::test]
async fn the_same_pod_twice_is_already_exists_even_concurrently() {
    let node = Node::new().await;
    let rt = node.start().await;
    let first = ready_pod(&node, &rt, "web").await;
    let again = rt.run_pod_sandbox(pod_request("web")).await.unwrap_err();
    assert!(matches!(&again, Error::AlreadyExists(m) if m.contains(&first)), "{again:?}");

    let (a, b) = tokio::join!(rt.run_pod_sandbox(pod_request("db")), rt.run_pod_sandbox(pod_request("db")));
    let (ok, err): (Vec<_>, Vec<_>) = [a, b].into_iter().partition(|r| r.is_ok());
    assert_eq!(ok.len(), 1, "exactly one of two concurrent RunPodSandbox of one name succeeds");
    assert!(matches!(&err[0], Err(Error::AlreadyExists(_))), "{:?}", err[0]);
    assert_eq!(node.world.calls_of("cni.setup").len(), 2, "web once, db once");
}

#[tokio::test]
async fn stop_pod_sandbox_stops_its_containers_and_takes_the_pod_down_idempotently() {
    let node = Node::new().await;
    let rt = node.start().await;
    let pod = ready_pod(&node, &rt, "web").await;
    let c = running_container(&rt, &pod, "app").await;
    let created = rt.create_container(container_request(&pod, "later")).await.unwrap().container_id;
    rt.stop_pod_sandbox(v1::StopPodSandboxRequest { pod_sandbox_id: pod.clone() }).await.unwrap();
    assert_eq!(state_of(&rt, &c), ContainerState::Exited);
    assert_eq!(rt.containers.get(&c).unwrap().snapshot().exit_code, 137);
    let record = rt.sandboxes.get(&pod).unwrap().snapshot();
    assert_eq!(record.state, SandboxState::NotReady);
    assert!(record.netns.is_none() && record.cni_result.is_none());
    assert_eq!(node.world.calls_of("cni.teardown").len(), 1);
    // Nothing starts or is created in a stopped pod.
    let err = rt.start_container(v1::StartContainerRequest { container_id: created }).await.unwrap_err();
    assert!(matches!(&err, Error::FailedPrecondition(m) if m.contains("not ready")), "{err:?}");
    let err = rt.create_container(container_request(&pod, "other")).await.unwrap_err();
    assert!(matches!(&err, Error::FailedPrecondition(_)), "{err:?}");
    // Again: success, and the network is not asked twice for nothing.
    rt.stop_pod_sandbox(v1::StopPodSandboxRequest { pod_sandbox_id: pod.clone() }).await.unwrap();
    assert_eq!(node.world.calls_of("cni.teardown").len(), 1, "{:?}", node.world.calls());
    rt.stop_pod_sandbox(v1::StopPodSandboxRequest { pod_sandbox_id: "f".repeat(64) }).await.unwrap();
}

#[tokio::test]
async fn a_failing_cni_del_still_unpins_the_namespaces() {
    let node = Node::new().await;
    let rt = node.start().await;
    let pod = ready_pod(&node, &rt, "web").await;
    node.world.fail("cni.teardown");
    rt.stop_pod_sandbox(v1::StopPodSandboxRequest { pod_sandbox_id: pod.clone() }).await.unwrap();
    assert_eq!(node.world.calls_of("host.remove_namespaces").len(), 1);
    assert_eq!(rt.sandboxes.get(&pod).unwrap().snapshot().state, SandboxState::NotReady);
}

#[tokio::test]
async fn remove_pod_sandbox_removes_its_containers_records_and_names() {
    let node = Node::new().await;
    let rt = node.start().await;
    let pod = ready_pod(&node, &rt, "web").await;
    let c = running_container(&rt, &pod, "app").await;
    rt.remove_pod_sandbox(v1::RemovePodSandboxRequest { pod_sandbox_id: pod.clone() }).await.unwrap();
    assert!(rt.sandboxes.list().is_empty() && rt.containers.list().is_empty());
    assert!(node.pod_records().is_empty() && node.container_records().is_empty());
    assert!(node.thin_layers().is_empty(), "{:?}", node.thin_layers());
    assert!(node.world.calls().contains(&format!("snapshot.remove {c}")));
    // Both names are free.
    let pod = ready_pod(&node, &rt, "web").await;
    rt.create_container(container_request(&pod, "app")).await.unwrap();
}

// ---- CreateContainer ----

#[tokio::test]
async fn create_container_prepares_a_thin_layer_writes_the_bundle_and_runs_nothing() {
    let node = Node::new().await;
    let rt = node.start().await;
    let pod = ready_pod(&node, &rt, "web").await;
    node.world.forget_calls();
    let id = rt.create_container(container_request(&pod, "app")).await.unwrap().container_id;
    assert_eq!(state_of(&rt, &id), ContainerState::Created);
    assert_eq!(node.thin_layers(), [id.as_str()]);
    assert!(node.paths.bundle(&id).unwrap().join("config.json").exists());
    assert_eq!(node.container_records(), [id.as_str()]);
    assert!(node.world.calls_of("shim.").is_empty(), "create started something: {:?}", node.world.calls());
    let again = rt.create_container(container_request(&pod, "app")).await.unwrap_err();
    assert!(matches!(&again, Error::AlreadyExists(m) if m.contains(&id)), "{again:?}");
}

#[tokio::test]
async fn concurrent_creates_of_one_name_make_one_container() {
    let node = Node::new().await;
    let rt = node.start().await;
    let pod = ready_pod(&node, &rt, "web").await;
    let (a, b) = tokio::join!(rt.create_container(container_request(&pod, "app")), rt.create_container(container_request(&pod, "app")));
    let (ok, err): (Vec<_>, Vec<_>) = [a, b].into_iter().partition(|r| r.is_ok());
    assert_eq!(ok.len(), 1, "{err:?}");
    assert!(matches!(&err[0], Err(Error::AlreadyExists(_))), "{:?}", err[0]);
    assert_eq!(rt.containers.list().len(), 1);
    assert_eq!(node.thin_layers().len(), 1, "the refused create made a thin layer: {:?}", node.thin_layers());
}

#[tokio::test]
async fn concurrent_starts_of_one_container_start_it_once() {
    let node = Node::new().await;
    let rt = node.start().await;
    let pod = ready_pod(&node, &rt, "web").await;
    let id = rt.create_container(container_request(&pod, "app")).await.unwrap().container_id;
    let start = || rt.start_container(v1::StartContainerRequest { container_id: id.clone() });
    let (a, b) = tokio::join!(start(), start());
    let (ok, err): (Vec<_>, Vec<_>) = [a, b].into_iter().partition(|r| r.is_ok());
    assert_eq!(ok.len(), 1, "{err:?}");
    assert!(matches!(&err[0], Err(Error::FailedPrecondition(m)) if m.contains("Running")), "{:?}", err[0]);
    assert_eq!(node.world.calls_of("shim.launch").len(), 1, "{:?}", node.world.calls());
    assert_eq!(state_of(&rt, &id), ContainerState::Running);
}

#[tokio::test]
async fn a_create_that_fails_after_its_snapshot_removes_it_and_frees_the_name() {
    let node = Node::new().await;
    let rt = node.start().await;
    let pod = ready_pod(&node, &rt, "web").await;
    let mut config = container_config("app");
    // Checked after the thin layer is made: the host path does not exist.
    config.mounts.push(v1::Mount { container_path: "/data".into(), host_path: node.dir.path().join("nowhere").display().to_string(), ..Default::default() });
    let req = v1::CreateContainerRequest { pod_sandbox_id: pod.clone(), config: Some(config), sandbox_config: None };
    let err = rt.create_container(req).await.unwrap_err();
    assert!(matches!(&err, Error::InvalidArgument(m) if m.contains("config.mounts[0].host_path")), "{err:?}");
    let prepared = node.world.calls_of("snapshot.prepare");
    assert_eq!(prepared.len(), 1, "{:?}", node.world.calls());
    let id = id_of(&prepared[0]).to_string();
    assert!(node.world.calls().contains(&format!("snapshot.remove {id}")), "{:?}", node.world.calls());
    assert!(node.thin_layers().is_empty(), "{:?}", node.thin_layers());
    assert!(!node.paths.bundle(&id).unwrap().exists(), "the bundle is left");
    assert!(rt.containers.list().is_empty() && node.container_records().is_empty());
    rt.create_container(container_request(&pod, "app")).await.unwrap();
}

#[tokio::test]
async fn a_failed_snapshot_prepare_leaves_no_container() {
    let node = Node::new().await;
    let rt = node.start().await;
    let pod = ready_pod(&node, &rt, "web").await;
    node.world.fail("snapshot.prepare");
    let err = rt.create_container(container_request(&pod, "app")).await.unwrap_err();
    assert!(err.to_string().contains("fake prepare failure"), "{err}");
    assert!(rt.containers.list().is_empty() && node.container_records().is_empty() && node.thin_layers().is_empty());
    node.world.heal("snapshot.prepare");
    rt.create_container(container_request(&pod, "app")).await.unwrap();
}

#[tokio::test]
async fn bad_create_input_is_invalid_argument_naming_the_field_before_anything_is_made() {
    let node = Node::new().await;
    let rt = node.start().await;
    let pod = ready_pod(&node, &rt, "web").await;
    node.world.forget_calls();
    let cases: Vec<(Option<v1::ContainerConfig>, &str)> = vec![
        (None, "config is missing"),
        (Some(v1::ContainerConfig { metadata: None, ..container_config("x") }), "config.metadata"),
        (
            Some(v1::ContainerConfig { metadata: Some(v1::ContainerMetadata { name: String::new(), attempt: 0 }), ..container_config("x") }),
            "config.metadata.name",
        ),
        (Some(v1::ContainerConfig { image: None, ..container_config("x") }), "config.image.image"),
        (Some(v1::ContainerConfig { log_path: "../../etc/x".into(), ..container_config("x") }), "config.log_path"),
        (Some(v1::ContainerConfig { cdi_devices: vec![v1::CdiDevice { name: "not a device".into() }], ..container_config("x") }), "CDI_devices"),
    ];
    for (config, field) in cases {
        let req = v1::CreateContainerRequest { pod_sandbox_id: pod.clone(), config, sandbox_config: None };
        let err = rt.create_container(req).await.unwrap_err();
        assert!(matches!(&err, Error::InvalidArgument(m) if m.contains(field)), "{field}: {err:?}");
    }
    let err = rt.create_container(container_request("", "x")).await.unwrap_err();
    assert!(matches!(&err, Error::InvalidArgument(m) if m.contains("pod sandbox id")), "{err:?}");
    let err = rt.create_container(container_request(&"e".repeat(64), "x")).await.unwrap_err();
    assert!(matches!(&err, Error::NotFound(m) if m.contains("pod_sandbox_id")), "{err:?}");
    assert!(node.world.calls_of("snapshot.").is_empty(), "{:?}", node.world.calls());
    assert!(rt.containers.list().is_empty() && node.container_records().is_empty());
}

// ---- StartContainer ----

#[tokio::test]
async fn start_runs_the_task_and_its_exit_is_recorded_then_deleted() {
    let (node, rt, id) = node_with_running_container().await;
    let c = rt.containers.get(&id).unwrap();
    assert_eq!(c.state(), ContainerState::Running);
    assert_eq!(c.snapshot().pid, FAKE_PID);
    let calls = node.world.calls_of("shim.");
    assert!(
        calls.starts_with(&[
            format!("shim.launch {id} {}", node.paths.bundle(&id).unwrap().display()),
            format!("shim.create {id} rootfs=1"),
            format!("shim.start {id} ")
        ]),
        "{calls:?}"
    );
    let saved: crate::state::ContainerRecord = berth_store::load_record(&node.paths.container_record(&id).unwrap()).unwrap();
    assert_eq!(saved.state, ContainerState::Running);

    node.world.shim(&id).unwrap().exit(3);
    tokio::time::timeout(Duration::from_secs(5), c.wait_exited()).await.unwrap();
    let r = c.snapshot();
    assert_eq!((r.state, r.exit_code, r.reason.as_str()), (ContainerState::Exited, 3, "Error"));
    assert!(node.world.calls().contains(&format!("shim.delete {id}")));
    assert!(node.world.live_shims().is_empty(), "the shim outlived its task's Delete");
    let saved: crate::state::ContainerRecord = berth_store::load_record(&node.paths.container_record(&id).unwrap()).unwrap();
    assert_eq!((saved.state, saved.exit_code), (ContainerState::Exited, 3));
}

#[tokio::test]
async fn start_is_only_for_created_containers() {
    let (node, rt, id) = node_with_running_container().await;
    node.world.forget_calls();
    let err = rt.start_container(v1::StartContainerRequest { container_id: id.clone() }).await.unwrap_err();
    assert!(matches!(&err, Error::FailedPrecondition(m) if m.contains("Running")), "{err:?}");
    assert!(node.world.calls_of("shim.launch").is_empty());
    node.world.shim(&id).unwrap().exit(0);
    rt.containers.get(&id).unwrap().wait_exited().await;
    let err = rt.start_container(v1::StartContainerRequest { container_id: id.clone() }).await.unwrap_err();
    assert!(matches!(&err, Error::FailedPrecondition(m) if m.contains("Exited")), "{err:?}");
    let err = rt.start_container(v1::StartContainerRequest { container_id: "d".repeat(64) }).await.unwrap_err();
    assert!(matches!(&err, Error::NotFound(_)), "{err:?}");
}

#[tokio::test]
async fn a_task_create_that_fails_leaves_no_shim_and_an_exited_start_error() {
    let node = Node::new().await;
    let rt = node.start().await;
    let pod = ready_pod(&node, &rt, "web").await;
    let id = rt.create_container(container_request(&pod, "app")).await.unwrap().container_id;
    node.world.fail("shim.create");
    let err = rt.start_container(v1::StartContainerRequest { container_id: id.clone() }).await.unwrap_err();
    assert!(err.to_string().contains("fake create failure"), "{err}");
    let r = rt.containers.get(&id).unwrap().snapshot();
    assert_eq!((r.state, r.reason.as_str(), r.exit_code), (ContainerState::Exited, "StartError", 128));
    let saved: crate::state::ContainerRecord = berth_store::load_record(&node.paths.container_record(&id).unwrap()).unwrap();
    assert_eq!(saved.state, ContainerState::Exited);
    let calls = node.world.calls();
    assert!(calls.contains(&format!("shim.kill {id} 9 all")) && calls.contains(&format!("shim.shutdown {id}")), "{calls:?}");
    assert!(node.world.live_shims().is_empty(), "{:?}", node.world.live_shims());
    // The live shim undid its own work: no dead-shim cleanup.
    assert!(!calls.contains(&format!("host.unmount {}", node.paths.bundle(&id).unwrap().join("rootfs").display())), "{calls:?}");
    // The thin layer stays until RemoveContainer; the kubelet removes it.
    assert_eq!(node.thin_layers(), [id.as_str()]);
    rt.remove_container(v1::RemoveContainerRequest { container_id: id.clone() }).await.unwrap();
    assert!(node.thin_layers().is_empty() && node.container_records().is_empty());
}

#[tokio::test]
async fn a_shim_that_dies_during_a_failed_start_is_cleaned_up_after() {
    let node = Node::new().await;
    let rt = node.start().await;
    let pod = ready_pod(&node, &rt, "web").await;
    let id = rt.create_container(container_request(&pod, "app")).await.unwrap().container_id;
    node.world.fail("shim.task_start");
    node.world.fail("shim.delete_dies");
    rt.start_container(v1::StartContainerRequest { container_id: id.clone() }).await.unwrap_err();
    let rootfs = node.paths.bundle(&id).unwrap().join("rootfs");
    assert!(node.world.calls().contains(&format!("host.unmount {}", rootfs.display())), "{:?}", node.world.calls());
    assert!(!node.paths.shim_socket(&id).exists(), "the dead shim's socket is left");
    assert_eq!(state_of(&rt, &id), ContainerState::Exited);
}

#[tokio::test]
async fn a_shim_that_fails_to_launch_is_a_start_error() {
    let node = Node::new().await;
    let rt = node.start().await;
    let pod = ready_pod(&node, &rt, "web").await;
    let id = rt.create_container(container_request(&pod, "app")).await.unwrap().container_id;
    node.world.fail("shim.launch");
    let err = rt.start_container(v1::StartContainerRequest { container_id: id.clone() }).await.unwrap_err();
    assert!(err.to_string().contains("fake launch failure"), "{err}");
    assert_eq!(rt.containers.get(&id).unwrap().snapshot().reason, "StartError");
}

// ---- StopContainer ----

#[tokio::test]
async fn stop_sends_the_stop_signal_and_waits_for_the_exit() {
    let (node, rt, id) = node_with_running_container().await;
    node.world.forget_calls();
    rt.stop_container(v1::StopContainerRequest { container_id: id.clone(), timeout: 10 }).await.unwrap();
    let r = rt.containers.get(&id).unwrap().snapshot();
    assert_eq!((r.state, r.exit_code), (ContainerState::Exited, 128 + 15));
    assert_eq!(node.world.calls_of("shim.kill"), [format!("shim.kill {id} 15")]);
}

#[tokio::test]
async fn stop_kills_after_the_timeout_when_the_signal_is_ignored() {
    let (node, rt, id) = node_with_running_container().await;
    node.world.fail("shim.ignore_term");
    node.world.forget_calls();
    let began = std::time::Instant::now();
    rt.stop_container(v1::StopContainerRequest { container_id: id.clone(), timeout: 1 }).await.unwrap();
    assert!(began.elapsed() >= Duration::from_secs(1), "SIGKILL before the timeout");
    assert_eq!(node.world.calls_of("shim.kill"), [format!("shim.kill {id} 15"), format!("shim.kill {id} 9 all")]);
    let r = rt.containers.get(&id).unwrap().snapshot();
    assert_eq!((r.state, r.exit_code), (ContainerState::Exited, 137));
}

#[tokio::test]
async fn stop_of_what_is_not_running_is_a_no_op() {
    let node = Node::new().await;
    let rt = node.start().await;
    let pod = ready_pod(&node, &rt, "web").await;
    let id = running_container(&rt, &pod, "app").await;
    rt.stop_container(v1::StopContainerRequest { container_id: id.clone(), timeout: 0 }).await.unwrap();
    let created = rt.create_container(container_request(&pod, "idle")).await.unwrap().container_id;
    node.world.forget_calls();
    let before = rt.containers.get(&id).unwrap().snapshot();
    for target in [&id, &created] {
        rt.stop_container(v1::StopContainerRequest { container_id: target.clone(), timeout: 5 }).await.unwrap();
    }
    rt.stop_container(v1::StopContainerRequest { container_id: "c".repeat(64), timeout: 5 }).await.unwrap();
    assert!(node.world.calls_of("shim.").is_empty(), "{:?}", node.world.calls());
    let after = rt.containers.get(&id).unwrap().snapshot();
    assert_eq!((after.finished_at, after.exit_code), (before.finished_at, before.exit_code));
    assert_eq!(state_of(&rt, &created), ContainerState::Created);
    let err = rt.stop_container(v1::StopContainerRequest { container_id: id, timeout: -1 }).await.unwrap_err();
    assert!(matches!(&err, Error::InvalidArgument(m) if m.contains("timeout")), "{err:?}");
}

#[tokio::test]
async fn a_shim_lost_while_running_is_an_unknown_exit() {
    let (node, rt, id) = node_with_running_container().await;
    node.world.kill_shim(&id);
    let c = rt.containers.get(&id).unwrap();
    tokio::time::timeout(Duration::from_secs(5), c.wait_exited()).await.unwrap();
    let r = c.snapshot();
    assert_eq!((r.state, r.exit_code, r.reason.as_str()), (ContainerState::Exited, 255, "Unknown"));
    let rootfs = node.paths.bundle(&id).unwrap().join("rootfs");
    assert!(node.world.calls().contains(&format!("host.unmount {}", rootfs.display())), "{:?}", node.world.calls());
}

// ---- Recovery ----

#[tokio::test]
async fn a_restart_recovers_each_state() {
    let node = Node::new().await;
    let rt = node.start().await;
    let pod = ready_pod(&node, &rt, "web").await;
    let created = rt.create_container(container_request(&pod, "created")).await.unwrap().container_id;
    let running = running_container(&rt, &pod, "running").await;
    let lost = running_container(&rt, &pod, "lost").await;
    let exited = running_container(&rt, &pod, "exited").await;
    node.world.shim(&exited).unwrap().exit(7);
    rt.containers.get(&exited).unwrap().wait_exited().await;
    let stopped_pod = ready_pod(&node, &rt, "stopped").await;
    rt.stop_pod_sandbox(v1::StopPodSandboxRequest { pod_sandbox_id: stopped_pod.clone() }).await.unwrap();
    drop(rt);
    // berthd dies; meanwhile the shim of `lost` is killed.
    node.world.crash_berthd();
    node.world.kill_shim(&lost);
    node.world.forget_calls();

    let rt = node.start().await;
    assert_eq!(rt.sandboxes.get(&pod).unwrap().snapshot().state, SandboxState::Ready);
    assert!(rt.sandboxes.get(&pod).unwrap().snapshot().netns.is_some());
    assert_eq!(rt.sandboxes.get(&stopped_pod).unwrap().snapshot().state, SandboxState::NotReady);
    assert_eq!(state_of(&rt, &created), ContainerState::Created);
    assert_eq!(state_of(&rt, &running), ContainerState::Running);
    assert!(rt.containers.get(&running).unwrap().shim().is_some(), "not reconnected to the running shim");
    let r = rt.containers.get(&lost).unwrap().snapshot();
    assert_eq!((r.state, r.exit_code, r.reason.as_str()), (ContainerState::Exited, 255, "Unknown"));
    assert!(node.world.calls().contains(&format!("host.unmount {}", node.paths.bundle(&lost).unwrap().join("rootfs").display())));
    let r = rt.containers.get(&exited).unwrap().snapshot();
    assert_eq!((r.state, r.exit_code), (ContainerState::Exited, 7));
    // The names are held again.
    assert!(matches!(rt.create_container(container_request(&pod, "running")).await, Err(Error::AlreadyExists(_))));
    assert!(matches!(rt.run_pod_sandbox(pod_request("web")).await, Err(Error::AlreadyExists(_))));
    // The new berthd's exit monitor sees the running container's end.
    node.world.shim(&running).unwrap().exit(0);
    let c = rt.containers.get(&running).unwrap();
    tokio::time::timeout(Duration::from_secs(5), c.wait_exited()).await.unwrap();
    assert_eq!((c.snapshot().state, c.snapshot().reason.as_str()), (ContainerState::Exited, "Completed"));
    // And the created one can start.
    rt.start_container(v1::StartContainerRequest { container_id: created.clone() }).await.unwrap();
}

#[tokio::test]
async fn after_a_reboot_pods_are_not_ready_and_running_containers_exited() {
    let node = Node::new().await;
    let rt = node.start().await;
    let pod = ready_pod(&node, &rt, "web").await;
    let running = running_container(&rt, &pod, "app").await;
    drop(rt);
    node.world.reboot();
    let rt = node.start().await;
    let record = rt.sandboxes.get(&pod).unwrap().snapshot();
    assert_eq!(record.state, SandboxState::NotReady);
    assert!(record.netns.is_none() && record.cni_result.is_none() && record.shm.is_none());
    let r = rt.containers.get(&running).unwrap().snapshot();
    assert_eq!((r.state, r.exit_code), (ContainerState::Exited, 255));
    // The stale pins are removed; the pod can be stopped and removed.
    rt.remove_pod_sandbox(v1::RemovePodSandboxRequest { pod_sandbox_id: pod }).await.unwrap();
    assert!(node.pod_records().is_empty() && node.container_records().is_empty() && node.thin_layers().is_empty());
}

#[tokio::test]
async fn a_restart_finishes_what_a_crash_left_half_done() {
    let node = Node::new().await;
    let rt = node.start().await;
    let pod = ready_pod(&node, &rt, "web").await;
    // A Start that ran the task but died before saving Running.
    let started = rt.create_container(container_request(&pod, "started")).await.unwrap().container_id;
    // A Start that died after Create, before the task ran.
    let half = rt.create_container(container_request(&pod, "half")).await.unwrap().container_id;
    // A Start whose shim died too: its socket is left.
    let dead = rt.create_container(container_request(&pod, "dead")).await.unwrap().container_id;
    // An exit saved, then berthd died before the shim's Delete.
    let exited = running_container(&rt, &pod, "exited").await;
    drop(rt);
    node.world.crash_berthd();
    node.world.put_shim(&started, &node.paths.shim_socket(&started), api::Status::RUNNING);
    // ... with an exec whose client went with the old berthd.
    let exec_out = node.paths.bundle(&started).unwrap().join("exec-0123456789abcdef.out");
    std::fs::write(&exec_out, b"").unwrap();
    node.world.put_shim(&half, &node.paths.shim_socket(&half), api::Status::CREATED);
    std::fs::write(node.paths.shim_socket(&dead), b"").unwrap();
    {
        let path = node.paths.container_record(&exited).unwrap();
        let mut r: crate::state::ContainerRecord = berth_store::load_record(&path).unwrap();
        r.mark_exited(&crate::state::ExitInfo { code: 1, at: 1, reason: "Error".into(), message: String::new() }).unwrap();
        berth_store::save_record(&path, &r).unwrap();
        let shim = node.world.shim(&exited).unwrap();
        shim.exit(1);
    }
    // Left by creates that died: a thin layer and a bundle without a
    // record, a container dir whose record was never written.
    node.images.snapshots.prepare("0123abcd", Some(super::LAYER)).unwrap();
    std::fs::create_dir_all(node.paths.bundle(&"9".repeat(64)).unwrap().join("rootfs")).unwrap();
    std::fs::create_dir_all(node.paths.container_dir(&"8".repeat(64)).unwrap()).unwrap();
    node.world.forget_calls();

    let rt = node.start().await;
    let r = rt.containers.get(&started).unwrap().snapshot();
    assert_eq!((r.state, r.pid), (ContainerState::Running, FAKE_PID));
    let saved: crate::state::ContainerRecord = berth_store::load_record(&node.paths.container_record(&started).unwrap()).unwrap();
    assert_eq!(saved.state, ContainerState::Running, "the start found at recovery is not saved");
    let calls = node.world.calls();
    for call in [format!("shim.kill {started} 9 exec=exec-0123456789abcdef"), format!("shim.delete_exec {started} exec-0123456789abcdef")] {
        assert!(calls.contains(&call), "{call} missing: {calls:?}");
    }
    assert!(!exec_out.exists(), "the orphaned exec's stdio file is left");

    assert_eq!(state_of(&rt, &half), ContainerState::Created);
    let calls = node.world.calls();
    for call in [format!("shim.kill {half} 9 all"), format!("shim.delete {half}"), format!("shim.shutdown {half}")] {
        assert!(calls.contains(&call), "{call} missing: {calls:?}");
    }
    assert!(node.world.shim(&half).is_none(), "the half-started shim still runs");

    assert_eq!(state_of(&rt, &dead), ContainerState::Created);
    assert!(calls.contains(&format!("host.unmount {}", node.paths.bundle(&dead).unwrap().join("rootfs").display())), "{calls:?}");
    assert!(!node.paths.shim_socket(&dead).exists());

    assert_eq!(state_of(&rt, &exited), ContainerState::Exited);
    assert!(calls.contains(&format!("shim.delete {exited}")), "{calls:?}");
    assert!(node.world.shim(&exited).is_none());

    assert_eq!(node.thin_layers(), {
        let mut v = vec![started.clone(), half.clone(), dead.clone(), exited.clone()];
        v.sort();
        v
    });
    assert!(!node.paths.bundle(&"9".repeat(64)).unwrap().exists(), "an orphan bundle is left");
    assert!(!node.paths.container_dir(&"8".repeat(64)).unwrap().exists(), "a record-less container dir is left");
    assert_eq!(rt.containers.list().len(), 4);
    // The new berthd's monitor waits on the task found running.
    node.world.shim(&started).unwrap().exit(0);
    eventually("the recovered start's exit is recorded", || state_of(&rt, &started) == ContainerState::Exited).await;
}

#[tokio::test]
async fn recovery_drops_containers_of_removed_pods() {
    let node = Node::new().await;
    let rt = node.start().await;
    let pod = ready_pod(&node, &rt, "web").await;
    let id = rt.create_container(container_request(&pod, "app")).await.unwrap().container_id;
    drop(rt);
    node.world.crash_berthd();
    std::fs::remove_dir_all(node.paths.sandbox_dir(&pod).unwrap()).unwrap();
    let rt = node.start().await;
    assert!(rt.containers.list().is_empty());
    assert!(node.container_records().is_empty() && node.thin_layers().is_empty());
    assert!(node.world.calls().contains(&format!("snapshot.remove {id}")));
    // The pod's stale state (pins) is unpinned.
    assert!(node.world.calls().contains(&format!("host.remove_namespaces {}", node.paths.sandbox_state(&pod).unwrap().join("ns").display())));
}

#[tokio::test]
async fn remove_container_answers_once_the_records_are_gone_and_deletes_the_files_after() {
    let (node, rt, id) = node_with_running_container().await;
    let layer = rt.snapshots.stat(&id).unwrap();
    let layer_dir = rt.snapshots.fs_dir(&layer);
    let record_dir = node.paths.container_dir(&id).unwrap();
    std::fs::write(layer_dir.join("written-by-the-container"), "x").unwrap();
    rt.remove_container(v1::RemoveContainerRequest { container_id: id.clone() }).await.unwrap();
    // At the answer: no record, no thin layer, no bundle, nothing under
    // the old paths; what is left is in the trash.
    assert!(node.thin_layers().is_empty() && node.container_records().is_empty());
    assert!(!layer_dir.exists() && !record_dir.exists() && !node.paths.bundle(&id).unwrap().exists());
    let trash = node.paths.trash();
    eventually("the trash is emptied", || std::fs::read_dir(&trash).map(|d| d.count() == 0).unwrap_or(true)).await;
}

#[tokio::test]
async fn files_left_in_the_trash_by_a_crash_are_deleted_at_start() {
    let node = Node::new().await;
    let trash = node.paths.trash();
    std::fs::create_dir_all(trash.join("c1.0/fs/etc")).unwrap();
    std::fs::write(trash.join("c1.0/fs/etc/hosts"), "x").unwrap();
    let _rt = node.start().await;
    assert_eq!(std::fs::read_dir(&trash).unwrap().count(), 0);
}

#[tokio::test]
async fn a_start_whose_client_gives_up_still_finishes() {
    use k8s_cri::v1::runtime_service_server::RuntimeService;
    let node = Node::new().await;
    let rt = node.start().await;
    let pod = ready_pod(&node, &rt, "web").await;
    let id = rt.create_container(container_request(&pod, "app")).await.unwrap().container_id;
    let server = crate::runtime::RuntimeServer::for_runtime(rt.clone());
    node.world.fail("shim.launch_slow");
    // The client's deadline passes while the shim starts: tonic drops the
    // handler's future, as here.
    let call = server.start_container(tonic::Request::new(v1::StartContainerRequest { container_id: id.clone() }));
    assert!(tokio::time::timeout(Duration::from_millis(50), call).await.is_err(), "the call was meant to outlast its deadline");
    eventually("the start finishes without its client", || rt.containers.get(&id).unwrap().snapshot().state == ContainerState::Running).await;
    assert_eq!(node.world.live_shims(), [id.as_str()]);
}
