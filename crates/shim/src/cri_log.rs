//! The kubelet's container log format: one record per line,
//! `<RFC3339Nano> <stdout|stderr> <P|F> <text>`, where `P` marks a piece of a
//! line longer than the buffer and `F` the piece that ends it.

use std::{
    fs::{File, OpenOptions},
    io::{self, Write},
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::{Duration, Instant, SystemTime},
};

use berth_oci::log_drops::LogDrops;

use crate::timestamp::rfc3339_nano;

/// Lines longer than this are split into partial records, as containerd
/// and CRI-O do (16 KiB), so one runaway line cannot grow a buffer forever.
pub const MAX_LINE: usize = 16 * 1024;

/// While output is being dropped, the status file is rewritten at most
/// this often: a container that keeps writing to a full disk must not
/// cost a file rewrite per line.
const STATUS_INTERVAL: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// A log file shared by the stdout and stderr copiers of one process.
///
/// A write the file refuses (ENOSPC, EDQUOT, any error) never stops the
/// copiers: they keep draining the container's pipes, so the container
/// never blocks on a full pipe, and the records are dropped and counted.
/// At the first write that succeeds again, a marker record on stderr says
/// how much was lost before the output continues.
#[derive(Clone)]
pub struct CriLog {
    path: PathBuf,
    inner: Arc<Mutex<Inner>>,
}

struct Inner {
    records: RecordWriter<File>,
    status: Option<StatusFile>,
}

impl CriLog {
    /// Opens (creates) the log at `path`; dropped output is recorded in
    /// `status` (the bundle's `log-drops.json`, which berthd reads).
    pub fn open(path: &Path, status: Option<PathBuf>) -> io::Result<CriLog> {
        let inner = Inner { records: RecordWriter::new(open_append(path)?), status: status.map(StatusFile::new) };
        Ok(CriLog { path: path.to_path_buf(), inner: Arc::new(Mutex::new(inner)) })
    }

