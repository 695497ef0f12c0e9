//! The CRI ImageService against a local registry, across a berthd crash.

mod common;

use common::{channel, Berthd};
use k8s_cri::v1::{image_service_client::ImageServiceClient, *};

fn spec(image: &str) -> Option<ImageSpec> {
    Some(ImageSpec { image: image.into(), ..Default::default() })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_status_list_survive_a_restart_and_remove_collects_everything() {
    assert!(nix_is_root(), "run as root (README)");
    let registry = berth_testkit::Registry::start();
    let work = tempfile::tempdir().unwrap();
    berth_testkit::build_and_push(&registry, work.path(), "apps/busybox:1.0", Some("1000:1000"));
    let mut berthd = Berthd::start(&format!("[registry]\ninsecure = [\"{}\"]\n", registry.host()));
    let mut img = ImageServiceClient::new(channel(&berthd.socket).await);
    let name = format!("{}/apps/busybox:1.0", registry.host());

    let id = img.pull_image(PullImageRequest { image: spec(&name), ..Default::default() }).await.unwrap().into_inner().image_ref;
    assert!(id.starts_with("sha256:") && id.len() == 71, "{id}");

    // The same id whichever way the image is named.
    for by in [name.as_str(), id.as_str(), &id[7..]] {
        let s = img.image_status(ImageStatusRequest { image: spec(by), verbose: true }).await.unwrap().into_inner();
        let image = s.image.unwrap_or_else(|| panic!("no image for {by}"));
        assert_eq!(image.id, id);
        assert_eq!(image.repo_tags, std::slice::from_ref(&name));
        assert!(image.repo_digests[0].starts_with(&format!("{}/apps/busybox@sha256:", registry.host())));
        assert_eq!(image.uid.map(|u| u.value), Some(1000));
        assert!(image.size > 500_000, "size {}", image.size);
        assert!(s.info["info"].contains("chainIDs"));
    }

    // Crash berthd; the image is still there after the restart.
    berthd.restart();
    let mut img = ImageServiceClient::new(channel(&berthd.socket).await);
    let list = img.list_images(ListImagesRequest::default()).await.unwrap().into_inner().images;
    assert_eq!(list.iter().map(|i| i.id.as_str()).collect::<Vec<_>>(), [id.as_str()]);
    let fs = img.image_fs_info(ImageFsInfoRequest::default()).await.unwrap().into_inner();
    assert!(fs.image_filesystems.iter().any(|f| f.used_bytes.as_ref().unwrap().value > 500_000));

    // Bad input.
    let err = img.pull_image(PullImageRequest { image: spec("Not A Ref!"), ..Default::default() }).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(err.message().contains("Not A Ref!"), "{}", err.message());
    let err = img.pull_image(PullImageRequest { image: spec(&format!("{}/apps/none:1", registry.host())), ..Default::default() }).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound, "{}", err.message());
    assert!(img.image_status(ImageStatusRequest { image: spec("nothing:here"), verbose: false }).await.unwrap().into_inner().image.is_none());

    // Remove by tag: the image, its layers and blobs go; twice is fine.
    img.remove_image(RemoveImageRequest { image: spec(&name) }).await.unwrap();
    img.remove_image(RemoveImageRequest { image: spec(&name) }).await.unwrap();
    assert!(img.list_images(ListImagesRequest::default()).await.unwrap().into_inner().images.is_empty());
    let root = berthd.root();
    let count = |p: &str| std::fs::read_dir(root.join(p)).map(|d| d.count()).unwrap_or(0);
    assert_eq!(count("content/blobs/sha256"), 0, "blobs left");
    assert_eq!(count("snapshots/overlayfs/metadata"), 0, "layers left");
}

