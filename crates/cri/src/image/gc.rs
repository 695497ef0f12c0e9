//! Garbage collection of what no image references: committed layer
//! snapshots (children before parents) and blobs.

use std::collections::HashSet;

use berth_image::{content::ContentStore, index::ImageIndex, Error};
use berth_snapshot::{Kind, Overlay};

/// Returns (layers removed, blobs removed). Active snapshots (containers'
/// layers, unpacks in progress) are never touched.
pub fn collect(index: &ImageIndex, content: &ContentStore, snapshots: &Overlay) -> Result<(usize, usize), Error> {
    let images = index.list();
    let live_chains: HashSet<&str> = images.iter().flat_map(|i| i.chain_ids.iter().map(String::as_str)).collect();
    let live_blobs: HashSet<&str> = images.iter().flat_map(|i| i.blobs.iter().map(String::as_str)).collect();
    let snap_err = |e: berth_snapshot::Error| Error::Snapshot(e.to_string());
    let mut removed_layers = 0;
    // Removing a leaf can free its parent: repeat until nothing changes.
    loop {
        let all = snapshots.list().map_err(snap_err)?;
        let parents: HashSet<&str> = all.iter().filter_map(|s| s.parent.as_deref()).collect();
        let doomed: Vec<&str> = all
            .iter()
            .filter(|s| s.kind == Kind::Committed && !live_chains.contains(s.key.as_str()) && !parents.contains(s.key.as_str()))
            .map(|s| s.key.as_str())
            .collect();
        if doomed.is_empty() {
            break;
        }
        for key in doomed {
            snapshots.remove(key).map_err(snap_err)?;
            removed_layers += 1;
        }
    }
    let mut removed_blobs = 0;
    for digest in content.list()? {
        if !live_blobs.contains(digest.as_str()) {
            content.delete(&digest)?;
            removed_blobs += 1;
        }
    }
    Ok((removed_layers, removed_blobs))
}
