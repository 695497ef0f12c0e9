//! `berthctl run/ps/logs/exec/stop/rm` against a real berthd: host-network
//! pods, so no CNI config is needed.

mod common;

use common::{berthctl, berthctl_code, berthctl_with_stdin, remove_cgroup_parent, Daemon};

#[test]
fn run_ps_logs_exec_stop_rm() {
    assert!(nix::unistd::geteuid().is_root(), "run as root (README)");
    let registry = berth_testkit::Registry::start();
    let work = tempfile::tempdir().unwrap();
    berth_testkit::build_and_push(&registry, work.path(), "ops/box:1", None);
    let parent = format!("/berthctl-test-{}", std::process::id());
    let daemon = Daemon::start(&registry.host(), &format!("default_cgroup_parent = \"{parent}\""));
    let socket = daemon.socket.clone();
    let logs = daemon.dir.path().join("logs").display().to_string();
    let image = format!("{}/ops/box:1", registry.host());

    // Foreground: output on the right streams, exit code passed on, --rm.
    let (code, out, err) = berthctl_code(
        &socket,
        &["run", "--rm", "--network", "host", "--log-dir", &logs, "-e", "WHO=berth", &image, "sh", "-c", "echo hi $WHO; echo oops >&2; exit 3"],
    );
    assert_eq!((code, out.as_str()), (3, "hi berth\n"), "{err}");
    assert!(err.contains("oops"), "{err}");
    let (_, out, _) = berthctl(&socket, &["ps", "-a"]);
    assert_eq!(out.lines().count(), 1, "--rm removed it: {out}");

    // Detached: ps, exec, logs, stop, rm.
    let (ok, id, err) =
        berthctl(&socket, &["run", "-d", "--name", "svc", "--network", "host", "--log-dir", &logs, &image, "sh", "-c", "echo started; exec sleep 3600"]);
    assert!(ok, "{err}");
    let id = id.trim().to_string();
    let (_, out, _) = berthctl(&socket, &["ps"]);
    let row = out.lines().find(|l| l.starts_with(&id[..12])).unwrap_or_else(|| panic!("svc listed: {out}"));
    assert!(row.contains(" Up ") && row.contains(" svc ") && row.contains("ops/box:1"), "{row}");
    let (code, out, _) = berthctl_code(&socket, &["exec", &id[..12], "sh", "-c", "echo inside; exit 4"]);
    assert_eq!((code, out.as_str()), (4, "inside\n"));
    let (ok, out, _) = berthctl(&socket, &["logs", &id]);
    assert!(ok && out == "started\n", "{out}");
    // By name, as ps shows it.
    let (code, out, err) = berthctl_code(&socket, &["exec", "svc", "sh", "-c", "echo by name"]);
    assert_eq!((code, out.as_str()), (0, "by name\n"), "{err}");
    let (ok, out, _) = berthctl(&socket, &["logs", "svc"]);
    assert!(ok && out == "started\n", "{out}");
    // A name in use is refused, as docker does.
    let (ok, _, err) = berthctl(&socket, &["run", "-d", "--name", "svc", "--network", "host", "--log-dir", &logs, &image, "true"]);
    assert!(!ok && err.contains("--name \"svc\" is in use"), "{err}");

    // Streaming exec: stdin with -i; a terminal with -t (under script(1),
    // which gives berthctl a terminal of its own).
    let (code, out, err) = berthctl_with_stdin(&socket, &["exec", "-i", &id, "sh", "-c", "read x; echo got $x; exit 3"], b"hello\n");
    assert_eq!((code, out.as_str()), (3, "got hello\n"), "{err}");
    let cmd = format!("{} --socket {} exec -it {id} sh -c 'tty; stty size; exit 4'", env!("CARGO_BIN_EXE_berthctl"), socket.display());
    let term = std::process::Command::new("script").args(["-qec", &format!("stty cols 77 rows 22; {cmd}"), "/dev/null"]).output().unwrap();
    let shown = String::from_utf8_lossy(&term.stdout);
    assert!(shown.contains("/dev/pts/") && shown.contains("22 77"), "{shown}");
    assert_eq!(term.status.code(), Some(4), "{shown}");

    // Attach: the output from now on, and the exit code at the end.
    let (ok, late, err) = berthctl(&socket, &["run", "-d", "--network", "host", "--log-dir", &logs, &image, "sh", "-c", "sleep 1; echo tock; exit 6"]);
    assert!(ok, "{err}");
    let (code, out, err) = berthctl_code(&socket, &["attach", late.trim()]);
    assert_eq!((code, out.as_str()), (6, "tock\n"), "{err}");
    let (_, out, _) = berthctl(&socket, &["ps", "-a"]);
    let row = out.lines().find(|l| l.starts_with(&late.trim()[..12])).unwrap_or_else(|| panic!("{out}"));
    assert!(row.contains("Exited (6) ") && row.contains(" ago"), "ps -a shows the exit code and when: {row}");
    berthctl(&socket, &["rm", late.trim()]);
    let (ok, _, err) = berthctl(&socket, &["rm", &id]);
    assert!(!ok && err.contains("running"), "{err}");
    // Unknown names: status 1 and the name, for every verb that takes one
    // (stop and rm included, which the CRI answers with success).
    for verb in [&["logs", "nope"][..], &["exec", "nope", "true"], &["attach", "nope"], &["stop", "nope"], &["rm", "nope"], &["stop", "svc", "nope"]] {
        let (code, _, err) = berthctl_code(&socket, verb);
        assert_eq!(code, 1, "{verb:?}: {err}");
        assert!(err.contains("no such container: nope"), "{verb:?}: {err}");
    }
    let (_, out, _) = berthctl(&socket, &["ps"]);
    assert!(out.contains(" svc "), "a stop naming an unknown container stopped nothing: {out}");
    let (ok, out, _) = berthctl(&socket, &["stop", "-t", "1", "svc"]);
    assert!(ok && out == "svc\n", "{out}");
    let (_, out, _) = berthctl(&socket, &["ps"]);
    assert!(!out.contains(" svc "), "stop by name really stops: {out}");
    let (_, out, _) = berthctl(&socket, &["ps", "-a"]);
    assert!(out.lines().any(|l| l.starts_with(&id[..12]) && l.contains("Exited (137) ")), "killed after -t 1 (sleep as pid 1 ignores TERM): {out}");
    let (ok, _, err) = berthctl(&socket, &["rm", "svc"]);
    assert!(ok, "{err}");
    let (_, out, _) = berthctl(&socket, &["ps", "-a"]);
    assert_eq!(out.lines().count(), 1, "{out}");
    drop(daemon);
    remove_cgroup_parent(&parent);
}