fn nix_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").map(|s| s.lines().any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))).unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mirror_serves_docker_io() {
    let registry = berth_testkit::Registry::start();
    let work = tempfile::tempdir().unwrap();
    berth_testkit::build_and_push(&registry, work.path(), "library/busybox:latest", None);
    let berthd = Berthd::start(&format!("[registry]\ninsecure = [\"{0}\"]\nmirrors = {{ \"docker.io\" = [\"{0}\"] }}\n", registry.host()));
    let mut img = ImageServiceClient::new(channel(&berthd.socket).await);
    let id = img.pull_image(PullImageRequest { image: spec("busybox"), ..Default::default() }).await.unwrap().into_inner().image_ref;
    let image = img.image_status(ImageStatusRequest { image: spec("busybox"), verbose: false }).await.unwrap().into_inner().image.unwrap();
    assert_eq!(image.id, id);
    assert_eq!(image.repo_tags, ["docker.io/library/busybox:latest"], "named after the origin, not the mirror");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_behind_basic_auth_wants_the_right_password() {
    let registry = berth_testkit::Registry::start_with_auth(Some(("puller", "s3cret")));
    let work = tempfile::tempdir().unwrap();
    berth_testkit::build_and_push_as(&registry, work.path(), "private/app:1", None, Some("puller:s3cret"));
    let berthd = Berthd::start(&format!("[registry]\ninsecure = [\"{}\"]\n", registry.host()));
    let mut img = ImageServiceClient::new(channel(&berthd.socket).await);
    let name = format!("{}/private/app:1", registry.host());
    let auth = |password: &str| Some(AuthConfig { username: "puller".into(), password: password.into(), ..Default::default() });

    let err = img.pull_image(PullImageRequest { image: spec(&name), auth: auth("wrong"), ..Default::default() }).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated, "{}", err.message());
    let err = img.pull_image(PullImageRequest { image: spec(&name), ..Default::default() }).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated, "anonymous: {}", err.message());
    let id = img.pull_image(PullImageRequest { image: spec(&name), auth: auth("s3cret"), ..Default::default() }).await.unwrap().into_inner().image_ref;
    assert!(id.starts_with("sha256:"));
}

