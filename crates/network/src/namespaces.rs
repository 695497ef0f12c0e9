//! A pod's namespaces without a pause process: each is pinned by a bind
//! mount of its nsfs file, so it lives until berthd unmounts it.
//!
//! The namespaces are made by `unshare` on a fresh OS thread that exits
//! right after: namespaces belong to the calling thread, and a tokio worker
//! (or a reused blocking-pool thread) that unshared would run every later
//! task inside the pod's network. A pod with a user namespace has its
//! namespaces made by a child process instead ([`NamespaceHolder`]): the
//! user namespace must own the others (so that the pod's root may mount
//! sysfs and set net sysctls), and a threaded process cannot unshare one.
//! The pod's `lo` is brought up on the same thread, inside the new network
//! namespace.

use std::path::{Path, PathBuf};

use berth_userns::{IdMap, NamespaceHolder};
use nix::{
    mount::{mount, umount2, MntFlags, MsFlags},
    sched::{setns, unshare, CloneFlags},
};

use crate::{
    error::{Error, Result},
    loopback,
};

/// Which namespaces the pod gets of its own (the others are the host's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamespaceSet {
    pub net: bool,
    pub ipc: bool,
    pub uts: bool,
    /// A user namespace with these maps, owning the other new namespaces.
    pub user: Option<IdMap>,
}

/// The pinned namespace files of one pod, under its own directory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodNamespaces {
    pub net: Option<PathBuf>,
    pub ipc: Option<PathBuf>,
    pub uts: Option<PathBuf>,
    pub user: Option<PathBuf>,
}

const KINDS: [(&str, CloneFlags); 3] = [("net", CloneFlags::CLONE_NEWNET), ("ipc", CloneFlags::CLONE_NEWIPC), ("uts", CloneFlags::CLONE_NEWUTS)];

/// Every pin a pod directory may hold, for removal and recovery.
const PINS: [&str; 4] = ["net", "ipc", "uts", "user"];

impl PodNamespaces {
    /// Creates the wanted namespaces and pins them as `dir/{net,ipc,uts}`.
    /// `hostname` is set in the new UTS namespace, `lo` is up in the new
    /// network namespace. On error nothing stays pinned.
    pub fn create(dir: &Path, want: NamespaceSet, hostname: Option<&str>) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(Error::io("create", dir))?;
        let (dir_owned, hostname) = (dir.to_path_buf(), hostname.map(str::to_string));
        let made = std::thread::Builder::new()
            .name("berth-pod-ns".into())
            .spawn(move || match &want.user {
                Some(map) => pin_with_user_namespace(&dir_owned, &want, map, hostname.as_deref()),
                None => pin_on_this_thread(&dir_owned, &want, hostname.as_deref()),
            })
            .map_err(|e| Error::Namespace(format!("spawn thread: {e}")))?
            .join()
            .map_err(|_| Error::Namespace("namespace thread panicked".into()))?;
        if made.is_err() {
            let _ = Self::remove(dir);
        }
        made
    }

    /// Unpins every namespace under `dir` and removes it. Missing pins and
    /// a missing directory are fine: removal is retried after crashes.
    pub fn remove(dir: &Path) -> Result<()> {
        for name in PINS {
            let path = dir.join(name);
            match umount2(&path, MntFlags::MNT_DETACH) {
                Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => {}
                Err(e) => return Err(Error::Io { op: "unmount", path, source: e.into() }),
            }
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::Io { op: "remove", path, source: e }),
            }
        }
        match std::fs::remove_dir(dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::Io { op: "remove", path: dir.into(), source: e }),
        }
    }

    /// The pins `create` made in `dir` that are still there (for recovery
    /// after a restart, and to notice a reboot that lost them).
    pub fn find(dir: &Path) -> Self {
        let pinned = |name: &str| {
            let path = dir.join(name);
            is_nsfs(&path).then_some(path)
        };
        Self { net: pinned("net"), ipc: pinned("ipc"), uts: pinned("uts"), user: pinned("user") }
    }
}

