//! `berthctl run -it` attached from the first byte (under a real pty, by
//! script(1)), `berthctl cp` in and out of a container, and `run
//! --pids-limit`, against a real berthd (host-network pods: no CNI).

mod common;

use std::{
    io::{Read, Write},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use common::{berthctl, berthctl_code, remove_cgroup_parent, Daemon};

/// Runs `cmd` (a shell command line) under script(1), so berthctl has a
/// terminal; `input` is typed into that terminal after `delay`, then
/// script's input ends (it waits for the command). Its exit status and
/// everything the terminal showed.
fn under_pty(cmd: &str, delay: Duration, input: &[u8]) -> (Option<i32>, String) {
    let mut child = Command::new("script")
        .args(["-qec", &format!("stty cols 80 rows 24; {cmd}"), "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let writer = std::thread::spawn(move || {
        std::thread::sleep(delay);
        let _ = stdin.write_all(&input);
    });
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut out = Vec::new();
        let _ = stdout.read_to_end(&mut out);
        out
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            break child.wait().unwrap();
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    writer.join().unwrap();
    let out = reader.join().unwrap();
    (status.code(), String::from_utf8_lossy(&out).into_owned())
}

struct Setup {
    daemon: Daemon,
    image: String,
    logs: String,
    parent: String,
    _registry: berth_testkit::Registry,
    work: tempfile::TempDir,
}

fn setup(tag: &str) -> Setup {
    assert!(nix::unistd::geteuid().is_root(), "run as root (README)");
    let registry = berth_testkit::Registry::start();
    let work = tempfile::tempdir().unwrap();
    berth_testkit::build_and_push(&registry, work.path(), &format!("{tag}/box:1"), None);
    let parent = format!("/berthctl-{tag}-{}", std::process::id());
    let daemon = Daemon::start(&registry.host(), &format!("default_cgroup_parent = \"{parent}\""));
    let logs = daemon.dir.path().join("logs").display().to_string();
    let image = format!("{}/{tag}/box:1", registry.host());
    Setup { daemon, image, logs, parent, _registry: registry, work }
}

impl Setup {
    fn finish(self) {
        let parent = self.parent.clone();
        drop(self);
        remove_cgroup_parent(&parent);
    }
}

#[test]
fn run_it_is_attached_from_the_first_byte() {
    let s = setup("it");
    let ctl = format!("{} --socket {}", env!("CARGO_BIN_EXE_berthctl"), s.daemon.socket.display());
    let run = format!("{ctl} run --rm --network host --log-dir {}", s.logs);

    // A command that writes at once and exits: its line is seen, and its
    // exit status is berthctl's. Several times: no luck involved.
    for round in 0..3 {
        let (code, shown) = under_pty(&format!("{run} -it {} sh -c 'echo first-line; exit 7'", s.image), Duration::ZERO, b"");
        assert!(shown.contains("first-line"), "round {round}: {shown:?}");
        assert_eq!(code, Some(7), "round {round}: {shown:?}");
    }
    // An interactive shell: its first prompt is on the screen before
    // anything was typed; then it runs what is typed, in its terminal.
    let (code, shown) = under_pty(&format!("{run} -it -e 'PS1=prompt> ' {} sh", s.image), Duration::from_secs(3), b"stty size; exit 5\r");
    let prompt = shown.find("prompt> ").unwrap_or_else(|| panic!("the first prompt is shown: {shown:?}"));
    let typed = shown.find("stty size").unwrap_or_else(|| panic!("{shown:?}"));
    assert!(prompt < typed, "the prompt came before the input: {shown:?}");
    assert!(shown.contains("24 80"), "the terminal's size: {shown:?}");
    assert_eq!(code, Some(5), "{shown:?}");
    // -i alone: stdin, no terminal.
    let (code, out, err) = common::berthctl_with_stdin(
        &s.daemon.socket,
        &["run", "--rm", "-i", "--network", "host", "--log-dir", &s.logs, &s.image, "sh", "-c", "read x; echo got $x; exit 3"],
        b"hello\n",
    );
    assert_eq!((code, out.as_str()), (3, "got hello\n"), "{err}");
    assert_eq!(berthctl(&s.daemon.socket, &["ps", "-a", "-q"]).1, "", "--rm removed them all");
    s.finish();
}

/// The mode, owner and group of a host path, as `stat -c '%a %u %g'`.
fn owner_mode(path: &std::path::Path) -> String {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::symlink_metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    format!("{:o} {} {}", m.mode() & 0o7777, m.uid(), m.gid())
}

#[test]
fn cp_in_and_out_never_leaves_the_container() {
    let s = setup("cp");
    let socket = s.daemon.socket.clone();
    let ctl = |args: &[&str]| berthctl_code(&socket, args);
    let (ok, _, err) = berthctl(&socket, &["run", "-d", "--name", "box", "--network", "host", "--log-dir", &s.logs, &s.image, "sleep", "3600"]);
    assert!(ok, "{err}");
    // A canary on the host: a container's symlink naming its path must
    // never reach it, for reading or for writing.
    let canary_dir = s.work.path().join("canary");
    std::fs::create_dir(&canary_dir).unwrap();
    std::fs::write(canary_dir.join("secret"), "host secret\n").unwrap();
    let canary = canary_dir.display().to_string();
    let setup_cmd = format!(
        "mkdir -p /data/sub && echo hello > /data/sub/f && chown 1234:2345 /data/sub/f && chmod 640 /data/sub/f && echo top > /data/top \
         && ln -s {canary} /data/dirlink && ln -s {canary}/secret /data/filelink && ln -s ../../../../../../.. /data/up"
    );
    let (code, _, err) = ctl(&["exec", "box", "sh", "-c", &setup_cmd]);
    assert_eq!(code, 0, "{err}");

    // Out: a directory to a new path, with owner, mode and content.
    let out = s.work.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let (code, _, err) = ctl(&["cp", "box:/data", out.join("copy").to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(std::fs::read_to_string(out.join("copy/sub/f")).unwrap(), "hello\n");
    assert_eq!(owner_mode(&out.join("copy/sub/f")), "640 1234 2345");
    assert_eq!(std::fs::read_to_string(out.join("copy/top")).unwrap(), "top\n");
    // The symlinks came as symlinks, never as what they point to.
    assert_eq!(std::fs::read_link(out.join("copy/filelink")).unwrap(), canary_dir.join("secret"));
    assert!(std::fs::symlink_metadata(out.join("copy/dirlink")).unwrap().file_type().is_symlink());
    // A file into an existing directory, and to a new name.
    let (code, _, err) = ctl(&["cp", "box:/data/top", out.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(std::fs::read_to_string(out.join("top")).unwrap(), "top\n");
    let (code, _, err) = ctl(&["cp", "box:/data/sub/f", out.join("renamed").to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(std::fs::read_to_string(out.join("renamed")).unwrap(), "hello\n");
    // `-`: a tar stream on stdout.
    let (code, tarball, err) = {
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_berthctl")).arg("--socket").arg(&socket).args(["cp", "box:/data/sub", "-"]).output().unwrap();
        (o.status.code(), o.stdout, String::from_utf8_lossy(&o.stderr).into_owned())
    };
    assert_eq!(code, Some(0), "{err}");
    let names: Vec<String> = tar::Archive::new(&tarball[..])
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().display().to_string().trim_end_matches('/').to_string())
        .collect();
    assert_eq!(names, ["sub", "sub/f"]);

    // Symlinks that name host paths resolve inside the container, where
    // those paths do not exist: nothing of the host's is read.
    for escape in ["box:/data/dirlink/secret", &format!("box:/data/up{canary}/secret"), &format!("box:/../../../../..{canary}/secret"), "box:/data/dirlink/."] {
        let dest = out.join("leak");
        let (code, _, err) = ctl(&["cp", escape, dest.to_str().unwrap()]);
        assert_eq!(code, 1, "{escape}: {err}");
        assert!(!dest.exists(), "{escape} copied something");
    }
    let via_root = s.work.path().join("via-root");
    assert_eq!(ctl(&["cp", &format!("box:{canary}"), via_root.to_str().unwrap()]).0, 1, "the host's path is not in the container");

    // In: a directory with owner and mode, to a new path.
    let src = s.work.path().join("src");
    std::fs::create_dir_all(src.join("deep")).unwrap();
    std::fs::write(src.join("a"), "from the host\n").unwrap();
    std::fs::write(src.join("deep/b"), "deeper\n").unwrap();
    nix::unistd::chown(&src.join("a"), Some(nix::unistd::Uid::from_raw(4321)), Some(nix::unistd::Gid::from_raw(5432))).unwrap();
    std::fs::set_permissions(src.join("a"), std::os::unix::fs::PermissionsExt::from_mode(0o604)).unwrap();
    std::os::unix::fs::symlink("/etc/hostname", src.join("link")).unwrap();
    let (code, _, err) = ctl(&["cp", src.to_str().unwrap(), "box:/in"]);
    assert_eq!(code, 0, "{err}");
    let (_, shown, err) = ctl(&["exec", "box", "sh", "-c", "stat -c '%a %u %g' /in/a; cat /in/a /in/deep/b; readlink /in/link"]);
    assert_eq!(shown, "604 4321 5432\nfrom the host\ndeeper\n/etc/hostname\n", "{err}");
    // A file into an existing directory; a directory's contents (`dir/.`).
    let (code, _, err) = ctl(&["cp", src.join("a").to_str().unwrap(), "box:/data"]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = ctl(&["cp", &format!("{}/.", src.join("deep").display()), "box:/data/sub"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(ctl(&["exec", "box", "cat", "/data/a", "/data/sub/b"]).1, "from the host\ndeeper\n");
    // Writes through the container's symlinks stay in the container: the
    // host's canary directory gets nothing, and its secret is unchanged.
    for dest in ["box:/data/dirlink/", "box:/data/dirlink/planted", &format!("box:/data/up{canary}/planted"), "box:/data/filelink"] {
        ctl(&["cp", src.join("a").to_str().unwrap(), dest]);
    }
    let planted: Vec<_> = std::fs::read_dir(&canary_dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(planted, [std::ffi::OsString::from("secret")], "nothing written on the host");
    assert_eq!(std::fs::read_to_string(canary_dir.join("secret")).unwrap(), "host secret\n");

    // Bad input: an unknown container is status 1; malformed arguments 2.
    let (code, _, err) = ctl(&["cp", "nope:/etc/hosts", out.to_str().unwrap()]);
    assert!(code == 1 && err.contains("no such container: nope"), "{code}: {err}");
    for args in [&["cp", "a", "b"][..], &["cp", "box:/a", "box:/b"], &["cp", "box:", "x"], &["cp", "box:/a"]] {
        let (code, _, err) = ctl(args);
        assert_eq!(code, 2, "{args:?}: {err}");
    }
    // A stopped container: refused, naming why (status 1).
    berthctl(&socket, &["stop", "-t", "1", "box"]);
    let (code, _, err) = ctl(&["cp", "box:/data/top", out.join("late").to_str().unwrap()]);
    assert!(code == 1 && err.contains("running"), "{code}: {err}");
    berthctl(&socket, &["rm", "box"]);
    s.finish();
}

#[test]
fn pids_limit_sets_pids_max() {
    let s = setup("pids");
    let socket = s.daemon.socket.clone();
    let run = |extra: &[&str], cmd: &[&str]| {
        let mut args = vec!["run", "--rm", "--network", "host", "--log-dir", &s.logs];
        args.extend_from_slice(extra);
        args.push(&s.image);
        args.extend_from_slice(cmd);
        berthctl_code(&socket, &args)
    };
    // The container's own cgroup, as it sees it (v2, or v1's pids hierarchy).
    let read = ["sh", "-c", "cat /sys/fs/cgroup/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids/pids.max"];
    let (code, out, err) = run(&["--pids-limit", "42"], &read);
    assert_eq!((code, out.as_str()), (0, "42\n"), "{err}");
    let (_, out, _) = run(&[], &read);
    assert_eq!(out, "max\n", "no limit without the flag");
    // Enforced: a fifth process cannot be made.
    let (_, out, err) = run(&["--pids-limit", "4"], &["sh", "-c", "for i in 1 2 3 4 5 6; do sleep 3 & done; wait; echo ended"]);
    assert!(err.contains("can't fork"), "{out} {err}");
    for bad in ["0", "-3", "lots"] {
        let (code, _, err) = run(&["--pids-limit", bad], &["true"]);
        assert_eq!(code, 2, "{bad}: {err}");
    }
    s.finish();
}
