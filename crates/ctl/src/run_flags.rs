//! The values of `berthctl run`'s Docker flags, parsed by clap, so that a
//! malformed one is a usage error (exit status 2) naming the flag, before
//! anything is created.

use k8s_cri::v1;

/// `-v HOST:CONTAINER[:ro|rw]` or `-v NAME:CONTAINER[:ro|rw]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Volume {
    pub source: VolumeSource,
    pub container_path: String,
    pub readonly: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VolumeSource {
    /// An absolute host path, bound as it is.
    Host(String),
    /// A named volume (`berthctl volume create`), kept under berth's root.
    Named(String),
}

pub fn volume(s: &str) -> Result<Volume, String> {
    let parts: Vec<&str> = s.split(':').collect();
    let (source, container_path, mode) = match parts.as_slice() {
        [source, container] => (*source, *container, "rw"),
        [source, container, mode] => (*source, *container, *mode),
        _ => return Err(format!("{s:?} is not SOURCE:CONTAINER_PATH[:ro|rw]")),
    };
    let readonly = match mode {
        "ro" => true,
        "rw" => false,
        other => return Err(format!("{s:?}: mode {other:?} is neither ro nor rw")),
    };
    if !container_path.starts_with('/') {
        return Err(format!("{s:?}: the container path {container_path:?} is not absolute"));
    }
    let source = if source.starts_with('/') {
        VolumeSource::Host(source.to_string())
    } else if is_volume_name(source) {
        VolumeSource::Named(source.to_string())
    } else {
        return Err(format!("{s:?}: {source:?} is neither an absolute host path nor a volume name ([A-Za-z0-9][A-Za-z0-9_.-]*)"));
    };
    Ok(Volume { source, container_path: container_path.to_string(), readonly })
}

/// Docker's rule for volume names; it also keeps a name a single path
/// component under berth's volume directory.
pub fn is_volume_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric()) && chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
}

/// `-p [IP:]HOST:CONTAINER[/tcp|udp|sctp]`.
pub fn port(s: &str) -> Result<v1::PortMapping, String> {
    let (addr, proto) = match s.rsplit_once('/') {
        Some((addr, proto)) => (addr, proto),
        None => (s, "tcp"),
    };
    let protocol = match proto {
        "tcp" => v1::Protocol::Tcp,
        "udp" => v1::Protocol::Udp,
        "sctp" => v1::Protocol::Sctp,
        other => return Err(format!("{s:?}: protocol {other:?} is not tcp, udp or sctp")),
    };
    let parts: Vec<&str> = addr.rsplitn(3, ':').collect();
    let (container, host, ip) = match parts.as_slice() {
        [container, host] => (*container, *host, ""),
        [container, host, ip] => (*container, *host, *ip),
        _ => return Err(format!("{s:?} is not [IP:]HOST_PORT:CONTAINER_PORT[/PROTOCOL]")),
    };
    let number = |what: &str, p: &str| p.parse::<u16>().ok().filter(|n| *n > 0).ok_or_else(|| format!("{s:?}: {what} port {p:?} is not 1-65535"));
    let (host_port, container_port) = (number("host", host)?, number("container", container)?);
    if !ip.is_empty() && ip.parse::<std::net::IpAddr>().is_err() {
        return Err(format!("{s:?}: {ip:?} is not an IP address"));
    }
    Ok(v1::PortMapping { protocol: protocol as i32, container_port: container_port.into(), host_port: host_port.into(), host_ip: ip.to_string() })
}

/// `--restart no|always|on-failure[:N]`. berthctl runs no daemon, so it
/// restarts the container itself, while it follows it in the foreground.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Restart {
    #[default]
    No,
    Always,
    /// On a non-zero exit, at most this many times (None: no limit).
    OnFailure(Option<u32>),
}

impl Restart {
    /// Whether a container that exited with `code`, restarted `done` times
    /// already, is started again.
    pub fn again(self, code: i32, done: u32) -> bool {
        match self {
            Restart::No => false,
            Restart::Always => true,
            Restart::OnFailure(limit) => code != 0 && limit.is_none_or(|n| done < n),
        }
    }
}

pub fn restart(s: &str) -> Result<Restart, String> {
    match s.split_once(':') {
        None if s == "no" => Ok(Restart::No),
        None if s == "always" => Ok(Restart::Always),
        None if s == "on-failure" => Ok(Restart::OnFailure(None)),
        Some(("on-failure", n)) => n.parse().map(|n| Restart::OnFailure(Some(n))).map_err(|_| format!("{s:?}: {n:?} is not a count")),
        _ => Err(format!("{s:?} is not no, always, on-failure or on-failure:N")),
    }
}

