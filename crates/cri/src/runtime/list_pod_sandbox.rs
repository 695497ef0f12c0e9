use k8s_cri::v1;

use super::{pod_sandbox_status::to_cri_state, Runtime};

impl Runtime {
    pub(crate) fn list_pod_sandbox(&self, req: v1::ListPodSandboxRequest) -> v1::ListPodSandboxResponse {
        let filter = req.filter.unwrap_or_default();
        let mut items: Vec<v1::PodSandbox> = self
            .sandboxes
            .list()
            .iter()
            .map(|s| s.snapshot())
            .filter(|r| filter.id.is_empty() || r.id.starts_with(&filter.id))
            .filter(|r| filter.state.as_ref().is_none_or(|s| s.state == to_cri_state(r.state) as i32))
            .filter(|r| labels_match(&filter.label_selector, &r.config.labels))
            .map(|r| v1::PodSandbox {
                id: r.id.clone(),
                metadata: Some(r.metadata()),
                state: to_cri_state(r.state) as i32,
                created_at: r.created_at,
                labels: r.config.labels.clone(),
                annotations: r.config.annotations.clone(),
                runtime_handler: r.runtime_handler.clone(),
            })
            .collect();
        items.sort_by_key(|p| std::cmp::Reverse(p.created_at));
        v1::ListPodSandboxResponse { items }
    }
}

/// Every selector label must be present with the same value.
pub(super) fn labels_match(selector: &std::collections::HashMap<String, String>, labels: &std::collections::HashMap<String, String>) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}
