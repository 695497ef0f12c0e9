//! Snapshots: directories that stack into a container's rootfs.
//!
//! A *committed* snapshot is one image layer, keyed by its chain ID, shared
//! by every image that has that layer. An *active* snapshot is writable: a
//! layer being unpacked, or a container's thin layer over its image. The
//! snapshotter only plans mounts ([`Mount`]); it never mounts anything
//! itself (the shim mounts a container's rootfs in its own namespace).
//!
//! ```text
//! snapshots/overlayfs/
//!   metadata/<sha256(key)>.json   Info record (key, kind, parent, id)
//!   <id>/fs                       the layer's files (overlay upperdir/lowerdir)
//!   <id>/work                     overlay workdir (active snapshots only)
//! ```
//! Numeric ids keep overlay's `lowerdir=` option short with many layers.

mod error;
mod overlay;

pub use error::{Error, Result};
pub use overlay::{Info, Kind, Mount, Overlay};
