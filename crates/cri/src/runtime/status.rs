use std::{collections::HashMap, path::Path};

use k8s_cri::v1::{RuntimeCondition, RuntimeFeatures, RuntimeHandler, RuntimeHandlerFeatures, RuntimeStatus, StatusRequest, StatusResponse};

use super::{features, Runtime};
use crate::shim_client::missing_shim_binary;

impl Runtime {
    /// RuntimeReady when the shim binary and the berth-runtime beside it
    /// (which the shim runs) are there to run containers;
    /// NetworkReady when a CNI config and all its plugins are installed;
    /// ContainerLogsWritable unless a container's log drops output (a
    /// full disk). Each false condition carries the reason.
    pub(crate) fn status(&self, req: StatusRequest) -> StatusResponse {
        let runtime = runtime_ready(&self.info.shim_binary);
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

/// RuntimeReady: false, reason ShimMissing, when `shim` or the
/// berth-runtime beside it is missing.
fn runtime_ready(shim: &Path) -> RuntimeCondition {
    condition("RuntimeReady", missing_shim_binary(shim).map_or(Ok(()), |missing| Err(("ShimMissing", missing))))
}

fn condition(kind: &str, state: Result<(), (&str, String)>) -> RuntimeCondition {
    match state {
        Ok(()) => RuntimeCondition { r#type: kind.into(), status: true, ..Default::default() },
        Err((reason, message)) => RuntimeCondition { r#type: kind.into(), status: false, reason: reason.into(), message },
    }
}

#[cfg(test)]
mod tests {
    use super::runtime_ready;

    #[test]
    fn runtime_ready_needs_the_shim_and_berth_runtime_beside_it() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        let shim = bin.join("berth-shim");

        let c = runtime_ready(&shim);
        assert!(c.r#type == "RuntimeReady" && !c.status && c.reason == "ShimMissing", "{c:?}");
        assert_eq!(c.message, format!("berth-shim not found at {}", shim.display()));

        std::fs::write(&shim, "").unwrap();
        let c = runtime_ready(&shim);
        assert!(!c.status && c.reason == "ShimMissing", "{c:?}");
        let runtime = bin.canonicalize().unwrap().join("berth-runtime");
        assert_eq!(c.message, format!("berth-runtime not found at {} (it must be installed beside berth-shim)", runtime.display()));

        std::fs::write(&runtime, "").unwrap();
        let c = runtime_ready(&shim);
        assert!(c.r#type == "RuntimeReady" && c.status && c.reason.is_empty() && c.message.is_empty(), "{c:?}");
    }
}
