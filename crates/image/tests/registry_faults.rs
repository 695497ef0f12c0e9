//! Pulls from a registry that misbehaves on purpose: an HTTP server on
//! loopback, written here, that speaks just enough of the distribution API
//! (`/v2/`, manifests, blobs) to serve one small image and then break the
//! rule each test is about. Every pull must fail within its window, say why
//! and store nothing of the image.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use berth_image::{
    content::ContentStore,
    index::ImageIndex,
    pull::{pull, PullOptions},
    Error, RegistryError, RegistryErrorKind,
};
use berth_snapshot::Overlay;
use berth_testkit::one_layer_image::{OneLayerImage, OCI_MANIFEST};
use oci_client::secrets::RegistryAuth;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const LIMIT: u64 = 4 << 20;
/// The stall window the tests pull with, and what it must bring.
const WINDOW: Duration = Duration::from_secs(2);
const MIN_BYTES: u64 = 1024;
/// A trickle: faster than any read timeout, far slower than MIN_BYTES a window.
const DRIP: Duration = Duration::from_millis(200);

/// How the server breaks the rules.
#[derive(Clone, Copy, Debug)]
enum Fault {
    /// Content-Length over the limit, then nothing: the client must not wait.
    ManifestLengthOverLimit,
    /// No Content-Length, chunked: bytes without end.
    ManifestChunkedWithoutEnd,
    /// No Content-Length, no chunks: bytes until the client hangs up.
    ManifestUntilClose,
    /// A right manifest served as `text/html`.
    ManifestServedAsHtml,
    /// Served as an index; the body says it is a manifest.
    ManifestTypesDisagree,
    /// Generic Content-Type; the body's mediaType is a layer's.
    ManifestBodyIsNotAManifest,
    /// The manifest, a byte at a time.
    ManifestTrickles,
    /// The answer's headers, a byte at a time.
    HeadersTrickle,
    /// Manifest and config as they should be; the layer, a byte at a time.
    LayerTrickles,
}

/// The image the server serves: one layer, its config, its manifest.
struct Image {
    blobs: OneLayerImage,
    /// When the server began to drip, for tests that measure from there
    /// (a layer's trickle starts after the manifest and config are in).
    trickle_started: std::sync::OnceLock<Instant>,
}

impl Image {
    fn new() -> Self {
        Self { blobs: OneLayerImage::new(64 * 1024, 13), trickle_started: Default::default() }
    }
}

impl std::ops::Deref for Image {
    type Target = OneLayerImage;
    fn deref(&self) -> &OneLayerImage {
        &self.blobs
    }
}

/// Starts the server; returns its `host:port`. Its tasks end with the
/// test's runtime.
async fn serve(fault: Fault, image: Arc<Image>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let host = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            tokio::spawn(answer(socket, fault, image.clone()));
        }
    });
    host
}

/// Reads one request head and answers it; one request per connection.
async fn answer(mut socket: TcpStream, fault: Fault, image: Arc<Image>) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match socket.read(&mut byte).await {
            Ok(1) => head.push(byte[0]),
            _ => return,
        }
    }
    let head = String::from_utf8_lossy(&head);
    let path = head.split(' ').nth(1).unwrap_or("").to_string();
    let _ = match path.as_str() {
        "/v2/" => send(&mut socket, "application/json", b"{}").await,
        p if p.contains("/manifests/") => manifest(&mut socket, fault, &image).await,
        p if p.ends_with(&image.config_digest) => send(&mut socket, "application/octet-stream", &image.config).await,
        p if p.ends_with(&image.layer_digest) => match fault {
            Fault::LayerTrickles => trickle(&mut socket, "application/octet-stream", &image.layer, &image).await,
            _ => send(&mut socket, "application/octet-stream", &image.layer).await,
        },
        _ => socket.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").await,
    };
}

