//! A container's log on a full disk (a real tmpfs the test mounts and
//! fills): the shim keeps draining the container's output, so the
//! container never stalls; it drops what the disk refuses and, once space
//! returns, writes a marker line saying how much was lost; every line of
//! the log stays valid CRI format, across a rotation made while full; and
//! `<bundle>/log-drops.json` reports the drops for berthd.

mod common;

use std::{
    fs,
    io::Write,
    path::{Path, PathBuf},
    time::Duration,
};

use berth_oci::log_drops::LogDrops;
use common::*;
use containerd_shim_protos::api;

/// Each line carries its sequence number, so a gap shows what was dropped,
/// and a long padding makes torn or spliced lines visible and makes the
/// container write more, while the disk is full, than a pipe holds (64
/// KiB): a shim that stopped draining would stall it. The counter in
/// /dev/shm (a tmpfs of the container's own, off the full disk) shows how
/// far the container got, whatever reached the log.
fn pad() -> String {
    "0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz".repeat(14)
}

fn script() -> String {
    format!("i=0; while :; do echo \"seq $i {}\"; echo $i > /dev/shm/seq; i=$((i+1)); usleep 500; done", pad())
}

/// What a pipe holds before its writer blocks (Linux's default).
const PIPE_CAPACITY: u64 = 64 * 1024;

/// A tmpfs of `size` on `path`, unmounted when dropped, also when the test
/// fails: lazily, since the shim may still hold the log open then.
struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    fn mount(path: &Path, size: &str) -> Tmpfs {
        fs::create_dir_all(path).unwrap();
        nix::mount::mount(Some("tmpfs"), path, Some("tmpfs"), nix::mount::MsFlags::empty(), Some(format!("size={size},mode=0755").as_str())).unwrap();
        Tmpfs { path: path.to_path_buf() }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.path, nix::mount::MntFlags::MNT_DETACH);
    }
}

/// Writes zeros to `path` until the filesystem has no room left.
fn fill(path: &Path) {
    let mut f = fs::File::create(path).unwrap();
    let chunk = vec![0u8; 4096];
    loop {
        match f.write(&chunk) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
            Err(e) => panic!("fill {}: {e}", path.display()),
        }
    }
}

/// What a log file holds, read strictly: every line a whole CRI record.
#[derive(Debug, Default)]
struct Log {
    /// Sequence numbers of the container's lines, in file order.
    seqs: Vec<u64>,
    /// (lines, bytes) of each marker.
    markers: Vec<(u64, u64)>,
}

fn read_log(path: &Path, into: &mut Log) {
    let text = fs::read_to_string(path).unwrap_or_default();
    assert!(text.is_empty() || text.ends_with('\n'), "{} ends inside a record", path.display());
    for line in text.lines() {
        let mut it = line.splitn(4, ' ');
        let (ts, stream, tag, msg) = (it.next().unwrap(), it.next(), it.next(), it.next());
        assert!(valid_timestamp(ts), "bad timestamp in {line:?}");
        assert_eq!(tag, Some("F"), "every line here is short: {line:?}");
        match stream {
            Some("stdout") => {
                let msg = msg.unwrap_or_default();
                let n = msg.strip_prefix("seq ").and_then(|m| m.strip_suffix(&format!(" {}", pad()))).and_then(|n| n.parse().ok());
                into.seqs.push(n.unwrap_or_else(|| panic!("not a line the container wrote: {line:?}")));
            }
            Some("stderr") => {
                let msg = msg.unwrap_or_default();
                let rest = msg.strip_prefix("berth: dropped ").unwrap_or_else(|| panic!("unexpected stderr line {line:?}"));
                let (lines, rest) = rest.split_once(" lines (").unwrap();
                let (bytes, cause) = rest.split_once(" bytes) of container output: ").unwrap();
                assert_eq!(cause, "no space left on device");
                into.markers.push((lines.parse().unwrap(), bytes.parse().unwrap()));
            }
            _ => panic!("bad stream in {line:?}"),
        }
    }
}

/// RFC 3339 with nanoseconds in UTC, as the shim writes it and the
/// kubelet reads it: `2026-11-22T15:49:19.123456789Z`.
fn valid_timestamp(ts: &str) -> bool {
    let b = ts.as_bytes();
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    b.len() == 30
        && digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && b[10] == b'T'
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19)
        && b[19] == b'.'
        && digits(20..29)
        && b[29] == b'Z'
}

