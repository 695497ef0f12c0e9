//! CDI devices end to end: spec files in two CDI directories of a real
//! berthd (written after it started, as a device plugin would), containers
//! asking for a device by `CDI_devices` and by `cdi.k8s.io/*` annotation,
//! and what each sees inside: the device nodes (usable through the device
//! cgroup), the mount, the env vars and the extra group. Then the requests
//! berth must refuse, by field, leaving nothing behind.

mod common;

use common::node::{container_config_for, Node};
use k8s_cri::v1;
use tonic::Code;

/// The device berth is asked for. `/dev/berth-test0` is the host's
/// /dev/null with its numbers given; `/dev/berth-kmsg` is the host's
/// /dev/kmsg with nothing but its path, so berth reads the numbers (1:11)
/// from the host, and 1:11 is outside what every container may open: a
/// write through it works only if berth added the device-cgroup rule.
const SPEC: &str = r#"
cdiVersion: "0.6.0"
kind: berth.test/dev
containerEdits:
  env: [BERTH_CDI_SPEC=1]
devices:
  - name: null0
    containerEdits:
      env: [BERTH_CDI_DEVICE=null0]
      deviceNodes:
        - {path: /dev/berth-test0, hostPath: /dev/null, type: c, major: 1, minor: 3, fileMode: 0o640, gid: 4242}
        - {path: /dev/berth-kmsg, hostPath: /dev/kmsg, permissions: w}
      mounts:
        - {hostPath: HOST_DIR, containerPath: /cdi-data, options: [rbind, ro]}
      additionalGIDs: [4242]
  - name: hooked
    containerEdits:
      hooks: [{hookName: createContainer, path: /bin/true}]
"#;

/// The same device in the earlier directory: the later one must win.
const STALE: &str = r#"{"cdiVersion": "0.5.0", "kind": "berth.test/dev",
  "devices": [{"name": "null0", "containerEdits": {"env": ["BERTH_CDI_DEVICE=stale"]}}]}"#;

fn expect(result: Result<String, tonic::Status>, field: &str, needle: &str) {
    let e = result.expect_err("must be refused");
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains(field) && e.message().contains(needle), "{:?} should name {field:?} and say {needle:?}", e.message());
}

