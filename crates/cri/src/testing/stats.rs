//! ContainerStats and PodSandboxStats on the fakes: the figures come from
//! the containers' cgroup files (a cgroup v2 tree in the temp dir, written
//! by the test as the kernel would).

use std::path::PathBuf;

use k8s_cri::v1;

use super::{container_request, node_with_running_container, ready_pod, running_container, Node};

/// Writes the files the kernel keeps for a container's cgroup.
fn write_cgroup(node: &Node, rt: &crate::runtime::Runtime, id: &str, files: &[(&str, &str)]) {
    let cgroups_path = rt.containers.get(id).unwrap().snapshot().cgroups_path;
    let dir: PathBuf = node.dir.path().join("cgroup").join(cgroups_path.trim_start_matches('/'));
    std::fs::create_dir_all(&dir).unwrap();
    for (name, text) in files {
        std::fs::write(dir.join(name), text).unwrap();
    }
}

const MIB: u64 = 1 << 20;

fn usage_files(memory_max: &str) -> Vec<(&'static str, String)> {
    vec![
        ("cpu.stat", "usage_usec 2000\nuser_usec 1500\nsystem_usec 500\n".into()),
        ("memory.current", format!("{}\n", 10 * MIB)),
        ("memory.max", format!("{memory_max}\n")),
        ("memory.stat", format!("anon {}\nfile {}\ninactive_file {}\npgfault 7\npgmajfault 1\n", 4 * MIB, 6 * MIB, 2 * MIB)),
        ("pids.current", "3\n".into()),
    ]
}

fn write_usage(node: &Node, rt: &crate::runtime::Runtime, id: &str, memory_max: &str) {
    let files = usage_files(memory_max);
    write_cgroup(node, rt, id, &files.iter().map(|(n, t)| (*n, t.as_str())).collect::<Vec<_>>());
}

fn figure(v: &Option<v1::UInt64Value>) -> u64 {
    v.as_ref().map(|v| v.value).unwrap_or_else(|| panic!("a figure is missing"))
}

#[tokio::test]
async fn container_stats_are_read_from_its_cgroup() {
    let (node, rt, id) = node_with_running_container().await;
    write_usage(&node, &rt, &id, "max");

    let stats = rt.container_stats(v1::ContainerStatsRequest { container_id: id.clone() }).await.unwrap().stats.unwrap();
    assert_eq!(stats.attributes.unwrap().id, id);
    assert_eq!(figure(&stats.cpu.unwrap().usage_core_nano_seconds), 2_000_000);
    let memory = stats.memory.unwrap();
    assert_eq!(figure(&memory.usage_bytes), 10 * MIB);
    assert_eq!(figure(&memory.working_set_bytes), 8 * MIB, "usage less inactive file pages");
    assert_eq!(figure(&memory.rss_bytes), 4 * MIB);
    assert_eq!((figure(&memory.page_faults), figure(&memory.major_page_faults)), (7, 1));
    assert_eq!(figure(&memory.available_bytes), 0, "no limit: nothing to report as available");

    write_usage(&node, &rt, &id, &(64 * MIB).to_string());
    let stats = rt.container_stats(v1::ContainerStatsRequest { container_id: id.clone() }).await.unwrap().stats.unwrap();
    assert_eq!(figure(&stats.memory.unwrap().available_bytes), 56 * MIB, "the limit less the working set");
}

#[tokio::test]
async fn pod_stats_add_up_its_running_containers() {
    let node = Node::new().await;
    let rt = node.start().await;
    let pod = ready_pod(&node, &rt, "web").await;
    let first = running_container(&rt, &pod, "one").await;
    let second = running_container(&rt, &pod, "two").await;
    // Created, not running: not in the pod's figures nor in the list.
    let idle = rt.create_container(container_request(&pod, "idle")).await.unwrap().container_id;
    for id in [&first, &second] {
        write_usage(&node, &rt, id, "max");
    }

    let stats = rt.pod_sandbox_stats(v1::PodSandboxStatsRequest { pod_sandbox_id: pod.clone() }).await.unwrap().stats.unwrap();
    let linux = stats.linux.unwrap();
    assert_eq!(figure(&linux.cpu.unwrap().usage_core_nano_seconds), 4_000_000);
    assert_eq!(figure(&linux.memory.unwrap().working_set_bytes), 16 * MIB);
    assert_eq!(figure(&linux.process.unwrap().process_count), 6);
    let mut ids: Vec<String> = linux.containers.iter().map(|c| c.attributes.as_ref().unwrap().id.clone()).collect();
    ids.sort();
    let mut want = vec![first.clone(), second.clone()];
    want.sort();
    assert_eq!(ids, want);

    let listed = rt.list_container_stats(v1::ListContainerStatsRequest { filter: None }).await.unwrap().stats;
    assert!(listed.iter().all(|s| s.attributes.as_ref().unwrap().id != idle), "a created container is listed");
    assert_eq!(listed.len(), 2);
    let err = rt.container_stats(v1::ContainerStatsRequest { container_id: "0".repeat(64) }).await.unwrap_err();
    assert!(matches!(err, crate::error::Error::NotFound(_)), "{err:?}");
}
