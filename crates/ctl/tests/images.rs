//! berthctl against a real berthd and a local registry.

mod common;

use common::{berthctl, Daemon};

#[test]
fn pull_list_remove_and_info() {
    let registry = berth_testkit::Registry::start();
    let work = tempfile::tempdir().unwrap();
    berth_testkit::build_and_push(&registry, work.path(), "ops/tool:2", None);
    let mut daemon = Daemon::start(&registry.host(), "");
    let socket = daemon.socket.clone();

    let (ok, out, _) = berthctl(&socket, &["info"]);
    assert!(ok && out.starts_with("berth ") && out.contains("RuntimeReady"), "{out}");
    let name = format!("{}/ops/tool:2", registry.host());
    let (ok, out, err) = berthctl(&socket, &["pull", &name]);
    assert!(ok && out.trim().starts_with("sha256:"), "{out}{err}");
    let (ok, out, _) = berthctl(&socket, &["images", "ls"]);
    assert!(ok && out.lines().any(|l| l.starts_with(&name)), "{out}");
    let (ok, _, _) = berthctl(&socket, &["images", "rm", &name]);
    assert!(ok);
    let (_, out, _) = berthctl(&socket, &["images", "ls"]);
    assert_eq!(out.lines().count(), 1, "only the header is left: {out}");
    let (ok, _, err) = berthctl(&socket, &["pull", "Bad Ref"]);
    assert!(!ok && err.contains("InvalidArgument"), "{err}");

    let _ = daemon.child.kill();
    let _ = daemon.child.wait();
    let (ok, _, err) = berthctl(&socket, &["info"]);
    assert!(!ok && err.contains("is it running?"), "{err}");
}
