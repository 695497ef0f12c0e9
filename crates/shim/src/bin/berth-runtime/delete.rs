//! `berth-runtime delete`: what a container leaves on the host goes. Every
//! process still in its cgroup is killed, the cgroup removed (its scope
//! stopped), the rootfs unmounted. Used for a Delete, for a Create undone
//! half way, and for containerd's `delete` after a lost shim; whatever is
//! already gone is fine, and every step runs even if one before failed.
//!
//! ```text
//! berth-runtime delete [--cgroups-path PATH | --bundle DIR --id ID] [--rootfs DIR]
//! ```
//! With `--bundle`, the path comes from the bundle's spec (none without a
//! spec: nothing was created then).

use std::path::Path;

use crate::{
    container_cgroup::{cgroups_path_of, remove_leftover},
    error::{Error, Result},
    flag,
    rootfs_mount::unmount_rootfs,
};

pub fn run(args: &[String]) -> Result<()> {
    let mut first_error = None;
    let cgroups_path = match (flag(args, "--cgroups-path"), flag(args, "--bundle"), flag(args, "--id")) {
        (Some(path), _, _) => Some(path.to_string()),
        // A spec that cannot be read still leaves the rootfs to unmount.
        (None, Some(bundle), Some(id)) => spec_cgroups_path(Path::new(bundle), id).unwrap_or_else(|e| {
            first_error = Some(e);
            None
        }),
        (None, None, None) if flag(args, "--rootfs").is_some() => None,
        _ => return Err(Error::InvalidArgument("delete needs --cgroups-path, or --bundle and --id".into())),
    };
    if let Some(path) = cgroups_path {
        if let Err(e) = remove_leftover(&path) {
            first_error.get_or_insert(Error::Internal(format!("container cgroup {path}: {e}")));
        }
    }
    if let Some(target) = flag(args, "--rootfs") {
        if let Err(e) = unmount_rootfs(Path::new(target)) {
            first_error.get_or_insert(e);
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// `linux.cgroupsPath` of the bundle's spec (berth's default when it
/// names none); None without a spec. Read as plain JSON: whatever else the
/// spec holds does not matter here.
fn spec_cgroups_path(bundle: &Path, id: &str) -> Result<Option<String>> {
    let path = bundle.join("config.json");
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::Internal(format!("read {}: {e}", path.display()))),
    };
    let spec: serde_json::Value = serde_json::from_str(&text).map_err(|e| Error::InvalidArgument(format!("parse {}: {e}", path.display())))?;
    Ok(Some(cgroups_path_of(spec.pointer("/linux/cgroupsPath").and_then(|v| v.as_str()), id)))
}
