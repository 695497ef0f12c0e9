//! The channel protocols over WebSocket. Each binary message is one
//! channel's bytes, after a channel-number byte.
//!
//! - exec/attach (`v4.channel.k8s.io`, `v5.channel.k8s.io`): 0 stdin,
//!   1 stdout, 2 stderr, 3 error (the exit status), 4 resize (JSON). v5
//!   adds `[255, n]`: the client closed channel n (stdin's EOF).
//! - port-forward (`v4.channel.k8s.io`, or no subprotocol): for the i-th
//!   `port` query value, channel 2i carries data and 2i+1 errors; the
//!   first message on each is the port, 2 bytes little-endian.

use std::{sync::Arc, time::Duration};

use futures_util::{SinkExt, StreamExt};
use http_body_util::Full;
use hyper::{body::Bytes, body::Incoming, header, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::sync::mpsc;
use tokio_tungstenite::{
    tungstenite::{
        handshake::derive_accept_key,
        protocol::{frame::coding::CloseCode, CloseFrame, Role},
        Message,
    },
    WebSocketStream,
};

use crate::{
    portforward::forward,
    remotecommand::{self, channels, status_json, ResizeStream, Wanted},
    server::{offered, plain, Activity},
    tokens::Pending,
    Backend,
};

const V5: &str = "v5.channel.k8s.io";
const V4: &str = "v4.channel.k8s.io";
/// Port-forward as SPDY frames carried in binary messages (what kubectl
/// and crictl send since Kubernetes 1.30 when asked for websockets).
const SPDY_TUNNEL: &str = "SPDY/3.1+portforward.k8s.io";

use crate::channel::{CLOSE, ERROR, RESIZE, STDERR, STDIN, STDOUT};

pub(crate) fn upgrade(mut req: Request<Incoming>, request: Pending, backend: Arc<dyn Backend>, idle: Duration, creation: Duration) -> Response<Full<Bytes>> {
    let Some(key) = req.headers().get("sec-websocket-key").map(|k| derive_accept_key(k.as_bytes())) else {
        return plain(StatusCode::BAD_REQUEST, "websocket upgrade without Sec-WebSocket-Key".into());
    };
    let offers = offered(&req, "sec-websocket-protocol");
    let ours: &[&str] = match request {
        Pending::PortForward { .. } => &[SPDY_TUNNEL, V4],
        _ => &[V5, V4],
    };
    let chosen = ours.iter().find(|p| offers.iter().any(|o| o == *p)).copied();
    if chosen.is_none() && !(offers.is_empty() && matches!(request, Pending::PortForward { .. })) {
        return plain(StatusCode::BAD_REQUEST, format!("no supported websocket subprotocol in {offers:?}; berthd speaks {ours:?}"));
    }
    let ports = match &request {
        Pending::PortForward { .. } if chosen == Some(SPDY_TUNNEL) => Vec::new(),
        Pending::PortForward { .. } => match ports_of(req.uri().query().unwrap_or("")) {
            Ok(p) => p,
            Err(e) => return plain(StatusCode::BAD_REQUEST, e),
        },
        _ => Vec::new(),
    };
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let upgraded = match on_upgrade.await {
            Ok(u) => u,
            Err(e) => return tracing::debug!(error = %e, "websocket upgrade failed"),
        };
        let ws = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
        match request {
            p @ Pending::PortForward { .. } if chosen == Some(SPDY_TUNNEL) => crate::over_spdy::serve_session(tunnel(ws), p, backend, idle, creation).await,
            Pending::PortForward { pod_id } => port_forward(ws, pod_id, ports, backend, idle).await,
            other => remote_command(ws, chosen == Some(V5), other, backend, idle).await,
        }
    });
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = response.headers_mut();
    h.insert(header::UPGRADE, header::HeaderValue::from_static("websocket"));
    h.insert(header::CONNECTION, header::HeaderValue::from_static("Upgrade"));
    h.insert(header::SEC_WEBSOCKET_ACCEPT, header::HeaderValue::from_str(&key).expect("base64 is a header value"));
    if let Some(p) = chosen {
        h.insert(header::SEC_WEBSOCKET_PROTOCOL, header::HeaderValue::from_static(p));
    }
    response
}

