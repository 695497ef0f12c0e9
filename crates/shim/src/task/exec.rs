use containerd_shim_protos::{api::ExecProcessRequest, events::task::TaskExecAdded, topics};
use protobuf::well_known_types::empty::Empty;

use super::TaskService;
use crate::{
    error::{Result, ShimError},
    io::StdioConfig,
    state::{PendingExec, Status},
};

impl TaskService {
    /// Records an exec; nothing runs until its Start. The spec is an OCI
    /// Process as JSON, as containerd sends it.
    pub(super) fn add_exec(&self, req: ExecProcessRequest) -> Result<Empty> {
        if req.exec_id.is_empty() {
            return Err(ShimError::InvalidArgument("exec_id is empty".into()));
        }
        let spec = req.spec.as_ref().ok_or_else(|| ShimError::InvalidArgument("exec spec is missing".into()))?;
        // Checked for what the shim needs here; the init parses it whole
        // (at Start) and refuses what is wrong in the rest.
        let process: serde_json::Value =
            serde_json::from_slice(&spec.value).map_err(|e| ShimError::InvalidArgument(format!("exec spec is not an OCI process: {e}")))?;
        if !process.is_object() {
            return Err(ShimError::InvalidArgument("exec spec is not an OCI process: not a JSON object".into()));
        }
        if process.get("args").and_then(|a| a.as_array()).is_none_or(|a| a.is_empty()) {
            return Err(ShimError::InvalidArgument("exec spec has no args".into()));
        }
        // What the OCI process requires beside args.
        if !process.get("cwd").is_some_and(|c| c.is_string()) || !process.get("user").is_some_and(|u| u.is_object()) {
            return Err(ShimError::InvalidArgument("exec spec is not an OCI process: it needs cwd and user".into()));
        }
        self.with_container(&req.id, |c| {
            if c.execs.contains_key(&req.exec_id) || c.pending_execs.contains_key(&req.exec_id) {
                return Err(ShimError::AlreadyExists(format!("exec {:?} already exists", req.exec_id)));
            }
            let (status, _, _) = c.init.status(&self.reaper);
            if status != Status::Running {
                return Err(ShimError::FailedPrecondition(format!("container {} is {status:?}; exec needs it Running", c.id)));
            }
            let stdio = StdioConfig {
                stdin: req.stdin.clone(),
                stdout: req.stdout.clone(),
                stderr: req.stderr.clone(),
                terminal: req.terminal,
                attachable: false,
                log_drops: None,
            };
            c.pending_execs.insert(req.exec_id.clone(), PendingExec { stdio, process: process.to_string(), starting: false });
            Ok(())
        })?;
        if let Some(mode) = &self.containerd {
            let mut event = TaskExecAdded::new();
            event.container_id = req.id.clone();
            event.exec_id = req.exec_id.clone();
            mode.publish(topics::TASK_EXEC_ADDED_EVENT_TOPIC, &event);
        }
        Ok(Empty::new())
    }
}
