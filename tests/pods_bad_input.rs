//! A confused kubelet: missing fields, unknown ids, names in use, absurd
//! values, a network that fails half way. Each gets a precise gRPC error
//! and leaves nothing half-made.

mod common;

use common::node::Node;
use k8s_cri::v1;
use tonic::Code;

fn expect(result: Result<impl std::fmt::Debug, tonic::Status>, code: Code, needle: &str) {
    let e = result.expect_err("must fail");
    assert_eq!(e.code(), code, "{e:?}");
    assert!(e.message().contains(needle), "{:?} should mention {needle:?}", e.message());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_pod_and_container_requests_get_precise_errors_and_leave_nothing() {
    let mut node = Node::start().await;
    let run = |config: Option<v1::PodSandboxConfig>, handler: &str| v1::RunPodSandboxRequest { config, runtime_handler: handler.into() };

    expect(node.rt.run_pod_sandbox(run(None, "")).await, Code::InvalidArgument, "config is missing");
    let mut no_meta = node.pod_config("x");
    no_meta.metadata = None;
    expect(node.rt.run_pod_sandbox(run(Some(no_meta), "")).await, Code::InvalidArgument, "config.metadata is missing");
    let mut no_uid = node.pod_config("x");
    no_uid.metadata.as_mut().unwrap().uid.clear();
    expect(node.rt.run_pod_sandbox(run(Some(no_uid), "")).await, Code::InvalidArgument, "config.metadata.uid");
    expect(node.rt.run_pod_sandbox(run(Some(node.pod_config("x")), "kata")).await, Code::InvalidArgument, "runtime_handler \"kata\"");
    let mut sysctl = node.pod_config("x");
    sysctl.linux.as_mut().unwrap().sysctls.insert("vm.swappiness".into(), "1".into());
    expect(node.rt.run_pod_sandbox(run(Some(sysctl), "")).await, Code::InvalidArgument, "vm.swappiness");

    // A systemd slice as parent under the cgroupfs driver (the kubelet and
    // berth disagree on the driver): the field and the driver are named.
    let mut slice = node.pod_config("x");
    slice.linux.as_mut().unwrap().cgroup_parent = "kubepods-burstable-podx.slice".into();
    let err = node.rt.run_pod_sandbox(run(Some(slice), "")).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("config.linux.cgroup_parent") && err.message().contains("cgroupfs"), "field and driver named: {}", err.message());

    let pod = node.run_pod("good").await;
    expect(node.rt.run_pod_sandbox(run(Some(pod.1.clone()), "")).await, Code::AlreadyExists, &pod.0);

    let unknown = "0".repeat(64);
    expect(node.rt.pod_sandbox_status(v1::PodSandboxStatusRequest { pod_sandbox_id: unknown.clone(), verbose: false }).await, Code::NotFound, &unknown);
    expect(node.rt.container_status(v1::ContainerStatusRequest { container_id: unknown.clone(), verbose: false }).await, Code::NotFound, &unknown);
    expect(node.rt.start_container(v1::StartContainerRequest { container_id: unknown.clone() }).await, Code::NotFound, &unknown);
    expect(node.rt.exec_sync(v1::ExecSyncRequest { container_id: unknown.clone(), cmd: vec!["true".into()], timeout: 1 }).await, Code::NotFound, &unknown);
    expect(node.rt.container_status(v1::ContainerStatusRequest { container_id: String::new(), verbose: false }).await, Code::InvalidArgument, "empty");

    let create = |pod_id: &str, pod_config: &v1::PodSandboxConfig, config: v1::ContainerConfig| v1::CreateContainerRequest {
        pod_sandbox_id: pod_id.into(),
        config: Some(config),
        sandbox_config: Some(pod_config.clone()),
    };
    let good = node.container_config("app", &["sleep", "3600"]);
    expect(node.rt.create_container(create(&unknown, &pod.1, good.clone())).await, Code::NotFound, "pod_sandbox_id");
    expect(
        node.rt.create_container(v1::CreateContainerRequest { pod_sandbox_id: pod.0.clone(), config: None, sandbox_config: None }).await,
        Code::InvalidArgument,
        "config is missing",
    );
    let mut no_image = good.clone();
    no_image.image = Some(v1::ImageSpec { image: "127.0.0.1:1/never/pulled:1".into(), ..Default::default() });
    expect(node.rt.create_container(create(&pod.0, &pod.1, no_image)).await, Code::NotFound, "never/pulled");
    let mut missing_path = good.clone();
    missing_path.mounts = vec![v1::Mount { container_path: "/data".into(), host_path: "/nonexistent/berth/data".into(), ..Default::default() }];
    expect(node.rt.create_container(create(&pod.0, &pod.1, missing_path)).await, Code::InvalidArgument, "config.mounts[0].host_path: /nonexistent/berth/data");
    let mut absurd = good.clone();
    absurd.linux.as_mut().unwrap().resources = Some(v1::LinuxContainerResources { cpu_quota: 10, ..Default::default() });
    expect(node.rt.create_container(create(&pod.0, &pod.1, absurd)).await, Code::InvalidArgument, "linux.resources.cpu_quota");
    let mut negative = good.clone();
    negative.linux.as_mut().unwrap().resources = Some(v1::LinuxContainerResources { memory_limit_in_bytes: -1, ..Default::default() });
    expect(node.rt.create_container(create(&pod.0, &pod.1, negative)).await, Code::InvalidArgument, "memory_limit_in_bytes");
    let mut bad_cap = good.clone();
    bad_cap.linux.as_mut().unwrap().security_context.as_mut().unwrap().capabilities =
        Some(v1::Capability { add_capabilities: vec!["FLY".into()], ..Default::default() });
    expect(node.rt.create_container(create(&pod.0, &pod.1, bad_cap)).await, Code::InvalidArgument, "FLY");
    let mut ghost = good.clone();
    ghost.linux.as_mut().unwrap().security_context.as_mut().unwrap().run_as_username = "ghost".into();
    expect(node.rt.create_container(create(&pod.0, &pod.1, ghost)).await, Code::InvalidArgument, "ghost");
    // A container whose sandbox_config is another pod's.
    let other = node.run_pod("other").await;
    expect(node.rt.create_container(create(&pod.0, &other.1, good.clone())).await, Code::InvalidArgument, "sandbox_config describes pod test/other");

    let id = node.create(&pod, good.clone()).await.unwrap();
    expect(node.create(&pod, good.clone()).await, Code::AlreadyExists, &id);
    node.rt.start_container(v1::StartContainerRequest { container_id: id.clone() }).await.unwrap();
    expect(node.rt.start_container(v1::StartContainerRequest { container_id: id.clone() }).await, Code::FailedPrecondition, "Running");
    expect(node.rt.stop_container(v1::StopContainerRequest { container_id: id.clone(), timeout: -1 }).await, Code::InvalidArgument, "timeout");
    expect(node.rt.exec_sync(v1::ExecSyncRequest { container_id: id.clone(), cmd: vec![], timeout: 1 }).await, Code::InvalidArgument, "cmd is empty");
    let absurd = v1::UpdateContainerResourcesRequest {
        container_id: id.clone(),
        linux: Some(v1::LinuxContainerResources { cpu_shares: -3, ..Default::default() }),
        ..Default::default()
    };
    expect(node.rt.update_container_resources(absurd).await, Code::InvalidArgument, "cpu_shares");

    // A command that does not exist fails Start, and the container says so.
    let id = node.create(&pod, node.container_config("nope", &["/bin/nope"])).await.unwrap();
    expect(node.rt.start_container(v1::StartContainerRequest { container_id: id.clone() }).await, Code::InvalidArgument, "/bin/nope");
    let st = node.status(&id).await;
    assert_eq!((st.state, st.reason.as_str()), (v1::ContainerState::ContainerExited as i32, "StartError"));

    // Only what succeeded exists: two pods, the app and the failed start.
    let containers = node.rt.list_containers(v1::ListContainersRequest::default()).await.unwrap().into_inner().containers;
    assert_eq!(containers.len(), 2);
    let layers_and_containers = std::fs::read_dir(node.berthd.root().join("snapshots/overlayfs/metadata")).unwrap().count();
    let image_layers = 2;
    assert_eq!(layers_and_containers, image_layers + 2, "no thin layer of a refused container is left");
    node.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_whose_network_fails_is_rolled_back_and_its_retry_works() {
    let mut node = Node::start().await;
    // A config that sorts first and whose IPAM cannot allocate.
    let broken = r#"{"cniVersion":"1.0.0","name":"broken","plugins":[{"type":"bridge","bridge":"btbroken","ipam":{"type":"host-local","ranges":[[{"subnet":"not-a-subnet"}]]}}]}"#;
    let broken_path = node.net.conf_dir.join("00-broken.conflist");
    std::fs::write(&broken_path, broken).unwrap();
    let config = node.pod_config("flaky");
    let e = node.rt.run_pod_sandbox(v1::RunPodSandboxRequest { config: Some(config.clone()), runtime_handler: String::new() }).await.unwrap_err();
    assert_eq!(e.code(), Code::Internal, "{e:?}");
    assert!(e.message().contains("bridge ADD failed"), "{}", e.message());
    assert!(node.rt.list_pod_sandbox(v1::ListPodSandboxRequest::default()).await.unwrap().into_inner().items.is_empty());
    let state = node.berthd.dir.path().join("state/sandboxes");
    assert_eq!(std::fs::read_dir(&state).map(|d| d.count()).unwrap_or(0), 0, "no pinned namespace or shm left");
    let dir = node.berthd.dir.path().display().to_string();
    assert!(!std::fs::read_to_string("/proc/self/mountinfo").unwrap().contains(&dir));
    let _ = std::process::Command::new("ip").args(["link", "del", "btbroken"]).output();

    std::fs::remove_file(&broken_path).unwrap();
    node.rt.run_pod_sandbox(v1::RunPodSandboxRequest { config: Some(config), runtime_handler: String::new() }).await.unwrap();
    node.teardown().await;
}

/// What berth cannot honour is refused, the field named, and leaves
/// nothing: a user namespace of a shape the kubelet never sends, an
/// idmapped mount in a pod without a user namespace, an AppArmor profile
/// on a host without AppArmor. Nothing is silently dropped. (CDI devices:
/// tests/cdi.rs; the rest of the user namespace refusals:
/// tests/user_namespaces.rs.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsupported_security_fields_are_refused_not_dropped() {
    let mut node = Node::start().await;
    let base = node.pod_config("userns");
    let userns = |mode: v1::NamespaceMode, maps: &[(u32, u32, u32)]| {
        let maps: Vec<v1::IdMapping> = maps.iter().map(|&(c, h, l)| v1::IdMapping { container_id: c, host_id: h, length: l }).collect();
        let mut config = base.clone();
        let sc = config.linux.as_mut().unwrap().security_context.as_mut().unwrap();
        sc.namespace_options.as_mut().unwrap().userns_options = Some(v1::UserNamespace { mode: mode as i32, uids: maps.clone(), gids: maps });
        v1::RunPodSandboxRequest { config: Some(config), runtime_handler: String::new() }
    };
    let field = "namespace_options.userns_options";
    for (req, needle) in [
        (userns(v1::NamespaceMode::Pod, &[(0, 1000, 100000), (0, 2000, 100000)]), "uids: exactly one mapping"),
        (userns(v1::NamespaceMode::Pod, &[(1, 1000, 100000)]), "must start at container id 0"),
        (userns(v1::NamespaceMode::Container, &[]), "CONTAINER is not valid"),
        (userns(v1::NamespaceMode::Target, &[]), "TARGET is not valid"),
    ] {
        let e = node.rt.run_pod_sandbox(req).await.expect_err("must be refused");
        assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
        assert!(e.message().contains(field) && e.message().contains(needle), "{e:?}");
    }
    assert!(node.rt.list_pod_sandbox(v1::ListPodSandboxRequest::default()).await.unwrap().into_inner().items.is_empty(), "no refused pod is left");
    // NODE is the host's user namespace: nothing to make, accepted.
    node.rt.run_pod_sandbox(userns(v1::NamespaceMode::Node, &[])).await.expect("mode NODE is what berth always does");

    let pod = node.run_pod("fields").await;
    let good = node.container_config("app", &["sleep", "3600"]);
    let mut idmapped = good.clone();
    idmapped.mounts = vec![v1::Mount {
        container_path: "/data".into(),
        host_path: "/tmp".into(),
        uid_mappings: vec![v1::IdMapping { container_id: 0, host_id: 1000, length: 1 }],
        ..Default::default()
    }];
    expect(node.create(&pod, idmapped).await, Code::InvalidArgument, "config.mounts[0].uid_mappings");
    let mut container_userns = good.clone();
    let sc = container_userns.linux.as_mut().unwrap().security_context.as_mut().unwrap();
    sc.namespace_options.as_mut().unwrap().userns_options = Some(v1::UserNamespace { mode: v1::NamespaceMode::Target as i32, ..Default::default() });
    expect(node.create(&pod, container_userns).await, Code::InvalidArgument, "config.linux.security_context.namespace_options.userns_options.mode");
    if !std::fs::read_to_string("/sys/module/apparmor/parameters/enabled").is_ok_and(|v| v.trim() == "Y") {
        let mut apparmor = good.clone();
        apparmor.linux.as_mut().unwrap().security_context.as_mut().unwrap().apparmor =
            Some(v1::SecurityProfile { profile_type: v1::security_profile::ProfileType::Localhost as i32, localhost_ref: "k8s-deny-write".into() });
        expect(node.create(&pod, apparmor).await, Code::InvalidArgument, "AppArmor is not enabled on this node");
        // runtime/default without AppArmor: no LSM to confine with, as for
        // every runtime on such a host.
        let mut default = node.container_config("apparmor-default", &["sleep", "3600"]);
        default.linux.as_mut().unwrap().security_context.as_mut().unwrap().apparmor =
            Some(v1::SecurityProfile { profile_type: v1::security_profile::ProfileType::RuntimeDefault as i32, ..Default::default() });
        node.create(&pod, default).await.expect("runtime/default on a host without AppArmor");
    }
    // A refused container leaves no name, thin layer or bundle: the same
    // config is created fine afterwards.
    node.create(&pod, good).await.expect("the plain container");
    node.teardown().await;
}
