//! Containers of one pod share namespaces by path; process settings apply.

mod common;

use common::*;
use oci_spec::runtime::{LinuxNamespaceBuilder, LinuxNamespaceType, PosixRlimitBuilder, PosixRlimitType};

fn ns_link(pid: u32, ns: &str) -> String {
    std::fs::read_link(format!("/proc/{pid}/ns/{ns}")).unwrap().display().to_string()
}

#[test]
fn a_second_container_joins_the_first_ones_namespaces_by_path() {
    let first = Shim::start("pod-a");
    let mut spec_a = spec(&first.id, &["sleep", "1000"]);
    spec_a.set_hostname(Some("pod-host".into()));
    let pid_a = first.run(&spec_a);

    let second = Shim::start("pod-b");
    let mut spec_b = spec(&second.id, &["sh", "-c", "hostname; for n in net ipc uts pid; do readlink /proc/self/ns/$n; done; ps -o comm | grep -c sleep"]);
    // Joined namespaces keep no hostname of their own.
    spec_b.set_hostname(None);
    let namespaces = spec_b.linux_mut().as_mut().unwrap().namespaces_mut().as_mut().unwrap();
    for (typ, name) in
        [(LinuxNamespaceType::Network, "net"), (LinuxNamespaceType::Ipc, "ipc"), (LinuxNamespaceType::Uts, "uts"), (LinuxNamespaceType::Pid, "pid")]
    {
        namespaces.retain(|n| n.typ() != typ);
        namespaces.push(LinuxNamespaceBuilder::default().typ(typ).path(format!("/proc/{pid_a}/ns/{name}")).build().unwrap());
    }
    let pid_b = second.run(&spec_b);
    assert_eq!(second.wait(""), 0, "{}", second.log_text());
    let log = second.log_text();
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines[0], "pod-host");
    for (i, ns) in ["net", "ipc", "uts", "pid"].iter().enumerate() {
        assert_eq!(lines[1 + i], ns_link(pid_a, ns), "{ns} namespace not shared");
    }
    assert_eq!(lines[5], "1", "the shared pid namespace shows the first container's sleep");
    // The mount namespace is never shared.
    assert_ne!(ns_link(pid_a, "mnt"), ns_link(std::process::id(), "mnt"));
    second.delete_and_assert_clean(pid_b);
    first.delete_and_assert_clean(pid_a);
}

#[test]
fn rlimits_env_and_cwd_apply() {
    let shim = Shim::start("procattrs");
    let mut spec = spec(&shim.id, &["sh", "-c", "ulimit -n; ulimit -Hn; echo $GREETING; pwd"]);
    let p = spec.process_mut().as_mut().unwrap();
    p.set_rlimits(Some(vec![PosixRlimitBuilder::default().typ(PosixRlimitType::RlimitNofile).soft(512u64).hard(1024u64).build().unwrap()]));
    let mut env = p.env().clone().unwrap();
    env.push("GREETING=hi there".into());
    p.set_env(Some(env));
    p.set_cwd("/var/work".into());
    let pid = shim.run(&spec);
    assert_eq!(shim.wait(""), 0);
    assert_eq!(shim.log_text(), "512\n1024\nhi there\n/var/work");
    shim.delete_and_assert_clean(pid);
}
