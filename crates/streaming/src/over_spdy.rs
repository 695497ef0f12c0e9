//! The Kubernetes stream protocols over SPDY/3.1, as kubelets have always
//! served them: the client opens one SPDY stream per purpose, named by its
//! `streamtype` header.
//!
//! - remotecommand `v4.channel.k8s.io`: `error`, and as asked `stdin`,
//!   `stdout`, `stderr`, `resize`. The exit status goes on `error` last.
//! - `portforward.k8s.io`: per forwarded connection a `data` and an
//!   `error` stream sharing a `requestid` and naming the `port`.

use std::{collections::HashMap, sync::Arc, time::Duration};

use http_body_util::Full;
use hyper::{body::Bytes, body::Incoming, header, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::sync::mpsc;

use crate::{
    portforward::forward,
    remotecommand::{self, channels, status_json, ResizeStream, Wanted},
    server::{offered, plain, Activity},
    spdy::{self, header as header_of, Stream, StreamWriter},
    tokens::Pending,
    Backend,
};

const REMOTE_COMMAND_V4: &str = "v4.channel.k8s.io";
const PORT_FORWARD: &str = "portforward.k8s.io";
const PROTOCOL_HEADER: &str = "x-stream-protocol-version";

pub(crate) fn upgrade(mut req: Request<Incoming>, request: Pending, backend: Arc<dyn Backend>, idle: Duration, creation: Duration) -> Response<Full<Bytes>> {
    let offers = offered(&req, PROTOCOL_HEADER);
    let ours = match request {
        Pending::PortForward { .. } => PORT_FORWARD,
        _ => REMOTE_COMMAND_V4,
    };
    if !offers.iter().any(|o| o == ours) {
        return plain(StatusCode::FORBIDDEN, format!("unable to negotiate a stream protocol: client offers {offers:?}, berthd speaks {ours}"));
    }
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => serve_session(TokioIo::new(upgraded), request, backend, idle, creation).await,
            Err(e) => tracing::debug!(error = %e, "SPDY upgrade failed"),
        }
    });
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = response.headers_mut();
    h.insert(header::CONNECTION, header::HeaderValue::from_static("Upgrade"));
    h.insert(header::UPGRADE, header::HeaderValue::from_static("SPDY/3.1"));
    h.insert(PROTOCOL_HEADER, header::HeaderValue::from_static(ours));
    response
}

/// Serves one request over a SPDY session on `io` (an upgraded HTTP
/// connection, or a WebSocket tunnel).
pub(crate) async fn serve_session<T>(io: T, request: Pending, backend: Arc<dyn Backend>, idle: Duration, creation: Duration)
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + 'static,
{
    let (conn, incoming, session) = spdy::start(io, true);
    let activity = Activity::new();
    // The connection is gone, or idle too long: `hangup` says so.
    let (hangup_tx, hangup_rx) = tokio::sync::oneshot::channel::<()>();
    let watch = activity.clone();
    let watcher = tokio::spawn(async move {
        tokio::select! {
            r = session => if let Ok(Err(e)) = r { tracing::info!(error = %e, "malformed SPDY from the client; connection closed") },
            () = watch.idle_for(idle) => tracing::info!("stream idle for {idle:?}; closing it"),
        }
        let _ = hangup_tx.send(());
    });
    match request {
        Pending::PortForward { pod_id } => port_forward(incoming, pod_id, backend, activity, hangup_rx).await,
        other => remote_command(incoming, other, backend, creation, activity, hangup_rx).await,
    }
    conn.go_away().await;
    watcher.abort();
}

/// The streams of one exec or attach, as the client opened them.
#[derive(Default)]
struct CommandStreams {
    error: Option<Stream>,
    stdin: Option<Stream>,
    stdout: Option<Stream>,
    stderr: Option<Stream>,
    resize: Option<Stream>,
}

impl CommandStreams {
    fn complete(&self, w: Wanted) -> bool {
        self.error.is_some()
            && (!w.stdin || self.stdin.is_some())
            && (!w.stdout || self.stdout.is_some())
            && (!w.stderr || self.stderr.is_some())
            && (!w.tty || self.resize.is_some())
    }
}

