//! The spec's seccomp profile compiled by libseccomp into a BPF program
//! at Create, and loaded into the init just before execve.
//!
//! Compiling is the costly part of starting a container: libseccomp takes
//! about 4 ms to take the ~400 rules of the default profile and 6.5 ms
//! more to generate the program, against 15 ms for the whole of a
//! container's Create and Start. Every container of a node mostly runs the
//! same few profiles, so the programs are kept in a cache on the node's
//! tmpfs ([`Cache`]), keyed by everything that decides their bytes.

use std::{
    io::{Read, Seek},
    os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt},
    path::{Path, PathBuf},
};

use libseccomp::{ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall};
use oci_spec::runtime::{Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompFilterFlag, LinuxSeccompOperator};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// A profile made ready to load: the BPF program and the flags of
/// seccomp(2) that libseccomp's own load would have passed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    program: Vec<libc::sock_filter>,
    flags: libc::c_ulong,
}

/// The kernel's limit on a filter's length (BPF_MAXINSNS).
const MAX_INSTRUCTIONS: usize = 4096;
const INSTRUCTION_LEN: usize = std::mem::size_of::<libc::sock_filter>();

/// The compiled programs of the profiles this node has run. A program
/// depends only on the profile, libseccomp (version and API level) and
/// the kernel it was made on, which the key covers; a file is written
/// whole and renamed into place, and read only from a directory that
/// nobody but root can write.
#[derive(Debug, Clone)]
pub struct Cache {
    dir: Option<PathBuf>,
}

impl Cache {
    /// The node's cache: on /run, so a reboot (and a new kernel) starts
    /// it afresh. Shared by every berth-runtime on the node, whichever
    /// berthd or containerd started it.
    pub const NODE_DIR: &'static str = "/run/berth-runtime/seccomp";

    pub fn node() -> Self {
        Self::at(Self::NODE_DIR)
    }

    pub fn at(dir: impl Into<PathBuf>) -> Self {
        Self { dir: Some(dir.into()) }
    }

    /// No cache: every profile is compiled.
    pub fn none() -> Self {
        Self { dir: None }
    }

    /// The directory, made if missing, if only this user can write it.
    /// Looked at once per profile prepared.
    fn usable_dir(&self) -> Option<&Path> {
        let dir = self.dir.as_deref()?;
        let meta = std::fs::symlink_metadata(dir).or_else(|_| {
            std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
            std::fs::symlink_metadata(dir)
        });
        let trusted = meta.is_ok_and(|m| m.is_dir() && m.uid() == nix::unistd::geteuid().as_raw() && m.mode() & 0o022 == 0);
        if !trusted {
            log::warn!("seccomp cache {} is not a directory only this user can write; compiling every profile", dir.display());
        }
        trusted.then_some(dir)
    }
}

/// The program kept in `dir` under `key`, if it is one.
fn kept(dir: &Path, key: &str) -> Option<Vec<libc::sock_filter>> {
    let bytes = std::fs::read(dir.join(key)).ok()?;
    let program = program_from_bytes(&bytes);
    if program.is_none() {
        log::warn!("seccomp cache entry {key} is not a BPF program; compiling again");
    }
    program
}

/// Best effort: a node that cannot keep the program compiles it again.
fn keep(dir: &Path, key: &str, bytes: &[u8]) {
    let (path, tmp) = (dir.join(key), dir.join(format!(".{key}.{}", std::process::id())));
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .and_then(|mut f| std::io::Write::write_all(&mut f, bytes))
        .and_then(|()| std::fs::rename(&tmp, &path));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        log::warn!("keep seccomp program in {}: {e}", dir.display());
    }
}

/// The profile's program, from the cache or compiled (and then cached).
/// A bad profile fails here, at Create.
pub fn prepare(profile: &LinuxSeccomp, cache: &Cache) -> Result<Filter> {
    let flags = load_flags(profile);
    let key = cache_key(profile)?;
    let dir = cache.usable_dir();
    if let Some(program) = dir.and_then(|d| kept(d, &key)) {
        return Ok(Filter { program, flags });
    }
    let bytes = generate(&compile(profile)?)?;
    let program = program_from_bytes(&bytes).ok_or_else(|| Error::Seccomp(format!("libseccomp generated {} bytes, not a BPF program", bytes.len())))?;
    if let Some(d) = dir {
        keep(d, &key, &bytes);
    }
    Ok(Filter { program, flags })
}

