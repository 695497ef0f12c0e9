//! The spec's seccomp profile compiled by libseccomp and loaded into the
//! init just before execve.

use libseccomp::{ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall};
use oci_spec::runtime::{Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompFilterFlag, LinuxSeccompOperator};

use crate::error::{Error, Result};

/// Builds the filter without loading it, so a bad profile fails Create.
pub fn compile(profile: &LinuxSeccomp) -> Result<ScmpFilterContext> {
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

pub fn load(ctx: &ScmpFilterContext) -> Result<()> {
    ctx.load().map_err(err("load filter"))
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
