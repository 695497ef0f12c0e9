//! `GET /metrics` on `[metrics] address`: the Prometheus text exposition
//! of berth_metrics. Plain HTTP/1.1, one small answer per scrape.

use std::{convert::Infallible, net::SocketAddr, sync::Arc};

use anyhow::Context;
use berth_metrics::Metrics;
use http_body_util::Full;
use hyper::{body::Bytes, server::conn::http1, service::service_fn, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// Binds at once, so a taken address stops berthd at start with the
/// address named, instead of failing later where nobody looks.
pub async fn bind(address: &str) -> anyhow::Result<TcpListener> {
    let addr: SocketAddr = address.parse().with_context(|| format!("[metrics] address {address:?} is not host:port (e.g. 127.0.0.1:9338)"))?;
    TcpListener::bind(addr).await.with_context(|| format!("[metrics] address {address}: cannot listen"))
}

/// Serves scrapes until the process ends.
pub fn serve(listener: TcpListener, metrics: Arc<Metrics>) {
    tokio::spawn(async move {
        loop {
            let (stream, _) = match listener.accept().await {
                Ok(conn) => conn,
                Err(e) => {
                    tracing::warn!(error = %e, "metrics: accept failed");
                    continue;
                }
            };
            let metrics = metrics.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req: Request<hyper::body::Incoming>| {
                    let metrics = metrics.clone();
                    async move { Ok::<_, Infallible>(answer(&req, &metrics)) }
                });
                if let Err(e) = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await {
                    tracing::debug!(error = %e, "metrics: connection ended");
                }
            });
        }
    });
}

fn answer(req: &Request<hyper::body::Incoming>, metrics: &Metrics) -> Response<Full<Bytes>> {
    let reply = |status: StatusCode, content_type: &str, body: String| {
        let mut response = Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() = status;
        if let Ok(value) = content_type.parse() {
            response.headers_mut().insert(hyper::header::CONTENT_TYPE, value);
        }
        response
    };
    match (req.method(), req.uri().path()) {
        (&hyper::Method::GET, "/metrics") => reply(StatusCode::OK, berth_metrics::CONTENT_TYPE, metrics.encode()),
        (_, "/metrics") => reply(StatusCode::METHOD_NOT_ALLOWED, "text/plain", "GET only\n".into()),
        _ => reply(StatusCode::NOT_FOUND, "text/plain", "berthd serves /metrics here\n".into()),
    }
}
