//! An overlay whose lower layers are shown through a user namespace: the
//! image's files keep their on-disk owners (uid 0 stays the namespace's
//! root) and nothing is chowned but the overlay's own, empty, upper
//! directory.
//!
//! Each `lowerdir=` entry is replaced by an idmapped copy of it, attached
//! under a scratch directory only while the overlay is being mounted: the
//! overlay keeps its own reference to each layer, so the copies are
//! detached again right after (dropping [`IdmappedLayers`]).

use std::{
    os::fd::BorrowedFd,
    path::{Path, PathBuf},
};

use nix::mount::{umount2, MntFlags};

use crate::{
    error::{Error, Result},
    idmapped_mount::bind_idmapped,
};

/// The idmapped copies of an overlay's lower layers, attached under
/// `scratch`; detached and the directory removed on drop.
#[derive(Debug)]
pub struct IdmappedLayers {
    scratch: PathBuf,
    attached: Vec<PathBuf>,
}

impl IdmappedLayers {
    /// Rewrites overlay mount `options` for an overlay shown through
    /// `userns`: returns the options to mount with (each lower layer an
    /// idmapped copy under `scratch`), and gives the upper directory, if
    /// any, to `root` (the namespace's root, as host ids).
    pub fn prepare(options: &[String], scratch: &Path, userns: BorrowedFd<'_>, root: (u32, u32)) -> Result<(Self, Vec<String>)> {
        let mut layers = IdmappedLayers { scratch: scratch.to_path_buf(), attached: Vec::new() };
        let mut rewritten = Vec::with_capacity(options.len());
        for option in options {
            if let Some(lowers) = option.strip_prefix("lowerdir=") {
                let mut shown = Vec::new();
                for (i, lower) in lowers.split(':').enumerate() {
                    let at = scratch.join(i.to_string());
                    std::fs::create_dir_all(&at).map_err(|source| Error::Io { op: "create", path: at.clone(), source })?;
                    bind_idmapped(Path::new(lower), &at, userns, false)?;
                    layers.attached.push(at.clone());
                    shown.push(at.display().to_string());
                }
                rewritten.push(format!("lowerdir={}", shown.join(":")));
                continue;
            }
            if let Some(upper) = option.strip_prefix("upperdir=") {
                nix::unistd::chown(upper, Some(root.0.into()), Some(root.1.into()))
                    .map_err(Error::sys(format!("give the upper layer {upper} to the user namespace's root")))?;
            }
            rewritten.push(option.clone());
        }
        Ok((layers, rewritten))
    }
}

impl Drop for IdmappedLayers {
    fn drop(&mut self) {
        for at in &self.attached {
            let _ = umount2(at, MntFlags::MNT_DETACH);
        }
        let _ = std::fs::remove_dir_all(&self.scratch);
    }
}

#[cfg(test)]
mod tests {
    use std::os::{fd::AsFd, unix::fs::MetadataExt};

    use nix::{
        mount::{mount, MsFlags},
        sched::CloneFlags,
    };

    use super::*;
    use crate::{IdMap, IdMapping, NamespaceHolder};

    /// Through the overlay, a layer's root-owned file belongs to the
    /// namespace's root; the upper directory is its root's; and once
    /// mounted, no idmapped copy or scratch directory is left.
    #[test]
    fn an_overlay_on_idmapped_layers_shows_layer_files_as_the_namespaces() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: mounts need root");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let [lower1, lower2, upper, work, merged, scratch] = ["l1", "l2", "upper", "work", "merged", "scratch"].map(|d| dir.path().join(d));
        for d in [&lower1, &lower2, &upper, &work, &merged] {
            std::fs::create_dir_all(d).unwrap();
        }
        std::fs::write(lower1.join("a"), "").unwrap();
        std::fs::write(lower2.join("b"), "").unwrap();
        let r = vec![IdMapping { container_id: 0, host_id: 500_000, size: 65_536 }];
        let holder = NamespaceHolder::spawn(&IdMap { uids: r.clone(), gids: r }, CloneFlags::empty()).unwrap();
        let userns = holder.user_namespace().unwrap();
        let options =
            vec![format!("lowerdir={}:{}", lower1.display(), lower2.display()), format!("upperdir={}", upper.display()), format!("workdir={}", work.display())];
        let (layers, rewritten) = IdmappedLayers::prepare(&options, &scratch, userns.as_fd(), (500_000, 500_000)).unwrap();
        assert!(rewritten[0].starts_with(&format!("lowerdir={}/0:{}/1", scratch.display(), scratch.display())), "{rewritten:?}");
        mount(Some("overlay"), &merged, Some("overlay"), MsFlags::empty(), Some(rewritten.join(",").as_str())).unwrap();
        drop(layers);
        let owners = ["a", "b", ""].map(|f| std::fs::metadata(merged.join(f)).map(|m| m.uid()).unwrap_or(0));
        umount2(&merged, MntFlags::MNT_DETACH).unwrap();
        assert_eq!(owners, [500_000; 3]);
        assert!(!scratch.exists(), "the scratch directory goes once the overlay is mounted");
    }
}
