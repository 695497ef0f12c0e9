//! CDI, the Container Device Interface: devices that device plugins and
//! DRA drivers describe in spec files under the CDI spec directories, and
//! that a container asks for by fully-qualified name
//! (`ContainerConfig.CDI_devices`, or `cdi.k8s.io/*` annotations).
//!
//! berth reads the spec files itself (serde, JSON and YAML) rather than
//! through the `container-device-interface` crate: that crate builds a
//! JSON-schema validator, a CLI and a cdylib into its library, which berthd
//! would carry for the few hundred lines needed here.

pub mod apply;
pub mod names;
pub mod registry;
pub mod resolve;
pub mod spec;

pub use resolve::{requests, resolve, Injection, Request};

/// The CDI specification's default spec directories; a later one wins.
pub const DEFAULT_SPEC_DIRS: [&str; 2] = ["/etc/cdi", "/var/run/cdi"];
