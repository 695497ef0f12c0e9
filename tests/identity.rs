//! Who a container runs as and what it may touch, as the CRI defines it:
//! run_as_group alone is refused; SupplementalGroupsPolicy Merge adds the
//! groups the image's /etc/group gives the user, Strict does not (both
//! for the first process and for execs, and in ContainerStatus.user); a
//! privileged container gets the host's devices.

mod common;

use std::os::unix::fs::{FileTypeExt, MetadataExt};

use common::node::Node;
use k8s_cri::v1;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn supplemental_groups_policy_merge_and_strict_and_run_as_group_alone() {
    let mut node = Node::start().await;
    let status = node.rt.status(v1::StatusRequest { verbose: false }).await.unwrap().into_inner();
    assert_eq!(status.features.map(|f| f.supplemental_groups_policy), Some(true), "Status advertises SupplementalGroupsPolicy");

    let work = tempfile::tempdir().unwrap();
    let files = [
        ("etc/passwd", "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n"),
        ("etc/group", "root:x:0:\napp:x:1000:\nimage-group:x:50000:app\n"),
    ];
    berth_testkit::build_and_push_with_files(&node.registry, work.path(), "pods/groups:1", &files);
    let image = format!("{}/pods/groups:1", node.registry.host());
    let spec = v1::ImageSpec { image: image.clone(), ..Default::default() };
    node.img.pull_image(v1::PullImageRequest { image: Some(spec.clone()), ..Default::default() }).await.unwrap();
    let pod = node.run_pod("groups").await;

    let with_policy = |node: &Node, name: &str, policy: v1::SupplementalGroupsPolicy| {
        let mut c = node.container_config(name, &["sh", "-c", "id -G; sleep 3600"]);
        c.image = Some(spec.clone());
        let sc = c.linux.as_mut().unwrap().security_context.as_mut().unwrap();
        sc.run_as_user = Some(v1::Int64Value { value: 1000 });
        sc.supplemental_groups = vec![1234];
        sc.supplemental_groups_policy = policy as i32;
        c
    };
    for (name, policy, groups) in
        [("merge", v1::SupplementalGroupsPolicy::Merge, vec![1000, 1234, 50000]), ("strict", v1::SupplementalGroupsPolicy::Strict, vec![1000, 1234])]
    {
        let id = node.create(&pod, with_policy(&node, name, policy)).await.unwrap();
        node.rt.start_container(v1::StartContainerRequest { container_id: id.clone() }).await.unwrap();
        let expected = groups.iter().map(|g| g.to_string()).collect::<Vec<_>>().join(" ");
        let r = node.exec(&id, &["id", "-G"], 10).await.unwrap();
        assert_eq!(String::from_utf8_lossy(&r.stdout).trim(), expected, "{name}: an exec's groups");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while node.log_lines("groups", name).is_empty() && std::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert_eq!(node.log_lines("groups", name), vec![expected.clone()], "{name}: the first process's groups");
        let user = node.status(&id).await.user.and_then(|u| u.linux).unwrap();
        assert_eq!((user.uid, user.gid, user.supplemental_groups), (1000, 1000, groups), "{name}: ContainerStatus.user");
    }

    // run_as_group needs run_as_user or run_as_username (the CRI: "the
    // runtime MUST error"); the image's user does not count.
    let mut alone = node.container_config("group-alone", &["true"]);
    alone.image = Some(spec.clone());
    alone.linux.as_mut().unwrap().security_context.as_mut().unwrap().run_as_group = Some(v1::Int64Value { value: 1002 });
    let e = node.create(&pod, alone.clone()).await.expect_err("run_as_group alone must be refused");
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("run_as_group") && e.message().contains("run_as_user"), "{e:?}");
    let sc = alone.linux.as_mut().unwrap().security_context.as_mut().unwrap();
    sc.run_as_username = "app".into();
    let id = node.create(&pod, alone).await.expect("with run_as_username it is fine");
    assert_eq!(node.status(&id).await.user.and_then(|u| u.linux).map(|u| (u.uid, u.gid)), Some((1000, 1002)));

    let mut bad = with_policy(&node, "bad-policy", v1::SupplementalGroupsPolicy::Merge);
    bad.linux.as_mut().unwrap().security_context.as_mut().unwrap().supplemental_groups_policy = 7;
    let e = node.create(&pod, bad).await.expect_err("an unknown policy must be refused");
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("supplemental_groups_policy"), "{e:?}");
    node.teardown().await;
}

/// The character and block devices directly in the host's /dev that a
/// privileged container must see (console and ptmx are the container's own).
fn host_devices() -> Vec<(String, u64)> {
    let mut found: Vec<(String, u64)> = std::fs::read_dir("/dev")
        .unwrap()
        .filter_map(|e| {
            let e = e.ok()?;
            let meta = std::fs::symlink_metadata(e.path()).ok()?;
            let name = e.file_name().to_string_lossy().to_string();
            let device = meta.file_type().is_char_device() || meta.file_type().is_block_device();
            (device && name != "console" && name != "ptmx").then_some((name, meta.rdev()))
        })
        .collect();
    found.sort();
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_privileged_container_gets_the_hosts_devices_and_others_do_not() {
    let mut node = Node::start().await;
    let pod = node.run_pod("devices").await;
    let mut p = node.container_config("privileged", &["sleep", "3600"]);
    p.linux.as_mut().unwrap().security_context.as_mut().unwrap().privileged = true;
    let privileged = node.create(&pod, p).await.unwrap();
    let plain = node.run(&pod, "plain", &["sleep", "3600"]).await;
    node.rt.start_container(v1::StartContainerRequest { container_id: privileged.clone() }).await.unwrap();

    let host = host_devices();
    assert!(host.iter().any(|(n, _)| n == "kmsg" || n.starts_with("loop")), "this host has devices beyond the defaults: {host:?}");
    // Each device's number as the container sees it, hex major:minor.
    let list = "for d in /dev/*; do [ -L \"$d\" ] && continue; [ -c \"$d\" -o -b \"$d\" ] && echo \"${d#/dev/} $(stat -c %t:%T \"$d\")\"; done";
    let r = node.exec(&privileged, &["sh", "-c", list], 10).await.unwrap();
    let seen = String::from_utf8_lossy(&r.stdout).to_string();
    for (name, rdev) in &host {
        let want = format!("{name} {:x}:{:x}", nix::sys::stat::major(*rdev), nix::sys::stat::minor(*rdev));
        assert!(seen.lines().any(|l| l == want), "privileged container lacks host device {want}; it has:\n{seen}");
    }
    // Usable, not only listed: the device cgroup lets it through.
    if host.iter().any(|(n, _)| n == "kmsg") {
        let r = node.exec(&privileged, &["sh", "-c", "echo berth-privileged-test > /dev/kmsg && echo kmsg-ok"], 10).await.unwrap();
        assert_eq!(String::from_utf8_lossy(&r.stdout), "kmsg-ok\n", "{r:?}");
    }

    let r = node.exec(&plain, &["sh", "-c", list], 10).await.unwrap();
    let mut names: Vec<String> = String::from_utf8_lossy(&r.stdout).lines().filter_map(|l| l.split(' ').next().map(String::from)).collect();
    names.sort();
    assert_eq!(names, ["full", "null", "random", "tty", "urandom", "zero"], "an unprivileged container has the default devices only");
    node.teardown().await;
}
