//! Attach: clients on a unix socket beside the shim's own
//! (`<shim socket>.attach`) see the container's output as it is written to
//! the log, and may feed its stdin and resize its terminal. Several
//! clients at once; one leaving changes nothing for the others.
//!
//! The wire form is `berth_oci::attach` (shared with berthd).
//!
//! When the container's output ends (it exited), the shim closes every
//! client's connection: that EOF is the end of the attach.

use std::{
    os::fd::AsRawFd,
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex, Weak,
    },
    time::Duration,
};

use berth_oci::attach::{frame, ACK, CLOSE_STDIN, RESIZE, STDERR, STDIN, STDOUT};
use tokio::{
    io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader},
    net::{unix::OwnedWriteHalf, UnixListener, UnixStream},
    sync::mpsc,
    task::AbortHandle,
};

use crate::{cri_log::Stream, state::Proc};

/// A client slower than this to take a frame (or to send its header) is
/// dropped, so it cannot hold up anyone.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// Output queued for one client beyond which it is dropped: the container
/// and the log never wait for a client.
const MAX_QUEUED: usize = 1 << 20;
const MAX_FRAME: usize = 1 << 20;

struct Client {
    /// Frames for the client's writer task, which sends them in order.
    frames: mpsc::UnboundedSender<Vec<u8>>,
    queued: Arc<AtomicUsize>,
    stdout: bool,
    stderr: bool,
}

#[derive(Default)]
pub struct Attachments {
    clients: Mutex<Vec<Client>>,
    /// Set once output ended: late clients are turned away at once.
    closed: Mutex<bool>,
    listener: Mutex<Option<(PathBuf, AbortHandle)>>,
}

impl Attachments {
    /// Queues output for every client that asked for its stream.
    pub fn broadcast(&self, stream: Stream, data: &[u8]) {
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        if clients.is_empty() {
            return;
        }
        let kind = match stream {
            Stream::Stdout => STDOUT,
            Stream::Stderr => STDERR,
        };
        let frame = frame(kind, data);
        clients.retain_mut(|c| {
            let wanted = if kind == STDOUT { c.stdout } else { c.stderr };
            !wanted || c.queue(frame.clone())
        });
    }

    /// The output has ended: every client gets its EOF (after the output
    /// queued for it).
    pub fn close_all(&self) {
        *self.closed.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.clients.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    /// Listens on `path` for clients of `proc`: a task on the event loop
    /// accepts them, and each client has a task reading its input and one
    /// writing its output.
    pub fn listen(self: &Arc<Self>, path: &Path, proc: Weak<Proc>) -> std::io::Result<()> {
        let _ = std::fs::remove_file(path);
        let listener = UnixListener::bind(path)?;
        let this = Arc::downgrade(self);
        let accepting = tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                let (Some(this), Some(proc)) = (this.upgrade(), proc.upgrade()) else { break };
                tokio::spawn(async move {
                    if let Err(e) = this.add(conn, proc).await {
                        log::debug!("attach client: {e}");
                    }
                });
            }
        });
        *self.listener.lock().unwrap_or_else(|e| e.into_inner()) = Some((path.to_path_buf(), accepting.abort_handle()));
        Ok(())
    }

    /// Stops listening and removes the socket (on Delete).
    pub fn stop(&self) {
        if let Some((path, accepting)) = self.listener.lock().unwrap_or_else(|e| e.into_inner()).take() {
            accepting.abort();
            let _ = std::fs::remove_file(path);
        }
        self.close_all();
    }

    /// Serves one client until it goes: its header, then its input.
    async fn add(&self, conn: UnixStream, proc: Arc<Proc>) -> std::io::Result<()> {
        let (read, write) = conn.into_split();
        let mut reader = BufReader::new(read);
        let mut line = String::new();
        tokio::time::timeout(WRITE_TIMEOUT, reader.read_line(&mut line)).await.map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
        let header: serde_json::Value = serde_json::from_str(&line).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
        let wants = |stream: &str| header[stream].as_bool().unwrap_or(false);
        {
            let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
            if *self.closed.lock().unwrap_or_else(|e| e.into_inner()) {
                hang_up(&write);
                return Ok(());
            }
            let (frames, queue) = mpsc::unbounded_channel();
            let client = Client { frames, queued: Arc::default(), stdout: wants("stdout"), stderr: wants("stderr") };
            // Under the clients' lock: no output frame can come first.
            if wants("ack") {
                client.queue(frame(ACK, &[]));
            }
            tokio::spawn(send_frames(write, queue, client.queued.clone()));
            clients.push(client);
        }
        read_input(reader, &proc).await
    }
}

impl Client {
    /// False if the client is gone or too far behind (then it is dropped).
    fn queue(&self, frame: Vec<u8>) -> bool {
        let len = frame.len();
        if self.queued.fetch_add(len, Ordering::Relaxed) + len > MAX_QUEUED {
            log::warn!("attach client too slow to take output: dropped");
            return false;
        }
        self.frames.send(frame).is_ok()
    }
}

/// A client's output, in order; when the queue ends (output ended, or the
/// client was dropped) the connection is shut down both ways, which ends
/// its input task too.
async fn send_frames(mut socket: OwnedWriteHalf, mut queue: mpsc::UnboundedReceiver<Vec<u8>>, queued: Arc<AtomicUsize>) {
    while let Some(frame) = queue.recv().await {
        match tokio::time::timeout(WRITE_TIMEOUT, socket.write_all(&frame)).await {
            Ok(Ok(())) => {}
            _ => break,
        }
        queued.fetch_sub(frame.len(), Ordering::Relaxed);
    }
    hang_up(&socket);
}

fn hang_up(socket: &OwnedWriteHalf) {
    let stream: &UnixStream = socket.as_ref();
    // SAFETY: shutdown(2) on a socket fd the half borrows from its stream.
    unsafe { libc::shutdown(stream.as_raw_fd(), libc::SHUT_RDWR) };
}

/// The client's frames: stdin, its close, resizes. Ends at the client's EOF.
async fn read_input(mut from: impl AsyncRead + Unpin, proc: &Proc) -> std::io::Result<()> {
    let mut head = [0u8; 5];
    loop {
        match from.read_exact(&mut head).await {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e),
        }
        let len = u32::from_be_bytes(head[1..5].try_into().expect("4 bytes")) as usize;
        if len > MAX_FRAME {
            return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "attach frame too large"));
        }
        let mut payload = vec![0u8; len];
        from.read_exact(&mut payload).await?;
        match head[0] {
            STDIN => proc.io.write_stdin(&payload).await,
            CLOSE_STDIN => proc.io.close_stdin(),
            RESIZE if len == 4 => {
                let (w, h) = (u16::from_be_bytes([payload[0], payload[1]]), u16::from_be_bytes([payload[2], payload[3]]));
                let _ = proc.io.resize(w as u32, h as u32);
            }
            _ => {}
        }
    }
}