async fn remote_command(
    mut incoming: mpsc::Receiver<Stream>,
    request: Pending,
    backend: Arc<dyn Backend>,
    creation: Duration,
    activity: Activity,
    mut hangup: tokio::sync::oneshot::Receiver<()>,
) {
    let wanted = Wanted::of(&request).expect("exec or attach");
    let mut streams = CommandStreams::default();
    let deadline = tokio::time::sleep(creation);
    tokio::pin!(deadline);
    while !streams.complete(wanted) {
        let stream = tokio::select! {
            s = incoming.recv() => s,
            () = &mut deadline => {
                tracing::info!("client did not open its streams within {creation:?}");
                return;
            }
        };
        let Some(stream) = stream else { return };
        let slot = match header_of(&stream.headers, "streamtype") {
            Some("error") => &mut streams.error,
            Some("stdin") => &mut streams.stdin,
            Some("stdout") => &mut streams.stdout,
            Some("stderr") => &mut streams.stderr,
            Some("resize") => &mut streams.resize,
            other => {
                tracing::debug!(?other, "unknown stream type; reset");
                stream.writer.reset().await;
                continue;
            }
        };
        *slot = Some(stream);
    }
    let (ends, io) = channels(wanted);
    // The session's hang-up (client gone, or idle) is passed on to the
    // backend through the request's own channel.
    let mut relay_tx = Some(ends.hangup);
    let mut relays = Vec::new();
    if let (Some(s), Some(tx)) = (streams.stdin.take(), ends.stdin) {
        relays.push(tokio::spawn(relay_in(s.data, tx, activity.clone())));
    }
    if let (Some(s), Some(tx)) = (streams.resize.take(), ends.resize) {
        let mut data = s.data;
        relays.push(tokio::spawn(async move {
            let mut resizes = ResizeStream::default();
            while let Some(chunk) = data.recv().await {
                for size in resizes.feed(&chunk) {
                    let _ = tx.send(size).await;
                }
            }
        }));
    }
    let outputs = [(streams.stdout.take(), ends.stdout), (streams.stderr.take(), ends.stderr)]
        .into_iter()
        .filter_map(|(s, rx)| Some(tokio::spawn(relay_out(rx?, s?.writer, activity.clone()))))
        .collect::<Vec<_>>();
    let run = remotecommand::run(backend, request, io);
    tokio::pin!(run);
    let result = tokio::select! {
        r = &mut run => r,
        _ = &mut hangup => {
            if let Some(tx) = relay_tx.take() {
                let _ = tx.send(());
            }
            run.await
        }
    };
    for o in outputs {
        let _ = o.await;
    }
    if let Some(error) = streams.error {
        error.writer.send(&status_json(&result)).await;
        error.writer.finish().await;
    }
    for r in relays {
        r.abort();
    }
}

async fn relay_in(mut from: mpsc::Receiver<Vec<u8>>, to: mpsc::Sender<Vec<u8>>, activity: Activity) {
    while let Some(data) = from.recv().await {
        activity.touch();
        if to.send(data).await.is_err() {
            return;
        }
    }
}

/// One output stream to its SPDY stream; FIN when the output ends.
async fn relay_out(mut from: mpsc::Receiver<Vec<u8>>, to: StreamWriter, activity: Activity) {
    while let Some(data) = from.recv().await {
        activity.touch();
        if !to.send(&data).await {
            return;
        }
    }
    to.finish().await;
}

/// Streams of one forwarded connection, paired by `requestid`.
#[derive(Default)]
struct Pair {
    data: Option<Stream>,
    error: Option<Stream>,
}

async fn port_forward(
    mut incoming: mpsc::Receiver<Stream>,
    pod_id: String,
    backend: Arc<dyn Backend>,
    activity: Activity,
    mut hangup: tokio::sync::oneshot::Receiver<()>,
) {
    let mut pairs: HashMap<String, Pair> = HashMap::new();
    let mut forwards = Vec::new();
    loop {
        let stream = tokio::select! {
            s = incoming.recv() => s,
            _ = &mut hangup => None,
        };
        let Some(stream) = stream else { break };
        activity.touch();
        let request_id = header_of(&stream.headers, "requestid").unwrap_or("").to_string();
        let kind = header_of(&stream.headers, "streamtype").unwrap_or("").to_string();
        let pair = pairs.entry(request_id.clone()).or_default();
        match kind.as_str() {
            "data" => pair.data = Some(stream),
            "error" => pair.error = Some(stream),
            _ => {
                stream.writer.reset().await;
                continue;
            }
        }
        if pair.data.is_none() || pair.error.is_none() {
            continue;
        }
        let Pair { data: Some(data), error: Some(error) } = pairs.remove(&request_id).unwrap_or_default() else { continue };
        let port = header_of(&data.headers, "port").and_then(|p| p.parse::<u16>().ok()).filter(|p| *p > 0);
        let Some(port) = port else {
            error.writer.send(format!("invalid port header {:?}", header_of(&data.headers, "port")).as_bytes()).await;
            error.writer.finish().await;
            data.writer.finish().await;
            continue;
        };
        let (backend, pod_id, activity) = (backend.clone(), pod_id.clone(), activity.clone());
        forwards.push(tokio::spawn(async move {
            let (out_tx, out_rx) = mpsc::channel(32);
            let (err_tx, mut err_rx) = mpsc::channel::<Vec<u8>>(4);
            let pump = tokio::spawn(relay_out(out_rx, data.writer.clone(), activity.clone()));
            let error_writer = error.writer.clone();
            let errors = tokio::spawn(async move {
                while let Some(message) = err_rx.recv().await {
                    error_writer.send(&message).await;
                }
                error_writer.finish().await;
            });
            forward(backend, pod_id, port, data.data, out_tx, err_tx, activity).await;
            let _ = pump.await;
            let _ = errors.await;
        }));
    }
    for f in forwards {
        f.abort();
    }
}
