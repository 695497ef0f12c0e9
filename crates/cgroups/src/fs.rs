//! Small helpers over cgroupfs files, with errors that name the file and value.

use std::{
    fs, io,
    path::{Path, PathBuf},
    thread,
    time::Duration,
};

use crate::error::{Error, Result};

pub fn write(dir: &Path, file: &str, value: &str) -> Result<()> {
    let path = dir.join(file);
    fs::write(&path, value).map_err(|source| Error::Write { path, value: value.to_string(), source })
}

pub fn read(dir: &Path, file: &str) -> Result<String> {
    let path = dir.join(file);
    fs::read_to_string(&path).map_err(|source| Error::Read { path, source })
}

/// Reads a file if it exists; a missing file (controller absent, older
/// kernel) is `None`, so stats degrade instead of failing.
pub fn read_optional(dir: &Path, file: &str) -> Option<String> {
    fs::read_to_string(dir.join(file)).ok()
}

pub fn read_u64(dir: &Path, file: &str) -> Option<u64> {
    read_optional(dir, file).and_then(|s| parse_u64(s.trim()))
}

/// Parses a cgroup number where `max` means unlimited (`u64::MAX`).
pub fn parse_u64(s: &str) -> Option<u64> {
    if s == "max" {
        Some(u64::MAX)
    } else {
        s.parse().ok()
    }
}

/// Parses "key value" lines (memory.stat, cpu.stat, memory.events, ...).
pub fn flat_keyed(text: &str) -> impl Iterator<Item = (&str, u64)> {
    text.lines().filter_map(|line| {
        let mut it = line.split_whitespace();
        let key = it.next()?;
        let value = parse_u64(it.next()?)?;
        Some((key, value))
    })
}

pub fn create_dir_all(path: &Path) -> Result<()> {
    fs::create_dir_all(path).map_err(|source| Error::Create { path: path.to_path_buf(), source })
}

/// `rmdir` on a cgroup fails with EBUSY while exiting tasks are still being
/// torn down; retry for a short while. A missing directory is success.
pub fn remove_dir_retrying(path: &Path) -> Result<()> {
    let mut delay = Duration::from_millis(2);
    for _ in 0..10 {
        match fs::remove_dir(path) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                thread::sleep(delay);
                delay *= 2;
            }
            Err(source) => return Err(Error::Remove { path: path.to_path_buf(), source }),
        }
    }
    fs::remove_dir(path).map_err(|source| Error::Remove { path: PathBuf::from(path), source })
}
