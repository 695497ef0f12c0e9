//! A tower layer that counts and times every gRPC request on the CRI
//! socket (RuntimeService, ImageService and berth's admin API alike), by
//! method and gRPC code, without the handlers knowing.
//!
//! A unary call that fails is answered trailers-only: its `grpc-status`
//! is in the response headers, which this layer sees. A success puts
//! status 0 in trailers after the body, so a response without
//! `grpc-status` in its headers counts as OK (a stream that fails after
//! its first message is counted OK too; its failure is in the log).

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Instant,
};

use berth_metrics::Metrics;
use tonic::Code;

#[derive(Clone)]
pub struct GrpcMetricsLayer(pub Arc<Metrics>);

impl<S> tower::Layer<S> for GrpcMetricsLayer {
    type Service = GrpcMetrics<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcMetrics { inner, metrics: self.0.clone() }
    }
}

#[derive(Clone)]
pub struct GrpcMetrics<S> {
    inner: S,
    metrics: Arc<Metrics>,
}

impl<S, B, ResBody> tower::Service<http::Request<B>> for GrpcMetrics<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let path = req.uri().path().to_string();
        let started = Instant::now();
        let answered = self.inner.call(req);
        let metrics = self.metrics.clone();
        Box::pin(async move {
            let response = answered.await;
            let code = match &response {
                Ok(r) => r.headers().get("grpc-status").and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<i32>().ok()).map(Code::from).unwrap_or(Code::Ok),
                Err(_) => Code::Unknown,
            };
            metrics.record_request(&path, &format!("{code:?}"), started.elapsed());
            response
        })
    }
}
