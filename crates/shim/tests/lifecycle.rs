//! A container runs, logs in CRI format, exits, and is deleted cleanly.

mod common;

use common::*;

#[test]
fn echo_logs_in_cri_format_and_exit_codes_come_back() {
    let mut shim = Shim::start("echo");
    let spec = spec(&shim.id, &["echo", "hello"]);
    let pid = shim.run(&spec);
    assert_eq!(shim.wait(""), 0);
    let state = shim.state("");
    assert_eq!(state.status.enum_value().unwrap(), containerd_shim_protos::api::Status::STOPPED);
    assert_eq!(state.exit_status, 0);
    assert!(state.exited_at.is_some());
    let records = shim.log_records();
    assert_eq!(records, vec![("stdout".to_string(), "F".to_string(), "hello".to_string())]);
    let raw = std::fs::read_to_string(&shim.log).unwrap();
    let ts = raw.split(' ').next().unwrap();
    assert!(ts.len() == 30 && ts.ends_with('Z') && ts.as_bytes()[10] == b'T', "timestamp {ts}");
    let deleted = shim.delete().unwrap();
    assert_eq!(deleted.pid, pid);
    shim.assert_clean(pid);
}

#[test]
fn non_zero_exit_and_stderr() {
    let shim = Shim::start("exit3");
    let spec = spec(&shim.id, &["sh", "-c", "echo oops >&2; exit 3"]);
    let pid = shim.run(&spec);
    assert_eq!(shim.wait(""), 3);
    assert_eq!(shim.state("").exit_status, 3);
    assert_eq!(shim.log_records(), vec![("stderr".into(), "F".into(), "oops".into())]);
    shim.delete_and_assert_clean(pid);
}
