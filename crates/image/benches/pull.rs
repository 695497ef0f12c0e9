//! Prints figures, asserts nothing: a cold pull of a generated image
//! (default 10 layers x 50 MB, incompressible) from a local registry,
//! download + verify + unpack, beside the disk's raw sequential write speed.
//!
//!     cargo bench -p berth-image --bench pull -- [LAYERS] [MB_PER_LAYER]

use std::{process::Command, sync::Arc, time::Instant};

use berth_image::{
    content::ContentStore,
    pull::{pull, PullOptions},
};
use berth_snapshot::Overlay;
use oci_client::secrets::RegistryAuth;

/// MB/s of `dd` writing 1 GiB with a final fdatasync, in the bench's dir.
fn raw_write_mb_s(dir: &std::path::Path) -> f64 {
    let target = dir.join("dd.bin");
    let out = Command::new("dd").args(["if=/dev/zero", &format!("of={}", target.display()), "bs=1M", "count=1024", "conv=fdatasync"]).output().unwrap();
    let _ = std::fs::remove_file(&target);
    let text = String::from_utf8_lossy(&out.stderr);
    // "... copied, 1.234 s, 870 MB/s"
    let secs: f64 = text.split(" s,").next().and_then(|t| t.rsplit(", ").next()).and_then(|t| t.trim().parse().ok()).unwrap_or(f64::NAN);
    1024.0 * 1024.0 * 1024.0 / 1e6 / secs
}

/// Seconds a cold `ctr images pull` (download + unpack) of `reference`
/// takes in a private containerd on temp dirs, if containerd is installed.
fn containerd_pull(dir: &std::path::Path, reference: &str) -> Option<f64> {
    if Command::new("containerd").arg("--version").output().is_err() {
        return None;
    }
    let base = dir.join("containerd");
    std::fs::create_dir_all(&base).unwrap();
    let sock = base.join("c.sock");
    let config = base.join("config.toml");
    std::fs::write(
        &config,
        format!(
            "version = 2\nroot = \"{0}/root\"\nstate = \"{0}/state\"\ndisabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n[grpc]\n  address = \"{1}\"\n",
            base.display(),
            sock.display()
        ),
    )
    .unwrap();
    let log = std::fs::File::create(base.join("containerd.log")).unwrap();
    let mut child = Command::new("containerd").arg("--config").arg(&config).stdout(log.try_clone().unwrap()).stderr(log).spawn().ok()?;
    let deadline = Instant::now() + std::time::Duration::from_secs(20);
    while std::os::unix::net::UnixStream::connect(&sock).is_err() && Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let started = Instant::now();
    let out = Command::new("ctr").arg("--address").arg(&sock).args(["-n", "bench", "images", "pull", "--plain-http", reference]).output();
    let secs = started.elapsed().as_secs_f64();
    let _ = child.kill();
    let _ = child.wait();
    match out {
        Ok(o) if o.status.success() => Some(secs),
        Ok(o) => {
            eprintln!("ctr pull failed: {}", String::from_utf8_lossy(&o.stderr));
            None
        }
        Err(_) => None,
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let layers: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(10);
    let mb: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(50);
    let registry = berth_testkit::Registry::start();
    let work = tempfile::tempdir().unwrap();
    eprintln!("building {layers} x {mb} MB image...");
    berth_testkit::build_and_push_layers(&registry, work.path(), "bench/big:1", layers, mb * 1_000_000);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let store_dir = work.path().join("store");
    let paths = berth_store::Paths::new(store_dir.join("root"), store_dir.join("state"));
    let content = Arc::new(ContentStore::new(&paths).unwrap());
    let snapshots = Arc::new(Overlay::new(paths.snapshots()).unwrap());
    for concurrency in [1usize, 3, 4] {
        let _ = std::fs::remove_dir_all(&store_dir);
        let content = Arc::new(ContentStore::new(&paths).unwrap());
        let snapshots = Arc::new(Overlay::new(paths.snapshots()).unwrap());
        let opts = PullOptions { insecure_registries: vec![registry.host()], max_concurrent_layers: concurrency, ..Default::default() };
        let reference = format!("{}/bench/big:1", registry.host());
        let started = Instant::now();
        let pulled = runtime.block_on(pull(&reference, RegistryAuth::Anonymous, &opts, content, snapshots)).unwrap();
        let secs = started.elapsed().as_secs_f64();
        println!(
            "cold pull, {} layers at once: {:.0} MB in {:.2} s = {:.0} MB/s (download + verify + unpack)",
            concurrency,
            pulled.size as f64 / 1e6,
            secs,
            pulled.size as f64 / 1e6 / secs
        );
    }
    drop((content, snapshots));
    if let Some(secs) = containerd_pull(work.path(), &format!("{}/bench/big:1", registry.host())) {
        println!(
            "containerd (ctr images pull --plain-http, its defaults): {:.0} MB in {:.2} s = {:.0} MB/s",
            (layers * mb) as f64,
            secs,
            (layers * mb) as f64 / secs
        );
    } else {
        println!("containerd: not installed (apt-get install containerd), no comparison");
    }
    println!("raw sequential write (dd 1 GiB, fdatasync) on the same disk: {:.0} MB/s", raw_write_mb_s(work.path()));
}