/// The WebSocket as a byte stream: each binary message's payload in, each
/// write out as one binary message. Either end of a tunnel can use it.
pub fn tunnel<S>(ws: WebSocketStream<S>) -> tokio::io::DuplexStream
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (ours, theirs) = tokio::io::duplex(256 * 1024);
    let (mut read, mut write) = tokio::io::split(theirs);
    let (mut sink, mut source) = ws.split();
    tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        while let Some(Ok(message)) = source.next().await {
            match message {
                Message::Binary(b) if write.write_all(&b).await.is_err() => {
                    break;
                }
                Message::Close(_) => break,
                _ => {}
            }
        }
        let _ = write.shutdown().await;
    });
    tokio::spawn(async move {
        use tokio::io::AsyncReadExt;
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match read.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if sink.send(Message::binary(buf[..n].to_vec())).await.is_err() {
                        return;
                    }
                }
            }
        }
        let _ = sink.send(Message::Close(Some(CloseFrame { code: CloseCode::Normal, reason: "".into() }))).await;
    });
    ours
}

/// `port=80&port=8080` (the kubelet's form; also `ports=80,8080`).
fn ports_of(query: &str) -> Result<Vec<u16>, String> {
    let mut ports = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        if name == "port" || name == "ports" {
            for v in value.split(',') {
                ports.push(v.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| format!("port {v:?} is not a port number"))?);
            }
        }
    }
    if ports.is_empty() {
        return Err("port-forward over websocket needs at least one port query parameter".into());
    }
    Ok(ports)
}

fn framed(channel: u8, data: &[u8]) -> Message {
    let mut m = Vec::with_capacity(1 + data.len());
    m.push(channel);
    m.extend_from_slice(data);
    Message::binary(m)
}

type Socket = WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>;

/// Sends what `rx` yields on the socket until every sender is gone; ends
/// with a close frame.
fn spawn_writer(
    mut sink: futures_util::stream::SplitSink<Socket, Message>,
    mut rx: mpsc::Receiver<Message>,
    activity: Activity,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while let Some(m) = rx.recv().await {
            activity.touch();
            if sink.send(m).await.is_err() {
                return;
            }
        }
        // A normal closure (1000): Go clients read it as the streams' EOF,
        // and a close without a code as an error.
        let _ = sink.send(Message::Close(Some(CloseFrame { code: CloseCode::Normal, reason: "".into() }))).await;
    })
}

/// Forwards one output stream to its channel.
fn spawn_pump(rx: Option<mpsc::Receiver<Vec<u8>>>, channel: u8, out: mpsc::Sender<Message>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let Some(mut rx) = rx else { return };
        while let Some(data) = rx.recv().await {
            if out.send(framed(channel, &data)).await.is_err() {
                return;
            }
        }
    })
}

/// What one binary message of the exec/attach channel protocol asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelMessage<'a> {
    Stdin(&'a [u8]),
    Resize(&'a [u8]),
    /// v5's `[255, 0]`: the client closed stdin.
    CloseStdin,
    /// Empty, an output channel, or a close of another channel: nothing
    /// for the server to do.
    Ignored,
}

/// Reads a client's binary message (channel byte, then payload); `v5`:
/// the connection speaks `v5.channel.k8s.io`. Public for the fuzz targets
/// (`crates/fuzz`).
pub fn channel_message(data: &[u8], v5: bool) -> ChannelMessage<'_> {
    let Some((&channel, payload)) = data.split_first() else { return ChannelMessage::Ignored };
    match channel {
        STDIN => ChannelMessage::Stdin(payload),
        RESIZE => ChannelMessage::Resize(payload),
        CLOSE if v5 && payload.first() == Some(&STDIN) => ChannelMessage::CloseStdin,
        _ => ChannelMessage::Ignored,
    }
}

