//! The kubelet's container log format: one record per line,
//! `<RFC3339Nano> <stdout|stderr> <P|F> <text>`, where `P` marks a piece of a
//! line longer than the buffer and `F` the piece that ends it.

use std::{
    fs::{File, OpenOptions},
    io::{self, Read, Write},
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::SystemTime,
};

use crate::timestamp::rfc3339_nano;

/// Lines longer than this are split into partial records, as containerd
/// and CRI-O do (16 KiB), so one runaway line cannot grow a buffer forever.
pub const MAX_LINE: usize = 16 * 1024;

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
#[derive(Clone)]
pub struct CriLog {
    path: PathBuf,
    file: Arc<Mutex<File>>,
}

impl CriLog {
    pub fn open(path: &Path) -> io::Result<CriLog> {
        Ok(CriLog { path: path.to_path_buf(), file: Arc::new(Mutex::new(open_append(path)?)) })
    }

    /// Opens the path again, for after the kubelet renamed the file away to
    /// rotate it. Records in flight go to the old file or the new one,
    /// never half to each.
    pub fn reopen(&self) -> io::Result<()> {
        let new = open_append(&self.path)?;
        *self.file.lock().unwrap_or_else(|e| e.into_inner()) = new;
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn write_record(&self, stream: Stream, partial: bool, text: &[u8]) -> io::Result<()> {
        let mut record = Vec::with_capacity(text.len() + 48);
        record.extend_from_slice(rfc3339_nano(SystemTime::now()).as_bytes());
        record.push(b' ');
        record.extend_from_slice(stream.as_str().as_bytes());
        record.extend_from_slice(if partial { b" P " } else { b" F " });
        record.extend_from_slice(text);
        record.push(b'\n');
        // One write(2) per record on an O_APPEND file: lines of the two
        // streams never interleave inside a record.
        self.file.lock().unwrap_or_else(|e| e.into_inner()).write_all(&record)
    }

    /// Copies `source` into the log until EOF, splitting it into records.
    pub fn copy_from(&self, stream: Stream, mut source: impl Read) -> io::Result<()> {
        let mut buf = vec![0u8; MAX_LINE];
        let mut filled = 0;
        loop {
            let n = match source.read(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // A pty master reports EIO once the last slave fd closes.
                Err(e) if e.raw_os_error() == Some(libc::EIO) => break,
                Err(e) => return Err(e),
            };
            filled += n;
            let mut start = 0;
            while let Some(pos) = buf[start..filled].iter().position(|b| *b == b'\n') {
                let end = start + pos;
                let line = strip_cr(&buf[start..end]);
                self.write_record(stream, false, line)?;
                start = end + 1;
            }
            if start == 0 && filled == buf.len() {
                self.write_record(stream, true, &buf[..filled])?;
                filled = 0;
            } else if start > 0 {
                buf.copy_within(start..filled, 0);
                filled -= start;
            }
        }
        if filled > 0 {
            self.write_record(stream, false, &buf[..filled])?;
        }
        Ok(())
    }
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
        let log = CriLog::open(&dir.path().join("0.log")).unwrap();
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
        let log = CriLog::open(&dir.path().join("0.log")).unwrap();
        let mut input = vec![b'x'; MAX_LINE * 2 + 10];
        input.push(b'\n');
        log.copy_from(Stream::Stdout, &input[..]).unwrap();
        let r = records(log.path());
        let tags: Vec<&str> = r.iter().map(|x| x.1.as_str()).collect();
        assert_eq!(tags, ["P", "P", "F"]);
        assert_eq!(r.iter().map(|x| x.2.len()).sum::<usize>(), MAX_LINE * 2 + 10);
    }

    #[test]
    fn reopen_follows_a_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        let log = CriLog::open(&path).unwrap();
        log.copy_from(Stream::Stdout, &b"before\n"[..]).unwrap();
        std::fs::rename(&path, dir.path().join("0.log.1")).unwrap();
        log.reopen().unwrap();
        log.copy_from(Stream::Stdout, &b"after\n"[..]).unwrap();
        assert_eq!(records(&path)[0].2, "after");
        assert_eq!(records(&dir.path().join("0.log.1"))[0].2, "before");
    }
}
