//! Invalid specs fail Create (or Start) with a message naming the cause,
//! and leave nothing behind; the shim then accepts a good container.

mod common;

use common::*;
use oci_spec::runtime::{LinuxCpuBuilder, LinuxNamespaceBuilder, LinuxNamespaceType, LinuxResourcesBuilder, Spec};

fn assert_refused(shim: &Shim, spec: &Spec, want_code: ttrpc::Code, want_text: &str) {
    let err = shim.create(spec).unwrap_err();
    let (c, msg) = code(&err);
    assert_eq!(c, want_code, "{msg}");
    assert!(msg.contains(want_text), "message {msg:?} does not name {want_text:?}");
    // Nothing of the failed container remains.
    let left = shim.cgroup().existing_dirs();
    assert!(left.is_empty(), "cgroup left after {want_text}: {left:?}");
    assert!(shim.client.pids(Shim::ctx(), &containerd_shim_protos::api::PidsRequest { id: shim.id.clone(), ..Default::default() }).is_err());
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(&shim.dir.path().display().to_string()));
}

#[test]
fn invalid_specs_fail_create_cleanly() {
    let shim = Shim::start("bad");
    let good = spec(&shim.id, &["echo", "fine"]);

    let mut s = good.clone();
    s.root_mut().as_mut().unwrap().set_path("/nonexistent/rootfs".into());
    assert_refused(&shim, &s, ttrpc::Code::INVALID_ARGUMENT, "rootfs /nonexistent/rootfs: does not exist");

    let mut s = good.clone();
    let ns = s.linux_mut().as_mut().unwrap().namespaces_mut().as_mut().unwrap();
    ns.retain(|n| n.typ() != LinuxNamespaceType::Network);
    ns.push(LinuxNamespaceBuilder::default().typ(LinuxNamespaceType::Network).path("/run/netns/does-not-exist").build().unwrap());
    assert_refused(&shim, &s, ttrpc::Code::INVALID_ARGUMENT, "net namespace /run/netns/does-not-exist");

    let mut s = good.clone();
    let mut user = s.process().as_ref().unwrap().user().clone();
    user.set_uid(u32::MAX);
    s.process_mut().as_mut().unwrap().set_user(user);
    assert_refused(&shim, &s, ttrpc::Code::INVALID_ARGUMENT, "invalid uid 4294967295");

    let mut s = good.clone();
    let mut r = s.linux().as_ref().unwrap().resources().clone().unwrap();
    r.set_cpu(Some(LinuxCpuBuilder::default().cpus("99").build().unwrap()));
    s.linux_mut().as_mut().unwrap().set_resources(Some(r));
    assert_refused(&shim, &s, ttrpc::Code::INVALID_ARGUMENT, "cpuset.cpus");

    let mut s = good.clone();
    s.linux_mut()
        .as_mut()
        .unwrap()
        .set_resources(Some(LinuxResourcesBuilder::default().cpu(LinuxCpuBuilder::default().quota(10i64).build().unwrap()).build().unwrap()));
    assert_refused(&shim, &s, ttrpc::Code::INVALID_ARGUMENT, "cpu.quota");

    let mut s = good.clone();
    s.process_mut().as_mut().unwrap().set_args(Some(vec!["/bin/nope".into()]));
    assert_refused(&shim, &s, ttrpc::Code::INVALID_ARGUMENT, "exec \"/bin/nope\": no such file or directory");

    let mut s = good.clone();
    s.process_mut().as_mut().unwrap().set_args(Some(vec!["nope".into()]));
    assert_refused(&shim, &s, ttrpc::Code::INVALID_ARGUMENT, "exec \"nope\": executable file not found in $PATH");

    let mut s = good.clone();
    s.process_mut().as_mut().unwrap().set_cwd("relative".into());
    assert_refused(&shim, &s, ttrpc::Code::INVALID_ARGUMENT, "cwd");

    // Not JSON at all.
    std::fs::write(shim.bundle.join("config.json"), b"{ not json").unwrap();
    let (c, msg) = code(&shim.client.create(Shim::ctx(), &shim.create_request()).unwrap_err());
    assert_eq!(c, ttrpc::Code::INVALID_ARGUMENT, "{msg}");
    assert!(msg.contains("config.json"), "{msg}");

    // After all that, the shim still runs a good container.
    let pid = shim.run(&good);
    assert_eq!(shim.wait(""), 0);
    assert_eq!(shim.log_text(), "fine");
    // And a second Create is refused while it holds one.
    let (c, _) = code(&shim.create(&good).unwrap_err());
    assert_eq!(c, ttrpc::Code::ALREADY_EXISTS);
    shim.delete_and_assert_clean(pid);
}
