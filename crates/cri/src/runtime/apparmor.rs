//! AppArmor profiles (`apparmor`, and the deprecated `apparmor_profile`),
//! chosen as containerd and CRI-O choose them:
//!
//! - where the kernel's AppArmor is enabled, `runtime/default` (and no
//!   profile at all) is berth's own profile `berth-default`, loaded by
//!   berthd when it is not; `localhost/<name>` is `<name>`, which must be
//!   loaded already; unconfined is nothing. The choice goes into the OCI
//!   spec as `process.apparmorProfile`; the container init requests it for
//!   the workload's execve, and execs into the container inherit it with
//!   the rest of the container's process.
//! - where it is not, `runtime/default` is what every container gets anyway
//!   (there is no LSM to confine it further: containerd and CRI-O accept it
//!   the same way), while a named profile cannot be honoured and is refused
//!   rather than run unconfined silently.
//!
//! Privileged containers run unconfined (the CRI).

use k8s_cri::v1::{self, security_profile::ProfileType};

use super::apparmor_default;
use crate::error::{Error, Result};

const FIELD: &str = "config.linux.security_context.apparmor";
const DEPRECATED_FIELD: &str = "config.linux.security_context.apparmor_profile";

/// What the kernel says about AppArmor on this node.
#[derive(Debug, Clone, Default)]
pub(super) struct Host {
    pub enabled: bool,
    /// The names of the loaded profiles.
    pub loaded: Vec<String>,
}

impl Host {
    pub fn read() -> Host {
        let enabled = std::fs::read_to_string("/sys/module/apparmor/parameters/enabled").is_ok_and(|v| v.trim() == "Y");
        let loaded =
            if enabled { std::fs::read_to_string("/sys/kernel/security/apparmor/profiles").map(|t| parse_loaded(&t)).unwrap_or_default() } else { Vec::new() };
        Host { enabled, loaded }
    }

    fn has(&self, name: &str) -> bool {
        self.loaded.iter().any(|p| p == name)
    }
}

/// `/sys/kernel/security/apparmor/profiles` lists `name (mode)` per line.
fn parse_loaded(text: &str) -> Vec<String> {
    text.lines().filter_map(|l| l.rsplit_once(" (").map(|(name, _)| name.to_string())).filter(|n| !n.is_empty()).collect()
}

/// The profile the container's process runs under (None: unconfined),
/// after loading berth's default profile if it is the one and is missing.
pub(crate) fn profile(sc: Option<&v1::LinuxContainerSecurityContext>) -> Result<Option<String>> {
    let host = Host::read();
    let chosen = choose(sc, &host)?;
    if chosen.as_deref() == Some(apparmor_default::NAME) && !host.has(apparmor_default::NAME) {
        apparmor_default::load()?;
    }
    Ok(chosen)
}

/// What was asked for: the field (for messages) and the profile.
enum Asked {
    Unset,
    Unconfined,
    RuntimeDefault,
    Localhost(String),
}

#[allow(deprecated)]
fn asked(sc: &v1::LinuxContainerSecurityContext) -> Result<(&'static str, Asked)> {
    if let Some(p) = &sc.apparmor {
        let kind = ProfileType::try_from(p.profile_type).map_err(|_| Error::InvalidArgument(format!("{FIELD}.profile_type: unknown {}", p.profile_type)))?;
        let asked = match kind {
            ProfileType::Unconfined => Asked::Unconfined,
            ProfileType::RuntimeDefault => Asked::RuntimeDefault,
            // The kubelet sends the bare name; tolerate the prefixed form.
            ProfileType::Localhost => Asked::Localhost(p.localhost_ref.strip_prefix("localhost/").unwrap_or(&p.localhost_ref).to_string()),
        };
        return Ok((FIELD, asked));
    }
    let asked = match sc.apparmor_profile.as_str() {
        "" => Asked::Unset,
        "unconfined" => Asked::Unconfined,
        "runtime/default" => Asked::RuntimeDefault,
        p => match p.strip_prefix("localhost/") {
            Some(name) => Asked::Localhost(name.to_string()),
            None => return Err(Error::InvalidArgument(format!("{DEPRECATED_FIELD}: {p:?} is neither runtime/default, localhost/<name> nor unconfined"))),
        },
    };
    Ok((DEPRECATED_FIELD, asked))
}