    /// Opens the path again, for after the kubelet renamed the file away to
    /// rotate it. Records in flight go to the old file or the new one,
    /// never half to each; output dropped before is reported in the new
    /// file.
    pub fn reopen(&self) -> io::Result<()> {
        let new = open_append(&self.path)?;
        let mut inner = self.lock();
        let before = inner.records.mark();
        if let Err(e) = inner.records.replace_file(new) {
            log::warn!("cannot cut a torn record off the rotated log {}: {e}", self.path.display());
        }
        inner.after_change(before, &self.path);
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn write_record(&self, stream: Stream, partial: bool, text: &[u8]) {
        let record = record(stream, partial, text);
        // The container wrote the text and, for a full line, its newline.
        let output_bytes = text.len() as u64 + u64::from(!partial);
        let mut inner = self.lock();
        let before = inner.records.mark();
        inner.records.append(&record, output_bytes);
        inner.after_change(before, &self.path);
    }

    /// When a copier ends: a record torn by a full disk is completed or,
    /// if it still cannot be, cut off, so the file ends with whole lines;
    /// and the marker goes out if there is room for it now.
    fn settle(&self) {
        let mut inner = self.lock();
        let before = inner.records.mark();
        if let Err(e) = inner.records.settle() {
            log::warn!("cannot cut a torn record off {}: {e}", self.path.display());
        }
        inner.after_change(before, &self.path);
        inner.flush_status();
    }

    /// Copies `source` into the log until EOF, splitting it into records.
    /// Fails only if reading fails: a log that refuses writes drops them.
    #[cfg(test)]
    pub fn copy_from(&self, stream: Stream, mut source: impl std::io::Read) -> io::Result<()> {
        let mut records = self.records(stream);
        let result = loop {
            match source.read(records.space()) {
                Ok(0) => break Ok(()),
                Ok(n) => records.filled(n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => break Err(e),
            }
        };
        records.finish();
        result
    }

    /// Splits one stream's output into records of this log: the caller
    /// reads into [`Records::space`] and reports what it read.
    pub fn records(&self, stream: Stream) -> Records {
        Records { log: self.clone(), stream, buf: vec![0u8; MAX_LINE], filled: 0 }
    }
}

/// One stream's output on its way into a [`CriLog`]: the line being
/// assembled, at most [`MAX_LINE`] bytes.
pub struct Records {
    log: CriLog,
    stream: Stream,
    buf: Vec<u8>,
    filled: usize,
}

impl Records {
    /// Where the next read goes.
    pub fn space(&mut self) -> &mut [u8] {
        &mut self.buf[self.filled..]
    }

    /// The last `n` bytes read into [`Self::space`]: whole lines become
    /// records, a line that filled the buffer a partial one.
    pub fn filled(&mut self, n: usize) {
        self.filled += n;
        let (buf, filled, log, stream) = (&mut self.buf, self.filled, &self.log, self.stream);
        let mut start = 0;
        while let Some(pos) = buf[start..filled].iter().position(|b| *b == b'\n') {
            let end = start + pos;
            log.write_record(stream, false, strip_cr(&buf[start..end]));
            start = end + 1;
        }
        if start == 0 && filled == buf.len() {
            log.write_record(stream, true, &buf[..filled]);
            self.filled = 0;
        } else if start > 0 {
            buf.copy_within(start..filled, 0);
            self.filled -= start;
        }
    }

    /// The output ended: what is left becomes a last record, and the log
    /// settles (see [`CriLog::settle`]).
    pub fn finish(self) {
        if self.filled > 0 {
            self.log.write_record(self.stream, false, &self.buf[..self.filled]);
        }
        self.log.settle();
    }
}

impl Inner {
    /// Tells shim.log and the status file when the log stopped or started
    /// taking output again; while it drops, refreshes the status file now
    /// and then.
    fn after_change(&mut self, before: Mark, path: &Path) {
        let now = self.records.drops();
        let began = now.episodes > before.episodes;
        let ended = before.dropping && (!now.dropping || began);
        if ended {
            log::info!("log {} takes output again; dropped {} lines ({} bytes) in all", path.display(), now.lines, now.bytes);
        }
        if began {
            log::warn!("log {} takes no output: {}; dropping it until it does", path.display(), now.last_error);
        }
        let Some(status) = self.status.as_mut() else { return };
        // Transitions at once; while dropping, at most once an interval.
        let due = now.dropping && now != &status.written && status.written_at.is_none_or(|t| t.elapsed() >= STATUS_INTERVAL);
        if began || ended || due {
            status.write(now);
        }
    }

    /// Writes counts the throttle held back.
    fn flush_status(&mut self) {
        let now = self.records.drops();
        if let Some(status) = self.status.as_mut().filter(|s| &s.written != now) {
            status.write(now);
        }
    }
}

/// `<bundle>/log-drops.json`, replaced whole (temp file and rename) so a
/// reader never sees half of it.
struct StatusFile {
    path: PathBuf,
    written: LogDrops,
    written_at: Option<Instant>,
}

impl StatusFile {
    fn new(path: PathBuf) -> StatusFile {
        StatusFile { path, written: LogDrops::default(), written_at: None }
    }

    fn write(&mut self, drops: &LogDrops) {
        self.written = drops.clone();
        self.written_at = Some(Instant::now());
        let tmp = self.path.with_extension("json.tmp");
        let result =
            serde_json::to_vec(drops).map_err(io::Error::other).and_then(|json| std::fs::write(&tmp, json)).and_then(|()| std::fs::rename(&tmp, &self.path));
        if let Err(e) = result {
            log::warn!("write {}: {e}", self.path.display());
        }
    }
}

/// The file under a [`RecordWriter`]: something that appends and can lose
/// its last bytes again.
trait LogFile: Write {
    /// Cuts the last `n` bytes off the file.
    fn cut_tail(&mut self, n: u64) -> io::Result<()>;
}

impl LogFile for File {
    fn cut_tail(&mut self, n: u64) -> io::Result<()> {
        let len = self.metadata()?.len();
        let keep = len.checked_sub(n).ok_or_else(|| io::Error::other(format!("file is {len} bytes, shorter than the {n} to cut")))?;
        self.set_len(keep)
    }
}

/// Appends whole records and accounts for those the file refuses.
struct RecordWriter<F> {
    file: F,
    /// The rest of a record the file took only part of. It is written
    /// first when space returns, completing the line: the file only ever
    /// grows, so readers that follow it by offset (the kubelet, log
    /// shippers) never see it shrink under them. Only a copier that ends
    /// or a rotation cuts it off instead.
    torn: Option<Torn>,
    /// Dropped since the last marker.
    unreported: Counts,
    drops: LogDrops,
}

struct Torn {
    rest: Vec<u8>,
    /// Bytes of the record already in the file.
    written: u64,
    /// What dropping the record costs: nothing for a marker.
    lost: Counts,
}

/// Enough of [`LogDrops`] to see, cheaply at every record, whether an
/// episode began or ended.
#[derive(Debug, Clone, Copy)]
struct Mark {
    episodes: u64,
    dropping: bool,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Counts {
    lines: u64,
    bytes: u64,
}

impl<F: LogFile> RecordWriter<F> {
    fn new(file: F) -> Self {
        RecordWriter { file, torn: None, unreported: Counts::default(), drops: LogDrops::default() }
    }

    fn drops(&self) -> &LogDrops {
        &self.drops
    }

    fn mark(&self) -> Mark {
        Mark { episodes: self.drops.episodes, dropping: self.drops.dropping }
    }

    /// Writes one record, or drops it if the file refuses it (or refused
    /// one before and still has no room for the marker).
    fn append(&mut self, record: &[u8], output_bytes: u64) {
        let lost = Counts { lines: 1, bytes: output_bytes };
        if self.drops.dropping {
            if let Err(e) = self.resume() {
                self.dropped(lost, &e);
                return;
            }
        }
        // One write(2) per record on an O_APPEND file, under the lock the
        // two streams share: their records never interleave.
        match write_counted(&mut self.file, record) {
            Ok(()) => {}
            Err((0, e)) => self.dropped(lost, &e),
            Err((n, e)) => {
                self.torn = Some(Torn { rest: record[n..].to_vec(), written: n as u64, lost });
                self.failed(&e);
            }
        }
    }

    /// Completes a torn record and writes the marker. Once it succeeds,
    /// the log takes output again.
    fn resume(&mut self) -> io::Result<()> {
        if let Some(torn) = self.torn.as_mut() {
            if let Err((n, e)) = write_counted(&mut self.file, &torn.rest) {
                torn.rest.drain(..n);
                torn.written += n as u64;
                return Err(e);
            }
            self.torn = None;
        }
        if self.unreported.lines > 0 {
            let text =
                format!("berth: dropped {} lines ({} bytes) of container output: {}", self.unreported.lines, self.unreported.bytes, self.drops.last_error);
            let marker = record(Stream::Stderr, false, text.as_bytes());
            match write_counted(&mut self.file, &marker) {
                Ok(()) => {}
                Err((0, e)) => return Err(e),
                Err((n, e)) => {
                    // Part of the marker is in: it is completed like any
                    // torn record, and says what it says only once.
                    self.torn = Some(Torn { rest: marker[n..].to_vec(), written: n as u64, lost: Counts::default() });
                    self.unreported = Counts::default();
                    return Err(e);
                }
            }
            self.unreported = Counts::default();
        }
        self.drops.dropping = false;
        Ok(())
    }

    /// For the end of the file's use: resume if there is room; if not, a
    /// torn record is cut off (and counted as dropped), so the file ends
    /// with a whole line. Fails only if the cut does.
    fn settle(&mut self) -> io::Result<()> {
        if !self.drops.dropping || self.resume().is_ok() {
            return Ok(());
        }
        let Some(torn) = self.torn.take() else { return Ok(()) };
        if let Err(e) = self.file.cut_tail(torn.written) {
            self.torn = Some(torn);
            return Err(e);
        }
        self.unreported.lines += torn.lost.lines;
        self.unreported.bytes += torn.lost.bytes;
        self.drops.lines += torn.lost.lines;
        self.drops.bytes += torn.lost.bytes;
        Ok(())
    }

    /// Switches to a new file (a rotation). Output dropped so far is
    /// reported in the new one.
    fn replace_file(&mut self, file: F) -> io::Result<()> {
        let settled = self.settle();
        self.file = file;
        // A torn record that could not be cut stays in the old file; the
        // new one starts clean either way.
        if let Some(torn) = self.torn.take() {
            self.unreported.lines += torn.lost.lines;
            self.unreported.bytes += torn.lost.bytes;
            self.drops.lines += torn.lost.lines;
            self.drops.bytes += torn.lost.bytes;
        }
        settled
    }

    fn dropped(&mut self, lost: Counts, e: &io::Error) {
        self.unreported.lines += lost.lines;
        self.unreported.bytes += lost.bytes;
        self.drops.lines += lost.lines;
        self.drops.bytes += lost.bytes;
        self.failed(e);
    }

    fn failed(&mut self, e: &io::Error) {
        if !self.drops.dropping {
            self.drops.dropping = true;
            self.drops.episodes += 1;
            self.drops.since = rfc3339_nano(SystemTime::now());
        }
        self.drops.last_error = describe(e);
    }
}

/// Writes all of `buf`; on failure, how much of it went in.
fn write_counted(file: &mut impl Write, buf: &[u8]) -> Result<(), (usize, io::Error)> {
    let mut done = 0;
    while done < buf.len() {
        match file.write(&buf[done..]) {
            Ok(0) => return Err((done, io::ErrorKind::WriteZero.into())),
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err((done, e)),
        }
    }
    Ok(())
}

/// `no space left on device`: the error as the marker line says it.
fn describe(e: &io::Error) -> String {
    let text = match e.raw_os_error() {
        Some(code) => nix::errno::Errno::from_raw(code).desc().to_string(),
        None => e.to_string(),
    };
    let mut chars = text.chars();
    chars.next().map(|c| c.to_lowercase().chain(chars).collect()).unwrap_or_default()
}

fn record(stream: Stream, partial: bool, text: &[u8]) -> Vec<u8> {
    let mut record = Vec::with_capacity(text.len() + 48);
    record.extend_from_slice(rfc3339_nano(SystemTime::now()).as_bytes());
    record.push(b' ');
    record.extend_from_slice(stream.as_str().as_bytes());
    record.extend_from_slice(if partial { b" P " } else { b" F " });
    record.extend_from_slice(text);
    record.push(b'\n');
    record
}

/// A tty turns `\n` into `\r\n`; the record must not keep the `\r`.
fn strip_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

fn open_append(path: &Path) -> io::Result<File> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    OpenOptions::new().create(true).append(true).mode(0o640).open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(path: &Path) -> Vec<(String, String, String)> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(|l| {
                let mut it = l.splitn(4, ' ');
                let ts = it.next().unwrap();
                assert!(ts.ends_with('Z') && ts.len() == 30, "{ts}");
                (it.next().unwrap().to_string(), it.next().unwrap().to_string(), it.next().unwrap_or("").to_string())
            })
            .collect()
    }

    #[test]
    fn lines_become_full_records() {
        let dir = tempfile::tempdir().unwrap();
        let log = CriLog::open(&dir.path().join("0.log"), None).unwrap();
        log.copy_from(Stream::Stdout, &b"hello\nworld\r\n\nno newline"[..]).unwrap();
        log.copy_from(Stream::Stderr, &b"oops\n"[..]).unwrap();
        let r = records(log.path());
        let want = [("stdout", "F", "hello"), ("stdout", "F", "world"), ("stdout", "F", ""), ("stdout", "F", "no newline"), ("stderr", "F", "oops")];
        assert_eq!(r.len(), want.len());
        for (got, want) in r.iter().zip(want) {
            assert_eq!((got.0.as_str(), got.1.as_str(), got.2.as_str()), want);
        }
    }

    #[test]
    fn long_lines_are_split_into_partials() {
        let dir = tempfile::tempdir().unwrap();
        let log = CriLog::open(&dir.path().join("0.log"), None).unwrap();
        let mut input = vec![b'x'; MAX_LINE * 2 + 10];
        input.push(b'\n');
        log.copy_from(Stream::Stdout, &input[..]).unwrap();
        let r = records(log.path());
        let tags: Vec<&str> = r.iter().map(|x| x.1.as_str()).collect();
        assert_eq!(tags, ["P", "P", "F"]);
        assert_eq!(r.iter().map(|x| x.2.len()).sum::<usize>(), MAX_LINE * 2 + 10);
    }

    /// A disk with `room` bytes left; writes that do not fit go in
    /// partly, as write(2) does at the last free block.
    struct Disk {
        data: Vec<u8>,
        room: usize,
        cut_fails: bool,
    }

    impl Disk {
        fn with_room(room: usize) -> Disk {
            Disk { data: Vec::new(), room, cut_fails: false }
        }

        fn text(&self) -> String {
            String::from_utf8(self.data.clone()).unwrap()
        }
    }

    impl Write for Disk {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.room == 0 {
                return Err(io::Error::from_raw_os_error(libc::ENOSPC));
            }
            let n = buf.len().min(self.room);
            self.data.extend_from_slice(&buf[..n]);
            self.room -= n;
            Ok(n)
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl LogFile for Disk {
        fn cut_tail(&mut self, n: u64) -> io::Result<()> {
            if self.cut_fails {
                return Err(io::Error::from_raw_os_error(libc::EIO));
            }
            self.data.truncate(self.data.len() - n as usize);
            Ok(())
        }
    }

    /// Every line whole: a timestamp, a stream, a tag, the text.
    fn texts(data: &str) -> Vec<String> {
        assert!(data.is_empty() || data.ends_with('\n'), "the file ends inside a record: {data:?}");
        data.lines()
            .map(|l| {
                let mut it = l.splitn(4, ' ');
                let ts = it.next().unwrap();
                assert!(ts.len() == 30 && ts.ends_with('Z') && ts.as_bytes()[10] == b'T', "bad timestamp in {l:?}");
                assert!(matches!(it.next(), Some("stdout" | "stderr")), "bad stream in {l:?}");
                assert!(matches!(it.next(), Some("P" | "F")), "bad tag in {l:?}");
                it.next().unwrap_or("").to_string()
            })
            .collect()
    }

    fn line(text: &str) -> (Vec<u8>, u64) {
        (record(Stream::Stdout, false, text.as_bytes()), text.len() as u64 + 1)
    }

    fn append(w: &mut RecordWriter<Disk>, text: &str) {
        let (r, bytes) = line(text);
        w.append(&r, bytes);
    }

    #[test]
    fn a_full_disk_drops_whole_records_and_a_marker_says_so_when_room_returns() {
        let (first, _) = line("one");
        let mut w = RecordWriter::new(Disk::with_room(first.len() * 2));
        for t in ["one", "two", "three", "four", "five"] {
            append(&mut w, t);
        }
        assert!(w.drops().dropping);
        assert_eq!((w.drops().lines, w.drops().bytes, w.drops().episodes), (3, 16, 1));
        assert_eq!(w.drops().last_error, "no space left on device");
        w.file.room = 10_000;
        append(&mut w, "six");
        let texts = texts(&w.file.text());
        assert_eq!(texts, ["one", "two", "berth: dropped 3 lines (16 bytes) of container output: no space left on device", "six"]);
        assert!(w.file.text().lines().nth(2).unwrap().contains(" stderr F berth: "));
        assert!(!w.drops().dropping);
        assert_eq!((w.drops().lines, w.drops().episodes), (3, 1));
    }

    #[test]
    fn a_torn_record_is_completed_when_room_returns() {
        let (first, _) = line("one");
        let mut w = RecordWriter::new(Disk::with_room(first.len() + 10));
        append(&mut w, "one");
        append(&mut w, "two: the disk fills inside this record");
        append(&mut w, "three");
        assert_eq!(w.file.data.len(), first.len() + 10, "the file keeps the torn record's start");
        assert_eq!((w.drops().lines, w.drops().dropping), (1, true), "the torn record is not lost yet");
        w.file.room = 10_000;
        append(&mut w, "four");
        assert_eq!(
            texts(&w.file.text()),
            ["one", "two: the disk fills inside this record", "berth: dropped 1 lines (6 bytes) of container output: no space left on device", "four"]
        );
    }

    #[test]
    fn a_torn_record_that_cannot_be_completed_is_cut_off_at_the_end() {
        let (first, _) = line("one");
        let mut w = RecordWriter::new(Disk::with_room(first.len() + 10));
        append(&mut w, "one");
        append(&mut w, "two");
        w.settle().unwrap();
        assert_eq!(texts(&w.file.text()), ["one"], "the file ends with a whole line");
        assert_eq!((w.drops().lines, w.drops().bytes), (1, 4));
        w.file.room = 10_000;
        append(&mut w, "three");
        assert_eq!(texts(&w.file.text())[1..], ["berth: dropped 1 lines (4 bytes) of container output: no space left on device", "three"]);
    }

    #[test]
    fn a_rotation_while_full_reports_the_drops_in_the_new_file() {
        let mut w = RecordWriter::new(Disk::with_room(0));
        append(&mut w, "one");
        append(&mut w, "two");
        w.replace_file(Disk::with_room(10_000)).unwrap();
        append(&mut w, "three");
        assert_eq!(texts(&w.file.text()), ["berth: dropped 2 lines (8 bytes) of container output: no space left on device", "three"]);
        assert_eq!(w.drops().episodes, 1);
    }

    #[test]
    fn a_torn_marker_is_completed_and_said_once() {
        let mut w = RecordWriter::new(Disk::with_room(0));
        append(&mut w, "one");
        w.file.room = 20;
        append(&mut w, "two");
        assert_eq!(w.file.data.len(), 20);
        w.file.room = 10_000;
        append(&mut w, "three");
        // The first marker (for "one"), completed; the second for "two",
        // dropped while the first was torn.
        let marker = "berth: dropped 1 lines (4 bytes) of container output: no space left on device";
        assert_eq!(texts(&w.file.text()), [marker, marker, "three"]);
        assert_eq!(w.drops().lines, 2);
    }

    #[test]
    fn a_cut_that_fails_leaves_the_torn_record_in_the_old_file_only() {
        let (first, _) = line("one");
        let mut disk = Disk::with_room(first.len() + 10);
        disk.cut_fails = true;
        let mut w = RecordWriter::new(disk);
        append(&mut w, "one");
        append(&mut w, "two");
        assert!(w.replace_file(Disk::with_room(10_000)).is_err());
        append(&mut w, "three");
        assert_eq!(texts(&w.file.text()), ["berth: dropped 1 lines (4 bytes) of container output: no space left on device", "three"]);
    }

    #[test]
    fn reopen_follows_a_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        let log = CriLog::open(&path, None).unwrap();
        log.copy_from(Stream::Stdout, &b"before\n"[..]).unwrap();
        std::fs::rename(&path, dir.path().join("0.log.1")).unwrap();
        log.reopen().unwrap();
        log.copy_from(Stream::Stdout, &b"after\n"[..]).unwrap();
        assert_eq!(records(&path)[0].2, "after");
        assert_eq!(records(&dir.path().join("0.log.1"))[0].2, "before");
    }
}
