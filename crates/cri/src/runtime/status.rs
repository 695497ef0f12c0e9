use std::collections::HashMap;

use k8s_cri::v1::{RuntimeCondition, RuntimeStatus, StatusRequest, StatusResponse};

use super::RuntimeInfo;

/// Tells the kubelet honestly what berthd can do: until pods can run, the
/// runtime is not ready, and it says why.
pub fn status(info: &RuntimeInfo, req: StatusRequest) -> StatusResponse {
    let conditions = vec![
        RuntimeCondition {
            r#type: "RuntimeReady".into(),
            status: false,
            reason: "PodLifecycleNotImplemented".into(),
            message: "berthd does not run pod sandboxes or containers yet".into(),
        },
        RuntimeCondition {
            r#type: "NetworkReady".into(),
            status: false,
            reason: "NetworkPluginNotImplemented".into(),
            message: "berthd does not set up CNI networking yet".into(),
        },
    ];
    let mut extra = HashMap::new();
    if req.verbose {
        extra.insert("config".to_string(), info.verbose_config.clone());
    }
    StatusResponse { status: Some(RuntimeStatus { conditions }), info: extra, ..Default::default() }
}
