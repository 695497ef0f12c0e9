//! berthd killed and restarted under running pods; many pods at once.

mod common;

use std::time::Duration;

use common::{channel, node::Node};
use k8s_cri::v1::{self, runtime_service_client::RuntimeServiceClient};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_kill_9_and_a_restart_everything_is_listed_running_and_controllable() {
    let mut node = Node::start().await;
    let pod = node.run_pod("survivor").await;
    let steady = node.run(&pod, "steady", &["/bin/sh", "-c", "echo before; trap 'exit 0' TERM; while :; do sleep 0.1; done"]).await;
    let brief = node.run(&pod, "brief", &["/bin/sh", "-c", "sleep 1; exit 5"]).await;
    let created = node.create(&pod, node.container_config("idle", &["true"])).await.unwrap();

    node.berthd.restart_after(Duration::from_millis(1500));
    node.rt = RuntimeServiceClient::new(channel(&node.berthd.socket).await);

    let pods = node.rt.list_pod_sandbox(v1::ListPodSandboxRequest::default()).await.unwrap().into_inner().items;
    assert_eq!((pods.len(), pods[0].state), (1, v1::PodSandboxState::SandboxReady as i32));
    assert_eq!(node.status(&steady).await.state, v1::ContainerState::ContainerRunning as i32);
    let st = node.wait_exited(&brief, Duration::from_secs(10)).await;
    assert_eq!(st.exit_code, 5, "the exit that happened while berthd was down");
    assert_eq!(node.status(&created).await.state, v1::ContainerState::ContainerCreated as i32);
    // The running one still execs, logs and stops.
    let r = node.exec(&steady, &["echo", "after"], 5).await.unwrap();
    assert_eq!(String::from_utf8_lossy(&r.stdout), "after\n");
    // Names stay reserved.
    let e = node.create(&pod, node.container_config("steady", &["true"])).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::AlreadyExists);
    assert!(e.message().contains(&steady), "names the holder: {}", e.message());
    let e = node.rt.run_pod_sandbox(v1::RunPodSandboxRequest { config: Some(pod.1.clone()), runtime_handler: String::new() }).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::AlreadyExists);
    // The created one starts after the restart.
    node.rt.start_container(v1::StartContainerRequest { container_id: created.clone() }).await.unwrap();
    assert_eq!(node.wait_exited(&created, Duration::from_secs(10)).await.exit_code, 0);
    // A graceful stop (SIGTERM) leaves the containers running too.
    node.berthd.stop_gracefully();
    assert!(!node.berthd.socket.exists(), "the socket goes with a clean exit");
    node.berthd.restart_after(Duration::ZERO);
    node.rt = RuntimeServiceClient::new(channel(&node.berthd.socket).await);
    assert_eq!(node.status(&steady).await.state, v1::ContainerState::ContainerRunning as i32);
    node.rt.stop_container(v1::StopContainerRequest { container_id: steady.clone(), timeout: 5 }).await.unwrap();
    assert_eq!(node.status(&steady).await.exit_code, 0);
    assert_eq!(node.log_lines("survivor", "steady"), ["before"]);
    node.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_pods_start_concurrently() {
    let node = Node::start().await;
    let mut tasks = Vec::new();
    for i in 0..20 {
        let (mut rt, pod_config) = (node.rt.clone(), node.pod_config(&format!("many-{i}")));
        let container = node.container_config("main", &["sleep", "3600"]);
        tasks.push(tokio::spawn(async move {
            let pod_id = rt
                .run_pod_sandbox(v1::RunPodSandboxRequest { config: Some(pod_config.clone()), runtime_handler: String::new() })
                .await?
                .into_inner()
                .pod_sandbox_id;
            let req = v1::CreateContainerRequest { pod_sandbox_id: pod_id.clone(), config: Some(container), sandbox_config: Some(pod_config) };
            let id = rt.create_container(req).await?.into_inner().container_id;
            rt.start_container(v1::StartContainerRequest { container_id: id }).await?;
            Ok::<_, tonic::Status>(pod_id)
        }));
    }
    let mut ids = Vec::new();
    for t in tasks {
        ids.push(t.await.unwrap().unwrap());
    }
    let mut node = node;
    let mut ips = std::collections::HashSet::new();
    for id in &ids {
        let s = node.rt.pod_sandbox_status(v1::PodSandboxStatusRequest { pod_sandbox_id: id.clone(), verbose: false }).await.unwrap().into_inner();
        let status = s.status.unwrap();
        assert_eq!(status.state, v1::PodSandboxState::SandboxReady as i32);
        assert!(ips.insert(status.network.unwrap().ip), "IPs are unique");
        assert_eq!(s.containers_statuses.len(), 1);
        assert_eq!(s.containers_statuses[0].state, v1::ContainerState::ContainerRunning as i32);
    }
    node.teardown().await;
}
