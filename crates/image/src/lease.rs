//! Leases: what operations in flight hold against garbage collection.
//!
//! A pull stores blobs and unpacks layers before the index names its image;
//! an import does the same from an archive; CreateContainer resolves an
//! image before it builds the container's snapshot on the image's top
//! layer. Between those steps nothing in the index refers to what they use,
//! and a collection running then (RemoveImage, a prune) would delete it.
//!
//! So each such operation takes a [`Lease`] and holds every blob digest and
//! layer chain ID it is about to use *before* it looks whether it is
//! already there, and keeps the lease until the index (or a snapshot built
//! on the layer) refers to it. The collector decides and removes inside
//! [`Leases::sweep`], under the same lock: either the operation holds the
//! item first and the collector keeps it, or the collector removed it first
//! and the operation, looking afterwards, finds it missing and fetches or
//! unpacks it again.
//!
//! Leases live in memory only: after a restart no operation is in flight,
//! and what a crashed one stored is garbage like anything else unreferenced.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard},
};

/// Every lease of one store: how many leases hold each key.
#[derive(Debug, Default)]
pub struct Leases {
    held: Mutex<HashMap<String, usize>>,
}

impl Leases {
    pub fn new() -> Arc<Self> {
        Arc::default()
    }

    /// A new lease, holding nothing yet; it lets go of what it holds when
    /// dropped.
    pub fn lease(self: &Arc<Self>) -> Lease {
        Lease { leases: self.clone(), keys: Mutex::new(Vec::new()) }
    }

    /// Runs a collection: `sweep` sees what is held, and no lease can take
    /// anything until it returns. Keep it to deciding and unlinking; slow
    /// deletions (a layer's directory tree) belong after it.
    pub fn sweep<T>(&self, sweep: impl FnOnce(&Held<'_>) -> T) -> T {
        let held = self.table();
        sweep(&Held(&held))
    }

    fn table(&self) -> MutexGuard<'_, HashMap<String, usize>> {
        // The table stays consistent whatever panicked while holding it:
        // every change to it is a single insert or decrement.
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// What the leases hold, as a collection sees it.
pub struct Held<'a>(&'a HashMap<String, usize>);

impl Held<'_> {
    pub fn contains(&self, key: &str) -> bool {
        self.0.contains_key(key)
    }
}

/// One operation's claim on blobs and layers.
#[derive(Debug)]
pub struct Lease {
    leases: Arc<Leases>,
    keys: Mutex<Vec<String>>,
}

impl Lease {
    /// Holds `key` (a blob digest or a layer chain ID) until the lease is
    /// dropped. Call it before checking whether the item exists.
    pub fn hold(&self, key: &str) {
        let mut keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        if keys.iter().any(|k| k == key) {
            return;
        }
        *self.leases.table().entry(key.to_string()).or_default() += 1;
        keys.push(key.to_string());
    }

    pub fn hold_all<'k>(&self, keys: impl IntoIterator<Item = &'k String>) {
        for key in keys {
            self.hold(key);
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let keys = std::mem::take(self.keys.get_mut().unwrap_or_else(|e| e.into_inner()));
        let mut table = self.leases.table();
        for key in keys {
            if let Some(count) = table.get_mut(&key) {
                *count -= 1;
                if *count == 0 {
                    table.remove(&key);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_held_while_any_lease_holds_it() {
        let leases = Leases::new();
        let (a, b) = (leases.lease(), leases.lease());
        a.hold("sha256:one");
        a.hold("sha256:one");
        b.hold("sha256:one");
        b.hold("sha256:two");
        drop(a);
        assert!(leases.sweep(|held| held.contains("sha256:one") && held.contains("sha256:two")));
        drop(b);
        assert!(leases.sweep(|held| !held.contains("sha256:one") && !held.contains("sha256:two")));
        assert!(leases.table().is_empty(), "nothing lingers once every lease is gone");
    }
}
