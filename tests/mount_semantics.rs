//! The mount semantics the CRI defines, on real mounts: propagation of a
//! Bidirectional volume both ways (and of a HostToContainer one into the
//! container only), plain read-only (the mount itself) against
//! recursive read-only (every submount too), the combinations the CRI
//! requires an error for, and Status claiming recursive read-only only
//! where the kernel has mount_setattr.

mod common;

use std::path::{Path, PathBuf};

use common::node::Node;
use k8s_cri::v1;
use nix::mount::{mount, umount2, MntFlags, MsFlags};

/// A host mount this test made, detached on drop (also when it fails).
struct HostMount(PathBuf);

impl HostMount {
    fn bind_shared(dir: &Path) -> HostMount {
        mount(Some(dir), dir, None::<&str>, MsFlags::MS_BIND | MsFlags::MS_REC, None::<&str>).unwrap();
        let m = HostMount(dir.to_path_buf());
        mount(None::<&str>, dir, None::<&str>, MsFlags::MS_SHARED | MsFlags::MS_REC, None::<&str>).unwrap();
        m
    }

    fn tmpfs(dir: &Path) -> HostMount {
        mount(Some("tmpfs"), dir, Some("tmpfs"), MsFlags::empty(), Some("size=1m")).unwrap();
        HostMount(dir.to_path_buf())
    }

    fn bind(source: &Path, dir: &Path) -> HostMount {
        mount(Some(source), dir, None::<&str>, MsFlags::MS_BIND, None::<&str>).unwrap();
        HostMount(dir.to_path_buf())
    }
}

impl Drop for HostMount {
    fn drop(&mut self) {
        let _ = umount2(&self.0, MntFlags::MNT_DETACH);
    }
}

fn host_mounts_under(dir: &Path) -> Vec<String> {
    let dir = format!(" {}/", dir.display());
    std::fs::read_to_string("/proc/self/mountinfo").unwrap().lines().filter(|l| l.contains(&dir)).map(String::from).collect()
}

