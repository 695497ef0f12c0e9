//! Pods with a user namespace (KEP-127), on a real berthd: root inside is
//! an unprivileged uid on the host, the image's files keep their owners
//! through idmapped layers (nothing chowned; image volumes too), a volume the kubelet marks
//! idmapped stores files with the owners the container sees, a plain one
//! with the pod's host ids; and every request berth cannot honour is
//! refused by name, leaving nothing behind.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};

use common::node::Node;
use k8s_cri::v1::{self, runtime_service_client::RuntimeServiceClient};
use tonic::Code;

/// The pod's ids on the host: the kubelet hands out multiples of 65536.
const HOST_BASE: u32 = 65536 * 7;

fn id_map() -> Vec<v1::IdMapping> {
    vec![v1::IdMapping { container_id: 0, host_id: HOST_BASE, length: 65536 }]
}

fn with_user_namespace(mut config: v1::PodSandboxConfig) -> v1::PodSandboxConfig {
    let sc = config.linux.as_mut().unwrap().security_context.as_mut().unwrap();
    sc.namespace_options.as_mut().unwrap().userns_options = Some(v1::UserNamespace { mode: v1::NamespaceMode::Pod as i32, uids: id_map(), gids: id_map() });
    config
}

async fn exec_out(node: &mut Node, id: &str, script: &str) -> String {
    let r = node.exec(id, &["sh", "-c", script], 10).await.unwrap();
    assert_eq!(r.exit_code, 0, "{script}: {}", String::from_utf8_lossy(&r.stderr));
    String::from_utf8(r.stdout).unwrap().trim().to_string()
}

