//! The systemd harness itself: a machine boots, limits set through systemd
//! land in the host's v1 controllers, a `Type=notify` service starts, and
//! dropping the machine leaves nothing behind. Needs root and the root that
//! hack/setup.sh builds.

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use berth_testkit::systemd::{MachineOptions, SystemdMachine};

/// What must be gone once a machine is dropped.
struct Traces {
    nspawn_pid: u32,
    init_pid: u32,
    dir: PathBuf,
    cgroups: Vec<PathBuf>,
    run_files: PathBuf,
}

impl Traces {
    fn of(machine: &SystemdMachine) -> Traces {
        Traces {
            nspawn_pid: machine.nspawn_pid(),
            init_pid: machine.init_pid(),
            dir: machine.dir().to_path_buf(),
            cgroups: machine.cgroup_parent_on_host().iter().map(|c| c.dir.clone()).collect(),
            run_files: Path::new("/run/systemd/nspawn/propagate").join(machine.name()),
        }
    }

    fn assert_gone(&self) {
        for pid in [self.nspawn_pid, self.init_pid] {
            // A zombie would still have a /proc entry; the harness reaps nspawn.
            assert!(!Path::new(&format!("/proc/{pid}")).exists(), "process {pid} still exists after drop");
        }
        for dir in &self.cgroups {
            assert!(!dir.exists(), "cgroup {} still exists after drop", dir.display());
        }
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let dir = self.dir.to_string_lossy();
        assert!(!mountinfo.contains(dir.as_ref()), "a mount under {dir} is left:\n{mountinfo}");
        assert!(!self.dir.exists(), "temp dir {dir} still exists after drop");
        assert!(!self.run_files.exists(), "{} still exists after drop", self.run_files.display());
    }
}

/// The newest modification time of any file in `root`, to show booting
/// never writes to the cached root.
fn newest_mtime(root: &Path) -> std::time::SystemTime {
    fn walk(dir: &Path, newest: &mut std::time::SystemTime) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let Ok(meta) = entry.path().symlink_metadata() else {
                continue;
            };
            if let Ok(m) = meta.modified() {
                *newest = (*newest).max(m);
            }
            if meta.is_dir() {
                walk(&entry.path(), newest);
            }
        }
    }
    let mut newest = std::time::UNIX_EPOCH;
    walk(root, &mut newest);
    newest
}