fn drops(shim: &Shim) -> Option<LogDrops> {
    LogDrops::parse(&fs::read(shim.bundle.join(berth_oci::log_drops::FILE_NAME)).ok()?)
}

/// How far the container got, from its counter file.
fn counter(pid: u32) -> u64 {
    let path = format!("/proc/{pid}/root/dev/shm/seq");
    let mut last = None;
    wait_until("the container's counter", || {
        last = fs::read_to_string(&path).ok().and_then(|s| s.trim().parse().ok());
        last.is_some()
    });
    last.unwrap()
}

fn running(shim: &Shim, pid: u32) -> bool {
    alive(pid as i32) && shim.state("").status == api::Status::RUNNING.into()
}

#[test]
fn a_full_log_disk_drops_output_without_stalling_the_container_and_marks_the_gap() {
    let shim = Shim::start("logfull");
    let disk = Tmpfs::mount(&shim.dir.path().join("logs"), "4m");
    let pid = shim.run(&spec(&shim.id, &["sh", "-c", &script()]));
    wait_until("the first lines", || shim.log_records().len() >= 10);
    assert!(drops(&shim).is_none(), "nothing dropped yet, no status file");

    let filler = disk.path.join("filler");
    fill(&filler);
    wait_until("the shim reports dropping", || drops(&shim).is_some_and(|d| d.dropping));
    let size_when_full = fs::metadata(&shim.log).unwrap().len();

    // The disk stays full; the container goes on writing all the while.
    let before = counter(pid);
    std::thread::sleep(Duration::from_millis(1500));
    let during = counter(pid);
    let line_len = format!("seq {during} {}\n", pad()).len() as u64;
    assert!((during - before) * line_len > PIPE_CAPACITY, "the container stalled on a full log: counter {before} -> {during}");
    assert!(running(&shim, pid), "the container died on a full log");
    assert_eq!(fs::metadata(&shim.log).unwrap().len(), size_when_full, "the full disk took more output");

    // The kubelet rotates the log while the disk is full: the reopen
    // works, and the drops are reported in the new file.
    let rotated = shim.log.with_extension("log.1");
    fs::rename(&shim.log, &rotated).unwrap();
    let mut reopen = api::UpdateTaskRequest { id: shim.id.clone(), ..Default::default() };
    reopen.annotations.insert("io.berth.log.reopen".into(), "true".into());
    shim.client.update(Shim::ctx(), &reopen).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let full_until = counter(pid);
    let dropping = drops(&shim).unwrap();
    assert!(dropping.dropping && dropping.lines > 0, "{dropping:?}");
    assert_eq!(dropping.last_error, "no space left on device");

    // Space returns: the marker, then the output again.
    fs::remove_file(&filler).unwrap();
    wait_until("the marker and lines after it", || {
        let mut log = Log::default();
        read_log(&shim.log, &mut log);
        !log.markers.is_empty() && log.seqs.len() >= 5
    });
    assert!(running(&shim, pid));
    let status = drops(&shim).unwrap();

    let mut log = Log::default();
    read_log(&rotated, &mut log);
    read_log(&shim.log, &mut log);
    assert!(!log.markers.is_empty());
    let (marked_lines, marked_bytes) = log.markers.iter().fold((0, 0), |(l, b), m| (l + m.0, b + m.1));
    let mut missing = (0, 0);
    for pair in log.seqs.windows(2) {
        assert!(pair[1] > pair[0], "a line came twice or out of order: {pair:?}");
        for seq in pair[0] + 1..pair[1] {
            missing.0 += 1;
            missing.1 += format!("seq {seq} {}\n", pad()).len() as u64;
        }
    }
    assert_eq!((marked_lines, marked_bytes), missing, "the markers count exactly the lines missing from the log");
    assert!(missing.0 >= during - before, "what the container wrote while the disk was full is not in the log");
    assert!(log.seqs.iter().any(|s| *s > full_until), "output after space returned");
    assert_eq!((status.lines, status.bytes, status.dropping), (marked_lines, marked_bytes, false), "{status:?}");
    assert!(status.episodes >= 1 && !status.since.is_empty(), "{status:?}");

    drop(disk);
    shim.delete_and_assert_clean(pid);
}
