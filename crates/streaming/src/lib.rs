//! The CRI streaming server. `Exec`, `Attach` and `PortForward` answer
//! with a URL on this server; the client (crictl, or the kubelet relaying
//! `kubectl`) upgrades an HTTP request to that URL to a stream protocol:
//!
//! - WebSocket with the `v4.channel.k8s.io`/`v5.channel.k8s.io`
//!   subprotocols: every binary message starts with its channel byte
//!   (0 stdin, 1 stdout, 2 stderr, 3 error, 4 resize; 255 close in v5).
//!   Port-forward over WebSocket uses two channels per `port` query value,
//!   or (`SPDY/3.1+portforward.k8s.io`, Kubernetes 1.30+) SPDY frames
//!   tunnelled in binary messages.
//! - SPDY/3.1 (`spdy`, written from the draft 3 spec) with the
//!   `v4.channel.k8s.io` remotecommand streams or `portforward.k8s.io`.
//!
//! The server knows protocols, not containers: what to run, and where to
//! connect, is the [`Backend`]'s business (berthd's runtime).

/// Channel numbers of the `channel.k8s.io` WebSocket protocols, for
/// clients too (berthctl).
pub mod channel {
    pub const STDIN: u8 = 0;
    pub const STDOUT: u8 = 1;
    pub const STDERR: u8 = 2;
    /// The exit status (a metav1.Status as JSON).
    pub const ERROR: u8 = 3;
    /// Terminal size: `{"Width":80,"Height":24}`.
    pub const RESIZE: u8 = 4;
    /// v5: `[255, n]` closes channel n (stdin's EOF).
    pub const CLOSE: u8 = 255;
}

mod over_spdy;
mod portforward;
mod remotecommand;
mod server;
pub mod spdy;
mod tokens;
mod websocket;

use tokio::sync::{mpsc, oneshot};

pub use remotecommand::ResizeStream;
pub use server::{Config, Streaming, TlsFiles};
pub use tokens::Pending;
pub use websocket::{channel_message, tunnel as websocket_tunnel, ChannelMessage};

/// Terminal size, as the resize channel carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
pub struct TermSize {
    #[serde(rename = "Width")]
    pub width: u16,
    #[serde(rename = "Height")]
    pub height: u16,
}

/// The client's side of a process's stdio. A `None` stream was not asked
/// for. The stdin channel closing is EOF; the backend drops stdout and
/// stderr when the process's output has ended.
pub struct ProcessIo {
    pub stdin: Option<mpsc::Receiver<Vec<u8>>>,
    pub stdout: Option<mpsc::Sender<Vec<u8>>>,
    pub stderr: Option<mpsc::Sender<Vec<u8>>>,
    pub resize: Option<mpsc::Receiver<TermSize>>,
    /// Fires (or closes) when the client is gone or idle too long: the
    /// backend must then end the process and free what it holds.
    pub hangup: oneshot::Receiver<()>,
}

/// What the streaming server needs from the runtime.
#[async_trait::async_trait]
pub trait Backend: Send + Sync + 'static {
    /// Runs `cmd` in the container; returns its exit code. An error is a
    /// failure to run it at all.
    async fn exec(&self, container_id: &str, cmd: Vec<String>, tty: bool, io: ProcessIo) -> Result<i32, String>;
    /// Connects to the container's own stdio until it exits (returns its
    /// exit code) or the client leaves.
    async fn attach(&self, container_id: &str, tty: bool, io: ProcessIo) -> Result<i32, String>;
    /// A TCP connection to `port` on localhost inside the pod's network
    /// namespace.
    async fn port_forward(&self, pod_id: &str, port: u16) -> Result<tokio::net::TcpStream, String>;
}