fn privileged(node: &Node, name: &str, volume: &Path, propagation: v1::MountPropagation) -> v1::ContainerConfig {
    let mut c = node.container_config(name, &["sleep", "3600"]);
    c.mounts =
        vec![v1::Mount { container_path: "/vol".into(), host_path: volume.display().to_string(), propagation: propagation as i32, ..Default::default() }];
    // Mounting inside the container needs CAP_SYS_ADMIN, as for a kubelet
    // Bidirectional volume (privileged only).
    c.linux.as_mut().unwrap().security_context.as_mut().unwrap().privileged = true;
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bidirectional_volumes_propagate_both_ways_and_host_to_container_ones_one_way() {
    let mut node = Node::start().await;
    let pod = node.run_pod("propagation").await;
    let host = tempfile::tempdir().unwrap();
    let (vol, src) = (host.path().join("vol"), host.path().join("src"));
    for d in [&vol.join("from-host"), &vol.join("from-shared"), &vol.join("from-slave"), &src] {
        std::fs::create_dir_all(d).unwrap();
    }
    std::fs::write(src.join("flag"), "host\n").unwrap();
    let _vol = HostMount::bind_shared(&vol);

    let shared = node.create(&pod, privileged(&node, "shared", &vol, v1::MountPropagation::PropagationBidirectional)).await.unwrap();
    let slave = node.create(&pod, privileged(&node, "slave", &vol, v1::MountPropagation::PropagationHostToContainer)).await.unwrap();
    for id in [&shared, &slave] {
        node.rt.start_container(v1::StartContainerRequest { container_id: id.clone() }).await.unwrap();
    }

    // Host to container, for both.
    let _from_host = HostMount::bind(&src, &vol.join("from-host"));
    for id in [&shared, &slave] {
        let r = node.exec(id, &["cat", "/vol/from-host/flag"], 10).await.unwrap();
        assert_eq!(String::from_utf8_lossy(&r.stdout), "host\n", "a host mount made after start reaches container {id}: {r:?}");
    }

    // Container to host: only from the Bidirectional one.
    let inside = |dir: &str| format!("mount -t tmpfs tmpfs /vol/{dir} && echo inside > /vol/{dir}/made");
    let r = node.exec(&shared, &["sh", "-c", &inside("from-shared")], 10).await.unwrap();
    assert_eq!(r.exit_code, 0, "{r:?}");
    let r = node.exec(&slave, &["sh", "-c", &inside("from-slave")], 10).await.unwrap();
    assert_eq!(r.exit_code, 0, "{r:?}");
    let _from_shared = HostMount(vol.join("from-shared"));
    let _from_slave = HostMount(vol.join("from-slave"));
    assert_eq!(std::fs::read_to_string(vol.join("from-shared/made")).unwrap(), "inside\n", "the Bidirectional container's mount reaches the host");
    assert!(!vol.join("from-slave/made").exists(), "a HostToContainer container's mount must not reach the host");

    // The rest of each container's tree (rootfs, /proc, /dev, its pod
    // files) stays in its own namespace.
    let leaked: Vec<String> = host_mounts_under(node.berthd.dir.path()).into_iter().filter(|l| l.contains("/rootfs/")).collect();
    assert!(leaked.is_empty(), "container mounts reached the host: {leaked:#?}");
    node.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_covers_the_mount_and_recursive_read_only_its_submounts_too() {
    let mut node = Node::start().await;
    let status = node.rt.status(v1::StatusRequest { verbose: false }).await.unwrap().into_inner();
    let rro = status.runtime_handlers.iter().find(|h| h.name.is_empty()).and_then(|h| h.features).map(|f| f.recursive_read_only_mounts);
    assert_eq!(rro, Some(true), "this kernel has mount_setattr: Status must say so");

    let pod = node.run_pod("readonly").await;
    let host = tempfile::tempdir().unwrap();
    let sub = host.path().join("tmpfs");
    std::fs::create_dir(&sub).unwrap();
    let _sub = HostMount::tmpfs(&sub);
    let volume = |readonly: bool, recursive: bool, propagation: v1::MountPropagation| v1::Mount {
        container_path: "/mnt".into(),
        host_path: host.path().display().to_string(),
        readonly,
        recursive_read_only: recursive,
        propagation: propagation as i32,
        ..Default::default()
    };
    let private = v1::MountPropagation::PropagationPrivate;
    let probe = "touch /mnt/top 2>/dev/null && echo top-rw || echo top-ro; touch /mnt/tmpfs/sub 2>/dev/null && echo sub-rw || echo sub-ro";

    let mut plain = node.container_config("plain", &["sleep", "3600"]);
    plain.mounts = vec![volume(true, false, private)];
    let plain = node.create(&pod, plain).await.unwrap();
    let mut recursive = node.container_config("recursive", &["sleep", "3600"]);
    recursive.mounts = vec![volume(true, true, private)];
    let recursive = node.create(&pod, recursive).await.unwrap();
    for id in [&plain, &recursive] {
        node.rt.start_container(v1::StartContainerRequest { container_id: id.clone() }).await.unwrap();
    }
    let r = node.exec(&plain, &["sh", "-c", probe], 10).await.unwrap();
    assert_eq!(String::from_utf8_lossy(&r.stdout), "top-ro\nsub-rw\n", "plain read-only leaves the tmpfs under it writable");
    let r = node.exec(&recursive, &["sh", "-c", probe], 10).await.unwrap();
    assert_eq!(String::from_utf8_lossy(&r.stdout), "top-ro\nsub-ro\n", "recursive read-only reaches the tmpfs under it");
    assert!(std::fs::read_dir(&sub).unwrap().next().is_some(), "the plain container wrote through to the host's tmpfs");

    // What the CRI requires an error for: each names the field, and no
    // container is left.
    let before = node.rt.list_containers(v1::ListContainersRequest::default()).await.unwrap().into_inner().containers.len();
    for (mount, needle) in [
        (volume(false, true, private), "readonly is false"),
        (volume(true, true, v1::MountPropagation::PropagationHostToContainer), "PROPAGATION_HOST_TO_CONTAINER"),
        (volume(true, true, v1::MountPropagation::PropagationBidirectional), "PROPAGATION_BIDIRECTIONAL"),
    ] {
        let mut c = node.container_config("refused", &["true"]);
        c.mounts = vec![mount];
        let e = node.create(&pod, c).await.expect_err("must be refused");
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
        assert!(e.message().contains("mounts[0].recursive_read_only") && e.message().contains(needle), "{e:?}");
    }
    let after = node.rt.list_containers(v1::ListContainersRequest::default()).await.unwrap().into_inner().containers.len();
    assert_eq!(before, after, "a refused container is not left behind");
    node.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_volume_shows_the_images_files_read_only_and_goes_with_its_container() {
    let mut node = Node::start().await;
    let work = tempfile::tempdir().unwrap();
    berth_testkit::build_and_push_with_files(&node.registry, work.path(), "pods/volume:1", &[("srv/volume.txt", "from the image\n")]);
    let reference = format!("{}/pods/volume:1", node.registry.host());
    let spec = v1::ImageSpec { image: reference.clone(), ..Default::default() };
    let pulled = node.img.pull_image(v1::PullImageRequest { image: Some(spec.clone()), ..Default::default() }).await.unwrap().into_inner().image_ref;
    let snapshots = node.berthd.root().join("snapshots/overlayfs/metadata");
    let count = || std::fs::read_dir(&snapshots).unwrap().count();
    let pod = node.run_pod("imagevol").await;
    let before = count();

    // As the kubelet sends it: the image_ref PullImage answered.
    let volume = |image: &str| v1::Mount {
        container_path: "/data".into(),
        image: Some(v1::ImageSpec { image: image.into(), ..Default::default() }),
        readonly: true,
        ..Default::default()
    };
    let mut c = node.container_config("reader", &["sleep", "3600"]);
    c.mounts = vec![volume(&pulled)];
    let id = node.create(&pod, c).await.unwrap();
    node.rt.start_container(v1::StartContainerRequest { container_id: id.clone() }).await.unwrap();
    let r = node.exec(&id, &["sh", "-c", "cat /data/srv/volume.txt; touch /data/x 2>/dev/null && echo writable || echo read-only"], 10).await.unwrap();
    assert_eq!(String::from_utf8_lossy(&r.stdout), "from the image\nread-only\n", "{r:?}");

    // Bad input names the field; nothing is left of the refused container.
    let mut absent = node.container_config("absent", &["true"]);
    absent.mounts = vec![volume("127.0.0.1:1/never/pulled:1")];
    let e = node.create(&pod, absent).await.expect_err("an image that is not present");
    assert!(e.code() == tonic::Code::InvalidArgument && e.message().contains("config.mounts[0].image") && e.message().contains("never/pulled"), "{e:?}");
    let mut both = node.container_config("both", &["true"]);
    both.mounts = vec![v1::Mount { host_path: "/tmp".into(), ..volume(&reference) }];
    let e = node.create(&pod, both).await.expect_err("host_path and image together");
    assert!(e.code() == tonic::Code::InvalidArgument && e.message().contains("mutually exclusive"), "{e:?}");

    // The volume's snapshot goes with the container.
    node.rt.stop_container(v1::StopContainerRequest { container_id: id.clone(), timeout: 0 }).await.unwrap();
    node.rt.remove_container(v1::RemoveContainerRequest { container_id: id }).await.unwrap();
    assert_eq!(count(), before, "the container's thin layer and its image volume's snapshot are removed");
    node.teardown().await;
}
