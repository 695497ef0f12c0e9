//! The systemd cgroup driver: a container's cgroup is a transient scope
//! that systemd creates and owns, in the slice the kubelet named. What
//! systemd has no property for is written through cgroupfs below it
//! (the scope is delegated), exactly where the cgroupfs driver would.

mod manager;
mod properties;
mod scope;
mod unit_path;

pub use manager::{set_unit_properties, start_transient_unit, stop_unit, version};
pub use properties::{cpuset_mask, resource_properties, scope_properties, Property, PropertyValue};
pub use scope::Scope;
pub use unit_path::{expand_slice, is_slice_name, is_systemd_form, SystemdCgroupsPath, DEFAULT_SLICE};