/// The decision, on a given host: the profile name, None for unconfined,
/// or why the request cannot be honoured.
pub(super) fn choose(sc: Option<&v1::LinuxContainerSecurityContext>, host: &Host) -> Result<Option<String>> {
    let default = v1::LinuxContainerSecurityContext::default();
    let sc = sc.unwrap_or(&default);
    if sc.privileged {
        return Ok(None);
    }
    let (field, asked) = asked(sc)?;
    match asked {
        Asked::Unconfined => Ok(None),
        // No profile asked for gets the default where AppArmor is on, as
        // containerd and CRI-O do.
        Asked::Unset | Asked::RuntimeDefault => Ok(host.enabled.then(|| apparmor_default::NAME.to_string())),
        Asked::Localhost(name) if !host.enabled => {
            Err(Error::InvalidArgument(format!("{field}: AppArmor is not enabled on this node, so profile {name:?} cannot be applied")))
        }
        Asked::Localhost(name) if name.is_empty() => Err(Error::InvalidArgument(format!("{field}: a localhost profile needs a profile name"))),
        Asked::Localhost(name) if !host.has(&name) => Err(Error::InvalidArgument(format!(
            "{field}: AppArmor profile {name:?} is not loaded on this node (/sys/kernel/security/apparmor/profiles); load it with apparmor_parser first"
        ))),
        Asked::Localhost(name) => Ok(Some(name)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(kind: ProfileType, name: &str) -> v1::LinuxContainerSecurityContext {
        v1::LinuxContainerSecurityContext {
            apparmor: Some(v1::SecurityProfile { profile_type: kind as i32, localhost_ref: name.into() }),
            ..Default::default()
        }
    }

    #[allow(deprecated)]
    fn deprecated(p: &str) -> v1::LinuxContainerSecurityContext {
        v1::LinuxContainerSecurityContext { apparmor_profile: p.into(), ..Default::default() }
    }

    fn enabled_with(loaded: &[&str]) -> Host {
        Host { enabled: true, loaded: loaded.iter().map(|s| s.to_string()).collect() }
    }

    #[test]
    fn where_apparmor_is_enabled_profiles_are_chosen_as_containerd_does() {
        let host = enabled_with(&["k8s-deny-write", "berth-default"]);
        let pick = |sc: &v1::LinuxContainerSecurityContext| choose(Some(sc), &host).unwrap();
        assert_eq!(pick(&profile(ProfileType::RuntimeDefault, "")).as_deref(), Some("berth-default"));
        assert_eq!(pick(&deprecated("runtime/default")).as_deref(), Some("berth-default"));
        assert_eq!(pick(&deprecated("")).as_deref(), Some("berth-default"), "no profile asked: the default");
        assert_eq!(choose(None, &host).unwrap().as_deref(), Some("berth-default"), "no security context: the default");
        assert_eq!(pick(&profile(ProfileType::Localhost, "k8s-deny-write")).as_deref(), Some("k8s-deny-write"));
        assert_eq!(pick(&profile(ProfileType::Localhost, "localhost/k8s-deny-write")).as_deref(), Some("k8s-deny-write"));
        assert_eq!(pick(&deprecated("localhost/k8s-deny-write")).as_deref(), Some("k8s-deny-write"));
        assert_eq!(pick(&profile(ProfileType::Unconfined, "")), None);
        assert_eq!(pick(&deprecated("unconfined")), None);
        let privileged = v1::LinuxContainerSecurityContext { privileged: true, ..profile(ProfileType::Localhost, "k8s-deny-write") };
        assert_eq!(pick(&privileged), None, "privileged containers are unconfined");
    }

    #[test]
    fn a_localhost_profile_must_be_loaded() {
        let host = enabled_with(&["other"]);
        let e = choose(Some(&profile(ProfileType::Localhost, "k8s-deny-write")), &host).unwrap_err().to_string();
        assert!(e.starts_with("config.linux.security_context.apparmor: AppArmor profile \"k8s-deny-write\" is not loaded"), "{e}");
        let e = choose(Some(&deprecated("localhost/missing")), &host).unwrap_err().to_string();
        assert!(e.starts_with("config.linux.security_context.apparmor_profile: AppArmor profile \"missing\""), "{e}");
        let e = choose(Some(&profile(ProfileType::Localhost, "")), &host).unwrap_err().to_string();
        assert!(e.contains("needs a profile name"), "{e}");
        // berth's default need not be loaded yet: berthd loads it.
        assert_eq!(choose(Some(&profile(ProfileType::RuntimeDefault, "")), &host).unwrap().as_deref(), Some("berth-default"));
    }

    #[test]
    fn without_apparmor_the_default_is_a_no_op_and_named_profiles_are_refused() {
        let host = Host::default();
        assert_eq!(choose(Some(&profile(ProfileType::RuntimeDefault, "")), &host).unwrap(), None);
        assert_eq!(choose(Some(&deprecated("")), &host).unwrap(), None);
        assert_eq!(choose(Some(&profile(ProfileType::Unconfined, "")), &host).unwrap(), None);
        let e = choose(Some(&profile(ProfileType::Localhost, "k8s-deny-write")), &host).unwrap_err().to_string();
        assert!(e.contains("security_context.apparmor:") && e.contains("k8s-deny-write") && e.contains("not enabled"), "{e}");
        let e = choose(Some(&deprecated("localhost/k8s-deny-write")), &host).unwrap_err().to_string();
        assert!(e.contains("apparmor_profile"), "{e}");
        assert!(choose(Some(&deprecated("bogus")), &host).unwrap_err().to_string().contains("bogus"));
        let e = choose(Some(&profile(ProfileType::Localhost, "x")), &Host { enabled: false, loaded: vec!["x".into()] }).unwrap_err();
        assert!(e.to_string().contains("not enabled"));
    }

    #[test]
    fn the_kernel_profile_list_gives_names() {
        let text = "berth-default (enforce)\n/usr/bin/man (enforce)\nsnap.with space (complain)\n\n";
        assert_eq!(parse_loaded(text), ["berth-default", "/usr/bin/man", "snap.with space"]);
    }
}
