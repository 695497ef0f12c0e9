//! `berthctl run`'s Docker flags, `volume`, `inspect` and `stats` against a
//! real berthd (host-network pods: no CNI needed; `-p` is tested on the
//! default network in default_network.rs).

mod common;

use common::{berthctl, berthctl_code, remove_cgroup_parent, Daemon};

#[test]
fn run_flags_volumes_inspect_and_stats() {
    assert!(nix::unistd::geteuid().is_root(), "run as root (README)");
    let registry = berth_testkit::Registry::start();
    let work = tempfile::tempdir().unwrap();
    berth_testkit::build_and_push(&registry, work.path(), "flags/box:1", None);
    let parent = format!("/berthctl-flags-{}", std::process::id());
    let daemon = Daemon::start(&registry.host(), &format!("default_cgroup_parent = \"{parent}\""));
    let socket = daemon.socket.clone();
    let logs = daemon.dir.path().join("logs").display().to_string();
    let image = format!("{}/flags/box:1", registry.host());
    let run = |extra: &[&str], cmd: &[&str]| {
        let mut args = vec!["run", "--rm", "--network", "host", "--log-dir", &logs];
        args.extend_from_slice(extra);
        args.push(&image);
        args.extend_from_slice(cmd);
        berthctl_code(&socket, &args)
    };
    let listed = || berthctl(&socket, &["ps", "-a"]).1.lines().count() - 1;

    // Bad flags are usage errors (status 2) naming the value, and nothing
    // is created; a volume that does not exist is an error (status 1).
    for (flag, value) in [("-p", "80"), ("-v", "/a:relative"), ("-e", "=x"), ("-m", "12x"), ("--cpus", "0"), ("-u", "1000:staff")] {
        let (code, _, err) = run(&[flag, value], &["true"]);
        assert_eq!(code, 2, "{flag} {value}: {err}");
        assert!(err.contains(value), "{flag} {value}: {err}");
    }
    let (code, _, err) = run(&["-v", "nosuch:/data"], &["true"]);
    assert!(code == 1 && err.contains("no such volume: nosuch"), "{code}: {err}");
    let (code, _, err) = run(&["-p", "8080:80"], &["true"]);
    assert!(code == 1 && err.contains("--network host"), "{code}: {err}");
    assert_eq!(listed(), 0, "no refused run left a container");

    // A named volume keeps a file from one container to the next; :ro is
    // read-only; a host directory shows the container's writes.
    let (ok, out, err) = berthctl(&socket, &["volume", "create", "data"]);
    assert!(ok && out == "data\n", "{err}");
    assert!(berthctl(&socket, &["volume", "ls"]).1.lines().any(|l| l == "data"));
    assert_eq!(run(&["-v", "data:/data"], &["sh", "-c", "echo kept > /data/f"]).0, 0);
    assert_eq!(run(&["-v", "data:/data:ro"], &["cat", "/data/f"]).1, "kept\n");
    assert_ne!(run(&["-v", "data:/data:ro"], &["sh", "-c", "echo x > /data/g"]).0, 0, "a read-only volume");
    let host_dir = work.path().join("host");
    std::fs::create_dir(&host_dir).unwrap();
    let bind = format!("{}:/h", host_dir.display());
    assert_eq!(run(&["-v", &bind], &["sh", "-c", "echo from-container > /h/out"]).0, 0);
    assert_eq!(std::fs::read_to_string(host_dir.join("out")).unwrap(), "from-container\n");

    // --restart: berthctl restarts the container while it follows it.
    let (code, out, err) = run(&[], &["sh", "-c", "echo ran; exit 3"]);
    assert_eq!((code, out.as_str()), (3, "ran\n"), "{err}");
    let (code, out, err) =
        berthctl_code(&socket, &["run", "--network", "host", "--log-dir", &logs, "--restart", "on-failure:2", &image, "sh", "-c", "echo ran; exit 3"]);
    assert_eq!((code, out.as_str()), (3, "ran\nran\nran\n"), "twice more, then its exit code: {err}");
    assert_eq!(err.matches("(--restart)").count(), 2, "{err}");
    berthctl(&socket, &["container", "prune"]);
    let (code, _, err) = run(&["--restart", "always"], &["true"]);
    assert!(code == 1 && err.contains("contradict"), "--restart with --rm: {err}");
    let (code, _, err) = run(&["--restart", "sometimes"], &["true"]);
    assert_eq!(code, 2, "{err}");

    // Process flags.
    let env_file = work.path().join("env");
    std::fs::write(&env_file, "# settings\nFROM_FILE=yes\n\nBOTH=file\n").unwrap();
    let (code, out, err) = run(
        &["-w", "/tmp", "-u", "1000:1001", "--env-file", env_file.to_str().unwrap(), "-e", "BOTH=flag"],
        &["sh", "-c", "pwd; id -u; id -g; echo $FROM_FILE $BOTH"],
    );
    assert_eq!((code, out.as_str()), (0, "/tmp\n1000\n1001\nyes flag\n"), "{err}");
    assert_eq!(run(&["--entrypoint", "/bin/echo"], &["via", "entrypoint"]).1, "via entrypoint\n");
    assert_ne!(run(&["--read-only"], &["touch", "/x"]).0, 0, "--read-only");
    let (_, out, _) = run(&["-m", "64m"], &["sh", "-c", "cat /sys/fs/cgroup/memory.max 2>/dev/null || cat /sys/fs/cgroup/memory/memory.limit_in_bytes"]);
    assert_eq!(out, "67108864\n", "-m 64m");
    let (_, out, _) = run(&["--cap-drop", "ALL"], &["sh", "-c", "grep CapEff /proc/self/status"]);
    assert!(out.trim().ends_with("0000000000000000"), "--cap-drop ALL: {out}");

    // A volume in use is not removed; inspect and stats by name.
    let (ok, id, err) =
        berthctl(&socket, &["run", "-d", "--name", "svc", "--network", "host", "--log-dir", &logs, "-v", "data:/data", &image, "sleep", "3600"]);
    assert!(ok, "{err}");
    let id = id.trim().to_string();
    let (ok, _, err) = berthctl(&socket, &["volume", "rm", "data"]);
    assert!(!ok && err.contains("in use by container"), "{err}");
    let (ok, out, err) = berthctl(&socket, &["inspect", "svc", &image]);
    assert!(ok, "{err}");
    let shown: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(shown[0]["Id"], id.as_str());
    assert_eq!(shown[0]["State"]["Status"], "running");
    assert!(shown[0]["Mounts"].as_array().unwrap().iter().any(|m| m["Destination"] == "/data"), "{out}");
    assert_eq!(shown[1]["Kind"], "image");
    let (code, _, err) = berthctl_code(&socket, &["inspect", "nope"]);
    assert!(code == 1 && err.contains("no such container, pod or image: nope"), "{err}");
    let (ok, out, err) = berthctl(&socket, &["stats", "--no-stream", "svc"]);
    assert!(ok, "{err}");
    let row = out.lines().find(|l| l.contains(" svc ")).unwrap_or_else(|| panic!("{out}"));
    let memory = row.split_whitespace().nth(3).unwrap();
    assert!(memory != "0B" && (memory.ends_with("KiB") || memory.ends_with("MiB")), "stats shows the container's memory: {row}");

    // ps: ids only, filters, formats; logs: tail, since, timestamps.
    let (ok, chatty, err) = berthctl(
        &socket,
        &[
            "run",
            "-d",
            "--name",
            "chatty",
            "--network",
            "host",
            "--log-dir",
            &logs,
            &image,
            "sh",
            "-c",
            "for i in 1 2 3 4 5; do echo line$i; done; exec sleep 3600",
        ],
    );
    assert!(ok, "{err}");
    let chatty = chatty.trim().to_string();
    let (_, quiet, _) = berthctl(&socket, &["ps", "-q"]);
    let mut ids: Vec<&str> = quiet.lines().collect();
    ids.sort();
    let mut want = vec![&id[..12], &chatty[..12]];
    want.sort();
    assert_eq!(ids, want, "ps -q");
    assert_eq!(berthctl(&socket, &["ps", "-q", "--filter", "name=svc"]).1, format!("{}\n", &id[..12]));
    assert_eq!(berthctl(&socket, &["ps", "-a", "--filter", "status=exited", "-q"]).1, "", "nothing has exited");
    let (_, out, _) = berthctl(&socket, &["ps", "--filter", "name=chatty", "--format", "{{.Names}} {{.State}} {{.Pod}}"]);
    assert!(out.starts_with("chatty running ") && out.lines().count() == 1, "{out}");
    let (_, out, _) = berthctl(&socket, &["ps", "--filter", "id=", "--filter", "name=svc", "--format", "json"]);
    let row: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!((row["Names"].as_str(), row["FullID"].as_str()), (Some("svc"), Some(id.as_str())));
    let (code, _, err) = berthctl_code(&socket, &["ps", "--filter", "status=dead"]);
    assert_eq!(code, 2, "{err}");
    let wanted = "line1\nline2\nline3\nline4\nline5\n";
    assert!((0..100).any(|_| berthctl(&socket, &["logs", "chatty"]).1 == wanted || {
        std::thread::sleep(std::time::Duration::from_millis(50));
        false
    }));
    assert_eq!(berthctl(&socket, &["logs", "--tail", "2", "chatty"]).1, "line4\nline5\n");
    assert_eq!(berthctl(&socket, &["logs", "--since", "1h", "chatty"]).1, wanted);
    assert_eq!(berthctl(&socket, &["logs", "--since", "2099-01-01T00:00:00Z", "chatty"]).1, "");
    let (_, out, _) = berthctl(&socket, &["logs", "-t", "--tail", "1", "chatty"]);
    let (time, text) = out.trim().split_once(' ').unwrap();
    assert!(text == "line5" && time.len() == 30 && time.ends_with('Z') && chrono_like(time), "{out}");
    berthctl(&socket, &["rm", "-f", "chatty"]);

    // top: the container's processes, host pids; system df; container prune.
    let (ok, out, err) = berthctl(&socket, &["top", "svc"]);
    assert!(ok && out.starts_with("PID") && out.lines().any(|l| l.ends_with("sleep 3600")), "{out}{err}");
    let (ok, out, err) = berthctl(&socket, &["system", "df"]);
    let images = out.lines().find(|l| l.starts_with("Images")).unwrap_or_else(|| panic!("{out}{err}"));
    assert!(ok && images.split_whitespace().nth(1) == Some("1") && images.split_whitespace().nth(2) == Some("1"), "one image, used: {out}");
    let (ok, done, err) = berthctl(&socket, &["run", "-d", "--network", "host", "--log-dir", &logs, &image, "true"]);
    assert!(ok, "{err}");
    let done = done.trim().to_string();
    assert!((0..100).any(|_| berthctl(&socket, &["ps", "-a", "-q", "--filter", "status=exited"]).1.contains(&done[..12]) || {
        std::thread::sleep(std::time::Duration::from_millis(50));
        false
    }));
    let (ok, out, err) = berthctl(&socket, &["container", "prune"]);
    assert!(ok && out == format!("{done}\n"), "prune removes exactly the exited one: {out}{err}");
    assert!(berthctl(&socket, &["ps", "-a", "-q"]).1.contains(&id[..12]), "the running one stays");
    // images prune keeps an image a container uses; system prune, once
    // nothing runs, takes it.
    let (ok, out, err) = berthctl(&socket, &["images", "prune"]);
    assert!(ok && out.starts_with("reclaimed "), "the image is in use: {out}{err}");
    assert_eq!(berthctl(&socket, &["images", "ls"]).1.lines().count(), 2, "still there");

    berthctl(&socket, &["rm", "-f", "svc"]);
    let (ok, out, err) = berthctl(&socket, &["system", "prune"]);
    assert!(ok && out.lines().any(|l| l.starts_with("sha256:")) && out.contains("reclaimed"), "{out}{err}");
    assert_eq!(berthctl(&socket, &["images", "ls"]).1.lines().count(), 1, "no image left");
    let (ok, _, err) = berthctl(&socket, &["volume", "rm", "data"]);
    assert!(ok, "{err}");
    assert!(!berthctl(&socket, &["volume", "ls"]).1.contains("data"));
    drop(daemon);
    remove_cgroup_parent(&parent);
}

/// `2026-11-30T17:00:00.123456789Z`.
fn chrono_like(t: &str) -> bool {
    let b = t.as_bytes();
    b[4] == b'-' && b[7] == b'-' && b[10] == b'T' && b[13] == b':' && b[16] == b':' && b[19] == b'.' && t[20..29].bytes().all(|c| c.is_ascii_digit())
}
