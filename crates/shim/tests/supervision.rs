//! The shim outlives whoever started it, leaves its cgroup, and cleans up.

mod common;

use std::{process::Command, time::Duration};

use common::*;
use containerd_shim_protos::{api, ttrpc, TaskClient};

#[test]
fn killing_the_shims_parent_leaves_container_and_shim_serving() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("bundle");
    std::fs::create_dir_all(&bundle).unwrap();
    let socket = dir.path().join("s.sock");
    let id = format!("orphan-{}", std::process::id());
    // A parent that outlives `start` and gets SIGKILLed afterwards, like a
    // berthd crashing.
    let script = format!("{} start --id {id} --socket {} --bundle {} >/dev/null; exec sleep 1000", shim_binary().display(), socket.display(), bundle.display());
    let mut parent = Command::new("sh").args(["-c", &script]).spawn().unwrap();
    wait_until("the shim listens", || std::os::unix::net::UnixStream::connect(&socket).is_ok());
    let client = TaskClient::new(ttrpc::Client::connect(&format!("unix://{}", socket.display())).unwrap());
    let shim_pid = client.connect(Shim::ctx(), &api::ConnectRequest { id: id.clone(), ..Default::default() }).unwrap().shim_pid as i32;

    let spec = spec(&id, &["sleep", "1000"]);
    std::fs::write(bundle.join("config.json"), serde_json::to_vec(&spec).unwrap()).unwrap();
    let create = api::CreateTaskRequest { id: id.clone(), bundle: bundle.display().to_string(), ..Default::default() };
    let pid = client.create(Shim::ctx(), &create).unwrap().pid;
    client.start(Shim::ctx(), &api::StartRequest { id: id.clone(), ..Default::default() }).unwrap();

    parent.kill().unwrap();
    parent.wait().unwrap();
    std::thread::sleep(Duration::from_millis(100));

    assert!(alive(shim_pid) && alive(pid as i32));
    let state = client.state(Shim::ctx(), &api::StateRequest { id: id.clone(), ..Default::default() }).unwrap();
    assert_eq!(state.status.enum_value().unwrap(), api::Status::RUNNING);
    // The shim moved itself out of its parent's cgroup.
    let cgroups = std::fs::read_to_string(format!("/proc/{shim_pid}/cgroup")).unwrap();
    // v1: the memory hierarchy's line; v2: the only line ("0::/...").
    assert!(cgroups.lines().any(|l| (l.contains(":memory:") || l.starts_with("0::")) && l.ends_with(":/berth-shims")), "{cgroups}");
    // And it is a session leader of its own, not in the parent's group.
    let stat = std::fs::read_to_string(format!("/proc/{shim_pid}/stat")).unwrap();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap().split_whitespace().collect();
    assert_eq!(fields[3], shim_pid.to_string(), "shim is not its own session leader");

    client.kill(Shim::ctx(), &api::KillRequest { id: id.clone(), signal: 9, ..Default::default() }).unwrap();
    assert_eq!(client.wait(Shim::ctx(), &api::WaitRequest { id: id.clone(), ..Default::default() }).unwrap().exit_status, 137);
    client.delete(Shim::ctx(), &api::DeleteRequest { id: id.clone(), ..Default::default() }).unwrap();
    wait_until("the shim exits after Delete", || !alive(shim_pid));
    assert!(!socket.exists());
    let left = berth_testkit::cgroups::HostCgroup::new(&format!("berth-test/{id}")).existing_dirs();
    assert!(left.is_empty(), "cgroup left behind: {left:?}");
}

#[test]
fn delete_of_a_created_container_and_idempotent_kill() {
    let shim = Shim::start("created");
    let pid = shim.create(&spec(&shim.id, &["sleep", "1000"])).unwrap();
    assert!(alive(pid as i32));
    assert_eq!(shim.state("").status.enum_value().unwrap(), api::Status::CREATED);
    let (c, _) = code(&shim.client.delete(Shim::ctx(), &api::DeleteRequest { id: "other".into(), ..Default::default() }).unwrap_err());
    assert_eq!(c, ttrpc::Code::NOT_FOUND);
    shim.delete_and_assert_clean(pid);
}

#[test]
fn running_container_refuses_delete_and_stopped_one_refuses_kill() {
    let mut shim = Shim::start("refuse");
    // As pid 1 of its namespace, the init gets only signals it handles.
    let pid = shim.run(&spec(&shim.id, &["sh", "-c", "trap 'exit 143' TERM; echo trapped; sleep 1000 & wait"]));
    let (c, msg) = code(&shim.delete().unwrap_err());
    assert_eq!(c, ttrpc::Code::FAILED_PRECONDITION, "{msg}");
    // Signal only once the handler is installed: before, pid 1 ignores it.
    wait_until("the trap is set", || shim.log_text().contains("trapped"));
    shim.kill("", 15, false).unwrap();
    assert_eq!(shim.wait(""), 143);
    let (c, _) = code(&shim.kill("", 15, false).unwrap_err());
    assert_eq!(c, ttrpc::Code::NOT_FOUND);
    let (c, _) = code(&shim.start_task("").unwrap_err());
    assert_eq!(c, ttrpc::Code::FAILED_PRECONDITION);
    shim.delete_and_assert_clean(pid);
}

#[test]
fn concurrent_waits_all_return() {
    let shim = Shim::start("waits");
    let pid = shim.run(&spec(&shim.id, &["sleep", "0.3"]));
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..8).map(|_| s.spawn(|| shim.wait(""))).collect();
        for h in handles {
            assert_eq!(h.join().unwrap(), 0);
        }
    });
    shim.delete_and_assert_clean(pid);
}

/// berthd's retry of a Start that a crash cut short: recovery deletes the
/// half-made task (the shim exits), and the retry runs `start` on the same
/// socket at once. `start` must not take the exiting shim for a live one:
/// a Create on it died with the shim ("socket disconnected"), leaving the
/// init it made behind (kill storm).
#[test]
fn start_right_after_delete_gets_a_new_shim_not_the_exiting_one() {
    let mut shim = Shim::start("restart");
    let pid = shim.create(&spec(&shim.id, &["sleep", "1000"])).unwrap();
    let old_pid = shim.shim_pid;
    shim.delete().unwrap();
    // No pause here: berthd's next StartContainer can come this soon.
    let out = Command::new(shim_binary())
        .args(["start", "--id", &shim.id, "--socket", shim.socket.to_str().unwrap(), "--bundle", shim.bundle.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "shim start: {}", String::from_utf8_lossy(&out.stderr));
    let address = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let client = TaskClient::new(ttrpc::Client::connect(&address).unwrap());
    let connect = client.connect(Shim::ctx(), &api::ConnectRequest { id: shim.id.clone(), ..Default::default() });
    let new_pid = connect.expect("the shim that `start` answered with serves").shim_pid as i32;
    assert_ne!(new_pid, old_pid, "`start` answered with the shim that was exiting");
    // And that shim stays: a Create on it works.
    let create = api::CreateTaskRequest { id: shim.id.clone(), bundle: shim.bundle.display().to_string(), ..Default::default() };
    let new_init = client.create(Shim::ctx(), &create).expect("Create on the new shim").pid;
    assert!(alive(new_pid));
    // The new shim is the one the harness cleans up.
    wait_until("the old shim exits", || !alive(old_pid));
    assert!(!alive(pid as i32));
    shim.client = client;
    shim.shim_pid = new_pid;
    shim.delete_and_assert_clean(new_init);
}
