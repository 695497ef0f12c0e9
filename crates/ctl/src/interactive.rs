//! `berthctl exec -i/-t` and `berthctl attach`: through berthd's
//! streaming server, as `crictl exec -it` does, over WebSocket
//! (`v5.channel.k8s.io`). With -t
//! the local terminal goes raw for the session and its size follows
//! SIGWINCH; with -i local stdin is sent, and its EOF closes the
//! command's stdin.

use std::{
    io::{Read, Write},
    os::fd::AsFd,
    path::Path,
};

use anyhow::Context;
use futures_util::{SinkExt, StreamExt};
use k8s_cri::v1::{self, runtime_service_client::RuntimeServiceClient};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::{client::IntoClientRequest, Message};
use tonic::transport::Channel;

use crate::{client::rpc_error, containers::clients, resolve};

use berth_streaming::channel::{CLOSE, ERROR, RESIZE, STDERR, STDIN, STDOUT};

pub async fn exec(socket: &Path, reference: &str, command: Vec<String>, stdin: bool, tty: bool) -> anyhow::Result<i32> {
    anyhow::ensure!(!command.is_empty(), "name a command to run");
    let mut c = clients(socket).await?;
    let id = resolve::container(&mut c.rt, reference).await?.id;
    let req = v1::ExecRequest { container_id: id, cmd: command, tty, stdin, stdout: true, stderr: !tty };
    let url = c.rt.exec(req).await.map_err(rpc_error("exec"))?.into_inner().url;
    session(&url, stdin, tty).await
}

/// `berthctl attach`: the container's own stdio, the way it was created
/// (its terminal, its stdin), until it exits; its exit code.
pub async fn attach(socket: &Path, reference: &str) -> anyhow::Result<i32> {
    let mut c = clients(socket).await?;
    let id = resolve::container(&mut c.rt, reference).await?.id;
    let status = c.rt.container_status(v1::ContainerStatusRequest { container_id: id.clone(), verbose: true }).await.map_err(rpc_error("attach"))?.into_inner();
    let info: serde_json::Value = status.info.get("info").and_then(|i| serde_json::from_str(i).ok()).unwrap_or_default();
    let (tty, stdin) = (info["tty"].as_bool().unwrap_or(false), info["stdin"].as_bool().unwrap_or(false));
    let req = v1::AttachRequest { container_id: id, stdin, tty, stdout: true, stderr: !tty };
    let url = c.rt.attach(req).await.map_err(rpc_error("attach"))?.into_inner().url;
    session(&url, stdin, tty).await
}

/// `run -i/-t`: an attach to the Created container `id`, connected before
/// it starts, so that nothing it writes is missed; `Session::run` after
/// StartContainer.
pub async fn attach_before_start(rt: &mut RuntimeServiceClient<Channel>, id: &str, stdin: bool, tty: bool) -> anyhow::Result<Session> {
    let req = v1::AttachRequest { container_id: id.into(), stdin, tty, stdout: true, stderr: !tty };
    let url = rt.attach(req).await.map_err(rpc_error("attach"))?.into_inner().url;
    Ok(Session { ws: connect(&url).await?, stdin, tty })
}

type WebSocket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A stream connected to berthd's streaming server.
pub struct Session {
    ws: WebSocket,
    stdin: bool,
    tty: bool,
}

impl Session {
    /// Local stdio in and out until the stream ends; the exit code.
    pub async fn run(self) -> anyhow::Result<i32> {
        stream(self.ws, self.stdin, self.tty).await
    }
}

async fn connect(url: &str) -> anyhow::Result<WebSocket> {
    let ws_url =
        url.strip_prefix("http://").map(|rest| format!("ws://{rest}")).with_context(|| format!("berthctl speaks plain-http streaming; berthd gave {url}"))?;
    let mut request = ws_url.into_client_request()?;
    request.headers_mut().insert("Sec-WebSocket-Protocol", "v5.channel.k8s.io".parse()?);
    let (ws, _) = tokio_tungstenite::connect_async(request).await.context("connect to berthd's streaming server")?;
    Ok(ws)
}

