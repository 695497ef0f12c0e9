//! Entering the container's namespaces: join the ones given by path, create
//! the rest. PID namespaces only apply to children, hence the fork in init.

use std::{
    fs::File,
    os::fd::AsFd,
    path::{Path, PathBuf},
};

use nix::{
    sched::{setns, unshare, CloneFlags},
    unistd::{setgroups, setresgid, setresuid, Gid, Uid},
};
use oci_spec::runtime::{LinuxNamespace, LinuxNamespaceType};

use crate::error::{Error, Result};

/// Namespace types berth knows, in the order they are joined. The mount
/// namespace goes last: once we are in it, host paths no longer resolve.
const ORDER: [LinuxNamespaceType; 7] = [
    LinuxNamespaceType::User,
    LinuxNamespaceType::Ipc,
    LinuxNamespaceType::Uts,
    LinuxNamespaceType::Network,
    LinuxNamespaceType::Pid,
    LinuxNamespaceType::Cgroup,
    LinuxNamespaceType::Mount,
];

pub fn flag(t: LinuxNamespaceType) -> CloneFlags {
    match t {
        LinuxNamespaceType::Mount => CloneFlags::CLONE_NEWNS,
        LinuxNamespaceType::Cgroup => CloneFlags::CLONE_NEWCGROUP,
        LinuxNamespaceType::Uts => CloneFlags::CLONE_NEWUTS,
        LinuxNamespaceType::Ipc => CloneFlags::CLONE_NEWIPC,
        LinuxNamespaceType::User => CloneFlags::CLONE_NEWUSER,
        LinuxNamespaceType::Pid => CloneFlags::CLONE_NEWPID,
        LinuxNamespaceType::Network => CloneFlags::CLONE_NEWNET,
        LinuxNamespaceType::Time => CloneFlags::from_bits_retain(libc::CLONE_NEWTIME),
    }
}

/// `/proc/<pid>/ns/<name>` entry name of a namespace type.
pub fn proc_name(t: LinuxNamespaceType) -> &'static str {
    match t {
        LinuxNamespaceType::Mount => "mnt",
        LinuxNamespaceType::Cgroup => "cgroup",
        LinuxNamespaceType::Uts => "uts",
        LinuxNamespaceType::Ipc => "ipc",
        LinuxNamespaceType::User => "user",
        LinuxNamespaceType::Pid => "pid",
        LinuxNamespaceType::Network => "net",
        LinuxNamespaceType::Time => "time",
    }
}

/// Opens every namespace to join before touching any, so a bad path fails
/// before anything changed and every path resolves in the host's view.
pub fn enter(namespaces: &[LinuxNamespace]) -> Result<()> {
    let mut to_join: Vec<(LinuxNamespaceType, PathBuf, File)> = Vec::new();
    let mut to_create = CloneFlags::empty();
    for t in ORDER.iter().chain([LinuxNamespaceType::Time].iter()) {
        let Some(ns) = namespaces.iter().find(|n| n.typ() == *t) else { continue };
        match ns.path() {
            Some(path) if !path.as_os_str().is_empty() => {
                let file = File::open(path).map_err(|e| Error::Namespace {
                    ns: proc_name(*t).into(),
                    path: path.clone(),
                    source: nix::Error::from_raw(e.raw_os_error().unwrap_or(libc::EINVAL)),
                })?;
                to_join.push((*t, path.clone(), file));
            }
            _ => to_create |= flag(*t),
        }
    }
    for (t, path, file) in &to_join {
        join(*t, path, file)?;
    }
    if !to_create.is_empty() {
        unshare(to_create).map_err(Error::sys(format!("unshare {to_create:?}")))?;
    }
    Ok(())
}

/// Joins every namespace of a running container process (for exec). The
/// user namespace is skipped when it is ours already: setns to one's own
/// user namespace fails with EINVAL.
pub fn join_process(pid: i32) -> Result<()> {
    let mut files = Vec::new();
    for t in ORDER {
        let path = Path::new("/proc").join(pid.to_string()).join("ns").join(proc_name(t));
        if t == LinuxNamespaceType::User || t == LinuxNamespaceType::Cgroup {
            let theirs = std::fs::read_link(&path).ok();
            let ours = std::fs::read_link(Path::new("/proc/self/ns").join(proc_name(t))).ok();
            if theirs == ours {
                continue;
            }
        }
        let file = File::open(&path).map_err(|e| Error::Namespace {
            ns: proc_name(t).into(),
            path: path.clone(),
            source: nix::Error::from_raw(e.raw_os_error().unwrap_or(libc::ESRCH)),
        })?;
        files.push((t, path, file));
    }
    for (t, path, file) in &files {
        join(*t, path, file)?;
    }
    Ok(())
}

fn join(t: LinuxNamespaceType, path: &Path, file: &File) -> Result<()> {
    setns(file.as_fd(), flag(t)).map_err(|source| Error::Namespace { ns: proc_name(t).into(), path: path.into(), source })?;
    if t == LinuxNamespaceType::User {
        become_namespace_root()?;
    }
    Ok(())
}

/// Joining a user namespace keeps our host ids, which are not mapped in
/// it (the host's root is nobody there): files made that way fail with
/// EOVERFLOW. Become its root, which keeps the capabilities setns gave.
fn become_namespace_root() -> Result<()> {
    let root_gid = Gid::from_raw(0);
    setgroups(&[]).map_err(Error::sys("setgroups([]) in the user namespace"))?;
    setresgid(root_gid, root_gid, root_gid).map_err(Error::sys("setresgid(0) in the user namespace"))?;
    let root_uid = Uid::from_raw(0);
    setresuid(root_uid, root_uid, root_uid).map_err(Error::sys("setresuid(0) in the user namespace"))
}