async fn remote_command(ws: Socket, v5: bool, request: Pending, backend: Arc<dyn Backend>, idle: Duration) {
    let wanted = Wanted::of(&request).expect("exec or attach");
    let (ends, io) = channels(wanted);
    let (sink, mut source) = ws.split();
    let activity = Activity::new();
    let (out, out_rx) = mpsc::channel::<Message>(64);
    let writer = spawn_writer(sink, out_rx, activity.clone());
    let pumps = [spawn_pump(ends.stdout, STDOUT, out.clone()), spawn_pump(ends.stderr, STDERR, out.clone())];
    let (mut stdin, resize, hangup) = (ends.stdin, ends.resize, ends.hangup);
    let reader_activity = activity.clone();
    let reader = tokio::spawn(async move {
        let mut resizes = ResizeStream::default();
        loop {
            let message = tokio::select! {
                m = source.next() => m,
                () = reader_activity.idle_for(idle) => {
                    tracing::info!("exec/attach stream idle for {idle:?}; closing it");
                    break;
                }
            };
            let data = match message {
                Some(Ok(Message::Binary(b))) => b,
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                Some(Ok(_)) => continue,
            };
            reader_activity.touch();
            match channel_message(&data, v5) {
                ChannelMessage::Stdin(payload) => {
                    if let Some(tx) = &stdin {
                        let _ = tx.send(payload.to_vec()).await;
                    }
                }
                ChannelMessage::Resize(payload) => {
                    if let Some(tx) = &resize {
                        for s in resizes.feed(payload) {
                            let _ = tx.send(s).await;
                        }
                    }
                }
                ChannelMessage::CloseStdin => stdin = None,
                ChannelMessage::Ignored => {}
            }
        }
        // The client is gone (or idle): the process must not outlive it.
        let _ = hangup.send(());
    });
    let result = remotecommand::run(backend, request, io).await;
    for p in pumps {
        let _ = p.await;
    }
    let _ = out.send(framed(ERROR, &status_json(&result))).await;
    drop(out);
    let _ = writer.await;
    reader.abort();
}

async fn port_forward(ws: Socket, pod_id: String, ports: Vec<u16>, backend: Arc<dyn Backend>, idle: Duration) {
    let (sink, mut source) = ws.split();
    let activity = Activity::new();
    let (out, out_rx) = mpsc::channel::<Message>(64);
    let writer = spawn_writer(sink, out_rx, activity.clone());
    let mut inputs = Vec::new();
    let mut forwards = Vec::new();
    for (i, port) in ports.iter().enumerate() {
        let (data_ch, error_ch) = ((2 * i) as u8, (2 * i + 1) as u8);
        for ch in [data_ch, error_ch] {
            let _ = out.send(framed(ch, &port.to_le_bytes())).await;
        }
        let (in_tx, in_rx) = mpsc::channel(32);
        let (data_tx, data_rx) = mpsc::channel(32);
        let (err_tx, err_rx) = mpsc::channel(4);
        inputs.push(in_tx);
        forwards.push(tokio::spawn(forward(backend.clone(), pod_id.clone(), *port, in_rx, data_tx, err_tx, activity.clone())));
        spawn_pump(Some(data_rx), data_ch, out.clone());
        spawn_pump(Some(err_rx), error_ch, out.clone());
    }
    drop(out);
    loop {
        let message = tokio::select! {
            m = source.next() => m,
            () = activity.idle_for(idle) => break,
        };
        match message {
            Some(Ok(Message::Binary(b))) => {
                activity.touch();
                if let Some((&channel, payload)) = b.split_first() {
                    if channel % 2 == 0 {
                        if let Some(tx) = inputs.get(channel as usize / 2) {
                            let _ = tx.send(payload.to_vec()).await;
                        }
                    }
                }
            }
            Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
            Some(Ok(_)) => {}
        }
    }
    // The client left: every forwarded connection ends with it.
    drop(inputs);
    for f in forwards {
        f.abort();
    }
    writer.abort();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_come_from_the_query() {
        assert_eq!(ports_of("port=80&port=8080").unwrap(), [80, 8080]);
        assert_eq!(ports_of("ports=80,81").unwrap(), [80, 81]);
        assert!(ports_of("").is_err());
        assert!(ports_of("port=0").is_err());
        assert!(ports_of("port=http").unwrap_err().contains("http"));
    }
}
