//! Pull from a real registry (Debian's docker-registry on 127.0.0.1) an
//! image the test builds itself with umoci and pushes with skopeo.

use std::{
    net::{TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command},
    sync::Arc,
    time::{Duration, Instant},
};

use berth_image::{content::ContentStore, pull::{pull, PullOptions}, Error};
use berth_snapshot::Overlay;
use oci_client::secrets::RegistryAuth;

struct Registry {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Registry {
    fn start() -> Registry {
        let dir = tempfile::tempdir().unwrap();
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
                dir.path().join("data").display()
            ),
        )
        .unwrap();
        let child = Command::new("docker-registry").arg("serve").arg(&config).spawn().expect("docker-registry (hack/setup.sh installs it)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "registry did not come up");
            std::thread::sleep(Duration::from_millis(20));
        }
        Registry { child, port, _dir: dir }
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// Two layers: busybox, then one that deletes /etc/group and adds /etc/motd.
fn build_and_push(registry: &Registry, work: &Path, name: &str) {
    let layout = work.join("oci");
    let image = format!("{}:img", layout.display());
    let bundle = work.join("bundle");
    run(Command::new("umoci").args(["init", "--layout"]).arg(&layout));
    run(Command::new("umoci").args(["new", "--image", &image]));
    run(Command::new("umoci").args(["unpack", "--image", &image]).arg(&bundle));
    let rootfs = bundle.join("rootfs");
    for d in ["bin", "etc", "tmp"] {
        std::fs::create_dir_all(rootfs.join(d)).unwrap();
    }
    std::fs::copy("/bin/busybox", rootfs.join("bin/busybox")).unwrap();
    std::os::unix::fs::symlink("busybox", rootfs.join("bin/sh")).unwrap();
    std::fs::write(rootfs.join("etc/group"), "root:x:0:\n").unwrap();
    run(Command::new("umoci").args(["repack", "--image", &image]).arg(&bundle));
    std::fs::remove_dir_all(&bundle).unwrap();
    run(Command::new("umoci").args(["unpack", "--image", &image]).arg(&bundle));
    std::fs::remove_file(bundle.join("rootfs/etc/group")).unwrap();
    std::fs::write(bundle.join("rootfs/etc/motd"), "layer two\n").unwrap();
    run(Command::new("umoci").args(["repack", "--image", &image]).arg(&bundle));
    run(Command::new("umoci").args(["config", "--image", &image, "--config.cmd", "/bin/sh"]));
    run(Command::new("skopeo").args(["copy", "--dest-tls-verify=false", &format!("oci:{image}"), &format!("docker://{}/{name}", registry.host())]));
}

fn stores(dir: &Path) -> (Arc<ContentStore>, Arc<Overlay>) {
    let paths = berth_store::Paths::new(dir.join("root"), dir.join("state"));
    (Arc::new(ContentStore::new(&paths).unwrap()), Arc::new(Overlay::new(paths.snapshots()).unwrap()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_unpacks_layers_and_the_merged_view_is_right() {
    assert!(nix::unistd::geteuid().is_root(), "run as root (README)");
    let registry = Registry::start();
    let work = tempfile::tempdir().unwrap();
    build_and_push(&registry, work.path(), "test/busybox:1.0");
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
    assert_eq!(again, pulled);
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
    assert!(matches!(&err, Error::Registry { message, .. } if message.to_lowercase().contains("unknown") || message.contains("404")), "{err}");

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
