use k8s_cri::v1;

use super::{list_pod_sandbox::labels_match, Runtime};

impl Runtime {
    pub(crate) fn list_containers(&self, req: v1::ListContainersRequest) -> v1::ListContainersResponse {
        let filter = req.filter.unwrap_or_default();
        let mut containers: Vec<v1::Container> = self
            .containers
            .list()
            .iter()
            .map(|c| c.snapshot())
            .filter(|r| filter.id.is_empty() || r.id.starts_with(&filter.id))
            .filter(|r| filter.pod_sandbox_id.is_empty() || r.sandbox_id.starts_with(&filter.pod_sandbox_id))
            .filter(|r| filter.state.as_ref().is_none_or(|s| s.state == r.state.to_cri() as i32))
            .filter(|r| labels_match(&filter.label_selector, &r.config.labels))
            .map(|r| v1::Container {
                id: r.id.clone(),
                pod_sandbox_id: r.sandbox_id.clone(),
                metadata: r.config.metadata.clone(),
                image: Some(v1::ImageSpec { image: r.image_id.clone(), ..Default::default() }),
                image_ref: r.image_ref.clone(),
                state: r.state.to_cri() as i32,
                created_at: r.created_at,
                labels: r.config.labels.clone(),
                annotations: r.config.annotations.clone(),
                image_id: r.image_id.clone(),
            })
            .collect();
        containers.sort_by_key(|c| std::cmp::Reverse(c.created_at));
        v1::ListContainersResponse { containers }
    }
}
