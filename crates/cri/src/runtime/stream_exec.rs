//! An exec for the streaming server (`kubectl exec`, `crictl exec -it`):
//! stdio through fifos in the bundle, which the shim opens as the
//! process's stdio (or, with a terminal, copies to and from the pty).
//!
//! berthd opens its read ends before the process starts, so output a
//! quick command writes and exits after stays in the fifo until read. The
//! stdin fifo is opened read-write, so opening it never waits for the shim
//! and closing it is the process's EOF.

use std::{path::PathBuf, sync::Arc, time::Duration};

use berth_streaming::ProcessIo;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::unix::pipe,
    sync::mpsc,
};

use super::{exec_spec::exec_process_json, Runtime};
use crate::{
    error::{blocking, Error, Result},
    shim_client::ExecStdio,
    state::new_id,
};

/// After the process exits, how long its output may still drain: a
/// background child holding the fifo must not hold the stream for ever.
const DRAIN: Duration = Duration::from_secs(2);

/// How long a terminal exec waits for the client's first size.
const FIRST_SIZE_WAIT: Duration = Duration::from_millis(500);

impl Runtime {
    pub(crate) async fn stream_exec(self: &Arc<Self>, container_id: &str, cmd: Vec<String>, tty: bool, io: ProcessIo) -> Result<i32> {
        let container = self.containers.get(container_id)?;
        let shim = container.shim_for_exec()?;
        let _session = self.metrics.exec_started(berth_metrics::ExecKind::Stream);
        let exec_id = format!("exec-{}", &new_id()?[..16]);
        let bundle = self.paths.bundle(&container.id)?;
        let fifo = |suffix: &str, wanted: bool| wanted.then(|| bundle.join(format!("{exec_id}.{suffix}")));
        let paths = (fifo("in", io.stdin.is_some()), fifo("out", io.stdout.is_some()), fifo("err", io.stderr.is_some()));
        let fifos: Vec<PathBuf> = [&paths.0, &paths.1, &paths.2].into_iter().flatten().cloned().collect();
        let made = fifos.clone();
        blocking(move || {
            for f in &made {
                nix::unistd::mkfifo(f, nix::sys::stat::Mode::from_bits_truncate(0o600)).map_err(Error::io(format!("mkfifo {}", f.display())))?;
            }
            Ok(())
        })
        .await?;
        let result = self.run_streamed(&shim, &exec_id, &bundle, cmd, tty, io, paths).await;
        let _ = shim.delete_exec(&exec_id).await;
        let _ = blocking(move || {
            for f in fifos {
                let _ = std::fs::remove_file(f);
            }
            Ok(())
        })
        .await;
        result.map_err(|e| e.context(format!("exec in container {}", container.id)))
    }

    #[allow(clippy::too_many_arguments)]
    async fn run_streamed(
        &self,
        shim: &crate::shim_client::Shim,
        exec_id: &str,
        bundle: &std::path::Path,
        cmd: Vec<String>,
        tty: bool,
        mut io: ProcessIo,
        (stdin_path, stdout_path, stderr_path): (Option<PathBuf>, Option<PathBuf>, Option<PathBuf>),
    ) -> Result<i32> {
        let fifo_err = |p: &PathBuf, e: std::io::Error| Error::io(format!("open {}", p.display()))(e);
        let readers = [(&stdout_path, io.stdout.take()), (&stderr_path, io.stderr.take())]
            .into_iter()
            .filter_map(|(path, tx)| Some((path.as_ref()?, tx?)))
            .map(|(path, tx)| Ok((pipe::OpenOptions::new().open_receiver(path).map_err(|e| fifo_err(path, e))?, tx)))
            .collect::<Result<Vec<_>>>()?;
        let stdin_writer = match &stdin_path {
            Some(p) => Some(pipe::OpenOptions::new().read_write(true).open_sender(p).map_err(|e| fifo_err(p, e))?),
            None => None,
        };
        let uri = |p: &Option<PathBuf>| p.as_ref().map(|p| p.display().to_string()).unwrap_or_default();
        // Clients send the terminal's size as soon as they connect: wait
        // for it briefly, so the command starts with it (a shell's first
        // prompt, `stty size`) rather than racing the resize.
        let mut first_size = None;
        if let (true, Some(sizes)) = (tty, io.resize.as_mut()) {
            if let Ok(Some(size)) = tokio::time::timeout(FIRST_SIZE_WAIT, sizes.recv()).await {
                first_size = Some((size.width, size.height));
            }
        }
        let process = exec_process_json(bundle.to_path_buf(), cmd, tty, first_size).await?;
        let stdio = ExecStdio { stdin: uri(&stdin_path), stdout: uri(&stdout_path), stderr: uri(&stderr_path), terminal: tty };
        shim.exec_with_stdio(exec_id, process, stdio).await?;
        shim.start(exec_id).await?;

        let outputs: Vec<_> = readers.into_iter().map(|(rx, tx)| tokio::spawn(copy_out(rx, tx))).collect();
        let stdin_task = match (stdin_writer, io.stdin.take()) {
            (Some(w), Some(rx)) => Some(tokio::spawn(copy_in(rx, w))),
            _ => None,
        };
        let resize_task = io.resize.take().map(|mut sizes| {
            let (shim, exec_id) = (shim.clone(), exec_id.to_string());
            tokio::spawn(async move {
                while let Some(size) = sizes.recv().await {
                    if let Err(e) = shim.resize_pty(&exec_id, size.width as u32, size.height as u32).await {
                        tracing::debug!(exec_id, error = %e, "resize");
                    }
                }
            })
        });
        let wait = shim.wait(exec_id);
        tokio::pin!(wait);
        let waited = tokio::select! {
            w = &mut wait => w,
            _ = &mut io.hangup => {
                // The client is gone: so is its command.
                tracing::info!(exec_id, "stream client gone; killing the exec");
                let _ = shim.kill_exec(exec_id, 9, false).await;
                wait.await
            }
        };
        for o in outputs {
            let abort = o.abort_handle();
            if tokio::time::timeout(DRAIN, o).await.is_err() {
                abort.abort();
            }
        }
        for t in [stdin_task, resize_task].into_iter().flatten() {
            t.abort();
        }
        Ok(waited?.exit_status as i32)
    }
}

async fn copy_out(mut from: pipe::Receiver, to: mpsc::Sender<Vec<u8>>) {
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if to.send(buf[..n].to_vec()).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// The client's stdin into the fifo; the client's EOF closes it.
async fn copy_in(mut from: mpsc::Receiver<Vec<u8>>, mut to: pipe::Sender) {
    while let Some(data) = from.recv().await {
        if to.write_all(&data).await.is_err() {
            return;
        }
    }
}
