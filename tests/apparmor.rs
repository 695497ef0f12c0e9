//! AppArmor, end to end, on whatever the kernel offers: where AppArmor is
//! enabled (the cgroup-v2-only VM's Debian kernel, where hack/test.sh runs
//! this test again), runtime/default confines the container and its execs
//! with berth's own profile, loaded by berthd, and a localhost profile the
//! node loaded is enforced; where it is not (this development host's
//! kernel), runtime/default runs as on every runtime there and a named
//! profile is refused by name.

mod common;

use common::node::Node;
use k8s_cri::v1::{self, security_profile::ProfileType};
use tonic::Code;

/// A profile a node's admin might load: everything but writes under /tmp.
const NO_TMP_WRITES: &str = "profile berth-test-no-tmp-writes flags=(attach_disconnected,mediate_deleted) {
  network,
  capability,
  file,
  umount,
  signal,
  ptrace,
  deny /tmp/** w,
}
";

fn with_apparmor(mut c: v1::ContainerConfig, kind: ProfileType, name: &str) -> v1::ContainerConfig {
    let sc = c.linux.as_mut().unwrap().security_context.as_mut().unwrap();
    sc.apparmor = Some(v1::SecurityProfile { profile_type: kind as i32, localhost_ref: name.into() });
    c
}

fn apparmor_enabled() -> bool {
    std::fs::read_to_string("/sys/module/apparmor/parameters/enabled").is_ok_and(|v| v.trim() == "Y")
}

async fn start(node: &mut Node, pod: &(String, v1::PodSandboxConfig), config: v1::ContainerConfig) -> String {
    let id = node.create(pod, config).await.unwrap();
    node.rt.start_container(v1::StartContainerRequest { container_id: id.clone() }).await.unwrap();
    id
}

async fn sh(node: &mut Node, id: &str, script: &str) -> (i32, String) {
    let r = node.exec(id, &["sh", "-c", script], 10).await.unwrap();
    (r.exit_code, format!("{}{}", String::from_utf8_lossy(&r.stdout), String::from_utf8_lossy(&r.stderr)).trim().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn profiles_confine_where_the_kernel_has_apparmor_and_are_refused_by_name_where_not() {
    let mut node = Node::start().await;
    let pod = node.run_pod("apparmor").await;
    let sleeper = |name: &str| node.container_config(name, &["sleep", "3600"]);
    let (default, localhost, unloaded, unconfined) = (
        with_apparmor(sleeper("default"), ProfileType::RuntimeDefault, ""),
        with_apparmor(sleeper("localhost"), ProfileType::Localhost, "berth-test-no-tmp-writes"),
        with_apparmor(sleeper("unloaded"), ProfileType::Localhost, "berth-test-never-loaded"),
        with_apparmor(sleeper("unconfined"), ProfileType::Unconfined, ""),
    );
    if !apparmor_enabled() {
        // No LSM to confine with: runtime/default runs, as with containerd
        // and CRI-O on such a node; a named profile cannot be honoured.
        let id = start(&mut node, &pod, default).await;
        assert_eq!(sh(&mut node, &id, "echo runs").await, (0, "runs".into()));
        let e = node.create(&pod, localhost).await.expect_err("no AppArmor for a localhost profile");
        assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
        assert!(e.message().contains("config.linux.security_context.apparmor") && e.message().contains("AppArmor is not enabled on this node"), "{e:?}");
        node.teardown().await;
        return;
    }

    // runtime/default: berth-default, loaded by berthd, on the container's
    // own process and on an exec.
    let id = start(&mut node, &pod, default).await;
    assert_eq!(sh(&mut node, &id, "cat /proc/1/attr/current").await, (0, "berth-default (enforce)".into()), "the container's process");
    assert_eq!(sh(&mut node, &id, "cat /proc/self/attr/current").await, (0, "berth-default (enforce)".into()), "an exec");
    let loaded = std::fs::read_to_string("/sys/kernel/security/apparmor/profiles").unwrap();
    assert!(loaded.lines().any(|l| l == "berth-default (enforce)"), "{loaded}");

    // A localhost profile the node loaded is enforced.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("profile"), NO_TMP_WRITES).unwrap();
    let parsed = std::process::Command::new("apparmor_parser").arg("-r").arg(dir.path().join("profile")).output().unwrap();
    assert!(parsed.status.success(), "{}", String::from_utf8_lossy(&parsed.stderr));
    let id = start(&mut node, &pod, localhost).await;
    assert_eq!(sh(&mut node, &id, "cat /proc/1/attr/current").await, (0, "berth-test-no-tmp-writes (enforce)".into()));
    let (code, out) = sh(&mut node, &id, "touch /tmp/denied").await;
    assert!(code != 0 && out.contains("Permission denied"), "{code}: {out}");
    assert_eq!(sh(&mut node, &id, "touch /allowed && echo ok").await, (0, "ok".into()));

    // Unconfined is nothing; a profile the node has not loaded is refused.
    let id = start(&mut node, &pod, unconfined).await;
    assert_eq!(sh(&mut node, &id, "cat /proc/1/attr/current").await, (0, "unconfined".into()));
    let e = node.create(&pod, unloaded).await.expect_err("a profile that is not loaded");
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("berth-test-never-loaded"), "{e:?}");

    node.teardown().await;
    let _ = std::process::Command::new("apparmor_parser").arg("-R").arg(dir.path().join("profile")).output();
}
