//! The runtime path issue 4 builds on, end to end without the CRI server:
//! pull an image, give a container a thin layer on it, and run it under
//! berth-shim through the shim client.

use std::sync::Arc;

use berth_cri::shim_client::{ShimLauncher, Shims};
use berth_image::{
    content::ContentStore,
    pull::{pull, PullOptions},
};
use berth_snapshot::Overlay;
use containerd_shim_protos::api;
use oci_client::secrets::RegistryAuth;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pulled_image_runs_as_a_container_on_its_own_thin_layer() {
    assert!(nix::unistd::geteuid().is_root(), "run as root (README)");
    let shim_binary = std::env::current_exe().unwrap().parent().unwrap().parent().unwrap().join("berth-shim");
    assert!(shim_binary.exists(), "build berth-shim first (the test command builds the workspace): {}", shim_binary.display());

    let registry = berth_testkit::Registry::start();
    let work = tempfile::tempdir().unwrap();
    berth_testkit::build_and_push(&registry, work.path(), "run/me:1", None);
    let paths = berth_store::Paths::new(work.path().join("root"), work.path().join("state"));
    let content = Arc::new(ContentStore::new(&paths).unwrap());
    let snapshots = Arc::new(Overlay::new(paths.snapshots()).unwrap());
    let opts = PullOptions { insecure_registries: vec![registry.host()], ..Default::default() };
    let pulled = pull(&format!("{}/run/me:1", registry.host()), RegistryAuth::Anonymous, &opts, content, snapshots.clone()).await.unwrap();

    let id = format!("imgctr-{}", std::process::id());
    let mounts = snapshots.prepare(&id, pulled.chain_ids.last().map(String::as_str)).unwrap();
    let bundle = paths.bundle(&id).unwrap();
    std::fs::create_dir_all(&bundle).unwrap();
    let mut spec = berth_oci::spec::default_spec("rootfs", &["/bin/sh", "-c", "echo written > /new; cat /etc/motd; ls /etc"]);
    spec.linux_mut().as_mut().unwrap().set_cgroups_path(Some(format!("/berth-test/{id}").into()));
    std::fs::write(bundle.join("config.json"), serde_json::to_vec(&spec).unwrap()).unwrap();

    let shim = ShimLauncher::new(&shim_binary, paths.clone(), false).start(&id, &bundle).await.unwrap();
    let log = work.path().join("ctr.log");
    let rootfs =
        mounts.iter().map(|m| api::Mount { type_: m.typ.clone(), source: m.source.clone(), options: m.options.clone(), ..Default::default() }).collect();
    let create = api::CreateTaskRequest {
        id: id.clone(),
        bundle: bundle.display().to_string(),
        rootfs,
        stdout: format!("cri-log://{}", log.display()),
        stderr: format!("cri-log://{}", log.display()),
        ..Default::default()
    };
    shim.create(create).await.unwrap();
    shim.start("").await.unwrap();
    assert_eq!(shim.wait("").await.unwrap().exit_status, 0);
    shim.delete().await.unwrap();

    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = text.lines().map(|l| l.splitn(4, ' ').nth(3).unwrap_or("")).collect();
    assert_eq!(lines, ["layer two", "motd"], "the container sees the image's top layer (group deleted, motd added)");
    // Its write went to its own layer only.
    let layer = snapshots.fs_dir(&snapshots.stat(&id).unwrap());
    assert_eq!(std::fs::read_to_string(layer.join("new")).unwrap(), "written\n");
    snapshots.remove(&id).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while paths.shim_socket(&id).exists() {
        assert!(std::time::Instant::now() < deadline, "shim socket left behind");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(!std::fs::read_to_string("/proc/self/mountinfo").unwrap().contains(&bundle.display().to_string()));
}
