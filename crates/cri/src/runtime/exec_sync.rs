use std::{path::PathBuf, sync::Arc, time::Duration};

use k8s_cri::v1;

use super::{exec_spec::exec_process_json, Runtime};
use crate::{
    error::{blocking, Error, Result},
    state::new_id,
};

/// The kubelet's gRPC message limit: more output than this is cut.
const MAX_OUTPUT: u64 = 16 << 20;

impl Runtime {
    /// Runs `cmd` in the container with the container's user, env and
    /// capabilities; returns its output and exit code. stdout and stderr are
    /// files the shim hands to the command as its fds (no pipe to drain), so
    /// a background child that keeps them open cannot hold the answer back.
    /// `timeout` seconds (0: none) bounds the whole call: the command is
    /// killed and the answer is DeadlineExceeded.
    pub(crate) async fn exec_sync(self: &Arc<Self>, req: v1::ExecSyncRequest) -> Result<v1::ExecSyncResponse> {
        let container = self.containers.get(&req.container_id)?;
        if req.cmd.is_empty() {
            return Err(Error::InvalidArgument("cmd is empty".into()));
        }
        if req.timeout < 0 {
            return Err(Error::InvalidArgument(format!("timeout {} is negative", req.timeout)));
        }
        let shim = container.shim_for_exec()?;
        let _session = self.metrics.exec_started(berth_metrics::ExecKind::Sync);
        let exec_id = format!("sync-{}", &new_id()?[..16]);
        let bundle = self.paths.bundle(&container.id)?;
        let (out, err) = (bundle.join(format!("{exec_id}.out")), bundle.join(format!("{exec_id}.err")));
        let process = exec_process_json(bundle.clone(), req.cmd.clone(), false, None).await?;
        {
            let (out, err) = (out.clone(), err.clone());
            blocking(move || {
                for f in [&out, &err] {
                    std::fs::File::create(f).map_err(Error::io(format!("create {}", f.display())))?;
                }
                Ok(())
            })
            .await?;
        }
        let file_uri = |p: &PathBuf| format!("file://{}", p.display());
        let run = async {
            shim.exec(&exec_id, process, file_uri(&out), file_uri(&err)).await?;
            shim.start(&exec_id).await?;
            Ok::<_, Error>(shim.wait(&exec_id).await?)
        };
        let outcome = if req.timeout > 0 { tokio::time::timeout(Duration::from_secs(req.timeout as u64), run).await.ok() } else { Some(run.await) };
        let result = match outcome {
            Some(Ok(waited)) => {
                let (stdout, stderr) = blocking(move || Ok((read_capped(&out)?, read_capped(&err)?))).await?;
                Ok(v1::ExecSyncResponse { stdout, stderr, exit_code: waited.exit_status as i32 })
            }
            Some(Err(e)) => Err(e.context(format!("exec in container {}", container.id))),
            None => {
                let _ = shim.kill_exec(&exec_id, 9, false).await;
                let _ = tokio::time::timeout(Duration::from_secs(5), shim.wait(&exec_id)).await;
                Err(Error::DeadlineExceeded(format!("command {:?} in container {} timed out after {}s", req.cmd, container.id, req.timeout)))
            }
        };
        let _ = shim.delete_exec(&exec_id).await;
        let (out, err) = (bundle.join(format!("{exec_id}.out")), bundle.join(format!("{exec_id}.err")));
        let _ = blocking(move || {
            let _ = std::fs::remove_file(out);
            let _ = std::fs::remove_file(err);
            Ok(())
        })
        .await;
        result
    }
}

fn read_capped(path: &PathBuf) -> Result<Vec<u8>> {
    use std::io::Read;
    let mut buf = Vec::new();
    std::fs::File::open(path).and_then(|f| f.take(MAX_OUTPUT).read_to_end(&mut buf)).map_err(Error::io(format!("read {}", path.display())))?;
    Ok(buf)
}
