//! The unit properties a scope gets: the ones every berth scope has, and
//! the resource limits systemd itself manages. Pure functions.
//!
//! systemd owns the attributes of the cgroups it manages: whatever a
//! runtime writes to a scope's `memory.max` directly is put back to the
//! unit's own value the next time systemd re-applies it (a daemon-reload,
//! another property change). So the limits systemd knows go to it as
//! properties, as runc does; berth writes the same values (and everything
//! systemd has no property for) through cgroupfs as well.

use oci_spec::runtime::LinuxResources;

use crate::{
    error::{Error, Result},
    v1::validate_quota,
    v2::shares_to_weight,
    Version,
};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PropertyValue {
    Bool(bool),
    U64(u64),
    Str(String),
    /// D-Bus `au`.
    U32s(Vec<u32>),
    /// D-Bus `ay`.
    Bytes(Vec<u8>),
}

pub type Property = (&'static str, PropertyValue);

/// systemd's "infinity" for integer limits.
const INFINITY: u64 = u64::MAX;
/// The CFS period systemd and the kernel use when none is given.
const DEFAULT_PERIOD_US: u64 = 100_000;

/// What every scope berth starts has: its slice, a description, the first
/// process, delegation (berth manages the cgroups below and writes the
/// files systemd has no property for), accounting on, and no default
/// dependencies (a container scope must not be ordered after
/// `sysinit.target`, nor stopped by `shutdown.target` before its shim).
pub fn scope_properties(slice: &str, description: &str, pid: u32, version: Version) -> Vec<Property> {
    let io_accounting = match version {
        Version::V1 => "BlockIOAccounting",
        Version::V2 => "IOAccounting",
    };
    vec![
        ("Slice", PropertyValue::Str(slice.to_string())),
        ("Description", PropertyValue::Str(description.to_string())),
        ("PIDs", PropertyValue::U32s(vec![pid])),
        ("Delegate", PropertyValue::Bool(true)),
        ("DefaultDependencies", PropertyValue::Bool(false)),
        ("MemoryAccounting", PropertyValue::Bool(true)),
        ("CPUAccounting", PropertyValue::Bool(true)),
        ("TasksAccounting", PropertyValue::Bool(true)),
        (io_accounting, PropertyValue::Bool(true)),
    ]
}

/// The limits in `resources` that systemd manages, as unit properties.
/// Fields that are absent (or zero, the CRI's "not set") are left out, so
/// the same list serves create and update.
pub fn resource_properties(r: &LinuxResources, version: Version) -> Result<Vec<Property>> {
    let mut props = Vec::new();
    if let Some(limit) = r.memory().as_ref().and_then(|m| m.limit()).filter(|l| *l != 0) {
        if limit < -1 {
            return Err(Error::InvalidResource { field: "memory.limit", reason: format!("{limit} is negative") });
        }
        let value = if limit == -1 { INFINITY } else { limit as u64 };
        let name = match version {
            Version::V1 => "MemoryLimit",
            Version::V2 => "MemoryMax",
        };
        props.push((name, PropertyValue::U64(value)));
    }
    if let Some(cpu) = r.cpu() {
        if let Some(shares) = cpu.shares().filter(|s| *s != 0) {
            props.push(match version {
                Version::V1 => ("CPUShares", PropertyValue::U64(shares)),
                Version::V2 => ("CPUWeight", PropertyValue::U64(shares_to_weight(shares))),
            });
        }
        let period = cpu.period().filter(|p| *p != 0);
        if let Some(period) = period {
            props.push(("CPUQuotaPeriodUSec", PropertyValue::U64(period)));
        }
        if let Some(quota) = cpu.quota().filter(|q| *q != 0) {
            validate_quota(quota)?;
            let per_sec = if quota == -1 { INFINITY } else { quota_per_second(quota as u64, period.unwrap_or(DEFAULT_PERIOD_US)) };
            props.push(("CPUQuotaPerSecUSec", PropertyValue::U64(per_sec)));
        }
        if version == Version::V2 {
            if let Some(cpus) = cpu.cpus().as_deref().filter(|s| !s.is_empty()) {
                props.push(("AllowedCPUs", PropertyValue::Bytes(cpuset_mask(cpus, "cpu.cpus")?)));
            }
            if let Some(mems) = cpu.mems().as_deref().filter(|s| !s.is_empty()) {
                props.push(("AllowedMemoryNodes", PropertyValue::Bytes(cpuset_mask(mems, "cpu.mems")?)));
            }
        }
    }
    if let Some(pids) = r.pids() {
        let value = if pids.limit() > 0 { pids.limit() as u64 } else { INFINITY };
        props.push(("TasksMax", PropertyValue::U64(value)));
    }
    Ok(props)
}

/// CPU time per second of wall time, rounded up to whole 10 ms: systemd
/// keeps the quota as a percentage of one CPU, and rounding up never makes
/// the limit tighter than asked (runc does the same).
fn quota_per_second(quota_us: u64, period_us: u64) -> u64 {
    let per_sec = quota_us.saturating_mul(1_000_000) / period_us;
    per_sec.div_ceil(10_000) * 10_000
}

/// `0-3,8` as systemd's CPU/NUMA-node bitmask: bit `n` of byte `n / 8`.
pub fn cpuset_mask(list: &str, field: &'static str) -> Result<Vec<u8>> {
    let invalid = || Error::InvalidResource { field, reason: format!("{list:?} is not a list such as 0-3,8") };
    let mut mask = Vec::new();
    for part in list.split(',').map(str::trim) {
        let (first, last) = match part.split_once('-') {
            Some((a, b)) => (a.parse::<usize>().map_err(|_| invalid())?, b.parse::<usize>().map_err(|_| invalid())?),
            None => {
                let n = part.parse::<usize>().map_err(|_| invalid())?;
                (n, n)
            }
        };
        // 8192 is more CPUs than any kernel config allows; it bounds the mask.
        if first > last || last >= 8192 {
            return Err(invalid());
        }
        for n in first..=last {
            if mask.len() <= n / 8 {
                mask.resize(n / 8 + 1, 0);
            }
            mask[n / 8] |= 1 << (n % 8);
        }
    }
    Ok(mask)
}

#[cfg(test)]
mod tests {
    use oci_spec::runtime::{LinuxCpuBuilder, LinuxMemoryBuilder, LinuxPidsBuilder, LinuxResourcesBuilder};

    use super::*;

    fn resources() -> LinuxResources {
        LinuxResourcesBuilder::default()
            .memory(LinuxMemoryBuilder::default().limit(64i64 << 20).build().unwrap())
            .cpu(LinuxCpuBuilder::default().shares(512u64).quota(25_000i64).period(100_000u64).cpus("0-1").build().unwrap())
            .pids(LinuxPidsBuilder::default().limit(100).build().unwrap())
            .build()
            .unwrap()
    }

    #[test]
    fn v1_properties_use_the_legacy_names() {
        let props = resource_properties(&resources(), Version::V1).unwrap();
        assert_eq!(
            props,
            vec![
                ("MemoryLimit", PropertyValue::U64(64 << 20)),
                ("CPUShares", PropertyValue::U64(512)),
                ("CPUQuotaPeriodUSec", PropertyValue::U64(100_000)),
                ("CPUQuotaPerSecUSec", PropertyValue::U64(250_000)),
                ("TasksMax", PropertyValue::U64(100)),
            ]
        );
    }

    #[test]
    fn v2_properties_use_weights_and_masks() {
        let props = resource_properties(&resources(), Version::V2).unwrap();
        assert!(props.contains(&("MemoryMax", PropertyValue::U64(64 << 20))));
        assert!(props.contains(&("CPUWeight", PropertyValue::U64(shares_to_weight(512)))));
        assert!(props.contains(&("AllowedCPUs", PropertyValue::Bytes(vec![0b11]))));
    }

    #[test]
    fn unlimited_and_unset_values() {
        let r = LinuxResourcesBuilder::default()
            .memory(LinuxMemoryBuilder::default().limit(-1i64).build().unwrap())
            .cpu(LinuxCpuBuilder::default().quota(-1i64).shares(0u64).build().unwrap())
            .pids(LinuxPidsBuilder::default().limit(0).build().unwrap())
            .build()
            .unwrap();
        let props = resource_properties(&r, Version::V2).unwrap();
        assert_eq!(
            props,
            vec![("MemoryMax", PropertyValue::U64(u64::MAX)), ("CPUQuotaPerSecUSec", PropertyValue::U64(u64::MAX)), ("TasksMax", PropertyValue::U64(u64::MAX)),]
        );
        assert!(resource_properties(&LinuxResources::default(), Version::V1).unwrap().is_empty());
    }

    #[test]
    fn quota_rounds_up_to_ten_milliseconds() {
        assert_eq!(quota_per_second(1_000, 100_000), 10_000);
        assert_eq!(quota_per_second(50_000, 100_000), 500_000);
        assert_eq!(quota_per_second(12_345, 50_000), 250_000);
    }

    #[test]
    fn cpuset_masks() {
        assert_eq!(cpuset_mask("0", "c").unwrap(), vec![1]);
        assert_eq!(cpuset_mask("0-3,8", "c").unwrap(), vec![0x0f, 0x01]);
        assert_eq!(cpuset_mask("9", "c").unwrap(), vec![0, 2]);
        for bad in ["", "a", "3-1", "1-", "99999"] {
            assert!(cpuset_mask(bad, "c").unwrap_err().is_invalid_input(), "{bad}");
        }
    }

    #[test]
    fn absurd_values_are_refused() {
        let r = LinuxResourcesBuilder::default().cpu(LinuxCpuBuilder::default().quota(10i64).build().unwrap()).build().unwrap();
        assert!(resource_properties(&r, Version::V1).unwrap_err().is_invalid_input());
        let r = LinuxResourcesBuilder::default().memory(LinuxMemoryBuilder::default().limit(-5i64).build().unwrap()).build().unwrap();
        assert!(resource_properties(&r, Version::V1).unwrap_err().is_invalid_input());
    }
}
