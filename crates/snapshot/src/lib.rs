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

/// What a container runtime asks of a snapshotter once the image is
/// unpacked: a thin layer for each container (and image volume), its
/// mounts, and its removal. [`Overlay`] is the implementation; the trait
/// is the seam berth-cri's unit tests put a recording fake in (the image
/// side, unpack and garbage collection, uses the `Overlay` itself).
/// Synchronous, like `Overlay`: callers run it on the blocking pool.
pub trait Snapshotter: Send + Sync {
    /// A writable snapshot `key` on the committed snapshot `parent`.
    fn prepare(&self, key: &str, parent: Option<&str>) -> Result<Vec<Mount>>;
    /// The mounts that show snapshot `key`.
    fn mounts(&self, key: &str) -> Result<Vec<Mount>>;
    /// Removes snapshot `key`; missing is fine.
    fn remove(&self, key: &str) -> Result<()>;
    /// Removes snapshot `key`'s record and returns its directory for the
    /// caller to delete when it suits it (`None`: no such snapshot). Until
    /// then the directory is an orphan that start-up collection removes.
    fn detach(&self, key: &str) -> Result<Option<std::path::PathBuf>>;
    /// Every snapshot, in no particular order.
    fn list(&self) -> Result<Vec<Info>>;
    fn stat(&self, key: &str) -> Result<Info>;
    /// The directory holding a snapshot's files.
    fn fs_dir(&self, info: &Info) -> std::path::PathBuf;
}

impl Snapshotter for Overlay {
    fn prepare(&self, key: &str, parent: Option<&str>) -> Result<Vec<Mount>> {
        Overlay::prepare(self, key, parent)
    }

    fn mounts(&self, key: &str) -> Result<Vec<Mount>> {
        Overlay::mounts(self, key)
    }

    fn remove(&self, key: &str) -> Result<()> {
        Overlay::remove(self, key)
    }

    fn detach(&self, key: &str) -> Result<Option<std::path::PathBuf>> {
        Overlay::detach(self, key)
    }

    fn list(&self) -> Result<Vec<Info>> {
        Overlay::list(self)
    }

    fn stat(&self, key: &str) -> Result<Info> {
        Overlay::stat(self, key)
    }

    fn fs_dir(&self, info: &Info) -> std::path::PathBuf {
        Overlay::fs_dir(self, info)
    }
}
