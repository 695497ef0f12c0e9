//! The OCI process of an exec: the container's own process (user, env,
//! capabilities, cwd, rlimits, seccomp) with another command line.

use std::path::PathBuf;

use crate::error::{blocking, Error, Result};

/// The process JSON the shim's Exec takes. With a terminal, `TERM` is set
/// (to xterm, as containerd does) unless the container sets it, and
/// `console_size` (columns, rows) becomes the terminal's size before the
/// command runs.
pub(crate) async fn exec_process_json(bundle: PathBuf, cmd: Vec<String>, tty: bool, console_size: Option<(u16, u16)>) -> Result<Vec<u8>> {
    blocking(move || {
        let text = std::fs::read(bundle.join("config.json")).map_err(Error::io("read spec"))?;
        let mut spec: serde_json::Value = serde_json::from_slice(&text).map_err(Error::internal("parse spec"))?;
        let mut process = spec["process"].take();
        process["args"] = serde_json::json!(cmd);
        process["terminal"] = serde_json::json!(tty);
        if let Some((width, height)) = console_size.filter(|_| tty) {
            process["consoleSize"] = serde_json::json!({ "width": width, "height": height });
        }
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
