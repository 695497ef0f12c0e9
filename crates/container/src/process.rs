//! Per-process settings applied in the container init: identity, limits,
//! oom score, executable lookup and the final execve.

use std::{
    ffi::CString,
    os::unix::{ffi::OsStrExt, fs::PermissionsExt},
    path::{Path, PathBuf},
};

use nix::{
    sys::{
        signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal},
        stat::{umask, Mode},
    },
    unistd::{setgroups, setresgid, setresuid, Gid, Uid},
};
use oci_spec::runtime::{PosixRlimitType, Process};

use crate::error::{Error, Result};

pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// uid/gid -1 means "unchanged" to setresuid(2): a spec asking for it would
/// silently keep root, so it is refused instead.
pub fn validate_user(p: &Process) -> Result<()> {
    let u = p.user();
    if u.uid() == u32::MAX {
        return Err(Error::User(format!("invalid uid {}", u.uid())));
    }
    if u.gid() == u32::MAX || u.additional_gids().iter().flatten().any(|g| *g == u32::MAX) {
        return Err(Error::User(format!("invalid gid {}", u.gid())));
    }
    Ok(())
}

/// Supplementary groups, then gid, then uid (after which setgroups is no
/// longer permitted). PR_SET_KEEPCAPS keeps the permitted set across setuid
/// so the spec's capabilities can still be applied to a non-root user.
pub fn set_identity(p: &Process) -> Result<()> {
    let u = p.user();
    let groups: Vec<Gid> = u.additional_gids().iter().flatten().map(|g| Gid::from_raw(*g)).collect();
    nix::sys::prctl::set_keepcaps(true).map_err(Error::sys("prctl(PR_SET_KEEPCAPS)"))?;
    setgroups(&groups).map_err(|e| Error::User(format!("setgroups {:?}: {e}", u.additional_gids())))?;
    let gid = Gid::from_raw(u.gid());
    setresgid(gid, gid, gid).map_err(|e| Error::User(format!("setgid {}: {e}", u.gid())))?;
    let uid = Uid::from_raw(u.uid());
    setresuid(uid, uid, uid).map_err(|e| Error::User(format!("setuid {}: {e}", u.uid())))?;
    nix::sys::prctl::set_keepcaps(false).map_err(Error::sys("prctl(PR_SET_KEEPCAPS, 0)"))?;
    if let Some(mask) = u.umask() {
        umask(Mode::from_bits_truncate(mask));
    }
    Ok(())
}

pub fn set_rlimits(p: &Process) -> Result<()> {
    for r in p.rlimits().as_deref().unwrap_or_default() {
        let resource = rlimit_resource(r.typ());
        let limit = libc::rlimit { rlim_cur: r.soft(), rlim_max: r.hard() };
        // SAFETY: a valid resource number and an initialised rlimit.
        if unsafe { libc::setrlimit(resource as _, &limit) } != 0 {
            return Err(Error::InvalidSpec(format!("rlimit {:?} soft={} hard={}: {}", r.typ(), r.soft(), r.hard(), std::io::Error::last_os_error())));
        }
    }
    Ok(())
}

fn rlimit_resource(t: PosixRlimitType) -> libc::c_int {
    (match t {
        PosixRlimitType::RlimitCpu => libc::RLIMIT_CPU,
        PosixRlimitType::RlimitFsize => libc::RLIMIT_FSIZE,
        PosixRlimitType::RlimitData => libc::RLIMIT_DATA,
        PosixRlimitType::RlimitStack => libc::RLIMIT_STACK,
        PosixRlimitType::RlimitCore => libc::RLIMIT_CORE,
        PosixRlimitType::RlimitRss => libc::RLIMIT_RSS,
        PosixRlimitType::RlimitNproc => libc::RLIMIT_NPROC,
        PosixRlimitType::RlimitNofile => libc::RLIMIT_NOFILE,
        PosixRlimitType::RlimitMemlock => libc::RLIMIT_MEMLOCK,
        PosixRlimitType::RlimitAs => libc::RLIMIT_AS,
        PosixRlimitType::RlimitLocks => libc::RLIMIT_LOCKS,
        PosixRlimitType::RlimitSigpending => libc::RLIMIT_SIGPENDING,
        PosixRlimitType::RlimitMsgqueue => libc::RLIMIT_MSGQUEUE,
        PosixRlimitType::RlimitNice => libc::RLIMIT_NICE,
        PosixRlimitType::RlimitRtprio => libc::RLIMIT_RTPRIO,
        PosixRlimitType::RlimitRttime => libc::RLIMIT_RTTIME,
    }) as libc::c_int
}

/// Writes oom_score_adj. Lowering it below the current value needs
/// CAP_SYS_RESOURCE; without it the value is clamped to the current one, as
/// containerd's `restrict_oom_score_adj` does, and a warning is returned.
pub fn set_oom_score_adj(wanted: i32) -> Result<Option<String>> {
    set_oom_score_adj_at(std::path::Path::new("/proc/self/oom_score_adj"), wanted)
}

