use std::{
    fs::{self, File, OpenOptions},
    io::Write,
    os::unix::fs::OpenOptionsExt,
    path::Path,
};

use crate::error::{Error, Result};

/// Replaces `path` with `bytes` so that a crash at any moment leaves either
/// the old content or the new, both complete: write a temp file beside it,
/// fsync it, rename it over, fsync the directory so the rename is durable.
pub fn atomic_write(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    let dir = path.parent().ok_or_else(|| Error::Corrupt { path: path.into(), reason: "no parent directory".into() })?;
    fs::create_dir_all(dir).map_err(Error::io("create", dir))?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut f = OpenOptions::new().write(true).create(true).truncate(true).mode(mode).open(&tmp).map_err(Error::io("create", &tmp))?;
        f.write_all(bytes).map_err(Error::io("write", &tmp))?;
        f.sync_all().map_err(Error::io("fsync", &tmp))?;
        fs::rename(&tmp, path).map_err(Error::io("rename onto", path))?;
        File::open(dir).and_then(|d| d.sync_all()).map_err(Error::io("fsync", dir))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Removes the temp files [`atomic_write`] leaves in `dir` when the process
/// dies between writing and renaming. Call at start-up, before anything
/// writes. Returns how many it removed.
pub fn remove_stale_temps(dir: &Path) -> Result<usize> {
    let mut removed = 0;
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(Error::Io { op: "read", path: dir.into(), source: e }),
    };
    for entry in entries {
        let entry = entry.map_err(Error::io("read", dir))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') && name.contains(".tmp-") {
            fs::remove_file(entry.path()).map_err(Error::io("remove", entry.path()))?;
            removed += 1;
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn replaces_whole_content_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b/record.json");
        atomic_write(&path, b"first", 0o600).unwrap();
        atomic_write(&path, b"second", 0o600).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"second");
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(fs::read_dir(path.parent().unwrap()).unwrap().count(), 1);
    }

    #[test]
    fn stale_temp_files_are_removed_and_records_kept() {
        let dir = tempfile::tempdir().unwrap();
        atomic_write(&dir.path().join("keep.json"), b"{}", 0o600).unwrap();
        fs::write(dir.path().join(".keep.json.tmp-4242"), b"half").unwrap();
        assert_eq!(remove_stale_temps(dir.path()).unwrap(), 1);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
        assert_eq!(remove_stale_temps(&dir.path().join("missing")).unwrap(), 0);
    }
}
