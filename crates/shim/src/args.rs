//! The flags of `start` and `serve`, berth's own invocation (containerd's is
//! `containerd/invocation.rs`). A tiny parser beats pulling a CLI framework
//! into a process that should stay small.

use std::path::PathBuf;

#[derive(Debug, Default, Clone)]
pub struct Args {
    pub id: String,
    pub socket: PathBuf,
    pub bundle: Option<PathBuf>,
    /// cgroup the shim moves itself into: a cgroupfs path, or the systemd
    /// form `slice:prefix:name` (a scope of its own); empty: stay in the
    /// caller's.
    pub cgroup: String,
    /// Set when containerd drives the shim (internal: `start` passes it on
    /// to `serve`).
    pub containerd: Option<ContainerdLink>,
}

/// What a shim started by containerd needs to talk back to it.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ContainerdLink {
    /// The containerd namespace of the container (events carry it).
    pub namespace: String,
    /// containerd's ttrpc socket for events (`TTRPC_ADDRESS`); empty: none.
    pub events_address: String,
}

/// Default home of shims: outside any daemon's cgroup, so restarting (or
/// OOM-killing) berthd never takes a container's supervisor with it.
pub const DEFAULT_SHIM_CGROUP: &str = "berth-shims";

pub fn parse(argv: &[String]) -> Result<Args, String> {
    let mut a = Args { cgroup: DEFAULT_SHIM_CGROUP.into(), ..Default::default() };
    let mut it = argv.iter();
    while let Some(flag) = it.next() {
        let mut value = || it.next().cloned().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--id" => a.id = value()?,
            "--socket" => a.socket = PathBuf::from(value()?),
            "--bundle" => a.bundle = Some(PathBuf::from(value()?)),
            "--cgroup" => a.cgroup = value()?,
            "--containerd-namespace" => a.containerd.get_or_insert_with(Default::default).namespace = value()?,
            "--containerd-events" => a.containerd.get_or_insert_with(Default::default).events_address = value()?,
            other => return Err(format!("unknown flag {other:?}")),
        }
    }
    if a.id.is_empty() {
        return Err("--id is required".into());
    }
    if !a.socket.is_absolute() {
        return Err("--socket must be an absolute path".into());
    }
    // sun_path holds 108 bytes including the NUL.
    if a.socket.as_os_str().len() > 107 {
        return Err(format!("socket path {} is longer than a unix socket allows", a.socket.display()));
    }
    Ok(a)
}

impl Args {
    pub fn to_argv(&self) -> Vec<String> {
        let mut v = vec!["--id".into(), self.id.clone(), "--socket".into(), self.socket.display().to_string(), "--cgroup".into(), self.cgroup.clone()];
        if let Some(b) = &self.bundle {
            v.extend(["--bundle".into(), b.display().to_string()]);
        }
        if let Some(link) = &self.containerd {
            v.extend(["--containerd-namespace".into(), link.namespace.clone(), "--containerd-events".into(), link.events_address.clone()]);
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn parses_and_round_trips() {
        let a = parse(&argv("--id c1 --socket /run/berth/s/x --bundle /b")).unwrap();
        assert_eq!(a.cgroup, DEFAULT_SHIM_CGROUP);
        let b = parse(&a.to_argv()).unwrap();
        assert_eq!((b.id, b.socket, b.bundle, b.containerd), (a.id, a.socket, a.bundle, None));
    }

    #[test]
    fn containerd_link_round_trips() {
        let link = ContainerdLink { namespace: "k8s.io".into(), events_address: "/c.sock.ttrpc".into() };
        // An empty cgroup (stay where started) must survive the trip.
        let a = Args { id: "c1".into(), socket: "/run/containerd/s/x".into(), bundle: None, cgroup: String::new(), containerd: Some(link.clone()) };
        let b = parse(&a.to_argv()).unwrap();
        assert_eq!((b.cgroup.as_str(), b.containerd), ("", Some(link)));
    }

    #[test]
    fn rejects_bad_input() {
        assert!(parse(&argv("--socket /x")).unwrap_err().contains("--id"));
        assert!(parse(&argv("--id a --socket rel")).unwrap_err().contains("absolute"));
        assert!(parse(&argv("--id a --socket")).unwrap_err().contains("needs a value"));
        let long = format!("--id a --socket /{}", "x".repeat(120));
        assert!(parse(&argv(&long)).unwrap_err().contains("longer"));
    }
}
