//! Files a pod's containers share: /etc/hostname, /etc/hosts and
//! /etc/resolv.conf (in the pod's persistent dir) and /dev/shm (a tmpfs in
//! its volatile dir, so shared memory is shared across the pod's IPC
//! namespace as it is with a pause container).

use std::path::{Path, PathBuf};

use berth_oci::container::PodFile;
use k8s_cri::v1;
use nix::mount::{mount, umount2, MntFlags, MsFlags};

use crate::error::{Error, Result};

pub const SHM_SIZE: &str = "size=65536k";

/// Writes hostname, hosts and resolv.conf for the pod into `dir`.
pub fn write(dir: &Path, hostname: &str, dns: Option<&v1::DnsConfig>, host_network: bool) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(Error::io(format!("create {}", dir.display())))?;
    let put = |name: &str, text: String| -> Result<()> {
        let path = dir.join(name);
        berth_store::atomic_write(&path, text.as_bytes(), 0o644).map_err(|e| Error::Internal(e.to_string()))
    };
    put("hostname", format!("{hostname}\n"))?;
    let hosts = if host_network {
        std::fs::read_to_string("/etc/hosts").unwrap_or_default()
    } else {
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n".to_string()
    };
    put("hosts", hosts)?;
    put("resolv.conf", resolv_conf(dns))
}

/// The pod's resolv.conf: the kubelet's DNS config, or the host's file.
pub fn resolv_conf(dns: Option<&v1::DnsConfig>) -> String {
    let Some(dns) = dns.filter(|d| !d.servers.is_empty() || !d.searches.is_empty() || !d.options.is_empty()) else {
        return std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    };
    let mut text = String::new();
    if !dns.searches.is_empty() {
        text.push_str(&format!("search {}\n", dns.searches.join(" ")));
    }
    for server in &dns.servers {
        text.push_str(&format!("nameserver {server}\n"));
    }
    if !dns.options.is_empty() {
        text.push_str(&format!("options {}\n", dns.options.join(" ")));
    }
    text
}

/// Mounts the pod's /dev/shm tmpfs at `target`.
pub fn mount_shm(target: &Path) -> Result<()> {
    std::fs::create_dir_all(target).map_err(Error::io(format!("create {}", target.display())))?;
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    mount(Some("shm"), target, Some("tmpfs"), flags, Some(format!("mode=1777,{SHM_SIZE}").as_str()))
        .map_err(Error::io(format!("mount pod shm at {}", target.display())))
}

/// Unmounts and removes the pod's /dev/shm; gone already is fine.
pub fn unmount_shm(target: &Path) -> Result<()> {
    match umount2(target, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => {}
        Err(e) => return Err(Error::io(format!("unmount {}", target.display()))(e)),
    }
    match std::fs::remove_dir(target) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(format!("remove {}", target.display()))(e)),
    }
}

/// The bind mounts every container of the pod gets.
pub fn for_containers(dir: &Path, shm: Option<&PathBuf>, host_ipc: bool) -> Vec<PodFile> {
    let file = |name: &str, dest: &str| PodFile { destination: dest.into(), source: dir.join(name).display().to_string(), readonly: false };
    let mut files = vec![file("hostname", "/etc/hostname"), file("hosts", "/etc/hosts"), file("resolv.conf", "/etc/resolv.conf")];
    match (shm, host_ipc) {
        (Some(shm), _) => files.push(PodFile { destination: "/dev/shm".into(), source: shm.display().to_string(), readonly: false }),
        (None, true) => files.push(PodFile { destination: "/dev/shm".into(), source: "/dev/shm".into(), readonly: false }),
        _ => {}
    }
    files
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_config_becomes_resolv_conf() {
        let dns = v1::DnsConfig {
            servers: vec!["10.96.0.10".into()],
            searches: vec!["default.svc.cluster.local".into(), "svc.cluster.local".into()],
            options: vec!["ndots:5".into()],
        };
        assert_eq!(resolv_conf(Some(&dns)), "search default.svc.cluster.local svc.cluster.local\nnameserver 10.96.0.10\noptions ndots:5\n");
    }
}
