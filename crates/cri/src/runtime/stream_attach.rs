//! An attach for the streaming server: a connection to the shim's attach
//! socket (frames as in `berth_oci::attach`). For a container not yet
//! started it first waits for StartContainer to create the task, and is
//! registered with the shim before the process starts. The shim copies
//! the container's output to it as it goes to the log, and takes stdin
//! and resizes from it. The shim closes it when the output ends; the
//! answer is then the container's exit code.

use std::sync::Arc;

use berth_streaming::ProcessIo;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::UnixStream,
};

use berth_oci::attach::{frame, ACK, CLOSE_STDIN, RESIZE, STDERR, STDIN, STDOUT};

use super::Runtime;
use crate::{
    error::{Error, Result},
    state::ContainerState,
};

impl Runtime {
    pub(crate) async fn stream_attach(self: &Arc<Self>, container_id: &str, mut io: ProcessIo) -> Result<i32> {
        let container = self.containers.get(container_id)?;
        // Before Start: wait for the task (the shim's stdio), register
        // with the shim, and only then let StartContainer go on.
        let early = if container.state() == ContainerState::Created {
            let arrival = container.early_attach.arrival();
            loop {
                tokio::select! {
                    () = container.early_attach.wait_task_created() => break,
                    // Start failed: the container is Exited.
                    () = container.wait_exited() => return Ok(container.record().exit_code),
                    _ = &mut io.hangup => return Ok(0),
                    () = tokio::time::sleep(std::time::Duration::from_secs(1)) => {
                        // Removed before it ever started.
                        self.containers.get(container_id)?;
                    }
                }
            }
            Some(arrival)
        } else {
            container.shim_for_exec()?;
            None
        };
        let stdin_once = container.record().config.stdin_once;
        let path = self.paths.attach_socket(&container.id);
        let conn =
            UnixStream::connect(&path).await.map_err(|e| Error::Unavailable(format!("attach to container {}: {}: {e}", container.id, path.display())))?;
        let (mut read, mut write) = conn.into_split();
        let header = serde_json::json!({ "stdout": io.stdout.is_some(), "stderr": io.stderr.is_some(), "ack": early.is_some() });
        write.write_all(format!("{header}\n").as_bytes()).await.map_err(|e| Error::Unavailable(format!("attach: {e}")))?;
        if let Some(arrival) = early {
            // The shim's ACK comes before any output frame: from here on
            // nothing the container writes can miss this client.
            let mut head = [0u8; 5];
            read.read_exact(&mut head).await.map_err(|e| Error::Unavailable(format!("attach before start: no acknowledgement from the shim: {e}")))?;
            if head[0] != ACK {
                return Err(Error::Internal(format!("attach before start: the shim sent frame kind {} before its acknowledgement", head[0])));
            }
            // The terminal's size, if the client sent it already, goes in
            // before the process starts.
            if let Some(resize) = io.resize.as_mut() {
                while let Ok(size) = resize.try_recv() {
                    let _ = write.write_all(&frame(RESIZE, &[size.width.to_be_bytes(), size.height.to_be_bytes()].concat())).await;
                }
            }
            if let Some(arrival) = arrival {
                let _ = arrival.send(());
            }
        }
        let (stdout, stderr) = (io.stdout.take(), io.stderr.take());
        let output = async move {
            let mut head = [0u8; 5];
            while read.read_exact(&mut head).await.is_ok() {
                let mut data = vec![0u8; u32::from_be_bytes(head[1..5].try_into().expect("4 bytes")) as usize];
                if read.read_exact(&mut data).await.is_err() {
                    break;
                }
                let to = match head[0] {
                    STDOUT => &stdout,
                    STDERR => &stderr,
                    _ => continue,
                };
                if let Some(tx) = to {
                    if tx.send(data).await.is_err() {
                        break;
                    }
                }
            }
        };
        let (mut stdin, mut resize) = (io.stdin.take(), io.resize.take());
        let input = async move {
            loop {
                let (kind, payload) = tokio::select! {
                    data = async { stdin.as_mut()?.recv().await }, if stdin.is_some() => match data {
                        Some(d) => (STDIN, d),
                        None => {
                            stdin = None;
                            // Only a stdin_once container loses its stdin
                            // with its client; others wait for the next.
                            if !stdin_once { continue }
                            (CLOSE_STDIN, Vec::new())
                        }
                    },
                    size = async { resize.as_mut()?.recv().await }, if resize.is_some() => match size {
                        Some(s) => (RESIZE, [s.width.to_be_bytes(), s.height.to_be_bytes()].concat()),
                        None => { resize = None; continue }
                    },
                    else => std::future::pending().await,
                };
                if write.write_all(&frame(kind, &payload)).await.is_err() {
                    return;
                }
            }
        };
        tokio::select! {
            () = output => {}
            _ = input => {}
            _ = &mut io.hangup => return Ok(0),
        }
        // The output ended: the container exited. Its exit code is the
        // exit monitor's to record.
        tokio::select! {
            () = container.wait_exited() => {}
            _ = &mut io.hangup => return Ok(0),
        }
        let code = container.record().exit_code;
        Ok(code)
    }
}
