//! `play kube` honours the pod's restartPolicy: a detached supervisor
//! restarts exited containers (Always: every exit, OnFailure: a non-zero
//! one, Never: none; init containers retried except under Never), the
//! attempt shows in `ps` and `inspect`, and `down` ends the supervisor
//! before it removes the pod. Host-network pods, so no CNI config is needed.

mod common;

use std::{
    path::Path,
    time::{Duration, Instant},
};

use common::{berthctl, berthctl_code, remove_cgroup_parent, Daemon};

/// The pids of supervisors of pods of the berthd on `socket`.
fn supervisors(socket: &Path) -> Vec<i32> {
    let socket = socket.to_str().unwrap().as_bytes();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let pid: i32 = e.file_name().to_str()?.parse().ok()?;
            let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
            let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
            (args.contains(&b"__supervise-pod".as_slice()) && args.contains(&socket)).then_some(pid)
        })
        .collect()
}

/// Ends this test's supervisors (by pid) should the test fail half way.
struct Reaper(std::path::PathBuf);

impl Drop for Reaper {
    fn drop(&mut self) {
        for pid in supervisors(&self.0) {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGTERM);
        }
    }
}

/// `{{.Restarts}}` of the container named `name` (None when there is none).
fn restarts(socket: &Path, name: &str) -> Option<u32> {
    let filter = format!("name={name}");
    let (_, out, _) = berthctl(socket, &["ps", "-a", "--filter", &filter, "--format", "{{.Restarts}} {{.State}}"]);
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines.len() <= 1, "one container named {name}: {out}");
    lines.first().and_then(|l| l.split(' ').next()?.parse().ok())
}

fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn manifest(dir: &Path, name: &str, policy: &str, body: &str) -> String {
    let path = dir.join(format!("{name}.yaml"));
    std::fs::write(&path, format!("apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n  hostNetwork: true\n  restartPolicy: {policy}\n{body}"))
        .unwrap();
    path.display().to_string()
}

fn container(name: &str, image: &str, script: &str) -> String {
    format!("  - name: {name}\n    image: {image}\n    command: [\"sh\", \"-c\", \"{script}\"]\n")
}

