use std::collections::HashMap;

use k8s_cri::v1::{RuntimeCondition, RuntimeFeatures, RuntimeHandler, RuntimeHandlerFeatures, RuntimeStatus, StatusRequest, StatusResponse};

use super::{features, Runtime};

impl Runtime {
    /// RuntimeReady when the shim binary is there to run containers;
    /// NetworkReady when a CNI config and all its plugins are installed;
    /// ContainerLogsWritable unless a container's log drops output (a
    /// full disk). Each false condition carries the reason.
    pub(crate) fn status(&self, req: StatusRequest) -> StatusResponse {
        let shim = &self.info.shim_binary;
        let runtime = if shim.is_file() {
            condition("RuntimeReady", Ok(()))
        } else {
            condition("RuntimeReady", Err(("ShimMissing", format!("berth-shim not found at {}", shim.display()))))
        };
        let network = condition("NetworkReady", self.cni.status().map_err(|e| ("NetworkPluginNotReady", e.to_string())));
        let logs = self.log_condition();
        let mut info = HashMap::new();
        if req.verbose {
            info.insert("config".to_string(), self.info.verbose_config.clone());
            info.insert("podCIDR".to_string(), self.pod_cidr.lock().unwrap_or_else(|e| e.into_inner()).clone());
        }
        let handler_features = Some(RuntimeHandlerFeatures {
            recursive_read_only_mounts: features::recursive_read_only_mounts(),
            user_namespaces: features::user_namespaces(&self.paths.snapshots()),
        });
        let runtime_handlers = std::iter::once(String::new())
            .chain(self.info.runtime_handlers.iter().cloned())
            .map(|name| RuntimeHandler { name, features: handler_features })
            .collect();
        StatusResponse {
            status: Some(RuntimeStatus { conditions: vec![runtime, network, logs] }),
            info,
            runtime_handlers,
            features: Some(RuntimeFeatures { supplemental_groups_policy: features::SUPPLEMENTAL_GROUPS_POLICY }),
        }
    }
}

fn condition(kind: &str, state: Result<(), (&str, String)>) -> RuntimeCondition {
    match state {
        Ok(()) => RuntimeCondition { r#type: kind.into(), status: true, ..Default::default() },
        Err((reason, message)) => RuntimeCondition { r#type: kind.into(), status: false, reason: reason.into(), message },
    }
}
