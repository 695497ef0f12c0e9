//! Terminals, stdin, log rotation and overlay rootfs.

mod common;

use std::{io::Write, time::Duration};

use common::*;
use containerd_shim_protos::api;

#[test]
fn terminal_mode_allocates_a_pty_logs_its_output_and_resizes() {
    let shim = Shim::start("tty");
    let req = shim.terminal_request(&["sh", "-c", "tty; sleep 0.5; stty size"]);
    let pid = shim.client.create(Shim::ctx(), &req).unwrap().pid;
    shim.start_task("").unwrap();
    let resize = api::ResizePtyRequest { id: shim.id.clone(), width: 123, height: 45, ..Default::default() };
    shim.client.resize_pty(Shim::ctx(), &resize).unwrap();
    assert_eq!(shim.wait(""), 0);
    let records = shim.log_records();
    let texts: Vec<&str> = records.iter().map(|r| r.2.as_str()).collect();
    assert_eq!(texts, ["/dev/pts/0", "45 123"], "{records:?}");
    assert!(records.iter().all(|r| r.0 == "stdout" && r.1 == "F"));
    shim.delete_and_assert_clean(pid);
}

#[test]
fn stdin_from_a_fifo_reaches_the_container_and_eof_ends_it() {
    let shim = Shim::start("stdin");
    let fifo = shim.dir.path().join("stdin");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    shim.write_spec(&spec(&shim.id, &["sh", "-c", "while read l; do echo got-$l; done; echo eof"]));
    let mut req = shim.create_request();
    req.stdin = fifo.display().to_string();
    let pid = shim.client.create(Shim::ctx(), &req).unwrap().pid;
    shim.start_task("").unwrap();
    let mut writer = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
    writer.write_all(b"one\ntwo\n").unwrap();
    drop(writer);
    assert_eq!(shim.wait(""), 0);
    assert_eq!(shim.log_text(), "got-one\ngot-two\neof");
    shim.delete_and_assert_clean(pid);
}

#[test]
fn close_io_ends_stdin() {
    let shim = Shim::start("closeio");
    let fifo = shim.dir.path().join("stdin");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    shim.write_spec(&spec(&shim.id, &["sh", "-c", "cat; echo stdin-closed"]));
    let mut req = shim.create_request();
    req.stdin = fifo.display().to_string();
    let pid = shim.client.create(Shim::ctx(), &req).unwrap().pid;
    shim.start_task("").unwrap();
    // A writer that never closes: only CloseIO can end the input.
    let mut writer = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
    writer.write_all(b"hello\n").unwrap();
    wait_until("cat echoes", || shim.log_text().contains("hello"));
    let close = api::CloseIORequest { id: shim.id.clone(), stdin: true, ..Default::default() };
    shim.client.close_io(Shim::ctx(), &close).unwrap();
    assert_eq!(shim.wait(""), 0);
    assert_eq!(shim.log_text(), "hello\nstdin-closed");
    drop(writer);
    shim.delete_and_assert_clean(pid);
}

#[test]
fn reopen_after_rotation_writes_to_the_new_file() {
    let shim = Shim::start("rotate");
    let pid = shim.run(&spec(&shim.id, &["sh", "-c", "i=0; while :; do echo line$i; i=$((i+1)); sleep 0.05; done"]));
    wait_until("first line", || shim.log_text().contains("line1"));
    let rotated = shim.log.with_extension("log.1");
    std::fs::rename(&shim.log, &rotated).unwrap();
    let mut req = api::UpdateTaskRequest { id: shim.id.clone(), ..Default::default() };
    req.annotations.insert("io.berth.log.reopen".into(), "true".into());
    shim.client.update(Shim::ctx(), &req).unwrap();
    wait_until("lines in the new file", || shim.log_records().len() >= 2);
    let old = std::fs::read_to_string(&rotated).unwrap();
    let last_old: u32 = old.lines().last().unwrap().rsplit("line").next().unwrap().parse().unwrap();
    let first_new: u32 = shim.log_records()[0].2.trim_start_matches("line").parse().unwrap();
    assert_eq!(first_new, last_old + 1, "a line was lost or duplicated across the rotation");
    shim.delete_and_assert_clean(pid);
}

#[test]
fn overlay_rootfs_from_the_create_request() {
    let shim = Shim::start("overlay");
    let upper = shim.dir.path().join("upper");
    let work = shim.dir.path().join("work");
    std::fs::create_dir_all(&upper).unwrap();
    std::fs::create_dir_all(&work).unwrap();
    let mut spec = spec(&shim.id, &["sh", "-c", "echo written > /hello.txt; rm /etc/group; ls /etc"]);
    spec.root_mut().as_mut().unwrap().set_path("rootfs".into());
    shim.write_spec(&spec);
    let mut req = shim.create_request();
    req.rootfs.push(containerd_shim_protos::api::Mount {
        type_: "overlay".into(),
        source: "overlay".into(),
        options: vec![format!("lowerdir={}", busybox_rootfs().display()), format!("upperdir={}", upper.display()), format!("workdir={}", work.display())],
        ..Default::default()
    });
    let pid = shim.client.create(Shim::ctx(), &req).unwrap().pid;
    shim.start_task("").unwrap();
    assert_eq!(shim.wait(""), 0);
    assert_eq!(shim.log_text(), "passwd");
    // The write went to the container's layer, the image is untouched.
    assert_eq!(std::fs::read_to_string(upper.join("hello.txt")).unwrap(), "written\n");
    assert!(busybox_rootfs().join("etc/group").exists());
    std::thread::sleep(Duration::from_millis(10));
    shim.delete_and_assert_clean(pid);
}