/// What decides the program's bytes: the profile, libseccomp's version and
/// API level (which actions and flags it uses), the kernel and the arch.
fn cache_key(profile: &LinuxSeccomp) -> Result<String> {
    let json = serde_json::to_vec(profile).map_err(|e| Error::Seccomp(format!("serialize the profile: {e}")))?;
    let version = libseccomp::ScmpVersion::current().map(|v| format!("{}.{}.{}", v.major, v.minor, v.micro)).unwrap_or_default();
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let kernel = format!("{} {}", release.trim(), std::env::consts::ARCH);
    let mut hash = Sha256::new();
    for part in [b"berth seccomp program v1".as_slice(), version.as_bytes(), &libseccomp::get_api().to_le_bytes(), kernel.as_bytes(), &json] {
        hash.update((part.len() as u64).to_le_bytes());
        hash.update(part);
    }
    Ok(format!("{:x}.bpf", hash.finalize()))
}

/// The flags libseccomp's seccomp_load passes for this profile (berth
/// sets no TSYNC, no no_new_privs, no listener; see `compile`).
fn load_flags(profile: &LinuxSeccomp) -> libc::c_ulong {
    profile.flags().as_deref().unwrap_or_default().iter().fold(0, |flags, flag| match flag {
        LinuxSeccompFilterFlag::SeccompFilterFlagLog => flags | libc::SECCOMP_FILTER_FLAG_LOG,
        LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => flags | libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW,
        _ => flags,
    })
}

/// libseccomp's program for `ctx`, as seccomp_load would load it.
fn generate(ctx: &ScmpFilterContext) -> Result<Vec<u8>> {
    let io = |what: &'static str| move |e: std::io::Error| Error::Seccomp(format!("{what} the generated program: {e}"));
    let fd = nix::sys::memfd::memfd_create(c"berth-seccomp", nix::sys::memfd::MFdFlags::MFD_CLOEXEC)
        .map_err(|e| Error::Seccomp(format!("memfd for the generated program: {e}")))?;
    ctx.export_bpf(&fd).map_err(err("generate the program"))?;
    let mut file = std::fs::File::from(fd);
    file.rewind().map_err(io("rewind"))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).map_err(io("read"))?;
    Ok(bytes)
}

fn program_from_bytes(bytes: &[u8]) -> Option<Vec<libc::sock_filter>> {
    if bytes.is_empty() || !bytes.len().is_multiple_of(INSTRUCTION_LEN) || bytes.len() / INSTRUCTION_LEN > MAX_INSTRUCTIONS {
        return None;
    }
    let instruction =
        |b: &[u8]| libc::sock_filter { code: u16::from_ne_bytes([b[0], b[1]]), jt: b[2], jf: b[3], k: u32::from_ne_bytes([b[4], b[5], b[6], b[7]]) };
    Some(bytes.chunks_exact(INSTRUCTION_LEN).map(instruction).collect())
}

/// Builds libseccomp's filter for the profile (nothing loaded).
fn compile(profile: &LinuxSeccomp) -> Result<ScmpFilterContext> {
    let default_errno = profile.default_errno_ret().unwrap_or(libc::EPERM as u32);
    let default = action(profile.default_action(), Some(default_errno))?;
    let mut ctx = ScmpFilterContext::new(default).map_err(err("create filter"))?;
    // No-new-privileges is the spec's choice (process.noNewPrivileges), not
    // libseccomp's: keep it from setting the bit on load.
    ctx.set_ctl_nnp(false).map_err(err("disable implicit no_new_privs"))?;
    for arch in profile.architectures().as_deref().unwrap_or_default() {
        if let Some(a) = scmp_arch(*arch) {
            if a != ScmpArch::native() {
                ctx.add_arch(a).map_err(err(format!("add architecture {arch:?}")))?;
            }
        }
    }
    for flag in profile.flags().as_deref().unwrap_or_default() {
        match flag {
            LinuxSeccompFilterFlag::SeccompFilterFlagLog => {
                ctx.set_ctl_log(true).map_err(err("flag LOG"))?;
            }
            LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => {
                ctx.set_ctl_ssb(true).map_err(err("flag SPEC_ALLOW"))?;
            }
            LinuxSeccompFilterFlag::SeccompFilterFlagTsync => {}
            #[allow(unreachable_patterns)]
            other => log::warn!("seccomp flag {other:?} ignored"),
        }
    }
    for rule in profile.syscalls().as_deref().unwrap_or_default() {
        let act = action(rule.action(), rule.errno_ret().or(Some(libc::EPERM as u32)))?;
        if act == default {
            // libseccomp refuses rules that repeat the default action.
            continue;
        }
        let args = rule.args().as_deref().unwrap_or_default();
        let conditions: Vec<ScmpArgCompare> = args
            .iter()
            .map(|a| {
                let op = match a.op() {
                    LinuxSeccompOperator::ScmpCmpNe => ScmpCompareOp::NotEqual,
                    LinuxSeccompOperator::ScmpCmpLt => ScmpCompareOp::Less,
                    LinuxSeccompOperator::ScmpCmpLe => ScmpCompareOp::LessOrEqual,
                    LinuxSeccompOperator::ScmpCmpEq => ScmpCompareOp::Equal,
                    LinuxSeccompOperator::ScmpCmpGe => ScmpCompareOp::GreaterEqual,
                    LinuxSeccompOperator::ScmpCmpGt => ScmpCompareOp::Greater,
                    // OCI: `value` is the mask, `valueTwo` the expected bits.
                    LinuxSeccompOperator::ScmpCmpMaskedEq => {
                        return ScmpArgCompare::new(a.index() as u32, ScmpCompareOp::MaskedEqual(a.value()), a.value_two().unwrap_or(0))
                    }
                };
                ScmpArgCompare::new(a.index() as u32, op, a.value())
            })
            .collect();
        // Conditions on distinct arguments are ANDed in one rule; several on
        // the same argument mean "any of these" and become separate rules.
        let mut indexes: Vec<usize> = args.iter().map(|a| a.index()).collect();
        indexes.sort_unstable();
        indexes.dedup();
        let same_index = indexes.len() < args.len();
        for name in rule.names() {
            let syscall = match ScmpSyscall::from_name(name) {
                Ok(s) => s,
                // Profiles list syscalls of every architecture; skip the
                // ones this kernel/arch does not have.
                Err(_) => continue,
            };
            let result = if conditions.is_empty() {
                ctx.add_rule(act, syscall).map(drop)
            } else if same_index {
                conditions.iter().try_for_each(|c| ctx.add_rule_conditional(act, syscall, &[*c]).map(drop))
            } else {
                ctx.add_rule_conditional(act, syscall, &conditions).map(drop)
            };
            result.map_err(err(format!("rule for {name}")))?;
        }
    }
    Ok(ctx)
}