#[test]
fn boots_limits_scopes_runs_notify_services_and_cleans_up() {
    let root = berth_testkit::systemd::systemd_root();
    let root_before = newest_mtime(&root);
    let sockets = tempfile::tempdir().unwrap();

    let started = Instant::now();
    let machine = SystemdMachine::boot(
        MachineOptions::new().bind_ro("/usr/lib/cni", "/usr/lib/cni").bind_rw(sockets.path(), "/run/berth-test").scratch("/var/lib/berth"),
    );
    let state = machine.wait_running(Duration::from_secs(60));
    let boot_time = started.elapsed();
    assert!(state == "running", "machine is {state}: failed units:\n{}", machine.exec_ok(&["systemctl", "--failed"]));
    let traces = Traces::of(&machine);

    // The container shares the host's network namespace.
    let host_netns = std::fs::read_link("/proc/self/ns/net").unwrap();
    let container_netns = std::fs::read_link(format!("/proc/{}/ns/net", machine.init_pid())).unwrap();
    assert_eq!(host_netns, container_netns, "the machine must share the host's network namespace");

    // A transient scope with a memory limit and delegation, created by a
    // process running inside the container (a unit), as berth-shim will.
    let maker = machine.exec(&[
        "systemd-run",
        "--quiet",
        "--unit=scope-maker",
        "--service-type=exec",
        "systemd-run",
        "--scope",
        "--unit=limited",
        "--property=MemoryMax=32M",
        "--property=Delegate=yes",
        "sleep",
        "100",
    ]);
    assert!(maker.status.success(), "systemd-run: {}", String::from_utf8_lossy(&maker.stderr));
    let deadline = Instant::now() + Duration::from_secs(10);
    while machine.exec(&["systemctl", "is-active", "--quiet", "limited.scope"]).status.code() != Some(0) {
        assert!(Instant::now() < deadline, "limited.scope never became active: {}", machine.exec_ok(&["systemctl", "status", "--no-pager", "limited.scope"]));
        std::thread::sleep(Duration::from_millis(50));
    }
    let scope = machine.unit_cgroup("limited.scope");
    assert_eq!(scope, "/system.slice/limited.scope");
    // Read from the host: the file the kernel enforces, not systemd's idea
    // of it. A read-only controller mount would leave no such cgroup.
    let limit_file = machine.host_cgroup_dir("memory", &scope).join("memory.limit_in_bytes");
    let limit =
        std::fs::read_to_string(&limit_file).unwrap_or_else(|e| panic!("{}: {e} (v1 memory controller read-only in the container?)", limit_file.display()));
    assert_eq!(limit.trim(), "33554432", "{}", limit_file.display());
    // The same file seen from inside.
    assert_eq!(machine.exec_ok(&["cat", &format!("/sys/fs/cgroup/memory{scope}/memory.limit_in_bytes")]).trim(), "33554432");
    // Delegation: the scope's name=systemd cgroup belongs to whoever runs in it.
    let delegated = machine.host_cgroup_dir("systemd", &scope);
    assert!(delegated.join("cgroup.procs").exists(), "no name=systemd cgroup {}", delegated.display());

    // A transient service with a limit, its output back through the pipe.
    let out = machine.run_unit("oneshot-limit", &["cat", "/proc/self/cgroup"], &["MemoryMax=48M"]);
    assert!(out.status.success(), "run_unit: {}", String::from_utf8_lossy(&out.stderr));
    let cgroups = String::from_utf8_lossy(&out.stdout);
    assert!(cgroups.lines().any(|l| l.ends_with(":memory:/system.slice/oneshot-limit.service")), "{cgroups}");

    // A Type=notify service: start returns once it sent READY=1.
    let notify_unit = "[Unit]\nDescription=berth harness notify check\n\n[Service]\nType=notify\nNotifyAccess=all\n\
                       ExecStart=/bin/sh -c 'sleep 0.2; echo ready > /run/berth-test/ready; systemd-notify --ready; exec sleep 1000'\n";
    machine.start_service("notify-check.service", notify_unit).unwrap();
    assert_eq!(machine.exec_ok(&["systemctl", "is-active", "notify-check.service"]).trim(), "active");
    // Its file, written inside, read through the bind mount on the host.
    assert_eq!(std::fs::read_to_string(machine.host_path("/run/berth-test/ready")).unwrap(), "ready\n");
    assert_eq!(machine.host_path("/run/berth-test/ready"), sockets.path().join("ready"));
    // Its journal, through journalctl inside (--link-journal=no keeps it in
    // the machine).
    let journal = machine.exec_ok(&["journalctl", "--no-pager", "-u", "notify-check.service"]);
    assert!(journal.contains("berth harness notify check"), "{journal}");

    // A failing service: the error holds its status and journal.
    let failing = "[Service]\nType=notify\nExecStart=/bin/sh -c 'echo cannot-start-here >&2; exit 3'\n";
    let error = machine.start_service("failing.service", failing).unwrap_err();
    assert!(error.contains("cannot-start-here") && error.contains("status=3"), "{error}");

    // Files in the overlay are seen through the init's root.
    machine.write_file("/etc/berth/config.toml", b"cgroup_driver = \"systemd\"\n");
    assert_eq!(std::fs::read_to_string(machine.host_path("/etc/berth/config.toml")).unwrap(), "cgroup_driver = \"systemd\"\n");

    // The root's binaries for CNI are there, and the scratch dir is not an overlay.
    machine.exec_ok(&["test", "-x", "/usr/lib/cni/bridge"]);
    let fstype = machine.exec_ok(&["stat", "-f", "-c", "%T", "/var/lib/berth"]);
    assert_ne!(fstype.trim(), "overlayfs", "scratch dirs must not be on the overlay");

    // berthd, berth-shim and berth-runtime, when built beside this test
    // binary, find their libraries in the root.
    let target = std::env::current_exe().unwrap().parent().unwrap().parent().unwrap().to_path_buf();
    drop(machine);
    traces.assert_gone();
    let test_time = started.elapsed();
    eprintln!("systemd machine: running after {boot_time:?}; whole test {test_time:?}");

    if target.join("berthd").exists() && target.join("berth-shim").exists() {
        let machine = SystemdMachine::boot(MachineOptions::new().bind_ro(&target, "/opt/berth"));
        machine.wait_running(Duration::from_secs(60));
        for binary in ["berthd", "berth-shim", "berth-runtime"] {
            let out = machine.exec(&["ldd", &format!("/opt/berth/{binary}")]);
            let libs = String::from_utf8_lossy(&out.stdout);
            assert!(out.status.success() && !libs.contains("not found"), "{binary} in the machine: {libs}{}", String::from_utf8_lossy(&out.stderr));
        }
        machine.exec_ok(&["/opt/berth/berthd", "--help"]);
        machine.shutdown();
    }

    assert_eq!(newest_mtime(&root), root_before, "booting changed the cached root {}", root.display());
}