/// One stream session on `url`: local stdio in and out, the exit code.
async fn session(url: &str, stdin: bool, tty: bool) -> anyhow::Result<i32> {
    stream(connect(url).await?, stdin, tty).await
}

async fn stream(ws: WebSocket, stdin: bool, tty: bool) -> anyhow::Result<i32> {
    let (mut sink, mut source) = ws.split();

    let (out, mut out_rx) = mpsc::channel::<Message>(16);
    tokio::spawn(async move {
        while let Some(m) = out_rx.recv().await {
            if sink.send(m).await.is_err() {
                return;
            }
        }
    });
    let _raw = if tty { RawTerminal::enable() } else { None };
    if tty {
        spawn_resizer(out.clone()).await;
    }
    if stdin {
        spawn_stdin_reader(out.clone());
    }
    drop(out);

    let mut status = None;
    while let Some(message) = source.next().await {
        let data = match message {
            Ok(Message::Binary(b)) => b,
            Ok(Message::Close(_)) | Err(_) => break,
            Ok(_) => continue,
        };
        let Some((&channel, payload)) = data.split_first() else { continue };
        match channel {
            STDOUT => {
                let mut o = std::io::stdout().lock();
                o.write_all(payload)?;
                o.flush()?;
            }
            STDERR => std::io::stderr().write_all(payload)?,
            ERROR => status = Some(serde_json::from_slice::<serde_json::Value>(payload).context("exit status")?),
            _ => {}
        }
    }
    drop(_raw);
    let status = status.context("the stream ended without an exit status")?;
    if status["status"] == "Success" {
        return Ok(0);
    }
    let code =
        status["details"]["causes"].as_array().into_iter().flatten().find(|c| c["reason"] == "ExitCode").and_then(|c| c["message"].as_str()?.parse().ok());
    code.with_context(|| format!("exec: {}", status["message"].as_str().unwrap_or("failed")))
}

fn framed(channel: u8, data: &[u8]) -> Message {
    Message::binary([&[channel], data].concat())
}

/// Local stdin, read on its own thread (stdin cannot be read without
/// blocking); EOF becomes v5's close of the stdin channel.
fn spawn_stdin_reader(out: mpsc::Sender<Message>) {
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 32 * 1024];
        let mut stdin = std::io::stdin().lock();
        loop {
            match stdin.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if out.blocking_send(framed(STDIN, &buf[..n])).is_err() {
                        return;
                    }
                }
            }
        }
        let _ = out.blocking_send(framed(CLOSE, &[STDIN]));
    });
}

/// The terminal's size now, and again at every SIGWINCH.
async fn spawn_resizer(out: mpsc::Sender<Message>) {
    let send_size = |out: &mpsc::Sender<Message>| {
        if let Some((cols, rows)) = terminal_size() {
            let _ = out.try_send(framed(RESIZE, format!(r#"{{"Width":{cols},"Height":{rows}}}"#).as_bytes()));
        }
    };
    send_size(&out);
    if let Ok(mut winch) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change()) {
        tokio::spawn(async move {
            while winch.recv().await.is_some() {
                send_size(&out);
            }
        });
    }
}

fn terminal_size() -> Option<(u16, u16)> {
    crossterm::terminal::size().ok().filter(|(cols, _)| *cols > 0)
}

/// The local terminal in raw mode (keys go to the container as typed),
/// restored when dropped.
struct RawTerminal(nix::sys::termios::Termios);

impl RawTerminal {
    fn enable() -> Option<Self> {
        use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg};
        let stdin = std::io::stdin();
        let saved = tcgetattr(stdin.as_fd()).ok()?;
        let mut raw = saved.clone();
        cfmakeraw(&mut raw);
        tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw).ok()?;
        Some(Self(saved))
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        let _ = nix::sys::termios::tcsetattr(std::io::stdin().as_fd(), nix::sys::termios::SetArg::TCSANOW, &self.0);
    }
}
