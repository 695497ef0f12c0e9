//! The files a containerd-driven shim keeps in the bundle, beside
//! containerd's own (`config.json`, `rootfs/`, `work`, `log`,
//! `shim-binary-path`). They are what `delete` has to go on once the
//! serving shim is gone; containerd removes the bundle afterwards.

use std::{
    io::Write,
    path::Path,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use crate::reaper::Exit;

/// The shim's ttrpc address (`unix:///run/containerd/s/<hash>`): containerd
/// 1.6 reads it to reconnect after its own restart, and it must name a
/// socket containerd can reach.
pub const ADDRESS: &str = "address";
/// The fifo containerd copies to its own log (it creates it before `start`).
pub const LOG_FIFO: &str = "log";
/// Where the shim logs when containerd's fifo is not there (a hand run).
pub const LOG_FILE: &str = "shim.log";
/// Pid of the serving shim, so `delete` can end one containerd gave up on.
pub const SHIM_PID: &str = "shim.pid";
/// Pid of the container's init, for `delete`'s answer.
pub const INIT_PID: &str = "init.pid";
/// `<status> <unix nanoseconds>` once the init exited, so `delete` reports
/// the real exit of a container whose shim died after it.
pub const INIT_EXIT: &str = "init.exit";

/// Writes `contents` to `dir/name` through a temp file and a rename, so a
/// reader never sees half of it.
pub fn write_atomic(dir: &Path, name: &str, contents: &str) -> std::io::Result<()> {
    let tmp = dir.join(format!(".{name}.tmp"));
    let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).open(&tmp)?;
    f.write_all(contents.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, dir.join(name))
}

pub fn read_pid(dir: &Path, name: &str) -> Option<i32> {
    std::fs::read_to_string(dir.join(name)).ok()?.trim().parse().ok().filter(|p| *p > 0)
}

pub fn record_exit(dir: &Path, exit: &Exit) -> std::io::Result<()> {
    let nanos = exit.at.duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos();
    write_atomic(dir, INIT_EXIT, &format!("{} {nanos}", exit.status))
}

/// The recorded exit status and time of the init, if it exited while a
/// shim watched it.
pub fn read_exit(dir: &Path) -> Option<(u32, SystemTime)> {
    let text = std::fs::read_to_string(dir.join(INIT_EXIT)).ok()?;
    let mut fields = text.split_whitespace();
    let status = fields.next()?.parse().ok()?;
    let nanos: u64 = fields.next()?.parse().ok()?;
    Some((status, UNIX_EPOCH + Duration::from_nanos(nanos)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read_exit(dir.path()), None);
        let at = UNIX_EPOCH + Duration::from_nanos(1_700_000_000_123_456_789);
        record_exit(dir.path(), &Exit { status: 137, signal: Some(9), at }).unwrap();
        assert_eq!(read_exit(dir.path()), Some((137, at)));
        write_atomic(dir.path(), INIT_PID, "42").unwrap();
        assert_eq!(read_pid(dir.path(), INIT_PID), Some(42));
        assert_eq!(read_pid(dir.path(), SHIM_PID), None);
    }
}