#[test]
fn a_panicking_test_leaves_nothing_behind() {
    let machine = SystemdMachine::boot(MachineOptions::new());
    let traces = Traces::of(&machine);
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
        machine.wait_running(Duration::from_secs(60));
        panic!("a test failing while its machine runs");
    }));
    assert!(outcome.is_err());
    traces.assert_gone();
}

/// Set for [`killed_test_helper`] when [`a_killed_test_is_cleaned_up_after`]
/// runs it.
const KILL_HELPER_ENV: &str = "BERTH_SD_KILL_HELPER";

#[test]
#[ignore = "a helper: a_killed_test_is_cleaned_up_after runs it in a process of its own and kills it"]
fn killed_test_helper() {
    if std::env::var_os(KILL_HELPER_ENV).is_none() {
        return;
    }
    let machine = SystemdMachine::boot(MachineOptions::new());
    machine.wait_running(Duration::from_secs(60));
    let cgroups: Vec<String> = machine.cgroup_parent_on_host().iter().map(|c| c.dir.to_string_lossy().into_owned()).collect();
    println!("machine {} {} {} {}", machine.name(), machine.nspawn_pid(), machine.dir().display(), cgroups.join(" "));
    std::io::Write::flush(&mut std::io::stdout()).unwrap();
    std::thread::sleep(Duration::from_secs(600));
}

/// A test process killed outright (a runner's timeout) runs no drop: its
/// nspawn must still power off (parent-death signal), and the next boot
/// must remove the cgroups and temp dir it left.
#[test]
fn a_killed_test_is_cleaned_up_after() {
    use std::io::BufRead;
    let mut helper = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "killed_test_helper", "--ignored", "--nocapture", "--test-threads=1"])
        .env(KILL_HELPER_ENV, "1")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = std::io::BufReader::new(helper.stdout.take().unwrap());
    // libtest prints "test killed_test_helper ... " before the test's own output.
    let line =
        stdout.lines().map_while(Result::ok).find_map(|l| l.split_once("machine ").map(|(_, m)| m.to_string())).expect("the helper never reported its machine");
    let fields: Vec<&str> = line.split_whitespace().collect();
    let (nspawn_pid, dir, cgroups) = (fields[1], PathBuf::from(fields[2]), &fields[3..]);
    helper.kill().unwrap();
    helper.wait().unwrap();

    let deadline = Instant::now() + Duration::from_secs(30);
    let alive = || std::fs::read_to_string(format!("/proc/{nspawn_pid}/status")).is_ok_and(|s| !s.contains("State:\tZ"));
    while alive() {
        assert!(Instant::now() < deadline, "nspawn {nspawn_pid} still runs 30 s after its test process was killed");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(dir.exists() && Path::new(cgroups[0]).exists(), "the killed helper's machine left nothing to clean up?");

    // The next boot on this host removes what the dead test left.
    let machine = SystemdMachine::boot(MachineOptions::new());
    for cgroup in cgroups {
        assert!(!Path::new(cgroup).exists(), "cgroup {cgroup} of the killed test's machine is left");
    }
    assert!(!dir.exists(), "temp dir {} of the killed test's machine is left", dir.display());
    machine.shutdown();
}
