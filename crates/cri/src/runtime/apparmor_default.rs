//! berth's default AppArmor profile, `berth-default` (the text is
//! `berth-default.apparmor` beside this file), and its loading into the
//! kernel with `apparmor_parser -r` (replace, so a berth upgrade that
//! changes the text takes effect; concurrent loads are harmless).

use std::{
    io::Write,
    process::{Command, Stdio},
};

use crate::error::{Error, Result};

pub(super) const NAME: &str = "berth-default";

pub(super) const PROFILE: &str = include_str!("berth-default.apparmor");

/// Loads (or replaces) the profile; the parser reads it on stdin.
pub(super) fn load() -> Result<()> {
    let failed = |what: String| Error::FailedPrecondition(format!("load AppArmor profile {NAME} (runtime/default) with apparmor_parser -r: {what}"));
    let mut child = Command::new("apparmor_parser")
        .arg("-r")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| failed(format!("{e} (is the apparmor package installed?)")))?;
    let written = child.stdin.take().map(|mut stdin| stdin.write_all(PROFILE.as_bytes()));
    let out = child.wait_with_output().map_err(|e| failed(e.to_string()))?;
    if let Some(Err(e)) = written {
        return Err(failed(format!("write the profile: {e}")));
    }
    if !out.status.success() {
        return Err(failed(format!("{}: {}", out.status, String::from_utf8_lossy(&out.stderr).trim())));
    }
    tracing::info!(profile = NAME, "AppArmor profile loaded");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the profile must keep away from a container; a change that
    /// drops one of these must be deliberate.
    #[test]
    fn the_profile_is_named_and_denies_what_a_container_must_not_do() {
        assert!(PROFILE.contains(&format!("profile {NAME} flags=(attach_disconnected,mediate_deleted) {{")));
        for rule in [
            "deny mount,",
            "deny /proc/sys/[^n]** w,",
            "deny /proc/sysrq-trigger rwklx,",
            "deny /proc/kcore rwklx,",
            "deny /sys/kernel/security/** rwklx,",
            "ptrace (trace,read,tracedby,readby) peer=berth-default,",
            "signal (receive) peer=unconfined,",
        ] {
            assert!(PROFILE.lines().any(|l| l.trim() == rule), "missing {rule}");
        }
        let opens = PROFILE.matches('{').count();
        assert_eq!(opens, PROFILE.matches('}').count(), "balanced braces");
    }
}
