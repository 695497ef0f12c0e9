//! Pod networking for berthd: the pod's pinned namespaces and the CNI
//! plugins that wire its network namespace.
//!
//! berthd never enters a pod's network namespace on a thread that lives
//! on: namespaces are made, and the pod's `lo` brought up, on a throw-away
//! OS thread ([`PodNamespaces`]); the plugins are told the path
//! (`CNI_NETNS`).

mod cni;
mod error;
mod loopback;
mod namespaces;

pub use berth_userns::{IdMap, IdMapping};
pub use cni::{Cni, CniConfig, PodNetwork, PortMapping, SetupResult};
pub use error::{Error, Result};
pub use namespaces::{NamespaceSet, PodNamespaces};
