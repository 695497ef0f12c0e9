//! Everything berthd keeps on disk, in one place.
//!
//! ```text
//! <root>  (persistent, default /var/lib/berth)
//!   sandboxes/<id>/sandbox.json     versioned record + hostname, hosts, resolv.conf
//!   containers/<id>/container.json  versioned record
//!   images/<hex>.json               image records (names, digests, layers)
//!   content/blobs/sha256/<hex>      content-addressed blobs
//!   content/ingest/<ref>            partial downloads, resumed by the next pull
//!   snapshots/overlayfs/            snapshot metadata + <id>/{fs,work}
//! <state> (volatile, default /run/berth)
//!   berth.sock                      CRI endpoint
//!   s/<sha256(id)>                  shim sockets (short, fixed length)
//!   containers/<id>/                OCI bundles: config.json, rootfs
//! ```
//! Records are never rewritten in place: temp file, fsync, rename, fsync of
//! the directory ([`atomic_write`]). A crash leaves the old or the new
//! record, never half of one.

mod atomic;
mod error;
mod names;
mod paths;
mod record;

pub use atomic::{atomic_write, remove_stale_temps};
pub use error::{Error, Result};
pub use names::NameIndex;
pub use paths::Paths;
pub use record::{load_record, save_record, Versioned};
