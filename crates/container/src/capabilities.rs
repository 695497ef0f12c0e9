//! The five capability sets of the container process.

use std::collections::HashSet;

use caps::{CapSet, Capability, CapsHashSet};
use oci_spec::runtime::LinuxCapabilities;

use crate::error::{Error, Result};

/// Sets as the kernel sees them; parsed up front so that an unknown name
/// fails Create, not the exec after Start.
#[derive(Debug, Clone, Default)]
pub struct CapSets {
    pub bounding: CapsHashSet,
    pub effective: CapsHashSet,
    pub permitted: CapsHashSet,
    pub inheritable: CapsHashSet,
    pub ambient: CapsHashSet,
}

impl CapSets {
    pub fn from_spec(c: Option<&LinuxCapabilities>) -> Result<Self> {
        let Some(c) = c else { return Ok(Self::default()) };
        let convert = |set: &Option<HashSet<oci_spec::runtime::Capability>>| -> Result<CapsHashSet> {
            set.iter()
                .flatten()
                .map(|cap| {
                    let name = cap.to_string();
                    let name = if name.starts_with("CAP_") { name } else { format!("CAP_{name}") };
                    name.parse::<Capability>().map_err(|_| Error::Capabilities(format!("unknown capability {name}")))
                })
                .collect()
        };
        let sets = Self {
            bounding: convert(c.bounding())?,
            effective: convert(c.effective())?,
            permitted: convert(c.permitted())?,
            inheritable: convert(c.inheritable())?,
            ambient: convert(c.ambient())?,
        };
        sets.validate()?;
        Ok(sets)
    }

    /// The kernel's rules for capset(2), checked up front so that a
    /// contradictory spec fails Create with a message, not Start with EPERM.
    fn validate(&self) -> Result<()> {
        let outside = |set: &CapsHashSet, of: &CapsHashSet| -> Vec<String> {
            let mut v: Vec<String> = set.difference(of).map(|c| c.to_string()).collect();
            v.sort();
            v
        };
        for (name, set, within, within_name) in [
            ("effective", &self.effective, &self.permitted, "permitted"),
            ("inheritable", &self.inheritable, &self.bounding, "bounding"),
            ("permitted", &self.permitted, &self.bounding, "bounding"),
        ] {
            let extra = outside(set, within);
            if !extra.is_empty() {
                return Err(Error::Capabilities(format!("{name} set has {} not in the {within_name} set", extra.join(", "))));
            }
        }
        Ok(())
    }

    /// Drops from the bounding set every capability the spec leaves out.
    /// Needs CAP_SETPCAP, so it runs while still root.
    pub fn drop_bounding(&self) -> Result<()> {
        for cap in caps::runtime::thread_all_supported() {
            if !self.bounding.contains(&cap) {
                caps::drop(None, CapSet::Bounding, cap).map_err(|e| Error::Capabilities(format!("drop {cap} from bounding set: {e}")))?;
            }
        }
        Ok(())
    }

    /// Sets permitted, inheritable and effective in one capset(2), then
    /// raises ambient. Runs after setuid (with PR_SET_KEEPCAPS).
    pub fn apply(&self) -> Result<()> {
        let mask = |set: &CapsHashSet| -> u64 { set.iter().fold(0u64, |m, c| m | c.bitmask()) };
        let (eff, perm, inh) = (mask(&self.effective), mask(&self.permitted), mask(&self.inheritable));
        #[repr(C)]
        struct Header {
            version: u32,
            pid: i32,
        }
        #[repr(C)]
        #[derive(Clone, Copy)]
        struct Data {
            effective: u32,
            permitted: u32,
            inheritable: u32,
        }
        const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;
        let header = Header { version: LINUX_CAPABILITY_VERSION_3, pid: 0 };
        let data = [
            Data { effective: eff as u32, permitted: perm as u32, inheritable: inh as u32 },
            Data { effective: (eff >> 32) as u32, permitted: (perm >> 32) as u32, inheritable: (inh >> 32) as u32 },
        ];
        // SAFETY: header and two data words are the v3 capset ABI.
        let rc = unsafe { libc::syscall(libc::SYS_capset, &header as *const Header, data.as_ptr()) };
        if rc != 0 {
            return Err(Error::Capabilities(format!(
                "capset(effective={eff:#x}, permitted={perm:#x}, inheritable={inh:#x}): {}",
                std::io::Error::last_os_error()
            )));
        }
        caps::clear(None, CapSet::Ambient).map_err(|e| Error::Capabilities(format!("clear ambient: {e}")))?;
        for cap in &self.ambient {
            // Ambient needs the cap in permitted and inheritable; the kernel
            // refuses otherwise, which runc reports as a warning only.
            if let Err(e) = caps::raise(None, CapSet::Ambient, *cap) {
                log::warn!("cannot raise ambient {cap}: {e}");
            }
        }
        Ok(())
    }
}
