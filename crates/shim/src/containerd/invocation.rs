//! containerd's command line for a shim v2 binary. containerd (1.6 and 2.x,
//! `runtime/v2/shim/util.go` / `pkg/shim/util.go`) runs
//!
//! ```text
//! containerd-shim-berth-v2 -namespace NS -address GRPC_SOCKET -publish-binary CONTAINERD \
//!     -id ID [-debug] start                      (cwd: the bundle, options on stdin)
//! containerd-shim-berth-v2 -namespace NS -address GRPC_SOCKET -publish-binary CONTAINERD \
//!     -id ID -bundle DIR [-debug] delete        (after the shim went away)
//! ```
//!
//! with `TTRPC_ADDRESS` in the environment (2.x adds `GRPC_ADDRESS`,
//! `NAMESPACE` and `MAX_SHIM_VERSION`). The flags follow Go's `flag`
//! package: one or two dashes, `-name value` or `-name=value`, booleans
//! bare, parsing stops at the first argument that is not a flag (the
//! action) or at `--`.

use std::path::PathBuf;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Start,
    Delete,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    pub namespace: String,
    /// containerd's gRPC socket: part of the shim socket's name, so two
    /// containerds on one host never share a shim socket.
    pub address: String,
    /// containerd's binary, for `containerd publish`. berth-shim publishes
    /// over ttrpc instead (`events.rs`), so this is only recorded.
    pub publish_binary: String,
    pub id: String,
    /// `-bundle` (given to `delete`); otherwise the working directory.
    pub bundle: Option<PathBuf>,
    pub debug: bool,
    pub action: Action,
}

/// What containerd's flags turned out to ask for.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    Run(Invocation),
    /// `-v`: print the version and exit, as containerd's own shims do.
    Version,
}

/// Whether the arguments after argv[0] are containerd's rather than
/// berthd's: containerd always starts with a flag, berthd with a verb.
pub fn is_containerd_style(args: &[String]) -> bool {
    args.first().is_some_and(|a| a.starts_with('-') && a != "--version")
}

pub fn parse(args: &[String]) -> Result<Parsed, String> {
    let mut namespace = String::new();
    let mut address = String::new();
    let mut publish_binary = String::from("containerd");
    let mut id = String::new();
    let mut bundle = None;
    let mut debug = false;
    let mut version = false;
    let mut rest = args.iter();
    let mut action = None;
    while let Some(arg) = rest.next() {
        if arg == "--" {
            action = rest.next();
            break;
        }
        let Some(flag) = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-')).filter(|f| !f.is_empty() && !f.starts_with('-')) else {
            action = Some(arg);
            break;
        };
        let (name, inline) = match flag.split_once('=') {
            Some((name, value)) => (name, Some(value.to_string())),
            None => (flag, None),
        };
        if let Some(target) = match name {
            "debug" => Some(&mut debug),
            "v" => Some(&mut version),
            _ => None,
        } {
            *target = match inline.as_deref() {
                None | Some("true") | Some("1") | Some("t") | Some("T") | Some("TRUE") | Some("True") => true,
                Some("false") | Some("0") | Some("f") | Some("F") | Some("FALSE") | Some("False") => false,
                Some(other) => return Err(format!("invalid boolean value {other:?} for -{name}")),
            };
            continue;
        }
        let value = match inline {
            Some(v) => v,
            None => rest.next().cloned().ok_or_else(|| format!("flag needs an argument: -{name}"))?,
        };
        match name {
            "namespace" => namespace = value,
            "address" => address = value,
            "publish-binary" => publish_binary = value,
            "id" => id = value,
            "bundle" => bundle = Some(PathBuf::from(value)),
            // containerd never passes it; Go shims serve on it when given.
            "socket" => return Err("-socket is not supported: berth-shim chooses its socket in `start`".into()),
            other => return Err(format!("flag provided but not defined: -{other}")),
        }
    }
    if version {
        return Ok(Parsed::Version);
    }
    let action = match action.map(String::as_str) {
        Some("start") => Action::Start,
        Some("delete") => Action::Delete,
        Some(other) => return Err(format!("unknown action {other:?}: containerd's shim actions are start and delete")),
        None => return Err("no action: containerd runs berth-shim with `start` or `delete`".into()),
    };
    // containerd 2.x also passes the namespace in the environment.
    if namespace.is_empty() {
        namespace = std::env::var("NAMESPACE").unwrap_or_default();
    }
    if namespace.is_empty() {
        return Err("shim namespace cannot be empty (-namespace)".into());
    }
    if id.is_empty() {
        return Err("-id is required".into());
    }
    if id.contains('/') || id == "." || id == ".." {
        return Err(format!("invalid id {id:?}"));
    }
    Ok(Parsed::Run(Invocation { namespace, address, publish_binary, id, bundle, debug, action }))
}

impl Invocation {
    /// The bundle: `-bundle`, or the working directory containerd gave us.
    pub fn bundle_dir(&self) -> Result<PathBuf, String> {
        match &self.bundle {
            Some(b) if b.is_absolute() => Ok(b.clone()),
            Some(b) => std::env::current_dir().map(|cwd| cwd.join(b)).map_err(|e| format!("working directory: {e}")),
            None => std::env::current_dir().map_err(|e| format!("working directory (the bundle): {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    fn run(s: &str) -> Invocation {
        match parse(&argv(s)).unwrap() {
            Parsed::Run(i) => i,
            Parsed::Version => panic!("not a run"),
        }
    }

    #[test]
    fn containerd_16_start_and_delete() {
        let start = run("-namespace k8s.io -address /run/containerd/containerd.sock -publish-binary /usr/bin/containerd -id abc -debug start");
        assert_eq!(start.namespace, "k8s.io");
        assert_eq!(start.address, "/run/containerd/containerd.sock");
        assert_eq!(start.publish_binary, "/usr/bin/containerd");
        assert_eq!((start.id.as_str(), start.debug, start.action), ("abc", true, Action::Start));
        assert_eq!(start.bundle, None);
        let delete = run("-namespace k8s.io -address /a.sock -publish-binary /c -id abc -bundle /run/b/abc delete");
        assert_eq!((delete.action, delete.debug), (Action::Delete, false));
        assert_eq!(delete.bundle, Some(PathBuf::from("/run/b/abc")));
    }

    #[test]
    fn go_flag_forms() {
        let i = run("--namespace=ns --id=x -debug=false --address /s -- start");
        assert_eq!((i.namespace.as_str(), i.id.as_str(), i.debug, i.address.as_str()), ("ns", "x", false, "/s"));
        assert_eq!(i.action, Action::Start);
        assert_eq!(parse(&argv("-v")).unwrap(), Parsed::Version);
        assert!(is_containerd_style(&argv("-namespace x")));
        assert!(!is_containerd_style(&argv("start --id x")));
        assert!(!is_containerd_style(&argv("--version")));
    }

    #[test]
    fn bad_command_lines_are_named() {
        assert!(parse(&argv("-namespace n -id x")).unwrap_err().contains("no action"));
        assert!(parse(&argv("-namespace n -id x stop")).unwrap_err().contains("\"stop\""));
        assert!(parse(&argv("-namespace n -frobnicate 1 -id x start")).unwrap_err().contains("-frobnicate"));
        assert!(parse(&argv("-namespace n -id")).unwrap_err().contains("-id"));
        assert!(parse(&argv("-namespace n start")).unwrap_err().contains("-id"));
        assert!(parse(&argv("-namespace n -id ../x start")).unwrap_err().contains("invalid id"));
        assert!(parse(&argv("-namespace n -debug=maybe -id x start")).unwrap_err().contains("maybe"));
    }
}
