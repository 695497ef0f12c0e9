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
    io::{BufRead, BufReader, Read, Write},
    os::{
        fd::AsRawFd,
        unix::net::{UnixListener, UnixStream},
    },
    path::{Path, PathBuf},
    sync::{Arc, Mutex, Weak},
    time::Duration,
};

use berth_oci::attach::{frame, ACK, CLOSE_STDIN, RESIZE, STDERR, STDIN, STDOUT};

use crate::{cri_log::Stream, state::Proc};

/// A client slower than this to take output is dropped, so it cannot hold
/// up the container's output (or the log).
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
const MAX_FRAME: usize = 1 << 20;

struct Client {
    socket: UnixStream,
    stdout: bool,
    stderr: bool,
}

#[derive(Default)]
pub struct Attachments {
    clients: Mutex<Vec<Client>>,
    /// Set once output ended: late clients are turned away at once.
    closed: Mutex<bool>,
    listener: Mutex<Option<(PathBuf, UnixListener)>>,
}

impl Attachments {
    /// Sends output to every client that asked for its stream.
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
            !wanted || c.socket.write_all(&frame).is_ok()
        });
    }

    /// The output has ended: every client gets its EOF.
    pub fn close_all(&self) {
        *self.closed.lock().unwrap_or_else(|e| e.into_inner()) = true;
        for c in self.clients.lock().unwrap_or_else(|e| e.into_inner()).drain(..) {
            let _ = c.socket.shutdown(std::net::Shutdown::Both);
        }
    }

    /// Listens on `path` for clients of `proc` (a thread per client reads
    /// its input).
    pub fn listen(self: &Arc<Self>, path: &Path, proc: Weak<Proc>) -> std::io::Result<()> {
        let _ = std::fs::remove_file(path);
        let listener = UnixListener::bind(path)?;
        let accepting = listener.try_clone()?;
        *self.listener.lock().unwrap_or_else(|e| e.into_inner()) = Some((path.to_path_buf(), listener));
        let this = Arc::downgrade(self);
        std::thread::Builder::new().name("attach".into()).stack_size(64 * 1024).spawn(move || {
            for conn in accepting.incoming() {
                let Ok(conn) = conn else { break };
                let (Some(this), Some(proc)) = (this.upgrade(), proc.upgrade()) else { break };
                if let Err(e) = this.add(conn, proc) {
                    log::warn!("attach client: {e}");
                }
            }
        })?;
        Ok(())
    }

    /// Stops listening and removes the socket (on Delete).
    pub fn stop(&self) {
        if let Some((path, listener)) = self.listener.lock().unwrap_or_else(|e| e.into_inner()).take() {
            // SAFETY: shutdown(2) on a socket fd we own wakes the accept loop.
            unsafe { libc::shutdown(listener.as_raw_fd(), libc::SHUT_RDWR) };
            let _ = std::fs::remove_file(path);
        }
        self.close_all();
    }

    fn add(&self, conn: UnixStream, proc: Arc<Proc>) -> std::io::Result<()> {
        conn.set_read_timeout(Some(WRITE_TIMEOUT))?;
        let mut reader = BufReader::new(conn.try_clone()?);
        let mut line = String::new();
        reader.read_line(&mut line)?;
        let header: serde_json::Value = serde_json::from_str(&line).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
        let wants = |stream: &str| header[stream].as_bool().unwrap_or(false);
        conn.set_read_timeout(None)?;
        conn.set_write_timeout(Some(WRITE_TIMEOUT))?;
        {
            let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
            if *self.closed.lock().unwrap_or_else(|e| e.into_inner()) {
                let _ = conn.shutdown(std::net::Shutdown::Both);
                return Ok(());
            }
            let mut socket = conn.try_clone()?;
            if wants("ack") {
                // Under the clients' lock: no output frame can come first.
                socket.write_all(&frame(ACK, &[]))?;
            }
            clients.push(Client { socket, stdout: wants("stdout"), stderr: wants("stderr") });
        }
        std::thread::Builder::new().name("attach-in".into()).stack_size(64 * 1024).spawn(move || {
            if let Err(e) = read_input(reader, &proc) {
                log::debug!("attach client input: {e}");
            }
        })?;
        Ok(())
    }
}

/// The client's frames: stdin, its close, resizes. Ends at the client's EOF.
fn read_input(mut from: impl Read, proc: &Proc) -> std::io::Result<()> {
    let mut head = [0u8; 5];
    loop {
        match from.read_exact(&mut head) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e),
        }
        let len = u32::from_be_bytes(head[1..5].try_into().expect("4 bytes")) as usize;
        if len > MAX_FRAME {
            return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "attach frame too large"));
        }
        let mut payload = vec![0u8; len];
        from.read_exact(&mut payload)?;
        match head[0] {
            STDIN => proc.io.write_stdin(&payload),
            CLOSE_STDIN => proc.io.close_stdin(),
            RESIZE if len == 4 => {
                let (w, h) = (u16::from_be_bytes([payload[0], payload[1]]), u16::from_be_bytes([payload[2], payload[3]]));
                let _ = proc.io.resize(w as u32, h as u32);
            }
            _ => {}
        }
    }
}
