//! RuntimeService end to end: a real berthd, real shims, namespaces,
//! cgroups, overlay mounts and CNI bridge networking.

mod common;

use std::time::{Duration, Instant};

use common::node::Node;
use k8s_cri::v1;

const RUNNING: i32 = v1::ContainerState::ContainerRunning as i32;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_runs_execs_logs_stops_and_is_removed_without_a_trace() {
    let mut node = Node::start().await;
    let pod = node.run_pod("web").await;

    let status = node.rt.pod_sandbox_status(v1::PodSandboxStatusRequest { pod_sandbox_id: pod.0.clone(), verbose: false }).await.unwrap().into_inner();
    let s = status.status.unwrap();
    assert_eq!(s.state, v1::PodSandboxState::SandboxReady as i32);
    let ip = s.network.unwrap().ip;
    assert!(ip.starts_with(&node.net.subnet_prefix()), "pod IP {ip:?} from the test bridge's subnet");

    // The container traps SIGTERM so Stop's signal reaches it, and logs.
    let script = "trap 'echo got TERM; exit 3' TERM; echo hello from $(hostname); echo oops >&2; while :; do sleep 0.1; done";
    let id = node.run(&pod, "app", &["/bin/sh", "-c", script]).await;
    let st = node.status(&id).await;
    assert_eq!(st.state, RUNNING);
    assert!(st.started_at >= st.created_at && st.created_at > 0);
    assert_eq!(st.log_path, node.logs.join("web/app.log").display().to_string());

    // ExecSync: output, stderr, exit code; the container's hostname, IP and
    // pod files.
    let r = node.exec(&id, &["/bin/sh", "-c", "hostname; cat /etc/hostname; ip -4 addr show eth0 | grep -c inet; echo err >&2; exit 7"], 10).await.unwrap();
    assert_eq!(String::from_utf8_lossy(&r.stdout), "web\nweb\n1\n");
    assert_eq!((String::from_utf8_lossy(&r.stderr).as_ref(), r.exit_code), ("err\n", 7));
    let r = node.exec(&id, &["/bin/sh", "-c", "cat /etc/resolv.conf | grep -c nameserver; ls /dev/shm && echo shm-ok"], 10).await.unwrap();
    assert!(String::from_utf8_lossy(&r.stdout).contains("shm-ok"), "{r:?}");

    // Lists with filters.
    let by_label = v1::ContainerFilter { label_selector: [("container".to_string(), "app".to_string())].into(), ..Default::default() };
    let list = node.rt.list_containers(v1::ListContainersRequest { filter: Some(by_label) }).await.unwrap().into_inner().containers;
    assert_eq!(list.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(), [id.as_str()]);
    let by_state = v1::ContainerFilter { state: Some(v1::ContainerStateValue { state: v1::ContainerState::ContainerExited as i32 }), ..Default::default() };
    assert!(node.rt.list_containers(v1::ListContainersRequest { filter: Some(by_state) }).await.unwrap().into_inner().containers.is_empty());
    let pods = node.rt.list_pod_sandbox(v1::ListPodSandboxRequest { filter: Some(v1::PodSandboxFilter { id: pod.0[..12].to_string(), ..Default::default() }) }).await.unwrap().into_inner().items;
    assert_eq!(pods.len(), 1);

    // Stop: the stop signal first; the container's trap answers it.
    let started = Instant::now();
    node.rt.stop_container(v1::StopContainerRequest { container_id: id.clone(), timeout: 10 }).await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(5), "stopped by SIGTERM, not by the timeout");
    let st = node.status(&id).await;
    assert_eq!((st.state, st.exit_code, st.reason.as_str()), (v1::ContainerState::ContainerExited as i32, 3, "Error"));
    assert!(st.finished_at >= st.started_at);
    // Stop again, and on unknown ids: success, as the CRI says.
    node.rt.stop_container(v1::StopContainerRequest { container_id: id.clone(), timeout: 0 }).await.unwrap();
    node.rt.stop_container(v1::StopContainerRequest { container_id: "f".repeat(64), timeout: 0 }).await.unwrap();

    // stdout and stderr are separate pipes: each in order, interleaved as
    // the shim read them (as with every runtime).
    let mut lines = node.log_lines("web", "app");
    lines.sort();
    assert_eq!(lines, ["got TERM", "hello from web", "oops"], "the CRI log has stdout and stderr");

    node.rt.remove_container(v1::RemoveContainerRequest { container_id: id.clone() }).await.unwrap();
    node.rt.remove_container(v1::RemoveContainerRequest { container_id: id.clone() }).await.unwrap();
    let e = node.rt.container_status(v1::ContainerStatusRequest { container_id: id.clone(), verbose: false }).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound);

    node.rt.stop_pod_sandbox(v1::StopPodSandboxRequest { pod_sandbox_id: pod.0.clone() }).await.unwrap();
    node.rt.stop_pod_sandbox(v1::StopPodSandboxRequest { pod_sandbox_id: pod.0.clone() }).await.unwrap();
    let s = node.rt.pod_sandbox_status(v1::PodSandboxStatusRequest { pod_sandbox_id: pod.0.clone(), verbose: false }).await.unwrap().into_inner().status.unwrap();
    assert_eq!(s.state, v1::PodSandboxState::SandboxNotready as i32);
    // A stopped pod takes no new containers.
    let e = node.create(&pod, node.container_config("late", &["true"])).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{e:?}");
    node.rt.remove_pod_sandbox(v1::RemovePodSandboxRequest { pod_sandbox_id: pod.0.clone() }).await.unwrap();
    node.rt.remove_pod_sandbox(v1::RemovePodSandboxRequest { pod_sandbox_id: pod.0.clone() }).await.unwrap();
    node.teardown().await;
}
