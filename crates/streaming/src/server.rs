//! The HTTP side: URLs and tokens, the upgrade to WebSocket or SPDY/3.1,
//! and the idle timeout. Each connection is its own task; a malformed one
//! ends alone.

use std::{
    net::SocketAddr,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use http_body_util::Full;
use hyper::{
    body::{Bytes, Incoming},
    header, Request, Response, StatusCode,
};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::{
    over_spdy,
    tokens::{Pending, Tokens},
    websocket, Backend,
};

#[derive(Debug, Clone)]
pub struct Config {
    /// Where to listen; port 0 picks a free one.
    pub address: SocketAddr,
    /// A stream with no data either way for this long is closed.
    pub idle_timeout: Duration,
    /// How long a SPDY client has to open the streams it asked for.
    pub stream_creation_timeout: Duration,
    /// How long a URL handed out stays valid (once).
    pub token_ttl: Duration,
    /// Serve https with this certificate chain and key (PEM files).
    pub tls: Option<TlsFiles>,
}

#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert_chain: std::path::PathBuf,
    pub private_key: std::path::PathBuf,
}

impl TlsFiles {
    fn acceptor(&self) -> std::io::Result<tokio_rustls::TlsAcceptor> {
        use rustls_pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer};
        let invalid =
            |what: &std::path::Path, e: &dyn std::fmt::Display| std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{}: {e}", what.display()));
        let chain = CertificateDer::pem_file_iter(&self.cert_chain)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .map_err(|e| invalid(&self.cert_chain, &e))?;
        let key = PrivateKeyDer::from_pem_file(&self.private_key).map_err(|e| invalid(&self.private_key, &e))?;
        let config =
            tokio_rustls::rustls::ServerConfig::builder().with_no_client_auth().with_single_cert(chain, key).map_err(|e| invalid(&self.cert_chain, &e))?;
        Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            address: SocketAddr::from(([127, 0, 0, 1], 0)),
            idle_timeout: Duration::from_secs(4 * 3600),
            stream_creation_timeout: Duration::from_secs(30),
            token_ttl: Duration::from_secs(60),
            tls: None,
        }
    }
}

/// The server: hands out URLs, then serves them once a backend is there.
pub struct Streaming {
    config: Config,
    tokens: Arc<Tokens>,
    base_url: String,
    listener: Mutex<Option<TcpListener>>,
    tls: Option<tokio_rustls::TlsAcceptor>,
}

/// A TLS handshake that takes longer is abandoned.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// As is a request whose headers take longer.
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);

impl Streaming {
    pub async fn bind(config: Config) -> std::io::Result<Arc<Self>> {
        // Bad certificate files fail the start, not the first client.
        let tls = config.tls.as_ref().map(TlsFiles::acceptor).transpose()?;
        let listener = TcpListener::bind(config.address).await?;
        let local = listener.local_addr()?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        Ok(Arc::new(Self {
            tokens: Arc::new(Tokens::new(config.token_ttl)),
            base_url: format!("{scheme}://{local}"),
            listener: Mutex::new(Some(listener)),
            tls,
            config,
        }))
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// A single-use URL for `request`.
    pub fn url_for(&self, request: Pending) -> std::io::Result<String> {
        let kind = request.kind();
        let token = self.tokens.insert(request)?;
        Ok(format!("{}/{kind}/{token}", self.base_url))
    }

    /// Accepts connections for ever (until the runtime stops); call once.
    pub fn serve(self: &Arc<Self>, backend: Arc<dyn Backend>) {
        let Some(listener) = self.listener.lock().unwrap_or_else(|e| e.into_inner()).take() else { return };
        let this = self.clone();
        tokio::spawn(async move {
            loop {
                let (socket, peer) = match listener.accept().await {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::warn!(error = %e, "streaming server: accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let (this, backend) = (this.clone(), backend.clone());
                tokio::spawn(async move {
                    match this.tls.clone() {
                        None => this.serve_connection(socket, backend, peer).await,
                        Some(tls) => match tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.accept(socket)).await {
                            Ok(Ok(stream)) => this.serve_connection(stream, backend, peer).await,
                            Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                            Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                        },
                    }
                });
            }
        });
    }

    async fn serve_connection<I>(self: Arc<Self>, io: I, backend: Arc<dyn Backend>, peer: SocketAddr)
    where
        I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let this = self;
        let service = hyper::service::service_fn(move |req| {
            let (this, backend) = (this.clone(), backend.clone());
            async move { Ok::<_, std::convert::Infallible>(this.handle(req, backend)) }
        });
        // A client that never finishes its request headers is dropped.
        let served = hyper::server::conn::http1::Builder::new()
            .timer(hyper_util::rt::TokioTimer::new())
            .header_read_timeout(HEADER_TIMEOUT)
            .serve_connection(TokioIo::new(io), service)
            .with_upgrades()
            .await;
        if let Err(e) = served {
            tracing::debug!(%peer, error = %e, "streaming connection ended with an error");
        }
    }

    fn handle(&self, req: Request<Incoming>, backend: Arc<dyn Backend>) -> Response<Full<Bytes>> {
        let path = req.uri().path().to_string();
        let mut parts = path.trim_start_matches('/').splitn(2, '/');
        let (kind, token) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        let Some(request) = self.tokens.take(token).filter(|r| r.kind() == kind) else {
            return plain(StatusCode::NOT_FOUND, format!("unknown or expired streaming token in {path}"));
        };
        let upgrade = req.headers().get(header::UPGRADE).and_then(|v| v.to_str().ok()).unwrap_or("").to_ascii_lowercase();
        let (idle, creation) = (self.config.idle_timeout, self.config.stream_creation_timeout);
        if upgrade == "websocket" {
            websocket::upgrade(req, request, backend, idle, creation)
        } else if upgrade.starts_with("spdy/3.1") {
            over_spdy::upgrade(req, request, backend, idle, creation)
        } else {
            plain(StatusCode::BAD_REQUEST, "streaming needs an upgrade to websocket or SPDY/3.1".into())
        }
    }
}

pub(crate) fn plain(status: StatusCode, message: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(message)));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static("text/plain; charset=utf-8"));
    r
}

/// The protocols a client offers, in its order of preference (one header
/// may hold several, comma-separated; the header may repeat).
pub(crate) fn offered(req: &Request<Incoming>, name: &str) -> Vec<String> {
    req.headers()
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty())
        .collect()
}

/// When data last moved on a stream, for the idle timeout.
#[derive(Clone)]
pub(crate) struct Activity {
    start: Instant,
    last_ms: Arc<AtomicU64>,
}

impl Activity {
    pub(crate) fn new() -> Self {
        Self { start: Instant::now(), last_ms: Arc::new(AtomicU64::new(0)) }
    }

    pub(crate) fn touch(&self) {
        self.last_ms.store(self.start.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    /// Resolves once nothing has moved for `idle`.
    pub(crate) async fn idle_for(&self, idle: Duration) {
        loop {
            let last = self.start + Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
            let deadline = last + idle;
            if Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep_until(deadline.into()).await;
        }
    }
}
