//! Pull from a real registry (Debian's docker-registry on 127.0.0.1) an
//! image the test builds itself with umoci and pushes with skopeo.

use std::{
    net::TcpListener,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use berth_image::{
    content::ContentStore,
    pull::{pull, PullOptions, Pulled},
    Error,
};
use berth_snapshot::Overlay;
use berth_testkit::{build_and_push, Registry};
use oci_client::secrets::RegistryAuth;

fn stores(dir: &Path) -> (Arc<ContentStore>, Arc<Overlay>) {
    let paths = berth_store::Paths::new(dir.join("root"), dir.join("state"));
    (Arc::new(ContentStore::new(&paths).unwrap()), Arc::new(Overlay::new(paths.snapshots()).unwrap()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_unpacks_layers_and_the_merged_view_is_right() {
    assert!(nix::unistd::geteuid().is_root(), "run as root (README)");
    let registry = Registry::start();
    let work = tempfile::tempdir().unwrap();
    build_and_push(&registry, work.path(), "test/busybox:1.0", None);
    let (content, snapshots) = stores(work.path());
    let opts = PullOptions { insecure_registries: vec![registry.host()], ..Default::default() };
    let reference = format!("{}/test/busybox:1.0", registry.host());

    let pulled = pull(&reference, RegistryAuth::Anonymous, &opts, content.clone(), snapshots.clone()).await.unwrap();
    assert_eq!(pulled.reference, reference);
    assert_eq!(pulled.chain_ids.len(), 2);
    assert!(content.has(&pulled.config_digest));

    // A container's view: its thin layer on top of the image's two.
    let mounts = snapshots.prepare("ctr", pulled.chain_ids.last().map(String::as_str)).unwrap();
    let target = work.path().join("mnt");
    std::fs::create_dir_all(&target).unwrap();
    let data = mounts[0].options.iter().filter(|o| o.contains('=')).cloned().collect::<Vec<_>>().join(",");
    nix::mount::mount(Some("overlay"), &target, Some("overlay"), nix::mount::MsFlags::empty(), Some(data.as_str())).unwrap();
    let seen = (target.join("bin/busybox").exists(), target.join("etc/group").exists(), std::fs::read_to_string(target.join("etc/motd")).ok());
    nix::mount::umount(&target).unwrap();
    assert_eq!(seen, (true, false, Some("layer two\n".to_string())), "busybox, deleted group, motd");

    // A second pull downloads nothing and finds the same image.
    let again = pull(&reference, RegistryAuth::Anonymous, &opts, content, snapshots.clone()).await.unwrap();
    assert!(
        (pulled.size - 4096..pulled.size).contains(&pulled.downloaded_bytes),
        "the first pull downloads every layer (the config comes with the manifest): {pulled:?}"
    );
    assert_eq!(again.downloaded_bytes, 0, "layers already stored are not downloaded again");
    assert_eq!(Pulled { downloaded_bytes: 0, ..pulled }, again);
    assert_eq!(snapshots.list().unwrap().len(), 3, "two layers + the container's, stored once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_errors_come_back_quickly_and_store_nothing() {
    let registry = Registry::start();
    let work = tempfile::tempdir().unwrap();
    let (content, snapshots) = stores(work.path());
    let opts = PullOptions { insecure_registries: vec![registry.host()], stall_timeout: Duration::from_secs(5), ..Default::default() };

    let started = Instant::now();
    let err = pull(&format!("{}/no/such:tag", registry.host()), RegistryAuth::Anonymous, &opts, content.clone(), snapshots.clone()).await.unwrap_err();
    assert!(matches!(&err, Error::Registry { kind: berth_image::RegistryErrorKind::NotFound, .. }), "{err}");

    let err = pull("Not A Reference!", RegistryAuth::Anonymous, &opts, content.clone(), snapshots.clone()).await.unwrap_err();
    assert!(matches!(err, Error::InvalidReference { .. }), "{err}");

    // Connection refused: a port nobody listens on.
    let dead = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let opts_dead = PullOptions { insecure_registries: vec![format!("127.0.0.1:{dead}")], ..opts.clone() };
    let err = pull(&format!("127.0.0.1:{dead}/x:1"), RegistryAuth::Anonymous, &opts_dead, content, snapshots.clone()).await.unwrap_err();
    assert!(matches!(err, Error::Registry { .. }), "{err}");
    assert!(started.elapsed() < Duration::from_secs(10), "errors took {:?}", started.elapsed());
    assert!(snapshots.list().unwrap().is_empty());
    let blobs: Vec<PathBuf> = std::fs::read_dir(work.path().join("root/content/blobs/sha256")).unwrap().map(|e| e.unwrap().path()).collect();
    assert!(blobs.is_empty(), "{blobs:?}");
}