async fn manifest(socket: &mut TcpStream, fault: Fault, image: &Image) -> std::io::Result<()> {
    match fault {
        Fault::ManifestLengthOverLimit => {
            let head = format!("HTTP/1.1 200 OK\r\nContent-Type: {OCI_MANIFEST}\r\nContent-Length: {}\r\n\r\n{{", LIMIT + 1);
            socket.write_all(head.as_bytes()).await?;
            // Hold the connection open, sending nothing more.
            tokio::time::sleep(Duration::from_secs(60)).await;
            Ok(())
        }
        Fault::ManifestChunkedWithoutEnd => {
            let head = format!("HTTP/1.1 200 OK\r\nContent-Type: {OCI_MANIFEST}\r\nTransfer-Encoding: chunked\r\n\r\n");
            socket.write_all(head.as_bytes()).await?;
            let chunk = format!("{:x}\r\n{}\r\n", 64 * 1024, " ".repeat(64 * 1024));
            loop {
                socket.write_all(chunk.as_bytes()).await?; // ends when the client hangs up
            }
        }
        Fault::ManifestUntilClose => {
            let head = format!("HTTP/1.1 200 OK\r\nContent-Type: {OCI_MANIFEST}\r\nConnection: close\r\n\r\n");
            socket.write_all(head.as_bytes()).await?;
            let spaces = vec![b' '; 64 * 1024];
            loop {
                socket.write_all(&spaces).await?;
            }
        }
        Fault::ManifestServedAsHtml => send(socket, "text/html; charset=utf-8", &image.manifest).await,
        Fault::ManifestTypesDisagree => send(socket, OCI_INDEX, &image.manifest).await,
        Fault::ManifestBodyIsNotAManifest => {
            let body = br#"{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.layer.v1.tar", "layers": []}"#;
            send(socket, "application/json", body).await
        }
        Fault::ManifestTrickles => trickle(socket, OCI_MANIFEST, &image.manifest, image).await,
        Fault::HeadersTrickle => {
            let _ = image.trickle_started.set(Instant::now());
            for b in format!("HTTP/1.1 200 OK\r\nContent-Type: {OCI_MANIFEST}\r\nX-Padding: {}", "x".repeat(1000)).bytes() {
                socket.write_all(&[b]).await?;
                tokio::time::sleep(DRIP).await;
            }
            Ok(())
        }
        Fault::LayerTrickles => send(socket, OCI_MANIFEST, &image.manifest).await,
    }
}

