use std::collections::HashMap;

use k8s_cri::v1;

use super::Runtime;
use crate::{error::Result, state::ContainerRecord};

impl Runtime {
    pub(crate) fn container_status(&self, req: v1::ContainerStatusRequest) -> Result<v1::ContainerStatusResponse> {
        let container = self.containers.get(&req.container_id)?;
        let record = container.snapshot();
        let mut info = HashMap::new();
        if req.verbose {
            let mut detail = serde_json::json!({
                "pid": record.pid,
                "sandboxID": record.sandbox_id,
                "cgroupsPath": record.cgroups_path,
                "bundle": self.paths.bundle(&record.id).ok(),
                // What a client needs to attach the way it was created.
                "tty": record.config.tty,
                "stdin": record.config.stdin,
                "stdinOnce": record.config.stdin_once,
            });
            // Output the shim dropped because the log file refused it.
            if let Some(drops) = self.log_drops(&container) {
                detail["logDrops"] = serde_json::json!(drops);
            }
            info.insert("info".to_string(), detail.to_string());
        }
        Ok(v1::ContainerStatusResponse { status: Some(self.status_of(&record)), info })
    }

    pub(crate) fn status_of(&self, r: &ContainerRecord) -> v1::ContainerStatus {
        let linux_user =
            v1::LinuxContainerUser { uid: r.uid.into(), gid: r.gid.into(), supplemental_groups: r.additional_gids.iter().map(|g| i64::from(*g)).collect() };
        v1::ContainerStatus {
            id: r.id.clone(),
            metadata: r.config.metadata.clone(),
            state: r.state.to_cri() as i32,
            created_at: r.created_at,
            started_at: r.started_at,
            finished_at: r.finished_at,
            exit_code: r.exit_code,
            image: Some(v1::ImageSpec { image: r.image_name.clone(), ..Default::default() }),
            image_ref: r.image_ref.clone(),
            reason: r.reason.clone(),
            message: r.message.clone(),
            labels: r.config.labels.clone(),
            annotations: r.config.annotations.clone(),
            mounts: r.config.mounts.clone(),
            log_path: r.log_path.clone(),
            resources: Some(v1::ContainerResources { linux: Some(r.resources.clone()), ..Default::default() }),
            image_id: r.image_id.clone(),
            user: Some(v1::ContainerUser { linux: Some(linux_user) }),
        }
    }
}
