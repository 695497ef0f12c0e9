//! berth's registry client for pulls (OCI distribution spec): manifests,
//! image indexes and blobs, with token and Basic auth, over an HTTP
//! client set up for one registry host.
//!
//! Why not oci-client's `Client`: TLS here is per host — the host's CA
//! files and *client certificate* from `certs.d/<host>/` — and oci-client
//! 0.18 builds its reqwest client privately, with extra roots at most: no
//! client identity, no way to hand it a configured reqwest client or
//! rustls config. So the HTTP exchanges of a pull are berth's own, on the
//! same reqwest and rustls, and oci-client still gives the reference,
//! manifest, error-envelope and credential types.
//!
//! One `Session` per pull and host: its client is built once (certs.d read,
//! TLS configured) and reused for the manifests and every layer, keeping
//! connections alive; the next pull reads certs.d again, so a CA or client
//! certificate put in place works without restarting berthd.

pub(crate) mod certs;
mod tls;

use std::{
    path::{Path, PathBuf},
    sync::{Mutex, OnceLock},
    time::Duration,
};

use futures_util::{Stream, StreamExt};

use base64::Engine;
use oci_client::{
    errors::{OciEnvelope, OciErrorCode},
    manifest::{OciImageManifest, OciManifest},
    secrets::RegistryAuth,
    Reference,
};
use reqwest::{
    header::{HeaderValue, ACCEPT, CONTENT_TYPE, RANGE, WWW_AUTHENTICATE},
    Response, StatusCode,
};
use sha2::{Digest, Sha256};

pub use certs::CertsError;
pub use tls::TlsFailure;

/// Every manifest form berth can pull.
pub(crate) const MANIFEST_TYPES: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, \
application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";
/// Answers read whole into memory are bounded, so a hostile registry
/// cannot make berthd allocate without end. 4 MiB for manifests and
/// indexes is the distribution spec's and containerd's limit.
pub(crate) const MANIFEST_LIMIT: usize = 4 << 20;
const CONFIG_LIMIT: usize = 32 << 20;
const SMALL_ANSWER_LIMIT: usize = 64 << 10;
/// See `Session::open`.
const LOOPBACK_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How berth reaches registries, from `[registry]` in berthd's config.
pub(crate) struct Settings<'a> {
    /// `host:port`s spoken to in plain http only.
    pub insecure_registries: &'a [String],
    /// `<certs_dir>/<host>/` holds a host's CA files and client certificate.
    pub certs_dir: &'a Path,
    /// How bodies must progress (see `Pace`).
    pub pacing: Pacing,
}

/// A live answer brings at least `min_bytes` in every `window` (or ends
/// within it). "Any byte within the window" is not enough: a registry
/// sending a byte every few seconds would hold a pull, its connection and
/// its layer lock for ever.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Pacing {
    pub window: Duration,
    pub min_bytes: u64,
}

/// Judges one body's progress against its `Pacing`, window after window.
pub(crate) struct Pace {
    pacing: Pacing,
    started: tokio::time::Instant,
    received: u64,
}

impl Pace {
    pub(crate) fn new(pacing: Pacing) -> Self {
        Self { pacing, started: tokio::time::Instant::now(), received: 0 }
    }

    /// The stream's next item, or `Err` with what the window brought when a
    /// window ends short of `min_bytes`. Waiting is cut at the window's end
    /// so a registry that sends nothing at all is caught the same way.
    pub(crate) async fn next<S, T, E>(&mut self, stream: &mut S) -> Result<Option<Result<T, E>>, (Duration, u64)>
    where
        S: Stream<Item = Result<T, E>> + Unpin,
        T: AsRef<[u8]>,
    {
        loop {
            let end = self.started + self.pacing.window;
            match tokio::time::timeout_at(end, stream.next()).await {
                Ok(item) => {
                    if let Some(Ok(chunk)) = &item {
                        self.received += chunk.as_ref().len() as u64;
                        self.roll(tokio::time::Instant::now())?;
                    }
                    return Ok(item);
                }
                Err(_) => self.roll(end)?,
            }
        }
    }