async fn exec_ok(node: &mut Node, id: &str, cmd: &[&str]) -> String {
    let r = node.exec(id, cmd, 10).await.unwrap();
    let (out, err) = (String::from_utf8_lossy(&r.stdout).into_owned(), String::from_utf8_lossy(&r.stderr));
    assert_eq!(r.exit_code, 0, "{cmd:?}: {out}{err}");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cdi_devices_are_injected_by_field_and_annotation_and_bad_requests_leave_nothing() {
    let work = tempfile::tempdir().unwrap();
    let (etc_cdi, run_cdi, host_dir) = (work.path().join("etc-cdi"), work.path().join("run-cdi"), work.path().join("host-data"));
    for d in [&etc_cdi, &run_cdi, &host_dir] {
        std::fs::create_dir_all(d).unwrap();
    }
    std::fs::write(host_dir.join("hello.txt"), "from the host\n").unwrap();
    let mut node = Node::start_with(&format!("cdi.spec_dirs = [\"{}\", \"{}\"]", etc_cdi.display(), run_cdi.display()), "").await;
    // Written after berthd started: no restart is needed to see them.
    std::fs::write(run_cdi.join("berth-test.yaml"), SPEC.replace("HOST_DIR", &host_dir.display().to_string())).unwrap();
    std::fs::write(etc_cdi.join("berth-test.json"), STALE).unwrap();
    std::fs::write(etc_cdi.join("broken.yaml"), "cdiVersion: [").unwrap();

    let pod = node.run_pod("cdi").await;
    let mut by_field = node.container_config("by-field", &["sleep", "3600"]);
    by_field.cdi_devices = vec![v1::CdiDevice { name: "berth.test/dev=null0".into() }];
    let mut by_annotation = node.container_config("by-annotation", &["sleep", "3600"]);
    by_annotation.annotations.insert("cdi.k8s.io/test".into(), "berth.test/dev=null0".into());
    let mut ids = Vec::new();
    for config in [by_field, by_annotation] {
        let id = node.create(&pod, config).await.expect("a container with a CDI device");
        node.rt.start_container(v1::StartContainerRequest { container_id: id.clone() }).await.unwrap();
        ids.push(id);
    }
    for id in &ids {
        let ls = exec_ok(&mut node, id, &["ls", "-ln", "/dev/berth-test0"]).await;
        assert!(ls.starts_with("crw-r-----"), "a char device, mode 0640: {ls}");
        let fields: Vec<&str> = ls.split_whitespace().collect();
        assert_eq!((fields[3], fields[4], fields[5]), ("4242", "1,", "3"), "gid 4242, device 1:3: {ls}");
        exec_ok(&mut node, id, &["sh", "-c", "echo discarded > /dev/berth-test0"]).await;
        let kmsg = exec_ok(&mut node, id, &["ls", "-ln", "/dev/berth-kmsg"]).await;
        assert!(kmsg.starts_with('c') && kmsg.contains("1,") && kmsg.contains(" 11 "), "numbers read from the host's /dev/kmsg: {kmsg}");
        exec_ok(&mut node, id, &["sh", "-c", "echo berth cdi test: the device cgroup allows this write > /dev/berth-kmsg"]).await;

        assert_eq!(exec_ok(&mut node, id, &["cat", "/cdi-data/hello.txt"]).await, "from the host\n");
        let touch = node.exec(id, &["touch", "/cdi-data/new"], 10).await.unwrap();
        assert_ne!(touch.exit_code, 0, "the mount is read-only as the spec says");

        let env = exec_ok(&mut node, id, &["env"]).await;
        assert!(env.lines().any(|l| l == "BERTH_CDI_SPEC=1"), "the spec's own env: {env}");
        assert!(env.lines().any(|l| l == "BERTH_CDI_DEVICE=null0"), "the later directory's definition: {env}");
        assert!(!env.contains("stale"), "{env}");
        let groups = exec_ok(&mut node, id, &["id", "-G"]).await;
        assert!(groups.split_whitespace().any(|g| g == "4242"), "additionalGIDs: {groups}");
    }
    // A container without the device has none of it.
    let plain = node.run(&pod, "plain", &["sleep", "3600"]).await;
    assert_ne!(node.exec(&plain, &["ls", "/dev/berth-test0"], 10).await.unwrap().exit_code, 0);
    let env = exec_ok(&mut node, &plain, &["env"]).await;
    assert!(!env.contains("BERTH_CDI"), "{env}");

    let metadata = node.berthd.root().join("snapshots/overlayfs/metadata");
    let snapshots = || std::fs::read_dir(&metadata).unwrap().count();
    let before = snapshots();
    let dirs = format!("searched {}, {}", etc_cdi.display(), run_cdi.display());
    let image = node.image.clone();
    let with_devices = |name: &str, devices: &[&str]| {
        let mut c = container_config_for(name, &image, &["sleep", "3600"]);
        c.cdi_devices = devices.iter().map(|d| v1::CdiDevice { name: d.to_string() }).collect();
        c
    };
    let unknown = with_devices("unknown", &["berth.test/dev=null0", "berth.test/dev=nope"]);
    expect(node.create(&pod, unknown).await, "config.CDI_devices[1]: CDI device \"berth.test/dev=nope\" is unknown", &dirs);
    // The broken file may be the one that defines it: it is named.
    let unknown = with_devices("unknown", &["berth.test/dev=nope"]);
    expect(node.create(&pod, unknown).await, "fail to parse", &format!("{}: ", etc_cdi.join("broken.yaml").display()));
    expect(node.create(&pod, with_devices("malformed", &["gpu0"])).await, "config.CDI_devices[0]: \"gpu0\"", "not a fully-qualified CDI device name");
    let mut bad_annotation = node.container_config("bad-annotation", &["sleep", "3600"]);
    bad_annotation.annotations.insert("cdi.k8s.io/foo".into(), "berth.test/dev".into());
    expect(node.create(&pod, bad_annotation).await, "config.annotations[\"cdi.k8s.io/foo\"]", "not a fully-qualified");
    let hooked = with_devices("hooked", &["berth.test/dev=hooked"]);
    expect(node.create(&pod, hooked).await, "CDI device \"berth.test/dev=hooked\"", "hooks are not supported by berth");

    let listed = node.rt.list_containers(v1::ListContainersRequest::default()).await.unwrap().into_inner().containers;
    let mut names: Vec<String> = listed.iter().filter(|c| c.pod_sandbox_id == pod.0).map(|c| c.metadata.clone().unwrap().name).collect();
    names.sort();
    assert_eq!(names, ["by-annotation", "by-field", "plain"], "no refused container is left");
    assert_eq!(snapshots(), before, "no thin layer of a refused container is left");
    node.teardown().await;
}
