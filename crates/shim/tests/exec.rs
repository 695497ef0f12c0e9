//! Exec into a running container shares its namespaces and filesystem.

mod common;

use common::*;

#[test]
fn exec_sees_the_same_pid_namespace_hostname_and_mounts() {
    let shim = Shim::start("exec");
    let mut spec = spec(&shim.id, &["sleep", "1000"]);
    spec.set_hostname(Some("exec-host".into()));
    let pid = shim.run(&spec);
    let out = shim.dir.path().join("exec.out");
    let script = "readlink /proc/1/ns/pid; readlink /proc/self/ns/pid; hostname; \
                  cat /proc/1/cmdline | tr '\\0' ' '; echo; \
                  if cmp -s /proc/1/mountinfo /proc/self/mountinfo; then echo same-mounts; fi";
    shim.exec("e1", &["sh", "-c", script], &out).unwrap();
    let exec_pid = shim.start_task("e1").unwrap();
    assert_ne!(exec_pid, pid);
    assert_eq!(shim.wait("e1"), 0);
    let text = std::fs::read_to_string(&out).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 5, "{text}");
    assert_eq!(lines[0], lines[1], "exec is in another pid namespace: {text}");
    assert_eq!(lines[2], "exec-host");
    assert_eq!(lines[3].trim(), "sleep 1000", "pid 1 in the exec's view is the container init");
    assert_eq!(lines[4], "same-mounts");
    // Exec exit codes come back too, and the exec record can be deleted.
    shim.exec("e2", &["sh", "-c", "exit 7"], &out).unwrap();
    shim.start_task("e2").unwrap();
    assert_eq!(shim.wait("e2"), 7);
    let req = containerd_shim_protos::api::DeleteRequest { id: shim.id.clone(), exec_id: "e2".into(), ..Default::default() };
    assert_eq!(shim.client.delete(Shim::ctx(), &req).unwrap().exit_status, 7);
    shim.delete_and_assert_clean(pid);
}

#[test]
fn exec_errors_are_precise() {
    let shim = Shim::start("execbad");
    let pid = shim.run(&spec(&shim.id, &["sleep", "1000"]));
    let out = shim.dir.path().join("exec.out");
    shim.exec("dup", &["true"], &out).unwrap();
    let (c, msg) = code(&shim.exec("dup", &["true"], &out).unwrap_err());
    assert_eq!(c, ttrpc::Code::ALREADY_EXISTS, "{msg}");
    shim.exec("nope", &["/bin/nope"], &out).unwrap();
    let (c, msg) = code(&shim.start_task("nope").unwrap_err());
    assert_eq!((c, msg.as_str()), (ttrpc::Code::INVALID_ARGUMENT, "exec \"/bin/nope\": no such file or directory"));
    let (c, _) = code(&shim.start_task("never-added").unwrap_err());
    assert_eq!(c, ttrpc::Code::NOT_FOUND);
    // The container is unharmed.
    assert_eq!(shim.state("").status.enum_value().unwrap(), containerd_shim_protos::api::Status::RUNNING);
    shim.delete_and_assert_clean(pid);
}

/// containerd's ExecSync calls Wait before Start: that Wait waits for the
/// exec to start and exit. A Wait on an exec deleted before its Start, or
/// whose Start failed, ends with NotFound.
#[test]
fn wait_before_start_waits_for_the_exec() {
    let shim = Shim::start("execwait");
    let pid = shim.run(&spec(&shim.id, &["sleep", "1000"]));
    let out = shim.dir.path().join("exec.out");
    let wait_in_background = |exec_id: &str| {
        let (client, req) =
            (shim.client.clone(), containerd_shim_protos::api::WaitRequest { id: shim.id.clone(), exec_id: exec_id.into(), ..Default::default() });
        let waiter = std::thread::spawn(move || client.wait(Shim::ctx(), &req));
        std::thread::sleep(std::time::Duration::from_millis(200));
        assert!(!waiter.is_finished(), "Wait on {exec_id} returned before its Start: {:?}", waiter.join());
        waiter
    };

    shim.exec("early", &["sh", "-c", "exit 5"], &out).unwrap();
    let waiter = wait_in_background("early");
    shim.start_task("early").unwrap();
    assert_eq!(waiter.join().unwrap().unwrap().exit_status, 5);

    shim.exec("dropped", &["true"], &out).unwrap();
    let waiter = wait_in_background("dropped");
    let req = containerd_shim_protos::api::DeleteRequest { id: shim.id.clone(), exec_id: "dropped".into(), ..Default::default() };
    shim.client.delete(Shim::ctx(), &req).unwrap();
    let (c, msg) = code(&waiter.join().unwrap().unwrap_err());
    assert_eq!(c, ttrpc::Code::NOT_FOUND, "{msg}");

    shim.exec("nope", &["/bin/nope"], &out).unwrap();
    let waiter = wait_in_background("nope");
    shim.start_task("nope").unwrap_err();
    let (c, msg) = code(&waiter.join().unwrap().unwrap_err());
    assert_eq!(c, ttrpc::Code::NOT_FOUND, "{msg}");
    shim.delete_and_assert_clean(pid);
}

/// containerd reads an exec's output from fifos it opens in the background:
/// a command that finishes before that reader is there must still deliver
/// its output, and the reader must see the end of it (it hung in ExecSync
/// when the shim opened the fifo read-write and the process took it along).
#[test]
fn output_to_a_fifo_whose_reader_comes_late_arrives_whole() {
    let shim = Shim::start("latefifo");
    let pid = shim.run(&spec(&shim.id, &["sleep", "1000"]));
    let fifo = shim.dir.path().join("exec-out");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let path = fifo.clone();
    let reader = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(300));
        std::fs::read_to_string(path).unwrap()
    });
    shim.exec("late", &["echo", "late reader"], &fifo).unwrap();
    shim.start_task("late").unwrap();
    assert_eq!(shim.wait("late"), 0);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(reader.join().unwrap()));
    let out = rx.recv_timeout(std::time::Duration::from_secs(10)).expect("the fifo's reader never saw the end of the output");
    assert_eq!(out, "late reader\n");
    shim.kill("", 9, false).unwrap();
    shim.wait("");
    shim.delete_and_assert_clean(pid);
}
