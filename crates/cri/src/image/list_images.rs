use k8s_cri::v1::{ListImagesRequest, ListImagesResponse};

use super::{to_cri, ImageServer};

impl ImageServer {
    /// All images, or the one the filter names.
    pub(super) fn list(&self, req: ListImagesRequest) -> ListImagesResponse {
        let wanted = req.filter.and_then(|f| f.image).map(|i| i.image).filter(|s| !s.is_empty());
        let images = match wanted {
            Some(name) => self.index.resolve(&name).into_iter().collect(),
            None => self.index.list(),
        };
        ListImagesResponse { images: images.iter().map(to_cri).collect() }
    }
}