/// `-m 512m`, `-m 1g`, `-m 1048576`: bytes.
pub fn memory(s: &str) -> Result<i64, String> {
    let lower = s.to_ascii_lowercase();
    let (digits, unit) = lower.split_at(lower.find(|c: char| !c.is_ascii_digit()).unwrap_or(lower.len()));
    let n: i64 = digits.parse().map_err(|_| format!("{s:?} is not a size such as 512m or 1g"))?;
    let scale: i64 = match unit.trim_end_matches('b') {
        "" => 1,
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        _ => return Err(format!("{s:?}: unit {unit:?} is not b, k, m or g")),
    };
    let bytes = n.checked_mul(scale).ok_or_else(|| format!("{s:?} is too large"))?;
    // The kernel's own floor for a memory cgroup to be usable at all.
    if bytes < 6 << 20 {
        return Err(format!("{s:?} is under 6m, too little for any container"));
    }
    Ok(bytes)
}

/// `--cpus 1.5`: a CPU quota in cores.
pub fn cpus(s: &str) -> Result<f64, String> {
    let n: f64 = s.parse().map_err(|_| format!("{s:?} is not a number of CPUs such as 0.5 or 2"))?;
    if !(n > 0.0 && n <= 1024.0) {
        return Err(format!("{s:?} is not between 0 and 1024"));
    }
    Ok(n)
}

/// `--pids-limit N`: at most N processes (threads) in the container.
pub fn pids_limit(s: &str) -> Result<i64, String> {
    match s.parse::<i64>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("{s:?} is not a positive number of processes")),
    }
}

/// `-u UID[:GID]` (numeric: a name would need the image's /etc/passwd,
/// which berthd reads from `--user` names through run_as_username).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct User {
    pub uid: Option<i64>,
    pub name: Option<String>,
    pub gid: Option<i64>,
}

pub fn user(s: &str) -> Result<User, String> {
    let (who, group) = match s.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (s, None),
    };
    let gid = group.map(|g| g.parse::<u32>().map(i64::from).map_err(|_| format!("{s:?}: group {g:?} is not a numeric gid"))).transpose()?;
    match who.parse::<u32>() {
        Ok(uid) => Ok(User { uid: Some(uid.into()), name: None, gid }),
        Err(_) if is_volume_name(who) => Ok(User { uid: None, name: Some(who.to_string()), gid }),
        Err(_) => Err(format!("{s:?}: {who:?} is neither a uid nor a user name")),
    }
}

/// `-e KEY=VALUE`, or `-e KEY` for berthctl's own value of KEY.
pub fn env(s: &str) -> Result<v1::KeyValue, String> {
    let (key, value) = match s.split_once('=') {
        Some((k, v)) => (k, Some(v)),
        None => (s, None),
    };
    if key.is_empty() || key.contains(char::is_whitespace) {
        return Err(format!("{s:?} is not KEY=VALUE"));
    }
    let value = value.map(str::to_string).or_else(|| std::env::var(key).ok()).unwrap_or_default();
    Ok(v1::KeyValue { key: key.into(), value })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volumes() {
        assert_eq!(volume("/data:/srv").unwrap(), Volume { source: VolumeSource::Host("/data".into()), container_path: "/srv".into(), readonly: false });
        assert_eq!(volume("cache:/c:ro").unwrap(), Volume { source: VolumeSource::Named("cache".into()), container_path: "/c".into(), readonly: true });
        for bad in ["/data", "/a:rel", "/a:/b:rx", "../x:/b", "a:/b:ro:x", ":/b"] {
            assert!(volume(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ports() {
        let p = port("8080:80").unwrap();
        assert_eq!((p.host_port, p.container_port, p.protocol, p.host_ip.as_str()), (8080, 80, v1::Protocol::Tcp as i32, ""));
        let p = port("127.0.0.1:53:5353/udp").unwrap();
        assert_eq!((p.host_port, p.container_port, p.protocol, p.host_ip.as_str()), (53, 5353, v1::Protocol::Udp as i32, "127.0.0.1"));
        for bad in ["80", "0:80", "70000:80", "a:80", "8080:80/icmp", "300.1.1.1:1:2"] {
            assert!(port(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sizes_cpus_users_env() {
        assert_eq!(memory("512m").unwrap(), 512 << 20);
        assert_eq!(memory("1G").unwrap(), 1 << 30);
        assert!(memory("1k").is_err() && memory("12x").is_err() && memory("m").is_err());
        assert_eq!(cpus("0.5").unwrap(), 0.5);
        assert!(cpus("0").is_err() && cpus("x").is_err());
        assert_eq!(user("1000:50").unwrap(), User { uid: Some(1000), name: None, gid: Some(50) });
        assert_eq!(user("nobody").unwrap(), User { uid: None, name: Some("nobody".into()), gid: None });
        assert!(user("1000:staff").is_err() && user("a b").is_err());
        assert_eq!(env("A=b=c").unwrap(), v1::KeyValue { key: "A".into(), value: "b=c".into() });
        assert_eq!(restart("on-failure:2").unwrap(), Restart::OnFailure(Some(2)));
        assert!(restart("on-failure:x").is_err() && restart("sometimes").is_err());
        assert!(Restart::OnFailure(Some(2)).again(3, 1) && !Restart::OnFailure(Some(2)).again(3, 2) && !Restart::OnFailure(None).again(0, 0));
        assert!(Restart::Always.again(0, 100) && !Restart::No.again(1, 0));
        assert!(env("=x").is_err());
    }
}
