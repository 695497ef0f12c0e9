//! A container's processes are in its cgroup in every hierarchy this host
//! mounts (on a hybrid host: every v1 controller and the cgroup2 mount, as
//! runc places them), and the limits the kubelet sets land in the
//! hierarchy that holds each controller.

mod common;

use berth_cgroups::{Hierarchy, Version};
use berth_testkit::cgroups::{proc_cgroups, HostCgroup};
use common::node::Node;
use k8s_cri::v1;

#[tokio::test]
async fn a_container_is_in_its_cgroup_everywhere_and_hugepage_limits_land() {
    let mut node = Node::start().await;
    let pod = node.run_pod("placed").await;
    let mut config = node.container_config("c", &["sleep", "1000"]);
    let hugepage_limit = 4u64 << 20;
    config.linux.as_mut().unwrap().resources = Some(v1::LinuxContainerResources {
        memory_limit_in_bytes: 64 << 20,
        hugepage_limits: vec![v1::HugepageLimit { page_size: "2MB".into(), limit: hugepage_limit }],
        ..Default::default()
    });
    let id = node.create(&pod, config).await.unwrap();
    node.rt.start_container(v1::StartContainerRequest { container_id: id.clone() }).await.unwrap();
    let info = node.rt.container_status(v1::ContainerStatusRequest { container_id: id.clone(), verbose: true }).await.unwrap().into_inner().info;
    let detail: serde_json::Value = serde_json::from_str(&info["info"]).unwrap();
    let pid = detail["pid"].as_u64().unwrap() as u32;
    let expected = format!("{}/placed/{id}", node.cgroup_parent);

    let hierarchy = Hierarchy::detect().unwrap();
    let placed = proc_cgroups(pid);
    let v2_line = placed.iter().find(|(controllers, _)| controllers.is_empty()).map(|(_, path)| path.clone());
    let mut checked = 0;
    for (controllers, path) in &placed {
        // v1 controllers berth mounts (named hierarchies such as
        // name=systemd too); cgroup2 is checked below.
        if !controllers.is_empty() && hierarchy.version() == Version::V1 {
            assert_eq!(path, &expected, "controller {controllers}: {placed:?}");
            checked += 1;
        }
    }
    if hierarchy.version() == Version::V2 || hierarchy.unified().is_some() {
        assert_eq!(v2_line.as_deref(), Some(expected.as_str()), "0:: (cgroup2) of pid {pid}: {placed:?}");
        checked += 1;
    }
    assert!(checked > 0, "no hierarchy was checked: {placed:?}");

    let cgroup = HostCgroup::new(&expected);
    assert_eq!(cgroup.memory_limit(), 64 << 20);
    // On this project's hybrid CI hosts hugetlb lives only in cgroup2.
    let limit = cgroup.read("hugetlb", "hugetlb.2MB.limit_in_bytes", "hugetlb.2MB.max");
    assert_eq!(limit, hugepage_limit.to_string(), "hugetlb limit in {}", cgroup.dir("hugetlb").display());
    node.teardown().await;
}
