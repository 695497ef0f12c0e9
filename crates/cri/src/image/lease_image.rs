//! An image for a container to be built on, kept from garbage collection
//! until the container's snapshot (or an image volume's) is built on it.

use berth_image::{index::ImageRecord, lease::Lease};

use super::ImageServer;

impl ImageServer {
    /// Resolves `name` and leases its config blob and top layer. `None`:
    /// no such image, or it was removed while being leased (a RemoveImage
    /// in between may already have collected its layers).
    pub(crate) fn lease_image(&self, name: &str) -> Option<(ImageRecord, Lease)> {
        let image = self.index.resolve(name)?;
        let lease = self.leases.lease();
        lease.hold(&image.id);
        if let Some(top) = image.chain_ids.last() {
            lease.hold(top);
        }
        // Still indexed now that it is held: no collection removed it
        // before, and none will until the lease ends.
        let still = self.index.resolve(name).is_some_and(|now| now.id == image.id);
        still.then_some((image, lease))
    }
}