fn is_nsfs(path: &Path) -> bool {
    const NSFS_MAGIC: i64 = 0x6e73_6673;
    nix::sys::statfs::statfs(path).map(|s| s.filesystem_type().0 == NSFS_MAGIC).unwrap_or(false)
}

fn wanted_flags(want: &NamespaceSet) -> CloneFlags {
    let wanted = [want.net, want.ipc, want.uts];
    KINDS.iter().zip(wanted).filter(|(_, w)| *w).fold(CloneFlags::empty(), |f, ((_, k), _)| f | *k)
}

/// The holder makes the user namespace and, inside it, the others; each is
/// pinned from the holder's /proc entry before the holder ends. The
/// hostname is set from this thread, which joins the new UTS namespace
/// (allowed: berthd's root owns every user namespace it made) and exits.
fn pin_with_user_namespace(dir: &Path, want: &NamespaceSet, map: &IdMap, hostname: Option<&str>) -> Result<PodNamespaces> {
    let holder = NamespaceHolder::spawn(map, wanted_flags(want)).map_err(|e| Error::Namespace(format!("user namespace: {e}")))?;
    let mut pins = PodNamespaces { user: Some(pin(dir, "user", &holder.ns_path("user"))?), ..Default::default() };
    for ((name, _), wanted) in KINDS.iter().zip([want.net, want.ipc, want.uts]) {
        if wanted {
            let target = pin(dir, name, &holder.ns_path(name))?;
            match *name {
                "net" => pins.net = Some(target),
                "ipc" => pins.ipc = Some(target),
                _ => pins.uts = Some(target),
            }
        }
    }
    drop(holder);
    if let (Some(uts), Some(name)) = (&pins.uts, hostname) {
        join(uts, CloneFlags::CLONE_NEWUTS, "UTS")?;
        nix::unistd::sethostname(name).map_err(|e| Error::Namespace(format!("sethostname {name:?}: {e}")))?;
    }
    if let Some(net) = &pins.net {
        join(net, CloneFlags::CLONE_NEWNET, "network")?;
        loopback::bring_up_lo()?;
    }
    Ok(pins)
}

/// Moves this (throw-away) thread into the namespace pinned at `pin`.
fn join(pin: &Path, kind: CloneFlags, name: &str) -> Result<()> {
    let file = std::fs::File::open(pin).map_err(Error::io("open", pin))?;
    setns(&file, kind).map_err(|e| Error::Namespace(format!("join the pod's {name} namespace: {e}")))
}

/// Bind-mounts the namespace file `source` on `dir/name`.
fn pin(dir: &Path, name: &str, source: &Path) -> Result<PathBuf> {
    let target = dir.join(name);
    std::fs::File::create(&target).map_err(Error::io("create", &target))?;
    mount(Some(source), &target, None::<&str>, MsFlags::MS_BIND, None::<&str>).map_err(|e| Error::Io {
        op: "pin namespace at",
        path: target.clone(),
        source: e.into(),
    })?;
    Ok(target)
}

fn pin_on_this_thread(dir: &Path, want: &NamespaceSet, hostname: Option<&str>) -> Result<PodNamespaces> {
    let wanted = [want.net, want.ipc, want.uts];
    let flags = wanted_flags(want);
    if flags.is_empty() {
        return Ok(PodNamespaces::default());
    }
    unshare(flags).map_err(|e| Error::Namespace(format!("unshare: {e}")))?;
    if want.net {
        loopback::bring_up_lo()?;
    }
    if let (true, Some(name)) = (want.uts, hostname) {
        nix::unistd::sethostname(name).map_err(|e| Error::Namespace(format!("sethostname {name:?}: {e}")))?;
    }
    let tid = nix::unistd::gettid();
    let mut pins = PodNamespaces::default();
    for ((name, _), wanted) in KINDS.iter().zip(wanted) {
        if !wanted {
            continue;
        }
        let target = pin(dir, name, Path::new(&format!("/proc/self/task/{tid}/ns/{name}")))?;
        match *name {
            "net" => pins.net = Some(target),
            "ipc" => pins.ipc = Some(target),
            _ => pins.uts = Some(target),
        }
    }
    Ok(pins)
}
