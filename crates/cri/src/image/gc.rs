//! Garbage collection of what no image references: committed layer
//! snapshots (children before parents) and blobs, except what a lease holds
//! (a pull, an import or a container creation in flight; see
//! `berth_image::lease`).

use std::{collections::HashSet, path::PathBuf};

use berth_image::{
    content::ContentStore,
    index::ImageIndex,
    lease::{Held, Leases},
    Error,
};
use berth_snapshot::{Kind, Overlay};

/// Returns (layers removed, blobs removed). Active snapshots (containers'
/// layers, unpacks in progress) and the layers under them are never
/// touched.
pub fn collect(index: &ImageIndex, content: &ContentStore, snapshots: &Overlay, leases: &Leases) -> Result<(usize, usize), Error> {
    let (detached, removed_blobs) = leases.sweep(|held| sweep(index, content, snapshots, held))?;
    // The trees go after the sweep: new leases wait for the sweep, not for
    // the disk.
    for dir in &detached {
        if let Err(e) = std::fs::remove_dir_all(dir) {
            // Its record is gone: start-up collection removes it.
            tracing::warn!(dir = %dir.display(), error = %e, "could not remove a collected layer's directory");
        }
    }
    Ok((detached.len(), removed_blobs))
}

/// Decides and unlinks, while no lease can take anything. Returns the
/// directories of the layers whose records it removed, and how many blobs
/// it removed.
fn sweep(index: &ImageIndex, content: &ContentStore, snapshots: &Overlay, held: &Held<'_>) -> Result<(Vec<PathBuf>, usize), Error> {
    // Read here, inside the sweep: an operation lets go of its lease only
    // once the index names what it stored, so everything is either held or
    // in this list.
    let images = index.list();
    let live_chains: HashSet<&str> = images.iter().flat_map(|i| i.chain_ids.iter().map(String::as_str)).collect();
    let live_blobs: HashSet<&str> = images.iter().flat_map(|i| i.blobs.iter().map(String::as_str)).collect();
    let snap_err = |e: berth_snapshot::Error| Error::Snapshot(e.to_string());
    let mut detached = Vec::new();
    // Removing a leaf can free its parent: repeat until nothing changes.
    loop {
        let all = snapshots.list().map_err(snap_err)?;
        let parents: HashSet<&str> = all.iter().filter_map(|s| s.parent.as_deref()).collect();
        let doomed: Vec<&str> = all
            .iter()
            .filter(|s| s.kind == Kind::Committed && !parents.contains(s.key.as_str()))
            .map(|s| s.key.as_str())
            .filter(|key| !live_chains.contains(key) && !held.contains(key))
            .collect();
        if doomed.is_empty() {
            break;
        }
        for key in doomed {
            match snapshots.detach(key) {
                Ok(Some(dir)) => detached.push(dir),
                Ok(None) => {}
                // Built on since the listing: by an operation that
                // should have held it, but a layer in use is kept either
                // way rather than failing the collection.
                Err(berth_snapshot::Error::FailedPrecondition { .. }) => tracing::warn!(layer = key, "an unheld layer was built on during a collection; kept"),
                Err(e) => return Err(snap_err(e)),
            }
        }
    }
    let mut removed_blobs = 0;
    for digest in content.list()? {
        if !live_blobs.contains(digest.as_str()) && !held.contains(&digest) {
            content.delete(&digest)?;
            removed_blobs += 1;
        }
    }
    Ok((detached, removed_blobs))
}
