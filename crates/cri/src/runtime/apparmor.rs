//! AppArmor profiles (`apparmor`, and the deprecated `apparmor_profile`).
//! berth does not load or apply AppArmor profiles yet. Where the host has
//! no AppArmor, `runtime/default` is what every container gets anyway
//! (there is no LSM to confine it further: containerd and CRI-O accept it
//! the same way), while a named `localhost/` profile cannot be honoured and
//! is refused. Where AppArmor is enabled, any profile but unconfined is
//! refused until berth applies them, rather than run unconfined silently.

use k8s_cri::v1::{self, security_profile::ProfileType};

use crate::error::{Error, Result};

const FIELD: &str = "config.linux.security_context.apparmor";

#[allow(deprecated)]
pub(super) fn check(sc: &v1::LinuxContainerSecurityContext) -> Result<()> {
    check_on(sc, host_has_apparmor())
}

#[allow(deprecated)]
fn check_on(sc: &v1::LinuxContainerSecurityContext, enabled: bool) -> Result<()> {
    if sc.privileged {
        // Privileged containers run unconfined by definition (the CRI).
        return Ok(());
    }
    let (field, kind, name) = match &sc.apparmor {
        Some(p) => {
            let kind =
                ProfileType::try_from(p.profile_type).map_err(|_| Error::InvalidArgument(format!("{FIELD}.profile_type: unknown {}", p.profile_type)))?;
            (FIELD.to_string(), kind, p.localhost_ref.clone())
        }
        None => {
            let field = "config.linux.security_context.apparmor_profile".to_string();
            match sc.apparmor_profile.as_str() {
                "" | "unconfined" => (field, ProfileType::Unconfined, String::new()),
                "runtime/default" => (field, ProfileType::RuntimeDefault, String::new()),
                p => match p.strip_prefix("localhost/") {
                    Some(name) => (field, ProfileType::Localhost, name.to_string()),
                    None => return Err(Error::InvalidArgument(format!("{field}: {p:?} is neither runtime/default, localhost/<name> nor unconfined"))),
                },
            }
        }
    };
    match (kind, enabled) {
        (ProfileType::Unconfined, _) | (ProfileType::RuntimeDefault, false) => Ok(()),
        (ProfileType::Localhost, false) => {
            Err(Error::InvalidArgument(format!("{field}: AppArmor is not enabled on this node, so profile {name:?} cannot be applied")))
        }
        (kind, true) => Err(Error::InvalidArgument(format!("{field}: {} AppArmor profiles are not applied by berth yet", kind.as_str_name()))),
    }
}

/// The kernel's AppArmor module is loaded and enabled.
fn host_has_apparmor() -> bool {
    std::fs::read_to_string("/sys/module/apparmor/parameters/enabled").is_ok_and(|v| v.trim() == "Y")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[allow(deprecated)]
    #[test]
    fn profiles_are_refused_unless_the_host_gives_them_their_meaning() {
        let profile = |kind: ProfileType, name: &str| v1::LinuxContainerSecurityContext {
            apparmor: Some(v1::SecurityProfile { profile_type: kind as i32, localhost_ref: name.into() }),
            ..Default::default()
        };
        let deprecated = |p: &str| v1::LinuxContainerSecurityContext { apparmor_profile: p.into(), ..Default::default() };
        for enabled in [false, true] {
            assert!(check_on(&profile(ProfileType::Unconfined, ""), enabled).is_ok());
            assert!(check_on(&deprecated("unconfined"), enabled).is_ok());
            assert!(check_on(&v1::LinuxContainerSecurityContext { privileged: true, ..profile(ProfileType::Localhost, "x") }, enabled).is_ok());
        }
        assert!(check_on(&profile(ProfileType::RuntimeDefault, ""), false).is_ok());
        let e = check_on(&profile(ProfileType::Localhost, "k8s-deny-write"), false).unwrap_err().to_string();
        assert!(e.contains("security_context.apparmor:") && e.contains("k8s-deny-write") && e.contains("not enabled"), "{e}");
        let e = check_on(&deprecated("localhost/k8s-deny-write"), false).unwrap_err().to_string();
        assert!(e.contains("apparmor_profile"), "{e}");
        assert!(check_on(&deprecated("bogus"), false).unwrap_err().to_string().contains("bogus"));
        assert!(check_on(&profile(ProfileType::RuntimeDefault, ""), true).is_err(), "not applied yet, so not accepted");
    }
}