/// Loads the filter into this process (its threads are not synced: the
/// init is single-threaded).
pub fn load(filter: &Filter) -> Result<()> {
    let program = libc::sock_fprog { len: filter.program.len() as u16, filter: filter.program.as_ptr().cast_mut() };
    // SAFETY: `program` points at `len` instructions owned by `filter`,
    // which outlives the call; the kernel copies them and writes nothing.
    let rc = unsafe { libc::syscall(libc::SYS_seccomp, libc::SECCOMP_SET_MODE_FILTER, filter.flags, &program as *const libc::sock_fprog) };
    if rc != 0 {
        return Err(Error::Seccomp(format!("load filter: {}", std::io::Error::last_os_error())));
    }
    Ok(())
}

fn action(a: LinuxSeccompAction, errno: Option<u32>) -> Result<ScmpAction> {
    Ok(match a {
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => ScmpAction::KillThread,
        LinuxSeccompAction::ScmpActKillProcess => ScmpAction::KillProcess,
        LinuxSeccompAction::ScmpActTrap => ScmpAction::Trap,
        LinuxSeccompAction::ScmpActErrno => ScmpAction::Errno(errno.unwrap_or(libc::EPERM as u32) as i32),
        LinuxSeccompAction::ScmpActTrace => ScmpAction::Trace(errno.unwrap_or(libc::EPERM as u32) as u16),
        LinuxSeccompAction::ScmpActLog => ScmpAction::Log,
        LinuxSeccompAction::ScmpActAllow => ScmpAction::Allow,
        LinuxSeccompAction::ScmpActNotify => return Err(Error::Seccomp("SCMP_ACT_NOTIFY needs a seccomp agent, which berth does not support".into())),
    })
}

fn scmp_arch(a: Arch) -> Option<ScmpArch> {
    Some(match a {
        Arch::ScmpArchX86 => ScmpArch::X86,
        Arch::ScmpArchX86_64 => ScmpArch::X8664,
        Arch::ScmpArchX32 => ScmpArch::X32,
        Arch::ScmpArchArm => ScmpArch::Arm,
        Arch::ScmpArchAarch64 => ScmpArch::Aarch64,
        Arch::ScmpArchPpc64le => ScmpArch::Ppc64Le,
        Arch::ScmpArchS390x => ScmpArch::S390X,
        Arch::ScmpArchRiscv64 => ScmpArch::Riscv64,
        _ => return None,
    })
}

