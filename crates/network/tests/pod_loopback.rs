//! A pod's `lo` is up in the network namespace berthd makes for it, with
//! or without a user namespace, and with nothing but berthd (no CNI
//! loopback plugin). Needs root.

use std::{
    net::{Ipv4Addr, TcpListener, TcpStream},
    path::Path,
};

use berth_network::{IdMap, IdMapping, NamespaceSet, PodNamespaces};
use nix::sched::{setns, unshare, CloneFlags};

/// Whether a TCP connection to 127.0.0.1 works inside the network
/// namespace pinned at `netns` (it does only with `lo` up), tried on a
/// thread of its own that ends with the answer.
fn loopback_answers_in(netns: &Path) -> bool {
    let netns = netns.to_path_buf();
    std::thread::spawn(move || {
        setns(std::fs::File::open(&netns).unwrap(), CloneFlags::CLONE_NEWNET).unwrap();
        loopback_answers_here()
    })
    .join()
    .unwrap()
}

fn loopback_answers_here() -> bool {
    let Ok(listener) = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)) else { return false };
    TcpStream::connect(listener.local_addr().unwrap()).is_ok()
}

fn require_root() {
    assert!(nix::unistd::geteuid().is_root(), "run as root (README)");
}

/// The control: a network namespace made without berth has `lo` down,
/// and the probe says so.
#[test]
fn a_bare_network_namespace_has_lo_down() {
    require_root();
    let answered = std::thread::spawn(|| {
        unshare(CloneFlags::CLONE_NEWNET).unwrap();
        loopback_answers_here()
    })
    .join()
    .unwrap();
    assert!(!answered, "the probe cannot tell lo up from down");
}

/// Makes a pod's namespaces (with `user`, a user namespace owning them),
/// probes its `lo` and removes them.
fn lo_answers_in_a_pod(user: Option<IdMap>) -> bool {
    let dir = tempfile::tempdir().unwrap();
    let ns = dir.path().join("ns");
    let pins = PodNamespaces::create(&ns, NamespaceSet { net: true, ipc: true, uts: true, user }, Some("pod")).unwrap();
    let answered = loopback_answers_in(pins.net.as_deref().unwrap());
    PodNamespaces::remove(&ns).unwrap();
    answered
}

#[test]
fn a_pod_network_namespace_has_lo_up() {
    require_root();
    assert!(lo_answers_in_a_pod(None), "lo is not up in the pod's network namespace");
}

#[test]
fn a_pod_with_a_user_namespace_has_lo_up() {
    require_root();
    let ids = vec![IdMapping { container_id: 0, host_id: 600_000, size: 65_536 }];
    assert!(lo_answers_in_a_pod(Some(IdMap { uids: ids.clone(), gids: ids })), "lo is not up in the network namespace of a pod with a user namespace");
}

/// A pod on the host's network gets no namespace, and berth touches no
/// interface of the host's.
#[test]
fn a_host_network_pod_gets_no_network_namespace() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let ns = dir.path().join("ns");
    let pins = PodNamespaces::create(&ns, NamespaceSet { net: false, ipc: true, uts: false, user: None }, None).unwrap();
    assert_eq!(pins.net, None);
    assert!(pins.ipc.is_some());
    PodNamespaces::remove(&ns).unwrap();
}