/// A PullImage that names no credentials (an image without an
/// imagePullSecret) uses the entry for its registry in
/// `registry.auth_file`, Docker's config.json, read at each pull: written
/// while berthd runs, it works without a restart; a wrong one is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pull_without_credentials_uses_the_auth_file() {
    let registry = berth_testkit::Registry::start_with_auth(Some(("puller", "s3cret")));
    let work = tempfile::tempdir().unwrap();
    berth_testkit::build_and_push_as(&registry, work.path(), "private/app:1", None, Some("puller:s3cret"));
    let auth_file = work.path().join("docker/config.json");
    let berthd = Berthd::start(&format!("[registry]\ninsecure = [\"{}\"]\nauth_file = \"{}\"\n", registry.host(), auth_file.display()));
    let mut img = ImageServiceClient::new(channel(&berthd.socket).await);
    let name = format!("{}/private/app:1", registry.host());
    let pull = PullImageRequest { image: spec(&name), ..Default::default() };

    let err = img.pull_image(pull.clone()).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated, "no file yet: {}", err.message());
    std::fs::create_dir_all(auth_file.parent().unwrap()).unwrap();
    let entry = |credentials: &str| {
        use base64::Engine;
        let auth = base64::engine::general_purpose::STANDARD.encode(credentials);
        format!(r#"{{"auths": {{"other:1": {{"auth": "eDp5"}}, "https://{}/v1/": {{"auth": "{auth}"}}}}}}"#, registry.host())
    };
    std::fs::write(&auth_file, entry("puller:wrong")).unwrap();
    let err = img.pull_image(pull.clone()).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated, "a wrong password: {}", err.message());
    std::fs::write(&auth_file, entry("puller:s3cret")).unwrap();
    let id = img.pull_image(pull.clone()).await.unwrap().into_inner().image_ref;
    assert!(id.starts_with("sha256:"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_with_token_auth_gives_a_token_for_the_right_password() {
    let options = berth_testkit::RegistryOptions { token_credentials: Some(("puller", "s3cret")), ..Default::default() };
    let registry = berth_testkit::Registry::start_with(options);
    let work = tempfile::tempdir().unwrap();
    berth_testkit::build_and_push_as(&registry, work.path(), "private/app:1", None, Some("puller:s3cret"));
    // On loopback: no registry config at all.
    let berthd = Berthd::start("");
    let mut img = ImageServiceClient::new(channel(&berthd.socket).await);
    let name = format!("{}/private/app:1", registry.host());
    let auth = |password: &str| Some(AuthConfig { username: "puller".into(), password: password.into(), ..Default::default() });

    // The registry's Bearer challenge sends berth to the token server,
    // which refuses a wrong password and no password.
    let err = img.pull_image(PullImageRequest { image: spec(&name), auth: auth("wrong"), ..Default::default() }).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated, "{}", err.message());
    let err = img.pull_image(PullImageRequest { image: spec(&name), ..Default::default() }).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated, "anonymous: {}", err.message());
    let id = img.pull_image(PullImageRequest { image: spec(&name), auth: auth("s3cret"), ..Default::default() }).await.unwrap().into_inner().image_ref;
    img.remove_image(RemoveImageRequest { image: spec(&name) }).await.unwrap();

    // A token the caller already holds goes straight to the registry.
    let token = registry.token("repository:private/app:pull").unwrap();
    let held = Some(AuthConfig { registry_token: token, ..Default::default() });
    let again = img.pull_image(PullImageRequest { image: spec(&name), auth: held, ..Default::default() }).await.unwrap().into_inner().image_ref;
    assert_eq!(again, id);
    let wrong = Some(AuthConfig { registry_token: "not-a-token".into(), ..Default::default() });
    let err = img.pull_image(PullImageRequest { image: spec(&name), auth: wrong, ..Default::default() }).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated, "{}", err.message());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_multi_arch_index_resolves_to_this_nodes_platform() {
    let registry = berth_testkit::Registry::start();
    let work = tempfile::tempdir().unwrap();
    let (amd64, arm64) = berth_testkit::build_and_push_multiarch(&registry, work.path(), "multi/app:1");
    let berthd = Berthd::start(&format!("[registry]\ninsecure = [\"{}\"]\n", registry.host()));
    let mut img = ImageServiceClient::new(channel(&berthd.socket).await);
    let id = img
        .pull_image(PullImageRequest { image: spec(&format!("{}/multi/app:1", registry.host())), ..Default::default() })
        .await
        .unwrap()
        .into_inner()
        .image_ref;
    let want = if cfg!(target_arch = "aarch64") { arm64 } else { amd64 };
    assert_eq!(id, want, "picked the wrong platform from the index");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blob_that_does_not_match_its_digest_is_rejected_and_nothing_is_stored() {
    let registry = berth_testkit::Registry::start();
    let work = tempfile::tempdir().unwrap();
    berth_testkit::build_and_push(&registry, work.path(), "tampered/app:1", None);
    // Corrupt the biggest layer where the registry keeps it.
    let layout = work.path().join("oci/blobs/sha256");
    let biggest = std::fs::read_dir(&layout).unwrap().map(|e| e.unwrap()).max_by_key(|e| e.metadata().unwrap().len()).unwrap();
    let digest = format!("sha256:{}", biggest.file_name().to_str().unwrap());
    let stored = registry.blob_file(&digest);
    let mut bytes = std::fs::read(&stored).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&stored, bytes).unwrap();

    let berthd = Berthd::start(&format!("[registry]\ninsecure = [\"{}\"]\n", registry.host()));
    let mut img = ImageServiceClient::new(channel(&berthd.socket).await);
    let err = img.pull_image(PullImageRequest { image: spec(&format!("{}/tampered/app:1", registry.host())), ..Default::default() }).await.unwrap_err();
    assert!(err.message().contains(&digest), "{}", err.message());
    assert!(img.list_images(ListImagesRequest::default()).await.unwrap().into_inner().images.is_empty());
    let blob = berthd.root().join("content/blobs/sha256").join(digest.trim_start_matches("sha256:"));
    assert!(!blob.exists(), "the bad blob was stored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_that_stalls_fails_the_pull_quickly() {
    // Accepts connections and never answers.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let host = listener.local_addr().unwrap().to_string();
    let holder = std::thread::spawn(move || {
        let mut held = Vec::new();
        listener.set_nonblocking(true).unwrap();
        let end = std::time::Instant::now() + std::time::Duration::from_secs(15);
        while std::time::Instant::now() < end {
            if let Ok((c, _)) = listener.accept() {
                held.push(c);
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    });
    let berthd = Berthd::start(&format!("[registry]\ninsecure = [\"{host}\"]\nstall_timeout_secs = 2\n"));
    let mut img = ImageServiceClient::new(channel(&berthd.socket).await);
    let started = std::time::Instant::now();
    let err = img.pull_image(PullImageRequest { image: spec(&format!("{host}/slow/app:1")), ..Default::default() }).await.unwrap_err();
    let took = started.elapsed();
    assert_eq!(err.code(), tonic::Code::Unavailable, "{}", err.message());
    assert!(took < std::time::Duration::from_secs(8), "a stalled registry held the pull for {took:?}");
    assert!(err.message().contains(&host), "{}", err.message());
    drop(holder);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_berthd_mid_pull_leaves_no_half_image_and_the_next_pull_completes() {
    let registry = berth_testkit::Registry::start();
    let work = tempfile::tempdir().unwrap();
    berth_testkit::build_and_push_layers(&registry, work.path(), "big/app:1", 6, 20_000_000);
    let mut berthd = Berthd::start(&format!("[registry]\ninsecure = [\"{}\"]\nmax_concurrent_downloads = 1\n", registry.host()));
    let name = format!("{}/big/app:1", registry.host());
    let mut img = ImageServiceClient::new(channel(&berthd.socket).await);
    let pulling = {
        let mut img = img.clone();
        let name = name.clone();
        tokio::spawn(async move { img.pull_image(PullImageRequest { image: spec(&name), ..Default::default() }).await })
    };
    // Wait until some, not all, of the image is on disk, then crash.
    let blobs = berthd.root().join("content/blobs/sha256");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while std::fs::read_dir(&blobs).map(|d| d.count()).unwrap_or(0) < 2 {
        assert!(std::time::Instant::now() < deadline, "pull made no progress");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    berthd.restart();
    assert!(pulling.await.unwrap().is_err(), "the pull in flight must fail with the daemon");
    img = ImageServiceClient::new(channel(&berthd.socket).await);
    assert!(img.list_images(ListImagesRequest::default()).await.unwrap().into_inner().images.is_empty(), "half image listed");
    // No interrupted unpack survives the restart either.
    let meta = berthd.root().join("snapshots/overlayfs/metadata");
    for e in std::fs::read_dir(&meta).unwrap() {
        let text = std::fs::read_to_string(e.unwrap().path()).unwrap();
        assert!(!text.contains("\"extract-"), "left over: {text}");
    }
    let id = img.pull_image(PullImageRequest { image: spec(&name), ..Default::default() }).await.unwrap().into_inner().image_ref;
    let status = img.image_status(ImageStatusRequest { image: spec(&name), verbose: true }).await.unwrap().into_inner();
    assert_eq!(status.image.unwrap().id, id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_images_sharing_layers_store_them_once() {
    let registry = berth_testkit::Registry::start();
    let work = tempfile::tempdir().unwrap();
    berth_testkit::build_and_push(&registry, work.path(), "shared/base:1", None);
    berth_testkit::push_derived(&registry, work.path(), "shared/derived:1");
    let berthd = Berthd::start(&format!("[registry]\ninsecure = [\"{}\"]\n", registry.host()));
    let mut img = ImageServiceClient::new(channel(&berthd.socket).await);
    for name in ["shared/base:1", "shared/derived:1"] {
        img.pull_image(PullImageRequest { image: spec(&format!("{}/{name}", registry.host())), ..Default::default() }).await.unwrap();
    }
    let root = berthd.root();
    let count = |p: &str| std::fs::read_dir(root.join(p)).map(|d| d.count()).unwrap_or(0);
    // 2 + 3 layers, 2 of them shared: 3 layer snapshots; 3 layer blobs + 2 configs.
    assert_eq!(count("snapshots/overlayfs/metadata"), 3);
    assert_eq!(count("content/blobs/sha256"), 5);
    // Removing the base keeps every layer the derived image still needs.
    img.remove_image(RemoveImageRequest { image: spec(&format!("{}/shared/base:1", registry.host())) }).await.unwrap();
    assert_eq!(count("snapshots/overlayfs/metadata"), 3);
    assert_eq!(count("content/blobs/sha256"), 4, "only the base's config went");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_layer_with_a_dotdot_entry_is_rejected() {
    let registry = berth_testkit::Registry::start();
    let work = tempfile::tempdir().unwrap();
    berth_testkit::push_hostile_layer(&registry, work.path(), "hostile/app:1", "../../escaped.txt");
    let berthd = Berthd::start(&format!("[registry]\ninsecure = [\"{}\"]\n", registry.host()));
    let mut img = ImageServiceClient::new(channel(&berthd.socket).await);
    let err = img.pull_image(PullImageRequest { image: spec(&format!("{}/hostile/app:1", registry.host())), ..Default::default() }).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{}", err.message());
    assert!(err.message().contains("escapes the layer"), "{}", err.message());
    assert!(img.list_images(ListImagesRequest::default()).await.unwrap().into_inner().images.is_empty());
    let root = berthd.root();
    assert_eq!(std::fs::read_dir(root.join("snapshots/overlayfs/metadata")).unwrap().count(), 0, "no half layer");
    assert!(!root.join("snapshots/escaped.txt").exists() && !root.join("escaped.txt").exists());
}

/// The stores on a 10 MiB filesystem: a 12 MiB layer fills it. The pull
/// fails with ResourceExhausted, and what was there before is intact,
/// also across a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_fails_the_pull_and_corrupts_nothing() {
    assert!(nix_is_root(), "run as root (README)");
    let registry = berth_testkit::Registry::start();
    let (small_work, big_work) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    berth_testkit::build_and_push(&registry, small_work.path(), "disk/small:1", None);
    berth_testkit::build_and_push_layers(&registry, big_work.path(), "disk/big:1", 1, 12 << 20);
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("small-fs");
    std::fs::create_dir(&root).unwrap();
    nix::mount::mount(Some("tmpfs"), &root, Some("tmpfs"), nix::mount::MsFlags::empty(), Some("size=10m")).unwrap();
    let unmount = Unmount(root.clone());
    let mut berthd = Berthd::start_with_root(dir, &root, &format!("[registry]\ninsecure = [\"{}\"]\n", registry.host()));
    let mut img = ImageServiceClient::new(channel(&berthd.socket).await);
    let small = format!("{}/disk/small:1", registry.host());
    let id = img.pull_image(PullImageRequest { image: spec(&small), ..Default::default() }).await.unwrap().into_inner().image_ref;

    let err = img.pull_image(PullImageRequest { image: spec(&format!("{}/disk/big:1", registry.host())), ..Default::default() }).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::ResourceExhausted, "{}", err.message());
    assert!(err.message().contains("No space left"), "{}", err.message());

    // Nothing corrupt: every stored blob still has the digest it is
    // filed under, and the index is whole after a crash and restart.
    let blobs = root.join("content/blobs/sha256");
    for entry in std::fs::read_dir(&blobs).unwrap() {
        let path = entry.unwrap().path();
        let digest = sha256_hex(&std::fs::read(&path).unwrap());
        assert_eq!(path.file_name().unwrap().to_str().unwrap(), digest);
    }
    berthd.restart();
    let mut img = ImageServiceClient::new(channel(&berthd.socket).await);
    let list = img.list_images(ListImagesRequest::default()).await.unwrap().into_inner().images;
    assert_eq!(list.iter().map(|i| i.id.as_str()).collect::<Vec<_>>(), [id.as_str()]);
    // The partial download was dropped to give the space back: with the
    // small image removed (its layers collected), an image of the same
    // layers downloads and unpacks them all again, and fits.
    assert_eq!(std::fs::read_dir(root.join("content/ingest")).unwrap().count(), 0);
    img.remove_image(RemoveImageRequest { image: spec(&small) }).await.unwrap();
    berth_testkit::push_variant_with_cmd(&registry, small_work.path(), "disk/other:1", &["/bin/true"]);
    img.pull_image(PullImageRequest { image: spec(&format!("{}/disk/other:1", registry.host())), ..Default::default() }).await.unwrap();
    drop(berthd);
    drop(unmount);
}

struct Unmount(std::path::PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}
