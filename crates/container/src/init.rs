//! The container init: runs in a freshly exec'd, single-threaded
//! `berth-runtime init`, never in a process with other threads.
//!
//! Stage 1 enters the namespaces and forks; stage 2 is the container's
//! process (pid 1 of a new pid namespace, or the exec'd process), which
//! builds the rootfs, reports Ready, waits for Start and execs the workload.

use std::{
    os::fd::AsFd,
    path::{Path, PathBuf},
};

use nix::unistd::{chdir, fork, setsid, ForkResult};
use oci_spec::runtime::{LinuxNamespaceType, Process, Spec};

use crate::{
    capabilities::CapSets,
    error::{Error, Result},
    idmapped_mounts::IdmappedMounts,
    namespaces, process, rootfs, seccomp,
    sync::{Bootstrap, Channel, InitMessage, ShimMessage},
    tty,
};

/// Entry point of `berth-runtime init`. Never returns: in a forked child,
/// returning into the caller's code would run it twice.
pub fn run(channel: Channel) -> ! {
    let code = match stage1(&channel) {
        Ok(()) => 0,
        Err(e) => {
            report(&channel, &e);
            1
        }
    };
    // SAFETY: _exit skips atexit handlers and stdio flushing, which belong
    // to the process we were forked/exec'd from.
    unsafe { libc::_exit(code) }
}

fn report(channel: &Channel, e: &Error) {
    let _ = channel.send(&InitMessage::Error { kind: e.kind(), message: e.to_string() });
}

fn stage1(channel: &Channel) -> Result<()> {
    let bootstrap = match channel.recv::<ShimMessage>()? {
        Some((ShimMessage::Bootstrap(b), _)) => b,
        Some((other, _)) => return Err(Error::Sync(format!("expected Bootstrap, got {other:?}"))),
        None => return Err(Error::Sync("shim closed the channel before Bootstrap".into())),
    };
    let spec = load_spec(&bootstrap.bundle)?;
    let exec_process = bootstrap.exec.as_ref().map(|t| parse_process(&t.process)).transpose()?;
    // Here, as the host's root in the host's namespaces, where the node's
    // cache of compiled programs is reachable and writable.
    let filter = match spec.linux().as_ref().and_then(|l| l.seccomp().as_ref()) {
        Some(profile) => Some(seccomp::prepare(profile, &seccomp::Cache::node())?),
        None => None,
    };
    let mut idmapped = IdmappedMounts::default();
    match &bootstrap.exec {
        None => {
            let linux = spec.linux().as_ref().ok_or_else(|| Error::InvalidSpec("no linux section".into()))?;
            let ns = linux.namespaces().as_deref().unwrap_or_default();
            if !ns.iter().any(|n| n.typ() == LinuxNamespaceType::Mount && n.path().is_none()) {
                return Err(Error::InvalidSpec("a new mount namespace is required".into()));
            }
            let rootfs = rootfs_path(&spec, &bootstrap.bundle)?;
            if !rootfs.is_dir() {
                return Err(Error::Rootfs { path: rootfs, reason: "does not exist or is not a directory".into() });
            }
            // Before the user namespace is joined: see idmapped_mounts.
            idmapped = IdmappedMounts::prepare(&spec)?;
            namespaces::enter(ns)?;
        }
        Some(target) => namespaces::join_process(target.pid)?,
    }
    // SAFETY: this process is single-threaded (a fresh exec of the shim that
    // started no threads), so the child may run arbitrary code.
    match unsafe { fork() }.map_err(Error::sys("fork"))? {
        ForkResult::Parent { child } => Ok(channel.send(&InitMessage::Pid(child.as_raw()))?),
        ForkResult::Child => {
            let code = match stage2(channel, &spec, &bootstrap, exec_process.as_ref(), filter.as_ref(), &idmapped) {
                Ok(never) => match never {},
                Err(e) => {
                    report(channel, &e);
                    1
                }
            };
            // SAFETY: see `run`.
            unsafe { libc::_exit(code) }
        }
    }
}

enum Never {}

