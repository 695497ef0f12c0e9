//! How berthd reaches registries: loopback ones over plain http with no
//! configuration, TLS ones with the CA and client certificate from
//! `certs_dir/<host:port>/`, and TLS failures named by their cause.

mod common;

use std::path::Path;

use berth_testkit::{PeerNamespace, Registry, RegistryOptions, TlsMode};
use common::{channel, Berthd};
use k8s_cri::v1::{image_service_client::ImageServiceClient, ImageSpec, PullImageRequest};
use tonic::transport::Channel;

fn request(image: &str) -> PullImageRequest {
    PullImageRequest { image: Some(ImageSpec { image: image.into(), ..Default::default() }), ..Default::default() }
}

async fn pull(img: &mut ImageServiceClient<Channel>, image: &str) -> Result<String, tonic::Status> {
    img.pull_image(request(image)).await.map(|r| r.into_inner().image_ref)
}

/// berthd reading certs.d from `certs` and, if any, these `[registry]` lines.
fn berthd_with_certs_dir(certs: &Path, registry_lines: &str) -> Berthd {
    Berthd::start(&format!("[registry]\ncerts_dir = \"{}\"\n{registry_lines}", certs.display()))
}

fn install(from: &Path, dir: &Path, name: &str) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::copy(from, dir.join(name)).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loopback_registry_is_pulled_over_plain_http_with_no_configuration() {
    let registry = Registry::start();
    let work = tempfile::tempdir().unwrap();
    berth_testkit::build_and_push(&registry, work.path(), "plain/app:1", None);
    // Every default: no registry.insecure, no certs_dir of the test's.
    let berthd = Berthd::start("");
    let mut img = ImageServiceClient::new(channel(&berthd.socket).await);

    let by_address = pull(&mut img, &format!("127.0.0.1:{}/plain/app:1", registry.port)).await.unwrap();
    let by_name = pull(&mut img, &format!("localhost:{}/plain/app:1", registry.port)).await.unwrap();
    assert!(by_address.starts_with("sha256:"), "{by_address}");
    assert_eq!(by_address, by_name, "the same image by either loopback name");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_registry_is_refused_with_the_cause_until_its_ca_is_in_certs_dir() {
    let registry = Registry::start_with(RegistryOptions { tls: Some(TlsMode::ServerOnly), ..Default::default() });
    let tls = registry.tls.as_ref().unwrap();
    let work = tempfile::tempdir().unwrap();
    berth_testkit::build_and_push(&registry, work.path(), "tls/app:1", None);
    let certs = tempfile::tempdir().unwrap();
    let berthd = berthd_with_certs_dir(certs.path(), "");
    let mut img = ImageServiceClient::new(channel(&berthd.socket).await);
    let image = format!("{}/tls/app:1", registry.host());
    let host_dir = certs.path().join(registry.host());

    // No CA: refused, naming the issuer and where its CA goes; a TLS setup
    // problem, not one a retry fixes.
    let err = pull(&mut img, &image).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{}", err.message());
    assert!(err.message().contains("certificate signed by unknown authority"), "{}", err.message());
    assert!(err.message().contains(berth_testkit::TEST_CA_NAME), "the issuer is named: {}", err.message());
    assert!(err.message().contains(&host_dir.join("ca.crt").display().to_string()), "{}", err.message());

    // A file that is no certificate: named, at pull time.
    std::fs::create_dir_all(&host_dir).unwrap();
    std::fs::write(host_dir.join("ca.crt"), "not a certificate\n").unwrap();
    let err = pull(&mut img, &image).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{}", err.message());
    assert!(err.message().contains(&host_dir.join("ca.crt").display().to_string()), "{}", err.message());

    // The CA in place: the same berthd pulls, in TLS (it was never http:
    // the registry answers only https).
    install(&tls.ca_cert, &host_dir, "ca.crt");
    let id = pull(&mut img, &image).await.unwrap();
    assert!(id.starts_with("sha256:"), "{id}");

    // Another name for the host is another directory.
    let by_name = format!("localhost:{}/tls/app:1", registry.port);
    let err = pull(&mut img, &by_name).await.unwrap_err();
    assert!(err.message().contains("unknown authority"), "{}", err.message());
    install(&tls.ca_cert, &certs.path().join(format!("localhost:{}", registry.port)), "ca.crt");
    assert_eq!(pull(&mut img, &by_name).await.unwrap(), id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_that_demands_a_client_certificate_gets_the_one_in_certs_dir() {
    let registry = Registry::start_with(RegistryOptions { tls: Some(TlsMode::RequireClientCert), ..Default::default() });
    let tls = registry.tls.as_ref().unwrap();
    let work = tempfile::tempdir().unwrap();
    berth_testkit::build_and_push(&registry, work.path(), "mtls/app:1", None);
    let certs = tempfile::tempdir().unwrap();
    let host_dir = certs.path().join(registry.host());
    install(&tls.ca_cert, &host_dir, "ca.crt");
    let berthd = berthd_with_certs_dir(certs.path(), "");
    let mut img = ImageServiceClient::new(channel(&berthd.socket).await);
    let image = format!("{}/mtls/app:1", registry.host());

    // Without one: refused, saying where it goes.
    let err = pull(&mut img, &image).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{}", err.message());
    assert!(err.message().contains("requires a client certificate"), "{}", err.message());
    assert!(err.message().contains(&host_dir.display().to_string()), "{}", err.message());

    // Half a pair is a configuration error naming both files.
    install(&tls.client_cert, &host_dir, "client.cert");
    let err = pull(&mut img, &image).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{}", err.message());
    assert!(err.message().contains("client.cert") && err.message().contains("client.key"), "{}", err.message());

    // A certificate the registry's client CA did not issue: refused, named.
    let wrong = tempfile::tempdir().unwrap();
    let (wrong_cert, wrong_key) = (wrong.path().join("c.pem"), wrong.path().join("k.pem"));
    berth_testkit::run(
        std::process::Command::new("openssl")
            .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "1", "-subj", "/CN=stranger", "-keyout"])
            .arg(&wrong_key)
            .arg("-out")
            .arg(&wrong_cert),
    );
    install(&wrong_cert, &host_dir, "client.cert");
    install(&wrong_key, &host_dir, "client.key");
    let err = pull(&mut img, &image).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{}", err.message());
    assert!(err.message().contains("refused the client certificate"), "{}", err.message());
    assert!(err.message().contains(&host_dir.join("client.cert").display().to_string()), "{}", err.message());

    // The right pair: pulled.
    install(&tls.client_cert, &host_dir, "client.cert");
    install(&tls.client_key, &host_dir, "client.key");
    let id = pull(&mut img, &image).await.unwrap();
    assert!(id.starts_with("sha256:"), "{id}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_where_https_is_expected_names_registry_insecure() {
    // A plain-http registry on an address that is not loopback.
    let namespace = PeerNamespace::create();
    let registry = Registry::start_with(RegistryOptions { namespace: Some(&namespace), ..Default::default() });
    let work = tempfile::tempdir().unwrap();
    berth_testkit::build_and_push(&registry, work.path(), "far/app:1", None);
    let certs = tempfile::tempdir().unwrap();
    let image = format!("{}/far/app:1", registry.host());
    {
        let berthd = berthd_with_certs_dir(certs.path(), "");
        let mut img = ImageServiceClient::new(channel(&berthd.socket).await);
        let err = pull(&mut img, &image).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{}", err.message());
        let want = format!("server gave an HTTP response to an HTTPS client; add \"{}\" to registry.insecure", registry.host());
        assert!(err.message().contains(&want), "{}", err.message());
    }
    // Listed as insecure, it is pulled.
    let berthd = berthd_with_certs_dir(certs.path(), &format!("insecure = [\"{}\"]\n", registry.host()));
    let mut img = ImageServiceClient::new(channel(&berthd.socket).await);
    assert!(pull(&mut img, &image).await.unwrap().starts_with("sha256:"));
    drop(registry);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_registry_listed_as_insecure_is_spoken_to_in_plain_http_and_says_so() {
    let registry = Registry::start_with(RegistryOptions { tls: Some(TlsMode::ServerOnly), ..Default::default() });
    let certs = tempfile::tempdir().unwrap();
    // Its CA is even in place: an explicit insecure entry still means http.
    install(&registry.tls.as_ref().unwrap().ca_cert, &certs.path().join(registry.host()), "ca.crt");
    let berthd = berthd_with_certs_dir(certs.path(), &format!("insecure = [\"{}\"]\n", registry.host()));
    let mut img = ImageServiceClient::new(channel(&berthd.socket).await);
    let err = pull(&mut img, &format!("{}/any/app:1", registry.host())).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{}", err.message());
    assert!(err.message().contains(&format!("remove \"{}\" from registry.insecure", registry.host())), "{}", err.message());
}