async fn send(socket: &mut TcpStream, content_type: &str, body: &[u8]) -> std::io::Result<()> {
    let head = format!("HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
    socket.write_all(head.as_bytes()).await?;
    socket.write_all(body).await
}

/// An honest Content-Length, then one byte every `DRIP`: never silent for
/// long, never done.
async fn trickle(socket: &mut TcpStream, content_type: &str, body: &[u8], image: &Image) -> std::io::Result<()> {
    let _ = image.trickle_started.set(Instant::now());
    let head = format!("HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
    socket.write_all(head.as_bytes()).await?;
    for b in body {
        socket.write_all(&[*b]).await?;
        tokio::time::sleep(DRIP).await;
    }
    Ok(())
}

struct Stores {
    _dir: tempfile::TempDir,
    paths: berth_store::Paths,
    content: Arc<ContentStore>,
    snapshots: Arc<Overlay>,
}

fn stores() -> Stores {
    let dir = tempfile::tempdir().unwrap();
    let paths = berth_store::Paths::new(dir.path().join("root"), dir.path().join("state"));
    let content = Arc::new(ContentStore::new(&paths).unwrap());
    let snapshots = Arc::new(Overlay::new(paths.snapshots()).unwrap());
    Stores { _dir: dir, paths, content, snapshots }
}

impl Stores {
    /// No blob but `kept`, no snapshot (committed or half unpacked), no
    /// image record.
    fn assert_nothing_but(&self, kept: &[&str]) {
        let mut blobs = self.content.list().unwrap();
        blobs.sort();
        assert_eq!(blobs, kept, "blobs left in {}", self.paths.root().display());
        assert!(self.snapshots.list().unwrap().is_empty(), "snapshots left: {:?}", self.snapshots.list().unwrap());
        assert!(ImageIndex::open(&self.paths).unwrap().list().is_empty(), "an image record was written");
    }
}

/// Pulls from a server with `fault`; returns the error and how long it
/// took, from the start of the trickle if there was one.
async fn pull_with(fault: Fault, stores: &Stores) -> (Error, Duration) {
    let image = Arc::new(Image::new());
    let host = serve(fault, image.clone()).await;
    let opts = PullOptions { insecure_registries: vec![host.clone()], stall_timeout: WINDOW, stall_min_bytes: MIN_BYTES, ..Default::default() };
    let started = Instant::now();
    // A bound of its own, so a pull that hangs fails the test instead of
    // wedging it.
    let pulled = tokio::time::timeout(
        Duration::from_secs(30),
        pull(&format!("{host}/test/img:1"), RegistryAuth::Anonymous, &opts, stores.content.clone(), stores.snapshots.clone()),
    )
    .await
    .unwrap_or_else(|_| panic!("{fault:?}: the pull was still running after 30s"));
    let error = pulled.expect_err("the pull must fail");
    (error, image.trickle_started.get().copied().unwrap_or(started).elapsed())
}

/// The registry error inside a pull's error, with its kind.
fn registry_error(error: &Error) -> (RegistryErrorKind, &RegistryError) {
    match error {
        Error::Registry { kind, source, .. } => (*kind, source),
        other => panic!("not a registry error: {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_manifest_is_refused_before_it_is_read() {
    for fault in [Fault::ManifestLengthOverLimit, Fault::ManifestChunkedWithoutEnd, Fault::ManifestUntilClose] {
        let stores = stores();
        let (error, took) = pull_with(fault, &stores).await;
        let (kind, source) = registry_error(&error);
        let message = error.to_string();
        assert_eq!(kind, RegistryErrorKind::Refused, "{fault:?}: {message}");
        let announced = matches!(fault, Fault::ManifestLengthOverLimit).then_some(LIMIT + 1);
        assert!(matches!(source, RegistryError::TooLarge { size, limit: 4194304, .. } if *size == announced), "{fault:?}: {source:?}");
        assert!(message.contains("4194304") && message.contains("/test/img:1"), "{fault:?}: names the limit and the reference: {message}");
        // From the header: at once, not when the server gives up.
        assert!(took < WINDOW, "{fault:?}: took {took:?}");
        stores.assert_nothing_but(&[]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manifest_of_the_wrong_type_is_refused_naming_it() {
    for (fault, named) in [
        (Fault::ManifestServedAsHtml, vec!["text/html"]),
        (Fault::ManifestTypesDisagree, vec![OCI_INDEX, OCI_MANIFEST]),
        (Fault::ManifestBodyIsNotAManifest, vec!["application/vnd.oci.image.layer.v1.tar"]),
    ] {
        let stores = stores();
        // No time bound: refused for its type, not stalled, as the kind and
        // source below say (a bound failed on a loaded machine).
        let (error, _) = pull_with(fault, &stores).await;
        let (kind, source) = registry_error(&error);
        let message = error.to_string();
        assert_eq!(kind, RegistryErrorKind::Refused, "{fault:?}: {message}");
        assert!(matches!(source, RegistryError::ManifestType { .. }), "{fault:?}: {source:?}");
        for name in named {
            assert!(message.contains(name), "{fault:?}: {message} should name {name}");
        }
        stores.assert_nothing_but(&[]);
    }
}

/// A trickle keeps a plain read timeout from ever firing; judged by what
/// each window brings, it fails at the first window's end.
async fn assert_trickle_fails_in_its_window(fault: Fault, stores: &Stores, within: Duration) {
    let (error, took) = pull_with(fault, stores).await;
    let (kind, source) = registry_error(&error);
    let message = error.to_string();
    assert_eq!(kind, RegistryErrorKind::Unavailable, "{fault:?}: {message}");
    match fault {
        Fault::HeadersTrickle => assert!(matches!(source, RegistryError::HeadersStalled { .. }), "{fault:?}: {source:?}"),
        _ => assert!(matches!(source, RegistryError::Stalled { min_bytes: MIN_BYTES, received, .. } if *received < MIN_BYTES), "{fault:?}: {source:?}"),
    }
    assert!(message.contains("stalled") && message.contains("/test/img:1"), "{fault:?}: {message}");
    // Not before the window (less a little: the server's clock starts
    // after the client's), and not long after it, even on a busy machine.
    assert!(took > WINDOW - DRIP && took < within + Duration::from_secs(2), "{fault:?}: failed after {took:?}, window {WINDOW:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickling_manifest_fails_like_a_stalled_one() {
    let stores = stores();
    assert_trickle_fails_in_its_window(Fault::ManifestTrickles, &stores, WINDOW).await;
    stores.assert_nothing_but(&[]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trickling_headers_fail_like_a_stalled_answer() {
    let stores = stores();
    // Headers get the connect allowance (at most a window) and a window.
    assert_trickle_fails_in_its_window(Fault::HeadersTrickle, &stores, 2 * WINDOW).await;
    stores.assert_nothing_but(&[]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickling_layer_fails_like_a_stalled_one() {
    let stores = stores();
    assert_trickle_fails_in_its_window(Fault::LayerTrickles, &stores, WINDOW).await;
    // The config arrived whole and stays, as after any interrupted pull
    // (the next pull reuses it); the layer is neither stored nor unpacked.
    let image = Image::new();
    assert!(!stores.content.has(&image.layer_digest));
    stores.assert_nothing_but(&[image.config_digest.as_str()]);
}