fn stage2(
    channel: &Channel,
    spec: &Spec,
    b: &Bootstrap,
    exec_process: Option<&Process>,
    filter: Option<&seccomp::Filter>,
    idmapped: &IdmappedMounts,
) -> Result<Never> {
    setsid().map_err(Error::sys("setsid"))?;
    let (process, is_exec) = match exec_process {
        Some(p) => (p, true),
        None => (spec.process().as_ref().ok_or_else(|| Error::InvalidSpec("no process section".into()))?, false),
    };
    process::validate_user(process)?;
    let caps = CapSets::from_spec(process.capabilities().as_ref())?;
    if !is_exec {
        let rootfs = rootfs_path(spec, &b.bundle)?;
        rootfs::prepare(spec, &rootfs, idmapped)?;
        if let Some(hostname) = spec.hostname().as_deref().filter(|h| !h.is_empty()) {
            nix::unistd::sethostname(hostname).map_err(Error::sys(format!("sethostname {hostname:?}")))?;
        }
        if let Some(domain) = spec.domainname().as_deref().filter(|d| !d.is_empty()) {
            set_domainname(domain)?;
        }
        if let Some(sysctls) = spec.linux().as_ref().and_then(|l| l.sysctl().as_ref()) {
            process::set_sysctls(sysctls)?;
        }
        // The cwd must exist before the root may become read-only.
        std::fs::create_dir_all(process.cwd()).map_err(|e| Error::Rootfs { path: process.cwd().clone(), reason: format!("create cwd: {e}") })?;
    }
    if b.terminal {
        let size = process.console_size().as_ref().map(|b| (b.width() as u16, b.height() as u16));
        let master = tty::setup_console(size)?;
        channel.send_with_fd(&InitMessage::Console, Some(master.as_fd()))?;
    }
    if !is_exec {
        rootfs::finalize(spec)?;
    }
    process::set_rlimits(process)?;
    let oom = spec.process().as_ref().and_then(|p| p.oom_score_adj());
    if let Some(adj) = oom {
        if let Some(warning) = process::set_oom_score_adj(adj)? {
            channel.send(&InitMessage::Warning(warning))?;
        }
    }
    if !process.cwd().is_absolute() {
        return Err(Error::InvalidSpec(format!("process.cwd {:?} is not absolute", process.cwd())));
    }
    chdir(process.cwd()).map_err(|e| Error::Rootfs { path: process.cwd().clone(), reason: format!("chdir: {e}") })?;
    let args = process.args().as_deref().unwrap_or_default();
    let env = process.env().as_deref().unwrap_or_default();
    let pause = !is_exec && spec.annotations().as_ref().is_some_and(|a| a.get(berth_oci::spec::PAUSE_ANNOTATION).is_some_and(|v| v == "true"));
    let exe = if pause { PathBuf::new() } else { process::find_executable(args.first().map(String::as_str).unwrap_or(""), env)? };
    if !is_exec {
        channel.send(&InitMessage::Ready)?;
        match channel.recv::<ShimMessage>()? {
            Some((ShimMessage::Start, _)) => {}
            Some((other, _)) => return Err(Error::Sync(format!("expected Start, got {other:?}"))),
            // The shim went away or deleted the container before Start.
            // SAFETY: _exit ends this single-threaded init at once, running
            // no destructor or atexit handler of the parent's state.
            None => unsafe { libc::_exit(1) },
        }
    }
    Err(finish(process, &caps, filter, if pause { None } else { Some(&exe) }, args, env))
}

/// Drops privileges and execs `exe` (or, without one, becomes the pod's
/// pause process). Every step after this point fails the Start; on success
/// the channel closes (close-on-exec) and the shim knows.
fn finish(p: &Process, caps: &CapSets, filter: Option<&seccomp::Filter>, exe: Option<&Path>, args: &[String], env: &[String]) -> Error {
    let result = (|| -> Result<()> {
        process::reset_signals();
        // Before seccomp is loaded, so a strict localhost seccomp profile
        // need not allow this write; the kernel switches profiles at the
        // execve below, so the init itself never runs confined.
        if let Some(profile) = p.apparmor_profile().as_deref().filter(|n| !n.is_empty()) {
            crate::apparmor::set_exec_profile(Path::new("/proc"), profile)?;
        }
        caps.drop_bounding()?;
        let nnp = p.no_new_privileges().unwrap_or(false);
        // Without no_new_privs, loading a filter needs CAP_SYS_ADMIN: load
        // it while we still have it. With it, load as late as possible so
        // the profile need not allow setuid/capset.
        if let (false, Some(f)) = (nnp, filter) {
            seccomp::load(f)?;
        }
        process::set_identity(p)?;
        caps.apply()?;
        if nnp {
            nix::sys::prctl::set_no_new_privs().map_err(Error::sys("prctl(PR_SET_NO_NEW_PRIVS)"))?;
            if let Some(f) = filter {
                seccomp::load(f)?;
            }
        }
        close_other_fds();
        Ok(())
    })();
    match (result, exe) {
        (Ok(()), Some(exe)) => process::exec(exe, args, env),
        (Ok(()), None) => crate::pause::run(),
        (Err(e), _) => e,
    }
}

/// Marks every fd above stderr close-on-exec so nothing of the shim leaks
/// into the workload (the channel included, whose EOF means "exec done").
fn close_other_fds() {
    // SAFETY: close_range with CLOSE_RANGE_CLOEXEC only sets flags.
    let rc = unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, libc::CLOSE_RANGE_CLOEXEC) };
    if rc != 0 {
        if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
            let fds: Vec<i32> = dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok()).filter(|fd| *fd > 2).collect();
            for fd in fds {
                // SAFETY: setting FD_CLOEXEC on an fd number is harmless.
                unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
            }
        }
    }
}

fn set_domainname(domain: &str) -> Result<()> {
    // SAFETY: pointer and length describe a live byte slice.
    let rc = unsafe { libc::setdomainname(domain.as_ptr().cast(), domain.len()) };
    if rc != 0 {
        return Err(Error::sys(format!("setdomainname {domain:?}"))(nix::Error::last()));
    }
    Ok(())
}

/// An exec's process: the shim passes it on as the client sent it.
fn parse_process(json: &str) -> Result<Process> {
    serde_json::from_str(json).map_err(|e| Error::InvalidSpec(format!("exec process: {e}")))
}

pub fn load_spec(bundle: &Path) -> Result<Spec> {
    let path = bundle.join("config.json");
    let text = std::fs::read_to_string(&path).map_err(|source| Error::ReadSpec { path: path.clone(), source })?;
    serde_json::from_str(&text).map_err(|source| Error::ParseSpec { path, source })
}

pub fn rootfs_path(spec: &Spec, bundle: &Path) -> Result<PathBuf> {
    let root = spec.root().as_ref().ok_or_else(|| Error::InvalidSpec("no root section".into()))?;
    Ok(if root.path().is_absolute() { root.path().clone() } else { bundle.join(root.path()) })
}
