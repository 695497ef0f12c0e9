//! berthctl against a real berthd and a local registry.

mod common;

use common::{berthctl, remove_cgroup_parent, Daemon};

#[test]
fn pull_list_remove_and_info() {
    let registry = berth_testkit::Registry::start();
    let work = tempfile::tempdir().unwrap();
    berth_testkit::build_and_push(&registry, work.path(), "ops/tool:2", None);
    let mut daemon = Daemon::start(&registry.host(), "");
    let socket = daemon.socket.clone();

    let (ok, out, _) = berthctl(&socket, &["info"]);
    assert!(ok && out.starts_with("berth ") && out.contains("RuntimeReady"), "{out}");
    let name = format!("{}/ops/tool:2", registry.host());
    // Not a terminal: one line per finished layer, then the image id.
    let (ok, out, err) = berthctl(&socket, &["pull", &name]);
    let lines: Vec<&str> = out.lines().collect();
    assert!(ok && lines.len() == 3 && lines[2].starts_with("sha256:"), "{out}{err}");
    assert!(lines[..2].iter().all(|l| l.contains(": pulled ") && l.ends_with(" MB")), "{out}");
    let (ok, again, _) = berthctl(&socket, &["images", "pull", &name]);
    assert!(ok && again.lines().filter(|l| l.ends_with(": already exists")).count() == 2, "{again}");
    assert_eq!(again.lines().last(), lines.last().copied());
    let (ok, out, _) = berthctl(&socket, &["images", "ls"]);
    assert!(ok && out.lines().any(|l| l.starts_with(&name)), "{out}");
    let (ok, _, _) = berthctl(&socket, &["images", "rm", &name]);
    assert!(ok);
    let (_, out, _) = berthctl(&socket, &["images", "ls"]);
    assert_eq!(out.lines().count(), 1, "only the header is left: {out}");
    let (ok, _, err) = berthctl(&socket, &["pull", "Bad Ref"]);
    assert!(!ok && err.contains("InvalidArgument"), "{err}");

    let _ = daemon.child.kill();
    let _ = daemon.child.wait();
    let (ok, _, err) = berthctl(&socket, &["info"]);
    assert!(!ok && err.contains("is it running?"), "{err}");
}

/// `images import` without any registry: an OCI archive, a `docker save`
/// archive and a layout directory, each runnable afterwards; a layout
/// with a corrupt blob and a file that is no archive are refused and
/// leave no image.
#[test]
fn import_archives_and_layouts() {
    assert!(nix::unistd::geteuid().is_root(), "run as root (README)");
    let work = tempfile::tempdir().unwrap();
    let image = berth_testkit::build_layout(work.path(), None);
    let layout = work.path().join("oci");
    let oci_tar = work.path().join("app-oci.tar");
    let docker_tar = work.path().join("app-docker.tar");
    berth_testkit::run(std::process::Command::new("skopeo").args([
        "copy",
        &format!("oci:{image}"),
        &format!("oci-archive:{}:example.com/air/app:1.0", oci_tar.display()),
    ]));
    berth_testkit::run(std::process::Command::new("skopeo").args([
        "copy",
        &format!("oci:{image}"),
        &format!("docker-archive:{}:example.com/air/saved:2.0", docker_tar.display()),
    ]));
    let parent = format!("/berthctl-import-{}", std::process::id());
    // No registry at all: 127.0.0.1:9 is the discard port.
    let daemon = Daemon::start("127.0.0.1:9", &format!("default_cgroup_parent = \"{parent}\""));
    let socket = daemon.socket.clone();
    let logs = daemon.dir.path().join("logs").display().to_string();

    // First, while the store is empty (a blob it already holds is not
    // read again): a blob whose bytes do not match the digest it is
    // filed under.
    let bad = work.path().join("bad");
    berth_testkit::run(std::process::Command::new("cp").arg("-a").arg(&layout).arg(&bad));
    let blobs = bad.join("blobs/sha256");
    let biggest = std::fs::read_dir(&blobs).unwrap().map(|e| e.unwrap().path()).max_by_key(|p| std::fs::metadata(p).unwrap().len()).unwrap();
    let mut bytes = std::fs::read(&biggest).unwrap();
    bytes[100] ^= 0xff;
    std::fs::write(&biggest, bytes).unwrap();
    let (ok, _, err) = berthctl(&socket, &["images", "import", "--base-name", "example.com/air/bad", bad.to_str().unwrap()]);
    assert!(!ok && err.contains("FailedPrecondition") && err.contains("digest"), "{err}");
    let junk = work.path().join("junk.tar");
    std::fs::write(&junk, vec![b'x'; 4096]).unwrap();
    let (ok, _, err) = berthctl(&socket, &["images", "import", junk.to_str().unwrap()]);
    assert!(!ok && err.contains("import"), "{err}");
    let (_, after, _) = berthctl(&socket, &["images", "ls"]);
    assert_eq!(after.lines().count(), 1, "failed imports add nothing: {after}");

    let (ok, out, err) = berthctl(&socket, &["images", "import", oci_tar.to_str().unwrap()]);
    assert!(ok && out.starts_with("sha256:") && out.trim_end().ends_with(" example.com/air/app:1.0"), "{out}{err}");
    let id = out.split_whitespace().next().unwrap().to_string();
    // `docker save | gzip` works the same.
    berth_testkit::run(std::process::Command::new("gzip").arg("-k").arg(&docker_tar));
    let (ok, out, err) = berthctl(&socket, &["images", "import", &format!("{}.gz", docker_tar.display())]);
    assert!(ok && out.trim_end().ends_with(" example.com/air/saved:2.0"), "{out}{err}");
    // The same config, so the same image id under both names.
    assert!(out.starts_with(&id), "{out}");

    // A layout directory names its image by tag alone (`img`).
    let (ok, _, err) = berthctl(&socket, &["images", "import", layout.to_str().unwrap()]);
    assert!(!ok && err.contains("--base-name") && err.contains("\"img\""), "{err}");
    let (ok, out, err) = berthctl(&socket, &["images", "import", "--base-name", "example.com/air/dir", layout.to_str().unwrap()]);
    assert!(ok && out.trim_end().ends_with(" example.com/air/dir:img"), "{out}{err}");
    let (_, listed, _) = berthctl(&socket, &["images", "ls"]);
    for name in ["example.com/air/app:1.0", "example.com/air/saved:2.0", "example.com/air/dir:img"] {
        assert!(listed.lines().any(|l| l.starts_with(name)), "{name} in {listed}");
    }

    // Each import runs: layer two deleted /etc/group and added /etc/motd.
    for name in ["example.com/air/app:1.0", "example.com/air/saved:2.0"] {
        let (ok, out, err) =
            berthctl(&socket, &["run", "--rm", "--network", "host", "--log-dir", &logs, name, "sh", "-c", "cat /etc/motd; ls /etc/group 2>&1 || true"]);
        assert!(ok && out.starts_with("layer two\n") && out.contains("No such file"), "{name}: {out}{err}");
    }

    drop(daemon);
    remove_cgroup_parent(&parent);
}