    /// At a window's end: fail if it brought too little, else start the next.
    fn roll(&mut self, now: tokio::time::Instant) -> Result<(), (Duration, u64)> {
        if now < self.started + self.pacing.window {
            return Ok(());
        }
        if self.received < self.pacing.min_bytes {
            return Err((self.pacing.window, self.received));
        }
        self.started = now;
        self.received = 0;
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("{url}: {}", chain(source))]
    Request { url: String, source: reqwest::Error },
    #[error("{url}: {failure}")]
    Tls { url: String, failure: TlsFailure, source: reqwest::Error },
    #[error("{url}: HTTP {status}: {message}")]
    Status { url: String, status: u16, code: Option<OciErrorCode>, message: String },
    #[error("{url}: the registry speaks https (it said \"{message}\"); remove \"{host}\" from registry.insecure")]
    HttpsOnly { url: String, host: String, message: String },
    /// A loopback registry failed in https, then said it speaks https.
    #[error("{url}: the registry speaks https (it said \"{message}\"), yet https failed: {https_failure}")]
    HttpsFailed { url: String, message: String, https_failure: String },
    #[error("token from {realm}: {message}")]
    Token { realm: String, status: Option<u16>, message: String },
    #[error("{url}: reading the answer: {}", chain(source))]
    Body { url: String, source: reqwest::Error },
    /// `size` is what Content-Length announced; `None` when the body was
    /// cut off while reading, past the limit.
    #[error("{url}: the {what} is {} bytes, over berth's limit of {limit} bytes", size.map_or(format!("more than {limit}"), |s| s.to_string()))]
    TooLarge { url: String, what: &'static str, size: Option<u64>, limit: usize },
    #[error("{url}: {reason}")]
    BadManifest { url: String, reason: String },
    /// Served as a manifest, but not an image manifest or index (by its
    /// Content-Type or its `mediaType`), or the two name different types.
    #[error("{url}: {reason}")]
    ManifestType { url: String, reason: String },
    #[error("{url}: stalled: {received} bytes in {}s, under the {min_bytes} bytes a download must bring in every {}s (registry.stall_timeout_secs, registry.stall_min_bytes)", window.as_secs_f64(), window.as_secs_f64())]
    Stalled { url: String, window: Duration, min_bytes: u64, received: u64 },
    /// The answer's headers did not arrive within the window (reqwest's
    /// read timeout, `source`), or within the connect allowance and a
    /// window (berth's own bound, no `source`).
    #[error("{url}: stalled: the answer's headers did not arrive within {}s (registry.stall_timeout_secs){}", window.as_secs_f64(), source.as_ref().map(|e| format!(": {}", chain(e))).unwrap_or_default())]
    HeadersStalled { url: String, window: Duration, source: Option<reqwest::Error> },
    #[error("{url}: content has digest {actual}, not {expected}")]
    DigestMismatch { url: String, expected: String, actual: String },
    #[error("{url}: the image index has no manifest for this node's platform ({platform})")]
    NoPlatform { url: String, platform: String },
    #[error("registry {host}: {source}")]
    Certs { host: String, source: Box<CertsError> },
    #[error("registry {host}: HTTP client: {}", chain(source))]
    Client { host: String, source: reqwest::Error },
}

/// reqwest's own message says little ("error sending request"); the
/// causes under it say what happened ("Connection refused").
fn chain(error: &reqwest::Error) -> String {
    let mut parts = vec![error.to_string()];
    let mut next = std::error::Error::source(error);
    while let Some(e) = next {
        let text = e.to_string();
        if parts.last() != Some(&text) {
            parts.push(text);
        }
        next = e.source();
    }
    parts.join(": ")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scheme {
    Https,
    Http,
}

impl Scheme {
    fn as_str(self) -> &'static str {
        match self {
            Scheme::Https => "https",
            Scheme::Http => "http",
        }
    }
}

/// Which scheme a host is spoken to in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SchemePlan {
    Https,
    /// Listed in `registry.insecure`: plain http, never https.
    Http,
    /// A loopback host: https, and plain http if the https attempt shows
    /// the server speaks plain http (`Session::speaks_plain_http`).
    ///
    /// Docker and containerd reach loopback registries without any
    /// configuration: both try https (without verifying the certificate)
    /// and fall back to http. berth keeps the https-first order, so a TLS
    /// registry on loopback is spoken to in TLS, but verifies the
    /// certificate like any other host's (its CA goes in certs.d, as
    /// elsewhere), and never falls back over a certificate error.
    HttpsThenHttp,
}

impl SchemePlan {
    fn for_host(host: &str, insecure_registries: &[String]) -> Self {
        if insecure_registries.iter().any(|h| h == host) {
            SchemePlan::Http
        } else if is_loopback(host) {
            SchemePlan::HttpsThenHttp
        } else {
            SchemePlan::Https
        }
    }
}

/// Whether `host` names a port (`host:port`, `[v6]:port`).
fn has_port(host: &str) -> bool {
    let after_address = match host.strip_prefix('[') {
        Some(bracketed) => bracketed.split_once(']').map(|(_, rest)| rest).unwrap_or(""),
        None if host.parse::<std::net::IpAddr>().is_ok() => "",
        None => host,
    };
    after_address.rsplit_once(':').is_some_and(|(_, port)| !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()))
}

/// `localhost`, 127.0.0.0/8 or ::1, with or without a port.
fn is_loopback(host: &str) -> bool {
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        return ip.is_loopback(); // a bare IPv6 address has colons but no port
    }
    let name = match host.strip_prefix('[') {
        Some(bracketed) => bracketed.split(']').next().unwrap_or(""),
        None => match host.rsplit_once(':') {
            Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
            _ => host,
        },
    };
    name.eq_ignore_ascii_case("localhost") || name.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The platform manifest of an image, its digest and its config blob.
