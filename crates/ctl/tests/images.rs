//! berthctl against a real berthd and a local registry.

use std::process::Command;

fn berthctl(socket: &std::path::Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_berthctl")).arg("--socket").arg(socket).args(args).output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

#[test]
fn pull_list_remove_and_info() {
    let registry = berth_testkit::Registry::start();
    let work = tempfile::tempdir().unwrap();
    berth_testkit::build_and_push(&registry, work.path(), "ops/tool:2", None);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "socket = \"{0}/b.sock\"\nroot = \"{0}/root\"\nstate = \"{0}/state\"\n[registry]\ninsecure = [\"{1}\"]\n",
            dir.path().display(),
            registry.host()
        ),
    )
    .unwrap();
    // berthd lives in the berth-daemon crate; the test runs the one cargo built.
    let berthd = std::path::Path::new(env!("CARGO_BIN_EXE_berthctl")).with_file_name("berthd");
    assert!(berthd.exists(), "build berthd first (the test command builds the workspace)");
    let mut daemon = Command::new(berthd).arg("--config").arg(&config).spawn().unwrap();
    let socket = dir.path().join("b.sock");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::os::unix::net::UnixStream::connect(&socket).is_err() {
        assert!(std::time::Instant::now() < deadline, "berthd did not come up");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }

    let (ok, out, _) = berthctl(&socket, &["info"]);
    assert!(ok && out.starts_with("berth ") && out.contains("RuntimeReady"), "{out}");
    let name = format!("{}/ops/tool:2", registry.host());
    let (ok, out, err) = berthctl(&socket, &["pull", &name]);
    assert!(ok && out.trim().starts_with("sha256:"), "{out}{err}");
    let (ok, out, _) = berthctl(&socket, &["images", "ls"]);
    assert!(ok && out.lines().any(|l| l.starts_with(&name)), "{out}");
    let (ok, _, _) = berthctl(&socket, &["images", "rm", &name]);
    assert!(ok);
    let (_, out, _) = berthctl(&socket, &["images", "ls"]);
    assert_eq!(out.lines().count(), 1, "only the header is left: {out}");
    let (ok, _, err) = berthctl(&socket, &["pull", "Bad Ref"]);
    assert!(!ok && err.contains("InvalidArgument"), "{err}");

    let _ = daemon.kill();
    let _ = daemon.wait();
    let (ok, _, err) = berthctl(&socket, &["info"]);
    assert!(!ok && err.contains("is it running?"), "{err}");
}
