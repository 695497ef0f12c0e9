//! Volumes shown through the pod's user namespace (`uidMappings` on a
//! bind mount). Idmapping a mount of a host filesystem needs privilege
//! over that filesystem, which the container init loses when it joins the
//! pod's user namespace: so the idmapped copies are made first, detached,
//! while the init is still the host's root, and attached in place of the
//! plain bind once the container's mount namespace exists.

use std::{
    collections::HashMap,
    fs::File,
    os::fd::{AsFd, OwnedFd},
    path::Path,
};

use oci_spec::runtime::{LinuxIdMapping, LinuxNamespaceType, Spec};

use crate::error::{Error, Result};

/// Detached idmapped mounts, by their index in the spec's `mounts`.
#[derive(Default)]
pub struct IdmappedMounts {
    by_index: HashMap<usize, OwnedFd>,
}

impl IdmappedMounts {
    /// Makes a detached idmapped copy of every bind mount that has maps.
    /// Their maps must be the container's own (the only user namespace at
    /// hand to idmap with), which is what the kubelet asks for.
    pub fn prepare(spec: &Spec) -> Result<Self> {
        let mut out = Self::default();
        let mounts = spec.mounts().as_deref().unwrap_or_default();
        let wanted: Vec<(usize, &oci_spec::runtime::Mount)> =
            mounts.iter().enumerate().filter(|(_, m)| m.uid_mappings().is_some() || m.gid_mappings().is_some()).collect();
        if wanted.is_empty() {
            return Ok(out);
        }
        let linux = spec.linux().as_ref();
        let userns_path = linux
            .and_then(|l| l.namespaces().as_ref())
            .and_then(|ns| ns.iter().find(|n| n.typ() == LinuxNamespaceType::User))
            .and_then(|n| n.path().clone())
            .ok_or_else(|| Error::InvalidSpec("a mount has uidMappings but the container joins no user namespace".into()))?;
        let userns = File::open(&userns_path).map_err(|e| Error::Namespace {
            ns: "user".into(),
            path: userns_path.clone(),
            source: nix::Error::from_raw(e.raw_os_error().unwrap_or(libc::EINVAL)),
        })?;
        let same = |a: &Option<Vec<LinuxIdMapping>>, b: &Option<Vec<LinuxIdMapping>>| a.as_deref().unwrap_or_default() == b.as_deref().unwrap_or_default();
        for (i, m) in wanted {
            let is_bind = m.typ().as_deref() == Some("bind") || m.options().iter().flatten().any(|o| o == "bind" || o == "rbind");
            if !is_bind {
                return Err(Error::InvalidSpec(format!("mount {:?}: only bind mounts can be idmapped", m.destination())));
            }
            if !same(m.uid_mappings(), &linux.and_then(|l| l.uid_mappings().clone())) || !same(m.gid_mappings(), &linux.and_then(|l| l.gid_mappings().clone()))
            {
                return Err(Error::InvalidSpec(format!("mount {:?}: its maps differ from the container's user namespace", m.destination())));
            }
            let source = m.source().as_deref().ok_or_else(|| Error::InvalidSpec(format!("bind mount on {:?} has no source", m.destination())))?;
            let recursive = m.options().iter().flatten().any(|o| o == "rbind");
            let tree = berth_userns::idmapped_mount(source, userns.as_fd(), recursive).map_err(|e| Error::Mount {
                source_path: source.display().to_string(),
                target: m.destination().clone(),
                source: e.errno().unwrap_or(nix::Error::EINVAL),
            })?;
            out.by_index.insert(i, tree);
        }
        Ok(out)
    }

    /// Attaches the idmapped copy made for mount `index` at `dest`; false
    /// when that mount is not idmapped.
    pub fn attach(&self, index: usize, dest: &Path) -> Result<bool> {
        let Some(tree) = self.by_index.get(&index) else { return Ok(false) };
        berth_userns::attach(tree.as_fd(), dest).map_err(|e| Error::Mount {
            source_path: "(idmapped)".into(),
            target: dest.into(),
            source: e.errno().unwrap_or(nix::Error::EINVAL),
        })?;
        Ok(true)
    }
}