pub(crate) struct Image {
    pub manifest: OciImageManifest,
    pub digest: String,
    pub config: Vec<u8>,
}

/// A blob's body: from the start, or from the offset asked for.
pub(crate) struct Blob {
    pub url: String,
    pub resumed: bool,
    pub response: Response,
}

/// Talks to one registry host for one repository.
pub(crate) struct Session {
    client: reqwest::Client,
    host: String,
    repository: String,
    /// `?ns=<registry>` when `host` is a mirror, as containerd sends it.
    namespace_query: String,
    plan: SchemePlan,
    /// Set by the first answer; with `HttpsThenHttp` it says which worked.
    scheme: OnceLock<Scheme>,
    credentials: RegistryAuth,
    /// What the registry accepted last (a token, or Basic credentials):
    /// sent up front on the next requests.
    authorization: Mutex<Option<HeaderValue>>,
    /// Why https failed on a loopback host spoken to in http since.
    https_failure: Mutex<Option<String>>,
    host_dir: PathBuf,
    client_cert: Option<PathBuf>,
    pacing: Pacing,
    /// How long a request may take until its answer's headers are in.
    headers_within: Duration,
    /// What a token is asked for: `pull`, or `pull,push`.
    actions: &'static str,
}

/// One request of a session: a method, a path on the registry host (or a
/// whole URL it gave), and what goes with it.
pub(crate) struct Call<'a> {
    pub method: reqwest::Method,
    pub path: &'a str,
    pub accept: Option<&'a str>,
    pub range_from: u64,
    pub content_type: Option<&'a str>,
    /// Makes the body and says its length; called for each send.
    pub body: Option<&'a (dyn Fn() -> (reqwest::Body, u64) + Send + Sync)>,
}

impl<'a> Call<'a> {
    pub(crate) fn new(method: reqwest::Method, path: &'a str) -> Self {
        Call { method, path, accept: None, range_from: 0, content_type: None, body: None }
    }
}