/// [`set_oom_score_adj`] of another process (`/proc/<pid>/oom_score_adj`):
/// the shim's for a running container's init.
pub fn set_oom_score_adj_at(path: &std::path::Path, wanted: i32) -> Result<Option<String>> {
    let current: i32 = std::fs::read_to_string(path).ok().and_then(|s| s.trim().parse().ok()).unwrap_or(0);
    if wanted == current {
        return Ok(None);
    }
    match std::fs::write(path, wanted.to_string()) {
        Ok(()) => Ok(None),
        Err(e) if wanted < current && matches!(e.raw_os_error(), Some(libc::EACCES) | Some(libc::EPERM)) => {
            Ok(Some(format!("oom_score_adj {wanted} clamped to {current}: lowering it needs CAP_SYS_RESOURCE, which this host does not grant")))
        }
        Err(e) => Err(Error::InvalidSpec(format!("oom_score_adj {wanted}: {e}"))),
    }
}

/// Writes `net.ipv4.ip_forward=1` style keys under /proc/sys.
pub fn set_sysctls(sysctls: &std::collections::HashMap<String, String>) -> Result<()> {
    for (key, value) in sysctls {
        if key.is_empty() || key.contains("..") || key.contains('/') && key.contains('.') {
            return Err(Error::InvalidSpec(format!("sysctl {key:?} is not a valid name")));
        }
        let path = Path::new("/proc/sys").join(key.replace('.', "/"));
        std::fs::write(&path, value).map_err(|e| Error::InvalidSpec(format!("sysctl {key}={value}: {e}")))?;
    }
    Ok(())
}

/// Finds the command as execve would, in the container's root and PATH, so
/// that "not found" is reported at Create with the name the user gave.
pub fn find_executable(arg0: &str, env: &[String]) -> Result<PathBuf> {
    let not_found = |reason: &str| Error::Exec { path: arg0.to_string(), reason: reason.to_string() };
    if arg0.is_empty() {
        return Err(Error::InvalidSpec("process.args is empty".into()));
    }
    if arg0.contains('/') {
        let path = PathBuf::from(arg0);
        return match std::fs::metadata(&path) {
            Ok(m) if m.is_dir() => Err(not_found("is a directory")),
            Ok(m) if m.permissions().mode() & 0o111 == 0 => Err(not_found("permission denied")),
            Ok(_) => Ok(path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(not_found("no such file or directory")),
            Err(e) => Err(not_found(&e.to_string())),
        };
    }
    let path_var = env.iter().find_map(|e| e.strip_prefix("PATH=")).unwrap_or(DEFAULT_PATH);
    for dir in path_var.split(':').filter(|d| !d.is_empty()) {
        let candidate = Path::new(dir).join(arg0);
        if let Ok(m) = std::fs::metadata(&candidate) {
            if m.is_file() && m.permissions().mode() & 0o111 != 0 {
                return Ok(candidate);
            }
        }
    }
    Err(not_found("executable file not found in $PATH"))
}

/// Signal dispositions set to ignore survive execve: undo what the Rust
/// runtime did (SIGPIPE ignored) and unblock everything, so the workload
/// starts with the defaults any process expects.
pub fn reset_signals() {
    let default = SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
    for sig in Signal::iterator() {
        if sig != Signal::SIGKILL && sig != Signal::SIGSTOP {
            // SAFETY: installing SIG_DFL is always sound.
            let _ = unsafe { sigaction(sig, &default) };
        }
    }
    let _ = nix::sys::signal::sigprocmask(nix::sys::signal::SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
}

/// Replaces this process with the workload. Returns only on failure.
pub fn exec(path: &Path, args: &[String], env: &[String]) -> Error {
    let to_c = |s: &[u8]| CString::new(s).map_err(|_| Error::InvalidSpec("argument or env with a NUL byte".into()));
    let prepared = (|| -> Result<(CString, Vec<CString>, Vec<CString>)> {
        let p = to_c(path.as_os_str().as_bytes())?;
        let a = args.iter().map(|s| to_c(s.as_bytes())).collect::<Result<Vec<_>>>()?;
        let e = env.iter().map(|s| to_c(s.as_bytes())).collect::<Result<Vec<_>>>()?;
        Ok((p, a, e))
    })();
    match prepared {
        Ok((p, a, e)) => {
            let err = nix::unistd::execve(&p, &a, &e).unwrap_err();
            Error::Exec { path: args[0].clone(), reason: err.desc().to_lowercase() }
        }
        Err(e) => e,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_reports_what_execve_would() {
        let env = vec!["PATH=/nonexistent:/bin:/usr/bin".to_string()];
        assert!(find_executable("sh", &env).is_ok());
        let e = find_executable("/bin/nope", &env).unwrap_err().to_string();
        assert_eq!(e, "exec \"/bin/nope\": no such file or directory");
        let e = find_executable("nope-not-here", &env).unwrap_err().to_string();
        assert!(e.contains("executable file not found in $PATH"), "{e}");
        assert!(find_executable("/tmp", &env).unwrap_err().to_string().contains("is a directory"));
    }
}
