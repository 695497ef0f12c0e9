//! What exec and attach mean whatever the transport: which streams a
//! request needs, running it on the backend, and the exit status in the
//! form kubectl reads from the error stream (a `metav1.Status`).

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use crate::{tokens::Pending, Backend, ProcessIo, TermSize};

/// The streams a request asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Wanted {
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
}

impl Wanted {
    pub(crate) fn of(p: &Pending) -> Option<Wanted> {
        match p {
            Pending::Exec { tty, stdin, stdout, stderr, .. } | Pending::Attach { tty, stdin, stdout, stderr, .. } => {
                // With a terminal, stderr is merged into stdout.
                Some(Wanted { stdin: *stdin, stdout: *stdout, stderr: *stderr && !*tty, tty: *tty })
            }
            Pending::PortForward { .. } => None,
        }
    }
}

/// The transport's ends of a process's stdio, made for `wanted`.
pub(crate) struct ClientEnds {
    pub stdin: Option<mpsc::Sender<Vec<u8>>>,
    pub stdout: Option<mpsc::Receiver<Vec<u8>>>,
    pub stderr: Option<mpsc::Receiver<Vec<u8>>>,
    pub resize: Option<mpsc::Sender<TermSize>>,
    pub hangup: oneshot::Sender<()>,
}

pub(crate) fn channels(wanted: Wanted) -> (ClientEnds, ProcessIo) {
    fn pair<T>(want: bool) -> (Option<mpsc::Sender<T>>, Option<mpsc::Receiver<T>>) {
        if want {
            let (tx, rx) = mpsc::channel(32);
            (Some(tx), Some(rx))
        } else {
            (None, None)
        }
    }
    let (stdin_tx, stdin_rx) = pair(wanted.stdin);
    let (stdout_tx, stdout_rx) = pair(wanted.stdout);
    let (stderr_tx, stderr_rx) = pair(wanted.stderr);
    let (resize_tx, resize_rx) = pair(wanted.tty);
    let (hangup_tx, hangup_rx) = oneshot::channel();
    (
        ClientEnds { stdin: stdin_tx, stdout: stdout_rx, stderr: stderr_rx, resize: resize_tx, hangup: hangup_tx },
        ProcessIo { stdin: stdin_rx, stdout: stdout_tx, stderr: stderr_tx, resize: resize_rx, hangup: hangup_rx },
    )
}

/// Runs the exec or attach on the backend; its result is the exit code.
pub(crate) async fn run(backend: Arc<dyn Backend>, request: Pending, io: ProcessIo) -> Result<i32, String> {
    match request {
        Pending::Exec { container_id, cmd, tty, .. } => backend.exec(&container_id, cmd, tty, io).await,
        Pending::Attach { container_id, tty, .. } => backend.attach(&container_id, tty, io).await,
        Pending::PortForward { .. } => Err("not an exec or attach request".into()),
    }
}

/// The error stream's message: success, a non-zero exit code (kubectl
/// takes it from `details.causes[reason=ExitCode]`), or a failure.
pub(crate) fn status_json(result: &Result<i32, String>) -> Vec<u8> {
    let value = match result {
        Ok(0) => serde_json::json!({ "metadata": {}, "status": "Success" }),
        Ok(code) => serde_json::json!({
            "metadata": {},
            "status": "Failure",
            "message": format!("command terminated with non-zero exit code: exit status {code}"),
            "reason": "NonZeroExitCode",
            "details": { "causes": [{ "reason": "ExitCode", "message": code.to_string() }] },
        }),
        Err(message) => serde_json::json!({ "metadata": {}, "status": "Failure", "message": message }),
    };
    serde_json::to_vec(&value).expect("a JSON value serialises")
}

/// A resize stream that has not yet made a whole size stays buffered up
/// to this much; a real one is `{"Width":65535,"Height":65535}`.
const MAX_PENDING_RESIZE: usize = 4096;

/// The resize stream (a sequence of JSON objects, one per message from
/// real clients, but a transport may split or join them), read as it
/// arrives. Public for the fuzz targets (`crates/fuzz`).
#[derive(Debug, Default)]
pub struct ResizeStream {
    pending: Vec<u8>,
}

impl ResizeStream {
    /// The sizes `bytes` completes. What can never be a size (not JSON,
    /// JSON of another shape, an object that does not end) is dropped:
    /// kept, it would hold back every later resize and grow with each
    /// message (the buffer did, before berth checked this).
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<TermSize> {
        self.pending.extend_from_slice(bytes);
        let mut stream = serde_json::Deserializer::from_slice(&self.pending).into_iter::<TermSize>();
        let (mut sizes, mut consumed) = (Vec::new(), 0);
        loop {
            match stream.next() {
                Some(Ok(size)) => {
                    consumed = stream.byte_offset();
                    sizes.push(size);
                }
                // An object cut short: the rest is in the next message.
                Some(Err(e)) if e.is_eof() => break,
                Some(Err(_)) => {
                    consumed = self.pending.len();
                    break;
                }
                None => break,
            }
        }
        self.pending.drain(..consumed);
        if self.pending.len() > MAX_PENDING_RESIZE {
            self.pending.clear();
        }
        sizes
    }

    /// Bytes held for a size not yet complete.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_read_the_way_kubectl_reads_them() {
        let ok: serde_json::Value = serde_json::from_slice(&status_json(&Ok(0))).unwrap();
        assert_eq!(ok["status"], "Success");
        let three: serde_json::Value = serde_json::from_slice(&status_json(&Ok(3))).unwrap();
        assert_eq!((three["status"].as_str(), three["reason"].as_str()), (Some("Failure"), Some("NonZeroExitCode")));
        assert_eq!(three["details"]["causes"][0], serde_json::json!({ "reason": "ExitCode", "message": "3" }));
        let failed: serde_json::Value = serde_json::from_slice(&status_json(&Err("no such file".into()))).unwrap();
        assert_eq!(failed["message"], "no such file");
    }

    #[test]
    fn resize_messages_may_arrive_split_or_joined() {
        let mut stream = ResizeStream::default();
        assert_eq!(stream.feed(br#"{"Width":80,"Height":24}{"Width":1"#), [TermSize { width: 80, height: 24 }]);
        assert_eq!(stream.feed(br#"00,"Height":40}"#), [TermSize { width: 100, height: 40 }]);
        assert_eq!(stream.pending(), 0);
    }

    #[test]
    fn a_bad_resize_message_does_not_block_the_next() {
        let mut stream = ResizeStream::default();
        assert!(stream.feed(b"not json").is_empty());
        assert_eq!(stream.pending(), 0);
        assert!(stream.feed(br#"{"Width":-1,"Height":24}"#).is_empty());
        assert_eq!(stream.feed(br#"{"Width":80,"Height":24}"#), [TermSize { width: 80, height: 24 }]);
    }

    #[test]
    fn a_terminal_merges_stderr_into_stdout() {
        let p = Pending::Exec { container_id: "c".into(), cmd: vec!["sh".into()], tty: true, stdin: true, stdout: true, stderr: true };
        assert_eq!(Wanted::of(&p), Some(Wanted { stdin: true, stdout: true, stderr: false, tty: true }));
    }
}
