//! Resolving a container path inside its rootfs without letting a symlink in
//! the image point the runtime at a host path.

use std::{
    ffi::OsString,
    os::unix::ffi::OsStrExt,
    path::{Component, Path, PathBuf},
};

const MAX_SYMLINKS: usize = 255;

/// Joins `unsafe_path` onto `root`, resolving each symlink as if `root` were
/// `/`: `..` stops at the root and absolute link targets restart at it.
/// Components that do not exist yet are kept as they are (they will be
/// created by the caller below `root`).
pub fn secure_join(root: &Path, unsafe_path: &Path) -> PathBuf {
    let mut resolved = PathBuf::new();
    let mut pending: Vec<OsString> = components(unsafe_path);
    pending.reverse();
    let mut links = 0;
    while let Some(part) = pending.pop() {
        if part == ".." {
            resolved.pop();
            continue;
        }
        let candidate = resolved.join(&part);
        let full = root.join(&candidate);
        match std::fs::symlink_metadata(&full) {
            Ok(m) if m.file_type().is_symlink() && links < MAX_SYMLINKS => {
                links += 1;
                let Ok(target) = std::fs::read_link(&full) else {
                    resolved = candidate;
                    continue;
                };
                if target.is_absolute() {
                    resolved = PathBuf::new();
                }
                let mut more = components(&target);
                more.reverse();
                pending.extend(more);
            }
            _ => resolved = candidate,
        }
    }
    root.join(resolved)
}

fn components(p: &Path) -> Vec<OsString> {
    p.components()
        .filter_map(|c| match c {
            Component::Normal(s) => Some(s.to_os_string()),
            Component::ParentDir => Some(OsString::from("..")),
            _ => None,
        })
        .filter(|s| !s.as_bytes().is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;

    #[test]
    fn symlinks_cannot_escape_the_root() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        std::fs::create_dir_all(root.join("etc")).unwrap();
        symlink("/etc", root.join("abs")).unwrap();
        symlink("../../../../etc", root.join("rel")).unwrap();
        symlink("loop2", root.join("loop1")).unwrap();
        symlink("loop1", root.join("loop2")).unwrap();
        assert_eq!(secure_join(root, Path::new("/abs/passwd")), root.join("etc/passwd"));
        assert_eq!(secure_join(root, Path::new("/rel/passwd")), root.join("etc/passwd"));
        assert_eq!(secure_join(root, Path::new("/../../x")), root.join("x"));
        assert!(secure_join(root, Path::new("/loop1/x")).starts_with(root));
        assert_eq!(secure_join(root, Path::new("/new/dir")), root.join("new/dir"));
    }
}