/// `down FILE` leaves no supervisor, pod, container or supervisor state.
fn down_leaves_nothing(daemon: &Daemon, file: &str, pod_name: &str) {
    let (code, _, err) = berthctl_code(&daemon.socket, &["down", file]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(supervisors(&daemon.socket), Vec::<i32>::new(), "down ends the supervisor");
    assert_eq!(berthctl(&daemon.socket, &["ps", "-a", "-q"]).1, "", "down removes every container");
    let (ok, _, _) = berthctl(&daemon.socket, &["inspect", pod_name]);
    assert!(!ok, "down removes the pod {pod_name}");
    let state = daemon.dir.path().join("root/berthctl/kube");
    assert!(!state.exists() || std::fs::read_dir(&state).unwrap().count() == 0, "and the supervisor's state");
    // Nothing comes back once down returned.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(berthctl(&daemon.socket, &["ps", "-a", "-q"]).1, "", "nothing restarted after down");
}

#[test]
fn play_kube_restart_policies() {
    assert!(nix::unistd::geteuid().is_root(), "run as root (README)");
    let registry = berth_testkit::Registry::start();
    let work = tempfile::tempdir().unwrap();
    berth_testkit::build_and_push(&registry, work.path(), "ops/box:1", None);
    let parent = format!("/berthctl-restart-{}", std::process::id());
    let daemon = Daemon::start(&registry.host(), &format!("default_cgroup_parent = \"{parent}\""));
    let socket = daemon.socket.clone();
    let _reaper = Reaper(socket.clone());
    let logs = daemon.dir.path().join("logs");
    let logs_arg = logs.display().to_string();
    let image = format!("{}/ops/box:1", registry.host());
    let play = |file: &str| {
        let (code, out, err) = berthctl_code(&socket, &["play", "kube", "--log-dir", &logs_arg, file]);
        assert_eq!(code, 0, "{out}{err}");
        (out.trim().to_string(), err)
    };

    // Always: a container that exits 0 is started again, attempt after
    // attempt, each with a log of its own; ps and inspect show the count.
    let file = manifest(work.path(), "always", "Always", &format!("  containers:\n{}", container("once", &image, "echo run; exit 0")));
    let (pod, _) = play(&file);
    let state = daemon.dir.path().join("root/berthctl/kube").join(&pod);
    let supervisor_log = || std::fs::read_to_string(state.join("supervisor.log")).unwrap_or_else(|e| format!("(no supervisor.log: {e})"));
    assert_eq!(supervisors(&socket).len(), 1, "play kube left a supervisor for pod {pod}; its log:\n{}", supervisor_log());
    let recorded = std::fs::read_to_string(state.join("supervisor.pid")).unwrap();
    assert_eq!(recorded.trim().parse::<i32>().unwrap(), supervisors(&socket)[0], "its pid is recorded for down");
    wait_for("two restarts under Always", Duration::from_secs(20), || restarts(&socket, "once").is_some_and(|n| n >= 2));
    // Attempt 2 exists, so attempts 0 and 1 have finished their logs.
    for log in ["once.log", "once.1.log"] {
        let text = std::fs::read_to_string(logs.join("always").join(log)).unwrap_or_default();
        assert!(text.contains("run"), "{log} of each attempt: {text:?}");
    }
    let (ok, out, err) = berthctl(&socket, &["inspect", "once"]);
    assert!(ok, "{err}");
    let restart_count = serde_json::from_str::<serde_json::Value>(&out).unwrap()[0]["RestartCount"].as_u64().unwrap();
    assert!(restart_count >= 2, "inspect shows the attempt: {out}");
    let (_, table, _) = berthctl(&socket, &["ps", "-a"]);
    assert!(table.lines().next().unwrap().ends_with("RESTARTS"), "{table}");
    down_leaves_nothing(&daemon, &file, "always");

    // OnFailure: the container that exits 3 is restarted, the one that
    // exits 0 is not (it stays exited at attempt 0 while the other's back-off
    // went 1 s then 2 s, longer than the first restart would have waited).
    let body = format!("  containers:\n{}{}", container("fine", &image, "exit 0"), container("failing", &image, "echo try; exit 3"));
    let file = manifest(work.path(), "onfailure", "OnFailure", &body);
    play(&file);
    assert_eq!(supervisors(&socket).len(), 1);
    wait_for("two restarts under OnFailure", Duration::from_secs(20), || restarts(&socket, "failing").is_some_and(|n| n >= 2));
    assert_eq!(restarts(&socket, "fine"), Some(0), "a container that exits 0 is not restarted under OnFailure");
    let (_, state, _) = berthctl(&socket, &["ps", "-a", "--filter", "name=fine", "--format", "{{.Status}}"]);
    assert!(state.starts_with("Exited (0)"), "{state}");
    down_leaves_nothing(&daemon, &file, "onfailure");

    // Never: no supervisor, nothing restarted however long one waits
    // (3 s: three times the first back-off).
    let body = format!("  containers:\n{}{}", container("zero", &image, "exit 0"), container("three", &image, "exit 3"));
    let file = manifest(work.path(), "never", "Never", &body);
    play(&file);
    assert_eq!(supervisors(&socket), Vec::<i32>::new(), "no supervisor under Never");
    wait_for("both exited", Duration::from_secs(10), || berthctl(&socket, &["ps", "-a", "--filter", "status=exited", "-q"]).1.lines().count() == 2);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!((restarts(&socket, "zero"), restarts(&socket, "three")), (Some(0), Some(0)), "nothing restarted under Never");
    assert_eq!(berthctl(&socket, &["ps", "-a", "-q"]).1.lines().count(), 2);
    down_leaves_nothing(&daemon, &file, "never");

    // Init containers: one that fails once (it leaves a mark in an
    // emptyDir) is tried again under OnFailure and the pod starts; under
    // Never the same failure fails the play and removes the pod.
    let init = "  volumes:\n  - name: marks\n    emptyDir: {}\n  initContainers:\n  - name: flaky\n    image: IMAGE\n    command: [\"sh\", \"-c\", \"test -e /m/tried || { touch /m/tried; exit 1; }\"]\n    volumeMounts: [{name: marks, mountPath: /m}]\n".replace("IMAGE", &image);
    let body = format!("{init}  containers:\n{}", container("main", &image, "exec sleep 3600"));
    let file = manifest(work.path(), "initretry", "OnFailure", &body);
    let (_, err) = play(&file);
    assert!(err.contains("spec.initContainers[0] (flaky) exited with 1; trying again"), "{err}");
    let (_, out, _) = berthctl(&socket, &["ps", "--format", "{{.Names}} {{.State}}"]);
    assert_eq!(out, "main running\n");
    down_leaves_nothing(&daemon, &file, "initretry");
    let file = manifest(work.path(), "initnever", "Never", &body);
    let (code, _, err) = berthctl_code(&socket, &["play", "kube", "--log-dir", &logs_arg, &file]);
    assert!(code == 1 && err.contains("spec.initContainers[0] (flaky) exited with 1; the pod is not started"), "{code}: {err}");
    assert_eq!(berthctl(&socket, &["ps", "-a", "-q"]).1, "", "the failed play made nothing");
    assert_eq!(supervisors(&socket), Vec::<i32>::new());

    drop(daemon);
    remove_cgroup_parent(&parent);
}
