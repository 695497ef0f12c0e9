//! User namespaces (KEP-127 pods) and idmapped mounts.
//!
//! A pod with a user namespace gets one namespace with the kubelet's id map
//! ([`IdMap`]); its network, IPC and UTS namespaces are made inside it so
//! that the pod's root owns them ([`NamespaceHolder`]). Files the container
//! sees (the image's layers, volumes) keep their on-disk owners and are
//! shown through idmapped mounts ([`idmapped_mount`]) instead of being
//! chowned: a mount costs microseconds, a chown of an image seconds.

// clone(2) of the namespace holder and the new mount API (open_tree,
// move_mount, and mount_setattr, which no safe crate wraps yet): one of the
// three crates where unsafe code is allowed, each block with its SAFETY
// reasoning.
#![allow(unsafe_code)]

mod error;
mod holder;
mod id_map;
mod idmapped_layers;
mod idmapped_mount;

pub use error::{Error, Result};
pub use holder::NamespaceHolder;
pub use id_map::{IdMap, IdMapping};
pub use idmapped_layers::IdmappedLayers;
pub use idmapped_mount::{attach, bind_idmapped, idmapped_mount, mount_setattr_available, set_recursive_readonly};
