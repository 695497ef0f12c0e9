//! The OCI process of an exec: the container's own process (user, env,
//! capabilities, cwd, rlimits, seccomp) with another command line.

use std::path::PathBuf;

use crate::error::{blocking, Error, Result};

/// The process JSON the shim's Exec takes. With a terminal, `TERM` is set
/// (to xterm, as containerd does) unless the container sets it.
pub(crate) async fn exec_process_json(bundle: PathBuf, cmd: Vec<String>, tty: bool) -> Result<Vec<u8>> {
    blocking(move || {
        let text = std::fs::read(bundle.join("config.json")).map_err(|e| Error::Internal(format!("read spec: {e}")))?;
        let mut spec: serde_json::Value = serde_json::from_slice(&text).map_err(|e| Error::Internal(format!("parse spec: {e}")))?;
        let mut process = spec["process"].take();
        process["args"] = serde_json::json!(cmd);
        process["terminal"] = serde_json::json!(tty);
        if tty {
            let env = process["env"].as_array_mut();
            if let Some(env) = env {
                if !env.iter().any(|v| v.as_str().is_some_and(|e| e.starts_with("TERM="))) {
                    env.push(serde_json::json!("TERM=xterm"));
                }
            }
        }
        serde_json::to_vec(&process).map_err(|e| Error::Internal(e.to_string()))
    })
    .await
}