/// The pids on the host of processes in the user namespace pinned at
/// `pin`, with their uid as the host sees it.
fn host_uids_in(pin: &std::path::Path) -> Vec<(i32, u32)> {
    let want = format!("user:[{}]", std::fs::metadata(pin).unwrap().ino());
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else { continue };
        if std::fs::read_link(entry.path().join("ns/user")).is_ok_and(|l| l.to_string_lossy() == want) {
            if let Ok(meta) = std::fs::metadata(entry.path()) {
                found.push((pid, meta.uid()));
            }
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_with_a_user_namespace_is_root_inside_and_unprivileged_outside() {
    let mut node = Node::start().await;
    let status = node.rt.status(v1::StatusRequest { verbose: false }).await.unwrap().into_inner();
    assert!(status.runtime_handlers.iter().all(|h| h.features.is_some_and(|f| f.user_namespaces)), "Status advertises user namespaces: {status:?}");

    let volumes = tempfile::tempdir().unwrap();
    let (idmapped_dir, plain_dir) = (volumes.path().join("idmapped"), volumes.path().join("plain"));
    std::fs::create_dir(&idmapped_dir).unwrap();
    std::fs::create_dir(&plain_dir).unwrap();
    std::fs::set_permissions(&plain_dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    std::fs::write(idmapped_dir.join("from-host"), "x").unwrap();

    let pod = node.run_pod_with(with_user_namespace(node.pod_config("userns"))).await;
    let mut config = node.container_config("app", &["sleep", "3600"]);
    config.mounts = vec![
        v1::Mount {
            container_path: "/idmapped".into(),
            host_path: idmapped_dir.display().to_string(),
            uid_mappings: id_map(),
            gid_mappings: id_map(),
            ..Default::default()
        },
        v1::Mount { container_path: "/plain".into(), host_path: plain_dir.display().to_string(), ..Default::default() },
        v1::Mount {
            container_path: "/image".into(),
            image: Some(v1::ImageSpec { image: node.image.clone(), ..Default::default() }),
            readonly: true,
            ..Default::default()
        },
    ];
    let id = node.create(&pod, config).await.unwrap();
    node.rt.start_container(v1::StartContainerRequest { container_id: id.clone() }).await.unwrap();

    // Inside: the kubelet's map, and root.
    let uid_map: Vec<String> = exec_out(&mut node, &id, "cat /proc/self/uid_map").await.split_whitespace().map(String::from).collect();
    assert_eq!(uid_map, ["0", &HOST_BASE.to_string(), "65536"]);
    assert_eq!(exec_out(&mut node, &id, "id -u; id -g").await, "0\n0");
    // The image's files are root's (idmapped layers; unmapped owners would
    // show as 65534), and root may write to the rootfs (its upper layer).
    assert_eq!(exec_out(&mut node, &id, "stat -c %u:%g / /bin /bin/busybox").await, "0:0\n0:0\n0:0");
    assert_eq!(exec_out(&mut node, &id, "echo hi > /written && stat -c %u /written").await, "0");
    // The pod's own network namespace is the user namespace's: sysfs is
    // mounted and shows its interfaces.
    assert!(exec_out(&mut node, &id, "ls /sys/class/net").await.contains("lo"));

    // An image volume's layers are idmapped too (root's, not nobody's), and
    // it stays read-only.
    let image_volume = exec_out(&mut node, &id, "stat -c %u:%g /image/bin/busybox; touch /image/x 2>/dev/null && echo writable || echo read-only").await;
    assert_eq!(image_volume, "0:0\nread-only");
    // Outside: the container's processes run as the pod's host uid.
    let pin = node.berthd.dir.path().join("state/sandboxes").join(&pod.0).join("ns/user");
    let procs = host_uids_in(&pin);
    assert!(!procs.is_empty(), "no process in the pod's user namespace {}", pin.display());
    assert!(procs.iter().all(|(_, uid)| *uid == HOST_BASE), "host uids of the pod's processes: {procs:?}");

    // Volumes: the idmapped one shows and stores the owners the container
    // sees; the plain one stores the pod's host ids.
    assert_eq!(exec_out(&mut node, &id, "stat -c %u /idmapped/from-host").await, "0");
    exec_out(&mut node, &id, "touch /idmapped/by-container /plain/by-container").await;
    assert_eq!(std::fs::metadata(idmapped_dir.join("by-container")).unwrap().uid(), 0);
    assert_eq!(std::fs::metadata(plain_dir.join("by-container")).unwrap().uid(), HOST_BASE);

    // After a kill -9 and restart of berthd the pod is whole: a new
    // container joins the same namespace, the old one still execs.
    node.berthd.restart_after(std::time::Duration::ZERO);
    node.rt = RuntimeServiceClient::new(common::channel(&node.berthd.socket).await);
    let other = node.run(&pod, "other", &["sleep", "3600"]).await;
    assert_eq!(exec_out(&mut node, &other, "readlink /proc/self/ns/user").await, exec_out(&mut node, &id, "readlink /proc/self/ns/user").await);

    // A pod sharing one PID namespace (a pause process holds it) nests
    // that namespace in its user namespace too.
    let mut shared = with_user_namespace(node.pod_config("shared-pid"));
    shared.linux.as_mut().unwrap().security_context.as_mut().unwrap().namespace_options.as_mut().unwrap().pid = v1::NamespaceMode::Pod as i32;
    let shared = node.run_pod_with(shared).await;
    let mut config = node.container_config("app", &["sleep", "3600"]);
    config.linux.as_mut().unwrap().security_context.as_mut().unwrap().namespace_options.as_mut().unwrap().pid = v1::NamespaceMode::Pod as i32;
    let in_shared = node.create(&shared, config).await.unwrap();
    node.rt.start_container(v1::StartContainerRequest { container_id: in_shared.clone() }).await.unwrap();
    // pid 1 is the pod's pause, not the container's sleep.
    let seen = exec_out(&mut node, &in_shared, "id -u; cat /proc/1/comm").await;
    let (uid, pid1) = seen.split_once('\n').unwrap();
    assert_eq!(uid, "0");
    assert_ne!(pid1, "sleep", "the container's PID namespace is the pod's");

    node.teardown().await;
    assert!(!pin.exists(), "the pod's user namespace pin is gone");
}

/// Requests a pod with a user namespace cannot honour are refused with the
/// field named, and leave no pod or container behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn impossible_user_namespace_requests_are_refused_by_name() {
    let mut node = Node::start().await;
    let expect = |r: Result<String, tonic::Status>, needle: &str| {
        let e = r.expect_err(needle);
        assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
        assert!(e.message().contains(needle), "{:?} lacks {needle:?}", e.message());
    };
    let mut host_network = with_user_namespace(node.pod_config("hostnet"));
    host_network.linux.as_mut().unwrap().security_context.as_mut().unwrap().namespace_options.as_mut().unwrap().network = v1::NamespaceMode::Node as i32;
    let refused = node.rt.run_pod_sandbox(v1::RunPodSandboxRequest { config: Some(host_network), runtime_handler: String::new() }).await;
    expect(refused.map(|r| r.into_inner().pod_sandbox_id), "namespace_options.network: NODE, but a pod with a user namespace cannot share the host's network");
    let mut wrapping = with_user_namespace(node.pod_config("wrapping"));
    let opts = wrapping.linux.as_mut().unwrap().security_context.as_mut().unwrap().namespace_options.as_mut().unwrap();
    opts.userns_options.as_mut().unwrap().uids[0].host_id = u32::MAX - 100;
    let refused = node.rt.run_pod_sandbox(v1::RunPodSandboxRequest { config: Some(wrapping), runtime_handler: String::new() }).await;
    expect(refused.map(|r| r.into_inner().pod_sandbox_id), "userns_options: id map: uids[0]");
    assert!(node.rt.list_pod_sandbox(v1::ListPodSandboxRequest::default()).await.unwrap().into_inner().items.is_empty());

    let pod = node.run_pod_with(with_user_namespace(node.pod_config("userns"))).await;
    let good = node.container_config("app", &["sleep", "3600"]);
    let mut outside = good.clone();
    outside.linux.as_mut().unwrap().security_context.as_mut().unwrap().run_as_user = Some(v1::Int64Value { value: 70000 });
    expect(node.create(&pod, outside).await, "run_as_user: uid 70000 is outside the pod's user namespace");
    let mut other_map = good.clone();
    let maps = vec![v1::IdMapping { container_id: 0, host_id: HOST_BASE + 65536, length: 65536 }];
    other_map.mounts =
        vec![v1::Mount { container_path: "/d".into(), host_path: "/tmp".into(), uid_mappings: maps.clone(), gid_mappings: maps, ..Default::default() }];
    expect(node.create(&pod, other_map).await, "config.mounts[0].uid_mappings/gid_mappings: the mappings differ from the pod's");
    let mut host_userns = good.clone();
    host_userns.linux.as_mut().unwrap().security_context.as_mut().unwrap().namespace_options.as_mut().unwrap().userns_options =
        Some(v1::UserNamespace { mode: v1::NamespaceMode::Node as i32, ..Default::default() });
    expect(node.create(&pod, host_userns).await, "userns_options.mode: NODE, but the pod has a user namespace");
    let listed = node.rt.list_containers(v1::ListContainersRequest::default()).await.unwrap().into_inner().containers;
    assert!(listed.is_empty(), "refused containers left: {listed:?}");
    node.teardown().await;
}
