//! Clients of berthd's streaming server, speaking the protocols as
//! kubectl, crictl and the kubelet do: WebSocket through tokio-tungstenite,
//! SPDY/3.1 through berth's own framing (its frames are unit-tested
//! against the spec in berth-streaming).

#![allow(dead_code)]

use std::time::Duration;

use berth_streaming::spdy;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio_tungstenite::{
    tungstenite::{client::IntoClientRequest, Message},
    MaybeTlsStream, WebSocketStream,
};

pub type Ws = WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens a WebSocket to `url` offering `protocols`; Err is the HTTP
/// status (and body) when the server refuses.
pub async fn websocket(url: &str, protocols: &str) -> Result<(Ws, String), (u16, String)> {
    let mut req = url.replace("http://", "ws://").into_client_request().unwrap();
    req.headers_mut().insert("Sec-WebSocket-Protocol", protocols.parse().unwrap());
    match tokio_tungstenite::connect_async(req).await {
        Ok((ws, response)) => {
            let chosen = response.headers().get("sec-websocket-protocol").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
            Ok((ws, chosen))
        }
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            let body = response.body().as_ref().map(|b| String::from_utf8_lossy(b).into_owned()).unwrap_or_default();
            Err((response.status().as_u16(), body))
        }
        Err(e) => panic!("websocket to {url}: {e}"),
    }
}

pub async fn send(ws: &mut Ws, channel: u8, data: &[u8]) {
    let mut m = vec![channel];
    m.extend_from_slice(data);
    ws.send(Message::binary(m)).await.unwrap();
}

/// What an exec session produced, per channel.
#[derive(Debug, Default)]
pub struct Collected {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub status: Option<serde_json::Value>,
}

impl Collected {
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// The exit code as kubectl reads it from the status.
    pub fn exit_code(&self) -> Option<i64> {
        let s = self.status.as_ref()?;
        if s["status"] == "Success" {
            return Some(0);
        }
        s["details"]["causes"].as_array()?.iter().find(|c| c["reason"] == "ExitCode")?["message"].as_str()?.parse().ok()
    }
}

/// Reads until the server closes, or until stdout contains `until` if given.
pub async fn collect_ws(ws: &mut Ws, until: Option<&str>, within: Duration) -> Collected {
    let mut got = Collected::default();
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let next = tokio::time::timeout_at(deadline, ws.next()).await.expect("stream answered in time");
        match next {
            Some(Ok(Message::Binary(b))) if !b.is_empty() => match b[0] {
                1 => got.stdout.extend_from_slice(&b[1..]),
                2 => got.stderr.extend_from_slice(&b[1..]),
                3 => got.status = Some(serde_json::from_slice(&b[1..]).expect("status is JSON")),
                _ => {}
            },
            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return got,
            _ => {}
        }
        if until.is_some_and(|u| got.stdout().contains(u)) {
            return got;
        }
    }
}

/// An HTTP upgrade to SPDY/3.1 offering `protocol`; then a client session.
pub async fn spdy(url: &str, protocol: &str) -> Result<(spdy::Connection, tokio::task::JoinHandle<std::io::Result<()>>), (u16, String)> {
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_once('/').unwrap();
    let mut tcp = tokio::net::TcpStream::connect(host).await.unwrap();
    let request = format!(
        "POST /{path} HTTP/1.1\r\nHost: {host}\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: {protocol}\r\nContent-Length: 0\r\n\r\n"
    );
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut reader = BufReader::new(tcp);
    let mut status_line = String::new();
    reader.read_line(&mut status_line).await.unwrap();
    let code: u16 = status_line.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).await.unwrap();
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            length = v.trim().parse().unwrap_or(0);
        }
        if line == "\r\n" || line.is_empty() {
            break;
        }
    }
    if code != 101 {
        let mut body = vec![0u8; length];
        tokio::io::AsyncReadExt::read_exact(&mut reader, &mut body).await.unwrap();
        return Err((code, String::from_utf8_lossy(&body).into_owned()));
    }
    assert!(reader.buffer().is_empty(), "no bytes before the client's first frame");
    let (conn, _incoming, session) = spdy::start(reader.into_inner(), false);
    Ok((conn, session))
}

pub fn headers(pairs: &[(&str, &str)]) -> spdy::Headers {
    pairs.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
}

/// Everything a stream carries until the server's FIN.
pub async fn read_all(stream: &mut spdy::Stream, within: Duration) -> Vec<u8> {
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + within;
    while let Some(chunk) = tokio::time::timeout_at(deadline, stream.data.recv()).await.expect("stream ended in time") {
        out.extend_from_slice(&chunk);
    }
    out
}
