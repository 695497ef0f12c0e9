//! User namespace requests (KEP-127, `NamespaceOption.userns_options`).
//! berth does not make user namespaces yet, and Status says so
//! (`features::USER_NAMESPACES`), so a kubelet never asks; any other client
//! that asks for one is refused, the field named, rather than given a
//! container that is root on the host. The mapping rules are checked first
//! so that the answer names what is wrong with the request itself.

use k8s_cri::v1;

use crate::error::{Error, Result};

/// `field` names the options, e.g. `config.linux.security_context.namespace_options.userns_options`.
pub(super) fn check(field: &str, options: Option<&v1::UserNamespace>) -> Result<()> {
    let Some(userns) = options else { return Ok(()) };
    let invalid = |what: String| Err(Error::InvalidArgument(format!("{field}.{what}")));
    match v1::NamespaceMode::try_from(userns.mode) {
        Ok(v1::NamespaceMode::Node) => {
            if !userns.uids.is_empty() || !userns.gids.is_empty() {
                return invalid("uids/gids: mode NODE takes no mappings (the host's user namespace is used)".into());
            }
            Ok(())
        }
        Ok(v1::NamespaceMode::Pod) => {
            for (name, maps) in [("uids", &userns.uids), ("gids", &userns.gids)] {
                match maps.as_slice() {
                    [one] if one.container_id == 0 && one.length > 0 => {}
                    [one] if one.container_id != 0 => return invalid(format!("{name}: the mapping must start at container id 0, not {}", one.container_id)),
                    [_] => return invalid(format!("{name}: the mapping has length 0")),
                    [] => return invalid(format!("{name}: mode POD needs one mapping")),
                    more => return invalid(format!("{name}: exactly one mapping is supported, not {}", more.len())),
                }
            }
            invalid("mode: POD (a user namespace of the pod's own) is not supported by berth; Status does not advertise user namespaces".into())
        }
        Ok(mode @ (v1::NamespaceMode::Container | v1::NamespaceMode::Target)) => {
            invalid(format!("mode: {} is not valid for a user namespace (POD or NODE)", mode.as_str_name()))
        }
        Err(_) => invalid(format!("mode: unknown value {}", userns.mode)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ns(mode: v1::NamespaceMode, maps: Vec<(u32, u32, u32)>) -> v1::UserNamespace {
        let maps: Vec<v1::IdMapping> = maps.into_iter().map(|(c, h, l)| v1::IdMapping { container_id: c, host_id: h, length: l }).collect();
        v1::UserNamespace { mode: mode as i32, uids: maps.clone(), gids: maps }
    }

    #[test]
    fn only_the_hosts_user_namespace_is_accepted_and_every_refusal_names_its_reason() {
        let f = "opts";
        assert!(check(f, None).is_ok());
        assert!(check(f, Some(&ns(v1::NamespaceMode::Node, vec![]))).is_ok());
        let refused = |u: v1::UserNamespace, needle: &str| {
            let e = check(f, Some(&u)).unwrap_err();
            assert!(matches!(e, Error::InvalidArgument(_)) && e.to_string().contains(needle), "{e}");
        };
        refused(ns(v1::NamespaceMode::Pod, vec![(0, 1000, 100000), (0, 2000, 100000)]), "opts.uids: exactly one mapping");
        refused(ns(v1::NamespaceMode::Pod, vec![(1, 1000, 100000)]), "opts.uids: the mapping must start at container id 0");
        refused(ns(v1::NamespaceMode::Pod, vec![(0, 1000, 100000)]), "opts.mode: POD");
        refused(ns(v1::NamespaceMode::Container, vec![]), "opts.mode: CONTAINER is not valid");
        refused(ns(v1::NamespaceMode::Target, vec![]), "opts.mode: TARGET is not valid");
        refused(ns(v1::NamespaceMode::Node, vec![(0, 1000, 1)]), "opts.uids/gids");
    }
}
