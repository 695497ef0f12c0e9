//! Turning an OCI runtime spec into an isolated Linux process.
//!
//! Everything here runs in `berth-runtime init`, a fresh exec of the shim's
//! second binary that is single-threaded and never builds an async runtime,
//! so `fork` is safe.
//! The shim drives it over a [`sync::Channel`]; see that module for the
//! conversation. Synchronous and tokio-free by design.

// The init forks, execs and calls into the kernel directly (pivot_root,
// seccomp, capabilities): the unsafe code of berth lives here, in the
// shim and in berth-userns, each block with its SAFETY reasoning.
#![allow(unsafe_code)]

pub mod apparmor;
pub mod capabilities;
pub mod error;
pub mod idmapped_mounts;
pub mod init;
mod mount_options;
pub mod namespaces;
pub mod paths;
pub mod pause;
pub mod process;
pub mod rootfs;
pub mod seccomp;
mod tty;

/// The conversation with the shim (its own crate: the shim links only it).
pub use berth_shim_protocol as sync;
pub use error::{Error, ErrorKind, Result};