impl Session {
    /// Reads the host's certs.d directory and builds its client.
    pub(crate) fn open(reference: &Reference, credentials: RegistryAuth, settings: &Settings<'_>) -> Result<Session, RegistryError> {
        let host = reference.resolve_registry().to_string();
        let certs_error = |source| RegistryError::Certs { host: host.clone(), source: Box::new(source) };
        let host_dir = certs::host_dir(settings.certs_dir, &host);
        let certs = match &host_dir {
            Some(dir) => certs::load(dir).map_err(certs_error)?,
            None => certs::HostCerts::default(),
        };
        let client_cert = certs.identity.as_ref().map(|id| id.cert_file.clone());
        let tls = tls::client_config(certs).map_err(certs_error)?;
        let plan = SchemePlan::for_host(&host, settings.insecure_registries);
        // A connection includes its TLS handshake. On loopback both take
        // milliseconds, and a handshake that hangs means a plain-http
        // server waiting for a request line: give up on it soon.
        let connect_timeout = match plan {
            SchemePlan::HttpsThenHttp => LOOPBACK_CONNECT_TIMEOUT,
            SchemePlan::Https | SchemePlan::Http => Duration::from_secs(30),
        };
        let client = reqwest::Client::builder()
            // The rustls config must be of the rustls version reqwest is
            // built with (one in Cargo.lock); otherwise build() fails here.
            .tls_backend_preconfigured(tls)
            .read_timeout(settings.pacing.window)
            .connect_timeout(settings.pacing.window.min(connect_timeout))
            .user_agent(concat!("berth/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|source| RegistryError::Client { host: host.clone(), source })?;
        // A token the caller holds goes with every request; Basic
        // credentials only once the registry asks for them (they may be
        // meant for its token server instead).
        let authorization = match &credentials {
            RegistryAuth::Bearer(token) => {
                Some(sensitive_header(format!("Bearer {token}")).map_err(|message| RegistryError::Token { realm: host.clone(), status: None, message })?)
            }
            _ => None,
        };
        Ok(Session {
            client,
            plan,
            scheme: OnceLock::new(),
            repository: reference.repository().to_string(),
            namespace_query: reference.namespace().map(|ns| format!("?ns={ns}")).unwrap_or_default(),
            credentials,
            authorization: Mutex::new(authorization),
            https_failure: Mutex::new(None),
            host_dir: host_dir.unwrap_or_default(),
            client_cert,
            host,
            pacing: settings.pacing,
            // Connecting has its own timeout; past it, the headers get one
            // window (never less, or a slow connect would be misnamed).
            headers_within: settings.pacing.window.min(connect_timeout) + settings.pacing.window,
            actions: "pull",
        })
    }

    /// The session of a push: its tokens are asked for pull and push.
    pub(crate) fn for_push(mut self) -> Self {
        self.actions = "pull,push";
        self
    }

    pub(crate) fn repository(&self) -> &str {
        &self.repository
    }

    /// An answer other than the one wanted, as an error (the registry's
    /// error code with it, when it sent one).
    pub(crate) async fn unexpected(&self, response: Response) -> RegistryError {
        self.status_error(response).await
    }

    /// A fresh judge of one body's progress.
    pub(crate) fn pace(&self) -> Pace {
        Pace::new(self.pacing)
    }

    /// The error for a body that fell under the pace.
    pub(crate) fn stalled(&self, url: &str, (window, received): (Duration, u64)) -> RegistryError {
        RegistryError::Stalled { url: url.to_string(), window, min_bytes: self.pacing.min_bytes, received }
    }

    /// The manifest for this node's platform (through an index if the
    /// reference names one), its digest, and the image config.
    pub(crate) async fn image(&self, reference: &Reference) -> Result<Image, RegistryError> {
        let target = reference.digest().or(reference.tag()).unwrap_or("latest");
        let (url, manifest, digest) = self.manifest(target, reference.digest()).await?;
        let (manifest, digest) = match manifest {
            OciManifest::Image(manifest) => (manifest, digest),
            OciManifest::ImageIndex(index) => {
                let Some(chosen) = oci_client::client::current_platform_resolver(&index.manifests) else {
                    return Err(RegistryError::NoPlatform { url, platform: node_platform() });
                };
                match self.manifest(&chosen, Some(&chosen)).await? {
                    (_, OciManifest::Image(manifest), digest) => (manifest, digest),
                    (url, OciManifest::ImageIndex(_), _) => {
                        return Err(RegistryError::BadManifest { url, reason: "an index where the platform's manifest should be".into() })
                    }
                }
            }
        };
        let blob = self.blob(&manifest.config.digest, 0).await?;
        let config = self.read_capped(blob.response, "image config", CONFIG_LIMIT).await?;
        Ok(Image { manifest, digest, config })
    }

    /// A blob's body from `offset` on (from the start if the registry
    /// ignores the Range).
    pub(crate) async fn blob(&self, digest: &str, offset: u64) -> Result<Blob, RegistryError> {
        let path = format!("/v2/{}/blobs/{digest}{}", self.repository, self.namespace_query);
        let response = self.get(&path, None, offset).await?;
        let resumed = match response.status() {
            StatusCode::OK => false,
            StatusCode::PARTIAL_CONTENT if offset > 0 => true,
            _ => return Err(self.status_error(response).await),
        };
        Ok(Blob { url: response.url().to_string(), resumed, response })
    }

    async fn manifest(&self, target: &str, expected_digest: Option<&str>) -> Result<(String, OciManifest, String), RegistryError> {
        let path = format!("/v2/{}/manifests/{target}{}", self.repository, self.namespace_query);
        let response = self.get(&path, Some(MANIFEST_TYPES), 0).await?;
        if response.status() != StatusCode::OK {
            return Err(self.status_error(response).await);
        }
        let url = response.url().to_string();
        let announced = response.headers().get("docker-content-digest").and_then(|v| v.to_str().ok()).map(String::from);
        // Refused before a byte of the body is read: the registry says how
        // big it is. A body with no Content-Length is cut off at the limit.
        if let Some(size) = response.content_length().filter(|&n| n > MANIFEST_LIMIT as u64) {
            return Err(RegistryError::TooLarge { url, what: "manifest", size: Some(size), limit: MANIFEST_LIMIT });
        }
        let content_type = match response.headers().get(CONTENT_TYPE) {
            None => None,
            Some(value) => {
                let value = value.to_str().map_err(|_| RegistryError::ManifestType { url: url.clone(), reason: "Content-Type is not text".into() })?;
                header_media_type(value).map_err(|reason| RegistryError::ManifestType { url: url.clone(), reason })?
            }
        };
        let body = self.read_capped(response, "manifest", MANIFEST_LIMIT).await?;
        let digest = format!("sha256:{}", hex::encode(Sha256::digest(&body)));
        // A digest in the reference is the one the content must have (berth
        // stores sha256 content only); a tag's answer is checked against the
        // digest the registry announces, when it is one berth computes.
        if let Some(expected) = expected_digest {
            if !expected.starts_with("sha256:") {
                return Err(RegistryError::BadManifest { url, reason: format!("digest {expected}: berth verifies sha256 digests") });
            }
        }
        if let Some(expected) = expected_digest.or(announced.as_deref().filter(|d| d.starts_with("sha256:"))) {
            if expected != digest {
                return Err(RegistryError::DigestMismatch { url, expected: expected.to_string(), actual: digest });
            }
        }
        check_body_media_type(&body, content_type.as_deref()).map_err(|reason| RegistryError::ManifestType { url: url.clone(), reason })?;
        let manifest = parse_manifest(&body).map_err(|reason| RegistryError::BadManifest { url: url.clone(), reason })?;
        Ok((url, manifest, digest))
    }

    /// A GET, authorised: with what the registry accepted before, or, on a
    /// 401, after answering its challenge (once).
    async fn get(&self, path: &str, accept: Option<&str>, range_from: u64) -> Result<Response, RegistryError> {
        self.call(&Call { accept, range_from, ..Call::new(reqwest::Method::GET, path) }).await
    }

    /// Any request, authorised like `get`. A body is made afresh for each
    /// send, since a 401 means sending it again.
    pub(crate) async fn call(&self, call: &Call<'_>) -> Result<Response, RegistryError> {
        let authorization = self.authorization.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let response = self.send(call, authorization.as_ref()).await?;
        if response.status() != StatusCode::UNAUTHORIZED {
            return Ok(response);
        }
        match self.answer_challenge(&response).await? {
            Some(authorization) => self.send(call, Some(&authorization)).await,
            // Nothing to answer with: the caller reports the 401.
            None => Ok(response),
        }
    }

    async fn send(&self, call: &Call<'_>, authorization: Option<&HeaderValue>) -> Result<Response, RegistryError> {
        let scheme = self.scheme.get().copied().unwrap_or(match self.plan {
            SchemePlan::Http => Scheme::Http,
            SchemePlan::Https | SchemePlan::HttpsThenHttp => Scheme::Https,
        });
        let first = self.send_in(scheme, call, authorization).await;
        let error = match first {
            Ok(response) => {
                let _ = self.scheme.set(scheme);
                return Ok(response);
            }
            Err(error) => error,
        };
        if self.plan == SchemePlan::HttpsThenHttp && self.scheme.get().is_none() && self.speaks_plain_http(&error) {
            tracing::debug!(registry = %self.host, error = %error, "loopback registry: https failed; speaking plain http to it");
            *self.https_failure.lock().unwrap_or_else(|e| e.into_inner()) = Some(error.to_string());
            let response = self.send_in(Scheme::Http, call, authorization).await?;
            let _ = self.scheme.set(Scheme::Http);
            return Ok(response);
        }
        Err(error)
    }

    /// Whether a loopback host's failed https attempt says it speaks
    /// plain http: it answered the ClientHello in http; or it never
    /// answered it (some http servers wait for a request line that the
    /// binary ClientHello may never complete, so the handshake times out);
    /// or, with no port in the name, nothing listens on 443 (http then
    /// goes to 80, another port). Anything else, a certificate error
    /// above all, is the answer.
    fn speaks_plain_http(&self, error: &RegistryError) -> bool {
        match error {
            RegistryError::Tls { failure: TlsFailure::PlainHttpServer { .. }, .. } => true,
            RegistryError::Request { source, .. } if source.is_connect() => source.is_timeout() || !has_port(&self.host),
            _ => false,
        }
    }

    async fn send_in(&self, scheme: Scheme, call: &Call<'_>, authorization: Option<&HeaderValue>) -> Result<Response, RegistryError> {
        // A path on this host, or a whole URL the registry gave (an
        // upload's Location).
        let url = if call.path.starts_with('/') { format!("{}://{}{}", scheme.as_str(), self.host, call.path) } else { call.path.to_string() };
        let mut request = self.client.request(call.method.clone(), &url);
        if let Some(accept) = call.accept {
            request = request.header(ACCEPT, accept);
        }
        if call.range_from > 0 {
            request = request.header(RANGE, format!("bytes={}-", call.range_from));
        }
        if let Some(content_type) = call.content_type {
            request = request.header(CONTENT_TYPE, content_type);
        }
        // A body must come at the pace a download must (`Pacing`): the
        // answer is due within the headers' allowance plus one window for
        // every `min_bytes` of it.
        let mut within = self.headers_within;
        if let Some(body) = call.body {
            let (body, length) = body();
            let windows = (length / self.pacing.min_bytes.max(1)).saturating_add(1);
            within = within.saturating_add(Duration::from_secs_f64((self.pacing.window.as_secs_f64() * windows as f64).min(1e9)));
            request = request.header(reqwest::header::CONTENT_LENGTH, length).body(body);
        }
        if let Some(authorization) = authorization {
            request = request.header(reqwest::header::AUTHORIZATION, authorization.clone());
        }
        // The read timeout restarts with every byte, so headers sent a
        // byte at a time would never time out: they get one window, whole.
        match tokio::time::timeout(within, request.send()).await {
            // A read timeout before the headers (not while connecting, which
            // the https-then-http plan looks at): the headers stalled.
            Ok(Err(e)) if e.is_timeout() && !e.is_connect() => {
                Err(RegistryError::HeadersStalled { url, window: self.pacing.window, source: Some(e.without_url()) })
            }
            Ok(sent) => sent.map_err(|e| self.request_error(url, e)),
            Err(_) => Err(RegistryError::HeadersStalled { url, window: within, source: None }),
        }
    }

    fn request_error(&self, url: String, source: reqwest::Error) -> RegistryError {
        let source = source.without_url();
        let context = tls::HostContext { host: &self.host, host_dir: &self.host_dir, client_cert: self.client_cert.as_deref() };
        match tls::classify(&source, &context) {
            Some(failure) => RegistryError::Tls { url, failure, source },
            None => RegistryError::Request { url, source },
        }
    }

    /// Answers a 401's challenge: a Bearer challenge with a token from its
    /// realm (asked with the Basic credentials, if any), a Basic one with
    /// the credentials. `None` if there is nothing to answer with.
    async fn answer_challenge(&self, response: &Response) -> Result<Option<HeaderValue>, RegistryError> {
        if matches!(self.credentials, RegistryAuth::Bearer(_)) {
            return Ok(None); // the caller's own token was refused
        }
        let challenges: Vec<String> = response.headers().get_all(WWW_AUTHENTICATE).iter().filter_map(|v| v.to_str().ok()).map(String::from).collect();
        let mut basic = false;
        for header in &challenges {
            let Ok(parsed) = http_auth::parse_challenges(header) else { continue };
            for challenge in parsed {
                if challenge.scheme.eq_ignore_ascii_case("bearer") {
                    let param = |name: &str| challenge.params.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.to_unescaped());
                    let Some(realm) = param("realm") else { continue };
                    let token = self.fetch_token(&realm, param("service")).await?;
                    let header = sensitive_header(format!("Bearer {token}")).map_err(|message| RegistryError::Token { realm, status: None, message })?;
                    return Ok(Some(self.remember(header)));
                }
                basic |= challenge.scheme.eq_ignore_ascii_case("basic");
            }
        }
        match &self.credentials {
            RegistryAuth::Basic(user, password) if basic => {
                let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
                let header =
                    sensitive_header(format!("Basic {encoded}")).map_err(|message| RegistryError::Token { realm: self.host.clone(), status: None, message })?;
                Ok(Some(self.remember(header)))
            }
            _ => Ok(None),
        }
    }

    async fn fetch_token(&self, realm: &str, service: Option<String>) -> Result<String, RegistryError> {
        let token_error =
            |status: Option<StatusCode>, message: String| RegistryError::Token { realm: realm.to_string(), status: status.map(|s| s.as_u16()), message };
        let mut query = vec![("scope", format!("repository:{}:{}", self.repository, self.actions))];
        query.extend(service.map(|s| ("service", s)));
        let mut request = self.client.get(realm).query(&query);
        if let RegistryAuth::Basic(user, password) = &self.credentials {
            request = request.basic_auth(user, Some(password));
        }
        let response = request.send().await.map_err(|e| self.request_error(realm.to_string(), e))?;
        let status = response.status();
        let body = self.read_capped(response, "token answer", SMALL_ANSWER_LIMIT).await?;
        if !status.is_success() {
            return Err(token_error(Some(status), format!("HTTP {status}: {}", excerpt(&body))));
        }
        #[derive(serde::Deserialize)]
        struct TokenAnswer {
            token: Option<String>,
            access_token: Option<String>,
        }
        let answer: TokenAnswer = serde_json::from_slice(&body).map_err(|e| token_error(None, format!("not a token answer: {e}")))?;
        answer.token.or(answer.access_token).filter(|t| !t.is_empty()).ok_or_else(|| token_error(None, "the answer holds no token".into()))
    }

    fn remember(&self, value: HeaderValue) -> HeaderValue {
        *self.authorization.lock().unwrap_or_else(|e| e.into_inner()) = Some(value.clone());
        value
    }

    /// An answer other than the one wanted, as an error carrying the
    /// registry's error code when it sent one.
    async fn status_error(&self, response: Response) -> RegistryError {
        let url = response.url().to_string();
        let status = response.status().as_u16();
        let plain_http = response.url().scheme() == "http";
        let body = self.read_capped(response, "error answer", SMALL_ANSWER_LIMIT).await.unwrap_or_default();
        // Go's https servers answer a plain http request with this text and
        // nothing typed: the one place the text is all there is.
        if plain_http && status == 400 && String::from_utf8_lossy(&body).contains("HTTP request to an HTTPS server") {
            let message = excerpt(&body);
            return match self.https_failure.lock().unwrap_or_else(|e| e.into_inner()).clone() {
                Some(https_failure) => RegistryError::HttpsFailed { url, message, https_failure },
                None => RegistryError::HttpsOnly { url, host: self.host.clone(), message },
            };
        }
        let first = serde_json::from_slice::<OciEnvelope>(&body).ok().and_then(|e| e.errors.into_iter().next());
        match first {
            Some(e) => {
                let message = if e.message.is_empty() { format!("{:?}", e.code) } else { e.message.clone() };
                RegistryError::Status { url, status, code: Some(e.code), message }
            }
            // A HEAD's answer has no body: the status's own words then.
            None if body.iter().all(u8::is_ascii_whitespace) => RegistryError::Status {
                url,
                status,
                code: None,
                message: StatusCode::from_u16(status).ok().and_then(|s| s.canonical_reason()).unwrap_or("no message").to_string(),
            },
            None => RegistryError::Status { url, status, code: None, message: excerpt(&body) },
        }
    }
}

/// An Authorization value, kept out of debug output.
fn sensitive_header(value: String) -> Result<HeaderValue, String> {
    let mut header = HeaderValue::from_str(&value).map_err(|_| "the credentials hold characters no HTTP header can carry".to_string())?;
    header.set_sensitive(true);
    Ok(header)
}

impl Session {
    /// Reads an answer whole, at most `limit` bytes of it, at the session's
    /// pace.
    async fn read_capped(&self, response: Response, what: &'static str, limit: usize) -> Result<Vec<u8>, RegistryError> {
        let url = response.url().to_string();
        let mut stream = response.bytes_stream();
        let mut pace = self.pace();
        let mut body = Vec::new();
        while let Some(chunk) = pace.next(&mut stream).await.map_err(|short| self.stalled(&url, short))? {
            let chunk = chunk.map_err(|source| RegistryError::Body { url: url.clone(), source: source.without_url() })?;
            if body.len() + chunk.len() > limit {
                return Err(RegistryError::TooLarge { url, what, size: None, limit });
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}

/// Every check `Session::manifest` makes of a registry's manifest answer
/// that looks at its bytes, in the same order: the Content-Type header
/// (`header_media_type`), the body's `mediaType` against it
/// (`check_body_media_type`), then the schema version and the parse
/// (`parse_manifest`). `manifest` runs the steps one by one, the header's
/// before the body is read, to tell the refusals apart; this runs them
/// together for the fuzz targets (`crates/fuzz`), which feed it untrusted
/// bytes. The error is the refusal's reason, as the pull reports it.
pub fn parse_manifest_answer(content_type: Option<&str>, body: &[u8]) -> Result<OciManifest, String> {
    let header = match content_type {
        Some(value) => header_media_type(value)?,
        None => None,
    };
    check_body_media_type(body, header.as_deref())?;
    parse_manifest(body)
}

/// The media type a Content-Type header names, if it names one berth can
/// pull. A generic JSON or binary type, as static file servers answer,
/// claims nothing: the body's `mediaType` decides then.
fn header_media_type(value: &str) -> Result<Option<String>, String> {
    let media_type = value.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    if matches!(media_type.as_str(), "application/json" | "application/octet-stream") {
        return Ok(None);
    }
    if MANIFEST_TYPES.split(", ").any(|t| t == media_type) {
        return Ok(Some(media_type));
    }
    Err(format!("served as {value:?}, which is not an image manifest or index media type"))
}

/// The body's `mediaType`, when it has one, must be the header's (a
/// manifest type, from `header_media_type`): a registry that says one
/// thing and serves another is not trusted to mean either.
fn check_body_media_type(body: &[u8], header: Option<&str>) -> Result<(), String> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Typed {
        media_type: Option<String>,
    }
    let Ok(Typed { media_type: Some(body_type) }) = serde_json::from_slice::<Typed>(body) else {
        return Ok(()); // no mediaType, or not JSON: parse_manifest says what is wrong
    };
    if !MANIFEST_TYPES.split(", ").any(|t| t == body_type) {
        return Err(format!("unsupported manifest media type {body_type:?}: not an image manifest or index"));
    }
    match header {
        Some(header) if header != body_type => Err(format!("served as {header:?} but its mediaType is {body_type:?}")),
        _ => Ok(()),
    }
}

/// The start of an answer's text, for messages.
fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    match text.char_indices().nth(200) {
        Some((end, _)) => format!("{}...", &text[..end]),
        None => text.to_string(),
    }
}

/// Checks what oci-client's types do not: the schema version and, when
/// given, the media type; then parses the manifest or index.
fn parse_manifest(body: &[u8]) -> Result<OciManifest, String> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Versioned {
        schema_version: u32,
        media_type: Option<String>,
    }
    let versioned: Versioned = serde_json::from_slice(body).map_err(|e| format!("not a manifest: {e}"))?;
    if versioned.schema_version != 2 {
        return Err(format!("manifest schema version {} (berth reads version 2)", versioned.schema_version));
    }
    if let Some(media_type) = &versioned.media_type {
        if !MANIFEST_TYPES.split(", ").any(|t| t == media_type) {
            return Err(format!("unsupported manifest media type {media_type}"));
        }
    }
    serde_json::from_slice(body).map_err(|e| format!("not a manifest: {e}"))
}

/// `linux/amd64`, as image indexes name platforms.
fn node_platform() -> String {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "powerpc64" => "ppc64le",
        other => other,
    };
    format!("{}/{arch}", std::env::consts::OS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts_are_recognised_with_or_without_a_port() {
        for host in ["localhost", "localhost:5000", "LOCALHOST:1", "127.0.0.1", "127.0.0.1:5000", "127.1.2.3:80", "[::1]:5000", "::1"] {
            assert!(is_loopback(host), "{host}");
        }
        for host in ["registry.local:5000", "10.0.0.1:5000", "localhost.example.com", "[::2]:5000", "docker.io"] {
            assert!(!is_loopback(host), "{host}");
        }
    }

    #[test]
    fn ports_are_told_from_addresses() {
        for host in ["localhost:5000", "127.0.0.1:80", "[::1]:5000", "registry.local:443"] {
            assert!(has_port(host), "{host}");
        }
        for host in ["localhost", "127.0.0.1", "::1", "[::1]", "registry.local", "host:"] {
            assert!(!has_port(host), "{host}");
        }
    }

    #[test]
    fn explicit_insecure_wins_over_loopback() {
        let insecure = ["127.0.0.1:5000".to_string()];
        assert_eq!(SchemePlan::for_host("127.0.0.1:5000", &insecure), SchemePlan::Http);
        assert_eq!(SchemePlan::for_host("127.0.0.1:5001", &insecure), SchemePlan::HttpsThenHttp);
        assert_eq!(SchemePlan::for_host("registry.local:5000", &insecure), SchemePlan::Https);
    }

    #[test]
    fn manifests_are_checked_before_they_are_parsed() {
        assert!(parse_manifest(br#"{"schemaVersion": 1}"#).unwrap_err().contains("version 1"));
        let odd = br#"{"schemaVersion": 2, "mediaType": "text/plain"}"#;
        assert!(parse_manifest(odd).unwrap_err().contains("text/plain"));
        let index = br#"{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": []}"#;
        assert!(matches!(parse_manifest(index).unwrap(), OciManifest::ImageIndex(_)));
    }

    #[test]
    fn manifest_media_types_come_from_header_and_body_alike() {
        assert_eq!(
            header_media_type("application/vnd.oci.image.index.v1+json; charset=utf-8").unwrap().as_deref(),
            Some("application/vnd.oci.image.index.v1+json")
        );
        assert_eq!(header_media_type("application/json").unwrap(), None, "a generic type claims nothing");
        assert!(header_media_type("text/html").unwrap_err().contains("text/html"));
        let manifest = br#"{"mediaType": "application/vnd.oci.image.manifest.v1+json"}"#;
        assert!(check_body_media_type(manifest, None).is_ok());
        assert!(check_body_media_type(manifest, Some("application/vnd.oci.image.manifest.v1+json")).is_ok());
        let e = check_body_media_type(manifest, Some("application/vnd.oci.image.index.v1+json")).unwrap_err();
        assert!(e.contains("index") && e.contains("manifest.v1"), "{e}");
        assert!(check_body_media_type(br#"{"mediaType": "text/plain"}"#, None).unwrap_err().contains("text/plain"));
    }

    #[tokio::test(start_paused = true)]
    async fn pace_is_judged_by_what_a_window_brings() {
        let pacing = Pacing { window: Duration::from_secs(10), min_bytes: 100 };
        // 60 bytes every 4 s: 120 or more a window, enough, until it ends.
        let steady = futures_util::stream::unfold(0, |n| async move {
            tokio::time::sleep(Duration::from_secs(4)).await;
            (n < 6).then(|| (Ok::<_, ()>(vec![0u8; 60]), n + 1))
        });
        let (mut steady, mut pace) = (Box::pin(steady), Pace::new(pacing));
        let mut chunks = 0;
        while let Some(chunk) = pace.next(&mut steady).await.unwrap() {
            chunk.unwrap();
            chunks += 1;
        }
        assert_eq!(chunks, 6);
        // A byte every 3 s keeps a 10 s read timeout at bay, but is 3 a window.
        let trickle = futures_util::stream::unfold((), |()| async {
            tokio::time::sleep(Duration::from_secs(3)).await;
            Some((Ok::<_, ()>(vec![0u8]), ()))
        });
        let (mut trickle, mut pace) = (Box::pin(trickle), Pace::new(pacing));
        let short = loop {
            match pace.next(&mut trickle).await {
                Ok(_) => continue,
                Err(short) => break short,
            }
        };
        assert_eq!(short, (Duration::from_secs(10), 3));
        // Silence ends at the window, not later.
        let started = tokio::time::Instant::now();
        let mut silent = futures_util::stream::pending::<Result<Vec<u8>, ()>>();
        assert_eq!(Pace::new(pacing).next(&mut silent).await.unwrap_err(), (Duration::from_secs(10), 0));
        assert_eq!(started.elapsed(), Duration::from_secs(10));
    }

    #[test]
    fn excerpts_are_short() {
        assert_eq!(excerpt(b"  short\n"), "short");
        assert_eq!(excerpt("é".repeat(300).as_bytes()).chars().count(), 203);
    }
}
