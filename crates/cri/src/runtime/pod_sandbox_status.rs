use std::collections::HashMap;

use k8s_cri::v1;

use super::Runtime;
use crate::{
    error::Result,
    state::{SandboxRecord, SandboxState},
};

impl Runtime {
    pub(crate) fn pod_sandbox_status(&self, req: v1::PodSandboxStatusRequest) -> Result<v1::PodSandboxStatusResponse> {
        let sandbox = self.sandboxes.get(&req.pod_sandbox_id)?;
        let record = sandbox.snapshot();
        let mut info = HashMap::new();
        if req.verbose {
            let detail = serde_json::json!({
                "netns": record.netns, "ipcns": record.ipcns, "utsns": record.utsns, "shm": record.shm,
                "cni_result": record.cni_result, "runtime_handler": record.runtime_handler,
            });
            info.insert("info".to_string(), detail.to_string());
        }
        let containers_statuses = self.containers_of(&record.id).iter().map(|c| self.status_of(&c.snapshot())).collect();
        Ok(v1::PodSandboxStatusResponse { status: Some(to_cri_status(&record)), info, containers_statuses, timestamp: crate::state::now_nanos() })
    }
}

pub(super) fn to_cri_state(state: SandboxState) -> v1::PodSandboxState {
    match state {
        SandboxState::Ready => v1::PodSandboxState::SandboxReady,
        SandboxState::NotReady => v1::PodSandboxState::SandboxNotready,
    }
}

pub(super) fn to_cri_status(r: &SandboxRecord) -> v1::PodSandboxStatus {
    let ns = r.namespace_options();
    v1::PodSandboxStatus {
        id: r.id.clone(),
        metadata: Some(r.metadata()),
        state: to_cri_state(r.state) as i32,
        created_at: r.created_at,
        network: Some(v1::PodSandboxNetworkStatus {
            ip: r.ip.clone().unwrap_or_default(),
            additional_ips: r.additional_ips.iter().map(|ip| v1::PodIp { ip: ip.clone() }).collect(),
        }),
        linux: Some(v1::LinuxPodSandboxStatus { namespaces: Some(v1::Namespace { options: Some(ns) }) }),
        labels: r.config.labels.clone(),
        annotations: r.config.annotations.clone(),
        runtime_handler: r.runtime_handler.clone(),
    }
}
