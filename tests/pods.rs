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
    let pods = node
        .rt
        .list_pod_sandbox(v1::ListPodSandboxRequest { filter: Some(v1::PodSandboxFilter { id: pod.0[..12].to_string(), ..Default::default() }) })
        .await
        .unwrap()
        .into_inner()
        .items;
    assert_eq!(pods.len(), 1);
    let by_label = v1::PodSandboxFilter { label_selector: [("app".to_string(), "web".to_string())].into(), ..Default::default() };
    assert_eq!(node.rt.list_pod_sandbox(v1::ListPodSandboxRequest { filter: Some(by_label) }).await.unwrap().into_inner().items.len(), 1);
    let not_ready = v1::PodSandboxFilter { state: Some(v1::PodSandboxStateValue { state: v1::PodSandboxState::SandboxNotready as i32 }), ..Default::default() };
    assert!(node.rt.list_pod_sandbox(v1::ListPodSandboxRequest { filter: Some(not_ready) }).await.unwrap().into_inner().items.is_empty());

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
    let s =
        node.rt.pod_sandbox_status(v1::PodSandboxStatusRequest { pod_sandbox_id: pod.0.clone(), verbose: false }).await.unwrap().into_inner().status.unwrap();
    assert_eq!(s.state, v1::PodSandboxState::SandboxNotready as i32);
    // A stopped pod takes no new containers.
    let e = node.create(&pod, node.container_config("late", &["true"])).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{e:?}");
    node.rt.remove_pod_sandbox(v1::RemovePodSandboxRequest { pod_sandbox_id: pod.0.clone() }).await.unwrap();
    node.rt.remove_pod_sandbox(v1::RemovePodSandboxRequest { pod_sandbox_id: pod.0.clone() }).await.unwrap();
    node.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_pods_reach_each_other_over_the_cni_bridge() {
    let mut node = Node::start().await;
    let server = node.run_pod("server").await;
    let client = node.run_pod("client").await;
    node.run(&server, "httpd", &["httpd", "-f", "-p", "8080", "-h", "/etc"]).await;
    let curl = node.run(&client, "curl", &["sleep", "3600"]).await;
    let server_ip = node.pod_ip(&server.0).await;
    let client_ip = node.pod_ip(&client.0).await;
    assert_ne!(server_ip, client_ip);
    // busybox-static's wget crashes (static NSS); a raw request with nc.
    let request = format!("printf 'GET /motd HTTP/1.0\\r\\n\\r\\n' | nc {server_ip} 8080");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = node.exec(&curl, &["/bin/sh", "-c", &request], 10).await.unwrap();
        let answer = String::from_utf8_lossy(&r.stdout).to_string();
        if answer.starts_with("HTTP/1.1 200") {
            assert!(answer.ends_with("\r\n\r\nlayer two\n"), "{answer:?}");
            break;
        }
        assert!(Instant::now() < deadline, "no answer from {server_ip}:8080: {answer:?} {}", String::from_utf8_lossy(&r.stderr));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    node.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_follow_cpu_and_memory_use() {
    let mut node = Node::start().await;
    let pod = node.run_pod("busy").await;
    let id = node.run(&pod, "burn", &["/bin/sh", "-c", "while :; do :; done"]).await;
    let stats = |r: v1::ContainerStatsResponse| r.stats.unwrap();
    let first = stats(node.rt.container_stats(v1::ContainerStatsRequest { container_id: id.clone() }).await.unwrap().into_inner());
    tokio::time::sleep(Duration::from_millis(500)).await;
    let second = stats(node.rt.container_stats(v1::ContainerStatsRequest { container_id: id.clone() }).await.unwrap().into_inner());
    let cpu = |s: &v1::ContainerStats| s.cpu.as_ref().unwrap().usage_core_nano_seconds.as_ref().unwrap().value;
    assert!(cpu(&second) > cpu(&first) + 100_000_000, "a busy loop burns CPU: {} -> {}", cpu(&first), cpu(&second));
    let cores = second.cpu.as_ref().unwrap().usage_nano_cores.as_ref().unwrap().value;
    assert!(cores > 300_000_000, "about one core busy: {cores} nanocores");

    let memory = |s: &v1::ContainerStats| s.memory.as_ref().unwrap().working_set_bytes.as_ref().unwrap().value;
    let r = node.exec(&id, &["dd", "if=/dev/zero", "of=/dev/shm/fill", "bs=1M", "count=40"], 10).await.unwrap();
    assert_eq!(r.exit_code, 0, "{}", String::from_utf8_lossy(&r.stderr));
    let third = stats(node.rt.container_stats(v1::ContainerStatsRequest { container_id: id.clone() }).await.unwrap().into_inner());
    assert!(memory(&third) >= memory(&second) + (30 << 20), "40 MiB in the pod's /dev/shm: {} -> {}", memory(&second), memory(&third));
    let r = node.exec(&id, &["/bin/sh", "-c", "head -c 3000000 /dev/zero > /big"], 10).await.unwrap();
    assert_eq!(r.exit_code, 0);
    let layer = third_layer(&mut node, &id).await;
    assert!(layer >= 3_000_000, "the thin layer holds the written file: {layer}");

    // Traffic into the pod: connections refused by its eth0 (SYN in,
    // RST out) move the pod's counters, which match the kernel's own.
    let ip = node.pod_ip(&pod.0).await;
    for _ in 0..3 {
        let _ = std::net::TcpStream::connect_timeout(&format!("{ip}:9").parse().unwrap(), Duration::from_secs(1));
    }
    let pods = node.rt.list_pod_sandbox_stats(v1::ListPodSandboxStatsRequest::default()).await.unwrap().into_inner().stats;
    assert_eq!(pods.len(), 1);
    let linux = pods[0].linux.as_ref().unwrap();
    let eth0 = linux.network.as_ref().and_then(|n| n.default_interface.clone()).expect("the pod's network counters");
    let kernel = node.exec(&id, &["cat", "/sys/class/net/eth0/statistics/rx_bytes"], 5).await.unwrap();
    let kernel: u64 = String::from_utf8_lossy(&kernel.stdout).trim().parse().unwrap();
    let (rx, tx) = (eth0.rx_bytes.unwrap().value, eth0.tx_bytes.unwrap().value);
    assert!(eth0.name == "eth0" && rx >= 3 * 54 && tx > 0 && rx <= kernel, "eth0 rx {rx} tx {tx}, kernel rx {kernel}");
    assert_eq!(linux.containers.len(), 1);
    assert!(linux.cpu.as_ref().unwrap().usage_core_nano_seconds.as_ref().unwrap().value >= cpu(&second));
    let listed = node.rt.list_container_stats(v1::ListContainerStatsRequest::default()).await.unwrap().into_inner().stats;
    assert_eq!(listed.len(), 1);
    let metrics = node.rt.list_pod_sandbox_metrics(v1::ListPodSandboxMetricsRequest::default()).await.unwrap().into_inner().pod_metrics;
    assert_eq!(metrics[0].container_metrics[0].metrics.len(), 3);
    node.teardown().await;
}

async fn third_layer(node: &mut Node, id: &str) -> u64 {
    let s = node.rt.container_stats(v1::ContainerStatsRequest { container_id: id.into() }).await.unwrap().into_inner().stats.unwrap();
    s.writable_layer.unwrap().used_bytes.unwrap().value
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_over_its_memory_limit_is_reported_oom_killed() {
    let mut node = Node::start().await;
    let pod = node.run_pod("hungry").await;
    let mut config = node.container_config("eat", &["tail", "/dev/zero"]);
    let resources = v1::LinuxContainerResources { memory_limit_in_bytes: 32 << 20, memory_swap_limit_in_bytes: 32 << 20, ..Default::default() };
    config.linux.as_mut().unwrap().resources = Some(resources);
    let id = node.create(&pod, config).await.unwrap();
    node.rt.start_container(v1::StartContainerRequest { container_id: id.clone() }).await.unwrap();
    let st = node.wait_exited(&id, Duration::from_secs(30)).await;
    assert_eq!((st.exit_code, st.reason.as_str()), (137, "OOMKilled"));
    assert_eq!(st.resources.unwrap().linux.unwrap().memory_limit_in_bytes, 32 << 20);
    node.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_sync_honours_its_timeout_even_with_a_background_child_on_the_pipes() {
    let mut node = Node::start().await;
    let pod = node.run_pod("execs").await;
    let id = node.run(&pod, "main", &["sleep", "3600"]).await;
    // The command exits at once but leaves a child holding stdout.
    let started = Instant::now();
    let r = node.exec(&id, &["/bin/sh", "-c", "sleep 600 & echo started"], 8).await.unwrap();
    assert_eq!((String::from_utf8_lossy(&r.stdout).as_ref(), r.exit_code), ("started\n", 0));
    // The output files are the command's own fds: nothing to drain, so the
    // answer does not wait for the background child at all.
    assert!(started.elapsed() < Duration::from_secs(3), "answered in {:?}", started.elapsed());
    // A command that outlives its timeout is killed: DeadlineExceeded.
    let started = Instant::now();
    let e = node.exec(&id, &["sleep", "600"], 1).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::DeadlineExceeded, "{e:?}");
    assert!(started.elapsed() < Duration::from_secs(4), "took {:?}", started.elapsed());
    let ps = node.exec(&id, &["ps", "-o", "comm"], 5).await.unwrap();
    assert_eq!(
        String::from_utf8_lossy(&ps.stdout).matches("sleep").count(),
        2,
        "main and the background child; the timed-out one is gone: {}",
        String::from_utf8_lossy(&ps.stdout)
    );
    // Exec in a container that is not running.
    node.rt.stop_container(v1::StopContainerRequest { container_id: id.clone(), timeout: 0 }).await.unwrap();
    let e = node.exec(&id, &["true"], 5).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::FailedPrecondition);
    node.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containers_of_a_pod_can_share_one_pid_namespace_held_by_a_pause() {
    let mut node = Node::start().await;
    let shared = v1::NamespaceOption { pid: v1::NamespaceMode::Pod as i32, ..Default::default() };
    let mut config = node.pod_config("shared");
    config.linux.as_mut().unwrap().security_context.as_mut().unwrap().namespace_options = Some(shared.clone());
    let pod = node.run_pod_with(config).await;
    let mut ids = Vec::new();
    for (name, cmd) in [("first", "sleep 3601"), ("second", "sleep 3602")] {
        let mut c = node.container_config(name, &["/bin/sh", "-c", cmd]);
        c.linux.as_mut().unwrap().security_context.as_mut().unwrap().namespace_options = Some(shared.clone());
        let id = node.create(&pod, c).await.unwrap();
        node.rt.start_container(v1::StartContainerRequest { container_id: id.clone() }).await.unwrap();
        ids.push(id);
    }
    let ps = node.exec(&ids[1], &["ps", "-o", "pid,args"], 5).await.unwrap();
    let text = String::from_utf8_lossy(&ps.stdout).to_string();
    assert!(text.contains("sleep 3601") && text.contains("sleep 3602"), "each container sees the other's processes:\n{text}");
    let pid1 = node.exec(&ids[0], &["cat", "/proc/1/cmdline"], 5).await.unwrap();
    assert_eq!(String::from_utf8_lossy(&pid1.stdout), "berth-runtime\0init\0", "pid 1 is the pod pause: berth-runtime init, which never exec.d");
    // A container that wants the pod's PID namespace in a pod without one.
    let plain = node.run_pod("plain").await;
    let mut c = node.container_config("lost", &["true"]);
    c.linux.as_mut().unwrap().security_context.as_mut().unwrap().namespace_options = Some(shared);
    assert_eq!(node.create(&plain, c).await.unwrap_err().code(), tonic::Code::FailedPrecondition);
    node.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_updates_and_log_reopen_reach_the_running_container() {
    let mut node = Node::start().await;
    let mut events = node.rt.get_container_events(v1::GetEventsRequest {}).await.unwrap().into_inner();
    let pod = node.run_pod("ops").await;
    let id = node.run(&pod, "app", &["/bin/sh", "-c", "i=0; while :; do i=$((i+1)); echo line $i; sleep 0.05; done"]).await;

    let mut seen = Vec::new();
    while seen.len() < 2 {
        let e = tokio::time::timeout(Duration::from_secs(5), events.message()).await.unwrap().unwrap().unwrap();
        assert_eq!(e.container_id, id);
        assert_eq!(e.pod_sandbox_status.as_ref().unwrap().id, pod.0);
        seen.push(e.container_event_type);
    }
    assert_eq!(seen, [v1::ContainerEventType::ContainerCreatedEvent as i32, v1::ContainerEventType::ContainerStartedEvent as i32]);

    // New limits land in the container's cgroup and in its status.
    let resources = v1::LinuxContainerResources { memory_limit_in_bytes: 48 << 20, cpu_shares: 512, oom_score_adj: 600, ..Default::default() };
    node.rt
        .update_container_resources(v1::UpdateContainerResourcesRequest { container_id: id.clone(), linux: Some(resources), ..Default::default() })
        .await
        .unwrap();
    // oom_score_adj reaches the container's init (raised: lowering needs
    // CAP_SYS_RESOURCE, which not every host grants).
    let info = node.rt.container_status(v1::ContainerStatusRequest { container_id: id.clone(), verbose: true }).await.unwrap().into_inner().info;
    let pid = serde_json::from_str::<serde_json::Value>(&info["info"]).unwrap()["pid"].as_i64().unwrap();
    assert_eq!(std::fs::read_to_string(format!("/proc/{pid}/oom_score_adj")).unwrap().trim(), "600");
    let cgroup = berth_testkit::cgroups::HostCgroup::new(&format!("{}/ops/{id}", node.cgroup_parent));
    assert_eq!(cgroup.memory_limit().to_string().trim(), (48u64 << 20).to_string());
    assert_eq!(node.status(&id).await.resources.unwrap().linux.unwrap().cpu_shares, 512);
    // A quota, then -1 to lift it (what the update does not name stays).
    let quota = |q: i64| v1::UpdateContainerResourcesRequest {
        container_id: id.clone(),
        linux: Some(v1::LinuxContainerResources { cpu_quota: q, cpu_period: 100_000, ..Default::default() }),
        ..Default::default()
    };
    node.rt.update_container_resources(quota(50_000)).await.unwrap();
    let read_quota = || cgroup.read("cpu", "cpu.cfs_quota_us", "cpu.max").split_whitespace().next().unwrap_or_default().to_string();
    assert_eq!(read_quota(), "50000");
    node.rt.update_container_resources(quota(-1)).await.unwrap();
    assert!(matches!(read_quota().as_str(), "-1" | "max"), "the quota is lifted: {}", read_quota());
    let status = node.status(&id).await.resources.unwrap().linux.unwrap();
    assert_eq!((status.cpu_quota, status.cpu_shares, status.memory_limit_in_bytes), (-1, 512, 48 << 20));

    // The kubelet rotates the log: rename, then ReopenContainerLog.
    let log = node.logs.join("ops/app.log");
    let rotated = node.logs.join("ops/app.log.1");
    std::fs::rename(&log, &rotated).unwrap();
    node.rt.reopen_container_log(v1::ReopenContainerLogRequest { container_id: id.clone() }).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let fresh = std::fs::read_to_string(&log).unwrap();
    assert!(fresh.lines().count() >= 2, "new lines go to the new file: {fresh:?}");

    node.rt.stop_container(v1::StopContainerRequest { container_id: id.clone(), timeout: 0 }).await.unwrap();
    node.rt.remove_container(v1::RemoveContainerRequest { container_id: id.clone() }).await.unwrap();
    let mut rest = Vec::new();
    while rest.len() < 2 {
        let e = tokio::time::timeout(Duration::from_secs(5), events.message()).await.unwrap().unwrap().unwrap();
        rest.push(e.container_event_type);
    }
    assert_eq!(rest, [v1::ContainerEventType::ContainerStoppedEvent as i32, v1::ContainerEventType::ContainerDeletedEvent as i32]);
    let e = node.rt.reopen_container_log(v1::ReopenContainerLogRequest { container_id: id.clone() }).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound);
    node.teardown().await;
}

/// The kubelet may update a container between its Create and its Start
/// (in-place resize of a pod whose container waits); the container must
/// start with the new limits, not the ones it was created with.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_updated_before_start_are_the_ones_it_starts_with() {
    let mut node = Node::start().await;
    let pod = node.run_pod("resize").await;
    let mut config = node.container_config("app", &["sleep", "3600"]);
    config.linux.as_mut().unwrap().resources = Some(v1::LinuxContainerResources { memory_limit_in_bytes: 32 << 20, ..Default::default() });
    let id = node.create(&pod, config).await.unwrap();
    let resources = v1::LinuxContainerResources { memory_limit_in_bytes: 40 << 20, cpu_shares: 256, ..Default::default() };
    node.rt
        .update_container_resources(v1::UpdateContainerResourcesRequest { container_id: id.clone(), linux: Some(resources), ..Default::default() })
        .await
        .unwrap();
    node.rt.start_container(v1::StartContainerRequest { container_id: id.clone() }).await.unwrap();
    let cgroup = berth_testkit::cgroups::HostCgroup::new(&format!("{}/resize/{id}", node.cgroup_parent));
    assert_eq!(cgroup.memory_limit().to_string().trim(), (40u64 << 20).to_string());
    assert_eq!(node.status(&id).await.resources.unwrap().linux.unwrap().memory_limit_in_bytes, 40 << 20);
    node.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn security_context_and_mounts_shape_the_container() {
    let mut node = Node::start().await;
    let pod = node.run_pod("secure").await;
    let host = tempfile::tempdir().unwrap();
    std::fs::write(host.path().join("data.txt"), "from the host\n").unwrap();
    let rw = host.path().join("rw");
    std::fs::create_dir(&rw).unwrap();
    std::fs::set_permissions(&rw, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    std::fs::set_permissions(host.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let link = host.path().join("link");
    std::os::unix::fs::symlink(host.path(), &link).unwrap();

    let mut c = node.container_config("locked", &["sleep", "3600"]);
    c.mounts = vec![
        v1::Mount { container_path: "/data".into(), host_path: link.display().to_string(), readonly: true, ..Default::default() },
        v1::Mount { container_path: "/rw".into(), host_path: rw.display().to_string(), ..Default::default() },
    ];
    let sc = c.linux.as_mut().unwrap().security_context.as_mut().unwrap();
    sc.run_as_user = Some(v1::Int64Value { value: 1234 });
    sc.run_as_group = Some(v1::Int64Value { value: 5678 });
    sc.supplemental_groups = vec![4242];
    sc.readonly_rootfs = true;
    sc.no_new_privs = true;
    sc.capabilities = Some(v1::Capability { drop_capabilities: vec!["ALL".into()], add_capabilities: vec!["NET_BIND_SERVICE".into()], ..Default::default() });
    sc.seccomp = Some(v1::SecurityProfile { profile_type: v1::security_profile::ProfileType::RuntimeDefault as i32, ..Default::default() });
    let id = node.create(&pod, c).await.unwrap();
    node.rt.start_container(v1::StartContainerRequest { container_id: id.clone() }).await.unwrap();

    let run = |cmd: &str| cmd.to_string();
    let script = run("id -u; id -g; id -G; cat /data/data.txt; touch /data/x 2>/dev/null || echo data-ro; touch /oops 2>/dev/null || echo root-ro; \
                      grep CapBnd /proc/self/status; grep NoNewPrivs /proc/self/status; grep Seccomp: /proc/self/status; echo hi > /rw/out && echo rw-ok");
    let r = node.exec(&id, &["/bin/sh", "-c", &script], 10).await.unwrap();
    let out = String::from_utf8_lossy(&r.stdout).to_string();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(&lines[..6], ["1234", "5678", "5678 4242", "from the host", "data-ro", "root-ro"], "{out}");
    // A non-root process keeps no effective capability across exec (no
    // ambient set, as with every runtime); the bounding set shows the rest.
    assert!(lines[6].ends_with("0000000000000400"), "only CAP_NET_BIND_SERVICE is left: {}", lines[6]);
    assert!(lines[7].ends_with('1') && lines[8].ends_with('2'), "no_new_privs and a seccomp filter: {out}");
    assert_eq!(lines[9], "rw-ok");
    assert_eq!(std::fs::read_to_string(rw.join("out")).unwrap(), "hi\n");
    let st = node.status(&id).await;
    assert_eq!(st.mounts.len(), 2);
    let user = st.user.unwrap().linux.unwrap();
    // The primary group is among the process's groups, as getgroups(2) has it.
    assert_eq!((user.uid, user.gid, user.supplemental_groups), (1234, 5678, vec![4242, 5678]));

    // A host device under another name, and a Localhost seccomp profile
    // (OCI format) that refuses mkdir.
    let profile = host.path().join("no-mkdir.json");
    std::fs::write(&profile, r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir","mkdirat"],"action":"SCMP_ACT_ERRNO"}]}"#).unwrap();
    let mut d = node.container_config("devices", &["sleep", "3600"]);
    d.devices = vec![v1::Device { container_path: "/dev/xnull".into(), host_path: "/dev/null".into(), permissions: "rwm".into() }];
    d.linux.as_mut().unwrap().security_context.as_mut().unwrap().seccomp =
        Some(v1::SecurityProfile { profile_type: v1::security_profile::ProfileType::Localhost as i32, localhost_ref: profile.display().to_string() });
    let id = node.create(&pod, d).await.unwrap();
    node.rt.start_container(v1::StartContainerRequest { container_id: id.clone() }).await.unwrap();
    let r = node.exec(&id, &["/bin/sh", "-c", "echo x > /dev/xnull && echo dev-ok; mkdir /tmp/d 2>/dev/null || echo mkdir-refused"], 10).await.unwrap();
    assert_eq!(String::from_utf8_lossy(&r.stdout), "dev-ok\nmkdir-refused\n");

    // Privileged: every capability berthd holds, no seccomp, writable /sys.
    let mut p = node.container_config("root", &["sleep", "3600"]);
    p.linux.as_mut().unwrap().security_context.as_mut().unwrap().privileged = true;
    let id = node.create(&pod, p).await.unwrap();
    node.rt.start_container(v1::StartContainerRequest { container_id: id.clone() }).await.unwrap();
    let r = node
        .exec(&id, &["/bin/sh", "-c", "grep Seccomp: /proc/self/status; grep CapEff /proc/self/status; grep ' /sys ' /proc/self/mounts"], 10)
        .await
        .unwrap();
    let out = String::from_utf8_lossy(&r.stdout).to_string();
    assert!(
        out.contains("Seccomp:\t0")
            && out.contains(&format!(
                "CapEff:\t{}",
                std::fs::read_to_string("/proc/self/status").unwrap().lines().find_map(|l| l.strip_prefix("CapBnd:\t")).unwrap()
            ))
            && out.contains("sysfs rw"),
        "{out}"
    );
    node.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_port_reaches_the_pod_through_the_portmap_plugin() {
    let portmap = r#",{"type":"portmap","capabilities":{"portMappings":true},"snat":true}"#;
    let mut node = Node::start_with("", portmap).await;
    let host_port = 20000 + (std::process::id() % 10000) as i32;
    let mut config = node.pod_config("published");
    config.port_mappings = vec![v1::PortMapping { protocol: v1::Protocol::Tcp as i32, container_port: 8080, host_port, host_ip: String::new() }];
    let pod = node.run_pod_with(config).await;
    let pod_id = pod.0.clone();
    node.run(&pod, "httpd", &["httpd", "-f", "-p", "8080", "-h", "/etc"]).await;
    // The bridge's address is the node's own: traffic to it goes through
    // portmap's OUTPUT rules, as a node-local client's would.
    let gateway = format!("{}1", node.net.subnet_prefix());
    let deadline = Instant::now() + Duration::from_secs(10);
    let answer = loop {
        let attempt = tokio::net::TcpStream::connect((gateway.as_str(), host_port as u16)).await;
        if let Ok(mut s) = attempt {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            s.write_all(b"GET /motd HTTP/1.0\r\n\r\n").await.unwrap();
            let mut buf = String::new();
            s.read_to_string(&mut buf).await.unwrap();
            if buf.starts_with("HTTP/1.1 200") {
                break buf;
            }
        }
        assert!(Instant::now() < deadline, "nothing answers on {gateway}:{host_port}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(answer.ends_with("layer two\n"), "{answer}");
    let rules = |table: &str| String::from_utf8_lossy(&std::process::Command::new("iptables-save").args(["-t", table]).output().unwrap().stdout).to_string();
    assert!(rules("nat").contains(&format!("--dport {host_port}")), "portmap added its DNAT rule");
    node.rt.stop_pod_sandbox(v1::StopPodSandboxRequest { pod_sandbox_id: pod_id }).await.unwrap();
    assert!(!rules("nat").contains(&format!("--dport {host_port}")), "DEL removed the rule when the pod stopped");
    node.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_sees_its_images_whiteouts_and_opaque_directories() {
    let mut node = Node::start().await;
    let work = tempfile::tempdir().unwrap();
    berth_testkit::build_and_push(&node.registry, work.path(), "pods/opaque:1", None);
    berth_testkit::push_with_opaque_layer(&node.registry, work.path(), "pods/opaque:2");
    let image = format!("{}/pods/opaque:2", node.registry.host());
    node.img
        .pull_image(v1::PullImageRequest { image: Some(v1::ImageSpec { image: image.clone(), ..Default::default() }), ..Default::default() })
        .await
        .unwrap();
    let pod = node.run_pod("layers").await;
    let mut config = node.container_config("view", &["sleep", "3600"]);
    config.image = Some(v1::ImageSpec { image, ..Default::default() });
    let id = node.create(&pod, config).await.unwrap();
    node.rt.start_container(v1::StartContainerRequest { container_id: id.clone() }).await.unwrap();
    // /etc: the opaque layer hides motd (layer 2) and everything below;
    // berth's bind mounts (hosts, hostname, resolv.conf) sit on top.
    let r = node
        .exec(&id, &["/bin/sh", "-c", "ls /etc | grep -v -e hosts -e hostname -e resolv.conf; cat /etc/fresh; [ -e /bin/true ] || echo no-true"], 10)
        .await
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&r.stdout), "fresh\nfresh\nno-true\n", "{}", String::from_utf8_lossy(&r.stderr));
    node.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_removed_under_a_running_container_keeps_its_layers_until_the_container_goes() {
    let mut node = Node::start().await;
    let pod = node.run_pod("keeper").await;
    let id = node.run(&pod, "user", &["sleep", "3600"]).await;
    let image = v1::ImageSpec { image: node.image.clone(), ..Default::default() };
    node.img.remove_image(v1::RemoveImageRequest { image: Some(image.clone()) }).await.unwrap();
    assert!(node.img.image_status(v1::ImageStatusRequest { image: Some(image), verbose: false }).await.unwrap().into_inner().image.is_none());
    let metadata = node.berthd.root().join("snapshots/overlayfs/metadata");
    assert_eq!(std::fs::read_dir(&metadata).unwrap().count(), 3, "two image layers kept under the container's thin layer");
    let r = node.exec(&id, &["cat", "/etc/motd"], 5).await.unwrap();
    assert_eq!(String::from_utf8_lossy(&r.stdout), "layer two\n", "the container still runs on its layers");
    node.rt.stop_container(v1::StopContainerRequest { container_id: id.clone(), timeout: 0 }).await.unwrap();
    node.rt.remove_container(v1::RemoveContainerRequest { container_id: id }).await.unwrap();
    assert_eq!(std::fs::read_dir(&metadata).unwrap().count(), 0, "the removed image's layers went with its last container");
    assert_eq!(std::fs::read_dir(node.berthd.root().join("content/blobs/sha256")).unwrap().count(), 0);
    node.teardown().await;
}
