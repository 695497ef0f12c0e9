//! The host's device nodes, which a privileged container gets (the CRI:
//! "privileged ... all the devices on the host are made available"), as
//! containerd and CRI-O give them.

use std::{
    os::unix::fs::{FileTypeExt, MetadataExt},
    path::Path,
};

use berth_oci::container::HostDevice;

use crate::error::{Error, Result};

/// Directories under /dev that hold no devices of the host's own, or whose
/// contents the container gets otherwise: its own devpts and shm, the fd
/// links of the process that reads them, mqueue.
const SKIPPED_DIRS: [&str; 4] = ["pts", "shm", "fd", "mqueue"];

/// Every character and block device under `dev` (e.g. `/dev`), at the same
/// path in the container. /dev/console and /dev/ptmx are left out: the
/// container's console is its own terminal, and its ptmx is the one of its
/// own devpts instance.
pub(super) fn host_devices(dev: &Path) -> Result<Vec<HostDevice>> {
    let mut found = Vec::new();
    walk(dev, dev, &mut found)?;
    found.sort_by(|a, b| a.container_path.cmp(&b.container_path));
    Ok(found)
}

fn walk(root: &Path, dir: &Path, found: &mut Vec<HostDevice>) -> Result<()> {
    let entries = std::fs::read_dir(dir).map_err(Error::io(format!("list host devices in {}", dir.display())))?;
    for entry in entries {
        let entry = entry.map_err(Error::io(format!("list host devices in {}", dir.display())))?;
        let path = entry.path();
        // Not following links: /dev/stdin and the like point into /proc.
        let Ok(meta) = std::fs::symlink_metadata(&path) else { continue };
        let kind = meta.file_type();
        if kind.is_dir() {
            let skipped = dir == root && SKIPPED_DIRS.iter().any(|s| entry.file_name() == *s);
            if !skipped {
                walk(root, &path, found)?;
            }
            continue;
        }
        let kind = if kind.is_char_device() {
            'c'
        } else if kind.is_block_device() {
            'b'
        } else {
            continue;
        };
        let relative = path.strip_prefix(root).unwrap_or(&path);
        if relative == Path::new("console") || relative == Path::new("ptmx") {
            continue;
        }
        let rdev = meta.rdev();
        found.push(HostDevice {
            container_path: Path::new("/dev").join(relative).display().to_string(),
            kind,
            major: nix::sys::stat::major(rdev) as i64,
            minor: nix::sys::stat::minor(rdev) as i64,
            file_mode: meta.mode() & 0o777,
            permissions: "rwm".into(),
        });
    }
    Ok(())
}
