//! A client that gives up on a PullImage (its gRPC deadline passes) ends
//! the download at once: berthd does not keep pulling for nobody until the
//! stall window (a minute by default) gives up too.

mod common;

use std::{
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use berth_testkit::one_layer_image::OneLayerImage;
use common::{channel, Berthd};
use k8s_cri::v1::{image_service_client::ImageServiceClient, ImageSpec, ListImagesRequest, PullImageRequest};

const DEADLINE: Duration = Duration::from_secs(3);

/// A registry that serves one image's manifest and config, then its layer
/// a byte every 100 ms: fast enough that no read timeout fires, slow
/// enough that berthd's stall window (60 s here) is what would end it.
/// Records when the client hung up on the layer.
struct TricklingRegistry {
    host: String,
    hung_up: Arc<Mutex<Option<Instant>>>,
}

impl TricklingRegistry {
    fn start() -> Self {
        let OneLayerImage { layer, layer_digest, config, config_digest, manifest } = OneLayerImage::new(4096, 11);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let host = listener.local_addr().unwrap().to_string();
        let hung_up = Arc::new(Mutex::new(None));
        let recorder = hung_up.clone();
        std::thread::spawn(move || {
            for socket in listener.incoming().flatten() {
                let (layer, layer_digest, config, config_digest, manifest, recorder) =
                    (layer.clone(), layer_digest.clone(), config.clone(), config_digest.clone(), manifest.clone(), recorder.clone());
                std::thread::spawn(move || {
                    let mut socket = socket;
                    let path = request_path(&mut socket);
                    let _ = if path == "/v2/" {
                        answer(&mut socket, "application/json", b"{}")
                    } else if path.contains("/manifests/") {
                        answer(&mut socket, "application/vnd.oci.image.manifest.v1+json", &manifest)
                    } else if path.ends_with(&config_digest) {
                        answer(&mut socket, "application/octet-stream", &config)
                    } else if path.ends_with(&layer_digest) {
                        if trickle(&mut socket, &layer).is_err() {
                            *recorder.lock().unwrap() = Some(Instant::now());
                        }
                        Ok(())
                    } else {
                        socket.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                    };
                });
            }
        });
        Self { host, hung_up }
    }
}

fn request_path(socket: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && socket.read(&mut byte).map(|n| n == 1).unwrap_or(false) {
        head.push(byte[0]);
    }
    String::from_utf8_lossy(&head).split(' ').nth(1).unwrap_or("").to_string()
}

fn answer(socket: &mut TcpStream, content_type: &str, body: &[u8]) -> std::io::Result<()> {
    write!(socket, "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len())?;
    socket.write_all(body)
}

/// Fails once the client has closed the connection (a write to a closed
/// socket fails on the second try at most).
fn trickle(socket: &mut TcpStream, body: &[u8]) -> std::io::Result<()> {
    write!(socket, "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len())?;
    for b in body {
        socket.write_all(&[*b])?;
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pull_whose_client_gave_up_stops_downloading() {
    let registry = TricklingRegistry::start();
    let berthd = Berthd::start(&format!("[registry]\ninsecure = [\"{}\"]\n", registry.host));
    let mut img = ImageServiceClient::new(channel(&berthd.socket).await);
    let image = format!("{}/slow/img:1", registry.host);

    let mut request = tonic::Request::new(PullImageRequest { image: Some(ImageSpec { image: image.clone(), ..Default::default() }), ..Default::default() });
    request.set_timeout(DEADLINE);
    let started = Instant::now();
    let error = img.pull_image(request).await.expect_err("the layer never completes within the deadline");
    assert!(matches!(error.code(), tonic::Code::DeadlineExceeded | tonic::Code::Cancelled), "{error}");
    let gave_up = started.elapsed();

    // The download ends with the request, not when the stall window (60 s)
    // would end it; 20 s is far from both.
    let hung_up = loop {
        if let Some(at) = *registry.hung_up.lock().unwrap() {
            break at.duration_since(started);
        }
        assert!(started.elapsed() < DEADLINE + Duration::from_secs(20), "berthd still downloads {:?} after its client gave up", started.elapsed() - gave_up);
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    println!("client gave up after {gave_up:?}; berthd hung up on the registry after {hung_up:?}");
    let listed = img.list_images(ListImagesRequest::default()).await.unwrap().into_inner().images;
    assert!(listed.is_empty(), "a pull nobody waits for recorded an image: {listed:?}");
}