fn err(what: impl Into<String>) -> impl FnOnce(libseccomp::error::SeccompError) -> Error {
    let what = what.into();
    move |e| Error::Seccomp(format!("{what}: {e}"))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    /// Everything allowed but `getcwd`, which fails with `errno`.
    fn profile(errno: u32, flags: &str) -> LinuxSeccomp {
        serde_json::from_value(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_X86_64"],
            "flags": if flags.is_empty() { vec![] } else { vec![flags] },
            "syscalls": [{ "names": ["getcwd"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno }]
        }))
        .unwrap()
    }

    fn entries(dir: &Path) -> Vec<PathBuf> {
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect()
    }

    /// Loads `filter` in a child and returns the errno its getcwd fails
    /// with (0: it did not fail). Only syscalls between fork and _exit.
    fn getcwd_errno_under(filter: &Filter) -> i32 {
        // SAFETY: the child makes raw syscalls only (no allocation, no
        // lock) and ends with _exit.
        match unsafe { nix::unistd::fork() }.unwrap() {
            nix::unistd::ForkResult::Child => {
                // SAFETY: prctl, seccomp and getcwd on a stack buffer.
                let code = unsafe {
                    libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
                    if load(filter).is_err() {
                        libc::_exit(100);
                    }
                    let mut buf = [0u8; 256];
                    let rc = libc::syscall(libc::SYS_getcwd, buf.as_mut_ptr(), buf.len());
                    if rc < 0 {
                        *libc::__errno_location()
                    } else {
                        0
                    }
                };
                // SAFETY: see above.
                unsafe { libc::_exit(code) }
            }
            nix::unistd::ForkResult::Parent { child } => match nix::sys::wait::waitpid(child, None).unwrap() {
                nix::sys::wait::WaitStatus::Exited(_, code) => code,
                other => panic!("child: {other:?}"),
            },
        }
    }

    #[test]
    fn the_loaded_program_does_what_the_profile_says() {
        let filter = prepare(&profile(libc::ENOTSUP as u32, ""), &Cache::none()).unwrap();
        assert_eq!(getcwd_errno_under(&filter), libc::ENOTSUP);
    }

    #[test]
    fn a_compiled_program_is_cached_and_then_used_as_it_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::at(dir.path().join("seccomp"));
        let (eperm, enotsup) = (profile(libc::EPERM as u32, ""), profile(libc::ENOTSUP as u32, ""));
        let first = prepare(&eperm, &cache).unwrap();
        let kept = entries(&dir.path().join("seccomp"));
        assert_eq!(kept.len(), 1, "{kept:?}");
        assert_eq!(prepare(&eperm, &cache).unwrap(), first);
        // Plant another profile's program under the first one's key: what
        // is kept is what is loaded.
        let other = prepare(&enotsup, &Cache::none()).unwrap();
        let bytes: Vec<u8> = other.program.iter().flat_map(|i| [&i.code.to_ne_bytes()[..], &[i.jt, i.jf], &i.k.to_ne_bytes()[..]].concat()).collect();
        std::fs::write(&kept[0], bytes).unwrap();
        let from_cache = prepare(&eperm, &cache).unwrap();
        assert_eq!(from_cache.program, other.program);
        assert_eq!(getcwd_errno_under(&from_cache), libc::ENOTSUP);
    }

    #[test]
    fn a_broken_cache_entry_is_compiled_again_and_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::at(dir.path());
        let p = profile(libc::EPERM as u32, "");
        let compiled = prepare(&p, &Cache::none()).unwrap();
        let entry = dir.path().join(cache_key(&p).unwrap());
        std::fs::write(&entry, b"7 bytes").unwrap();
        assert_eq!(prepare(&p, &cache).unwrap(), compiled);
        assert_eq!(std::fs::metadata(&entry).unwrap().len() as usize, compiled.program.len() * INSTRUCTION_LEN);
    }

    #[test]
    fn a_cache_others_may_write_is_not_used() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let p = profile(libc::EPERM as u32, "");
        assert_eq!(prepare(&p, &Cache::at(dir.path())).unwrap(), prepare(&p, &Cache::none()).unwrap());
        assert!(entries(dir.path()).is_empty());
    }

    #[test]
    fn the_key_covers_the_profile_and_flags_reach_the_load() {
        let (plain, logged) = (profile(libc::EPERM as u32, ""), profile(libc::EPERM as u32, "SECCOMP_FILTER_FLAG_LOG"));
        assert_ne!(cache_key(&plain).unwrap(), cache_key(&profile(libc::ENOTSUP as u32, "")).unwrap());
        assert_ne!(cache_key(&plain).unwrap(), cache_key(&logged).unwrap());
        assert_eq!(prepare(&plain, &Cache::none()).unwrap().flags, 0);
        assert_eq!(prepare(&logged, &Cache::none()).unwrap().flags, libc::SECCOMP_FILTER_FLAG_LOG);
        let spec_allow = prepare(&profile(libc::EPERM as u32, "SECCOMP_FILTER_FLAG_SPEC_ALLOW"), &Cache::none()).unwrap();
        assert_eq!(spec_allow.flags, libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW);
    }
}
