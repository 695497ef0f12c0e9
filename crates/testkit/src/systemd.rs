//! A real systemd for tests: [`SystemdMachine`] boots the Debian root that
//! `hack/setup.sh` builds (`$BERTH_SYSTEMD_ROOT`, default
//! [`DEFAULT_ROOT`]) as the init of a `systemd-nspawn` container, so that
//! code speaking to systemd (transient units over D-Bus, `Delegate=`,
//! `Type=notify` services) meets the genuine article. The shared note
//! `systemd-in-nspawn.md` explains the choices; the main ones:
//!
//! - **Never on the host's own file system.** systemd's tmpfiles setup would
//!   empty the host's `/tmp`. The container's root is an overlay whose lower
//!   layer is the cached root (never written) and whose upper layer is a
//!   fresh directory per machine. The harness mounts that overlay itself, in
//!   a private mount namespace of the launcher, so it vanishes with nspawn
//!   and each machine has its own root directory (nspawn locks the directory
//!   it boots, which rules out booting the cached root itself several times).
//! - **Host network.** No `--private-network`: the container shares the
//!   host's network namespace (loopback registry, CNI bridges), so it keeps
//!   every capability (`--capability=all`), including `CAP_NET_ADMIN`.
//! - **Writable v1 controllers.** nspawn mounts the v1 controllers
//!   read-only, and systemd then silently ignores `MemoryMax=` and friends.
//!   The container's first process remounts them read-write, then execs
//!   systemd. The layout stays hybrid, as on this host.
//! - **One cgroup subtree per machine.** Before nspawn starts, the launcher
//!   moves itself into a fresh cgroup `<name>` below the test's own cgroup,
//!   in every hierarchy; everything the machine runs lives below it, and
//!   cleanup removes that one subtree.
//!
//! Dropping a machine powers it off and removes everything it made: the
//! nspawn process, the cgroup subtree, the temp dir and nspawn's leftovers in
//! the host's `/run/systemd/nspawn`. If the test process itself dies (killed
//! by a test runner's timeout), nspawn receives SIGTERM and powers the
//! container off, and the next [`SystemdMachine::boot`] on this host removes
//! what the dead process left.
//!
//! ```no_run
//! use berth_testkit::systemd::{MachineOptions, SystemdMachine};
//! let machine = SystemdMachine::boot(MachineOptions::new().bind_ro("/usr/lib/cni", "/usr/lib/cni"));
//! machine.wait_running(std::time::Duration::from_secs(60));
//! let out = machine.exec(&["systemctl", "is-system-running"]);
//! assert!(out.status.success());
//! ```

use std::{
    io::Write,
    os::unix::process::CommandExt,
    path::{Component, Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    sync::{
        atomic::{AtomicU32, Ordering},
        mpsc, Mutex, OnceLock,
    },
    time::{Duration, Instant},
};

use nix::sys::signal::Signal;

/// Where `hack/setup.sh` builds the root unless `BERTH_SYSTEMD_ROOT` says
/// otherwise.
pub const DEFAULT_ROOT: &str = "/var/cache/berth/systemd-root";

/// Every machine's name (and its temp dir's and cgroups' names) starts with
/// this, then `<pid of the test process>-<counter>`.
const NAME_PREFIX: &str = "berth-sd-";

/// The container's first process. nspawn mounts the v1 controllers
/// read-only; systemd would then accept limits in unit properties but create
/// no cgroup for them in those controllers. A remount that fails ends the
/// boot, with the controller named in the boot log, rather than booting a
/// systemd that ignores limits. Aliases such as `cpu,cpuacct` are symlinks
/// and are skipped; `systemd` and `unified` are already writable where the
/// container may write.
const INIT_SCRIPT: &str = r#"set -e
for controller in /sys/fs/cgroup/*; do
  case "${controller##*/}" in systemd|unified) continue ;; esac
  if [ -L "$controller" ] || [ ! -d "$controller" ] || ! mountpoint -q "$controller"; then continue; fi
  mount -o remount,bind,rw,nosuid,nodev,noexec "$controller" "$controller" ||
    { echo "berth-sd init: cannot make $controller writable" >&2; exit 1; }
done
exec /lib/systemd/systemd
"#;

/// The launcher on the host, run by `unshare --mount --propagation private`:
/// joins the machine's cgroups, mounts the root overlay (visible in this
/// private mount namespace only, so it goes away with nspawn), then becomes
/// nspawn (`"$@"`).
const LAUNCH_SCRIPT: &str = r#"set -e
for procs in $BERTH_SD_CGROUP_PROCS; do echo $$ > "$procs"; done
mount -t overlay berth-sd -o "$BERTH_SD_OVERLAY" "$BERTH_SD_MERGED"
unset BERTH_SD_CGROUP_PROCS BERTH_SD_OVERLAY BERTH_SD_MERGED
exec "$@"
"#;

/// PATH for commands run inside the container.
const CONTAINER_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The root `hack/setup.sh` built: `$BERTH_SYSTEMD_ROOT`, or [`DEFAULT_ROOT`].
pub fn systemd_root() -> PathBuf {
    std::env::var_os("BERTH_SYSTEMD_ROOT").filter(|v| !v.is_empty()).map(PathBuf::from).unwrap_or_else(|| DEFAULT_ROOT.into())
}

/// A host directory mounted into the container.
#[derive(Clone, Debug)]
pub struct Bind {
    /// The directory (or file) on the host.
    pub host: PathBuf,
    /// Where it appears inside the container.
    pub container: PathBuf,
    /// Mounted read-only.
    pub read_only: bool,
}

/// How to boot a [`SystemdMachine`]. Start from [`MachineOptions::new`].
#[derive(Clone, Debug)]
pub struct MachineOptions {
    root: PathBuf,
    binds: Vec<Bind>,
    scratch: Vec<PathBuf>,
    init_timeout: Duration,
}

impl Default for MachineOptions {
    fn default() -> Self {
        Self::new()
    }
}

impl MachineOptions {
    /// The root from [`systemd_root`], no extra mounts.
    pub fn new() -> Self {
        MachineOptions { root: systemd_root(), binds: Vec::new(), scratch: Vec::new(), init_timeout: Duration::from_secs(30) }
    }

    /// Boots another root (it is only ever read).
    pub fn root(mut self, root: impl Into<PathBuf>) -> Self {
        self.root = root.into();
        self
    }

    /// Mounts the host's `host` read-only at `container` (created in the
    /// machine's own overlay if missing), e.g. berth's target dir or
    /// `/usr/lib/cni`.
    pub fn bind_ro(mut self, host: impl Into<PathBuf>, container: impl Into<PathBuf>) -> Self {
        self.binds.push(Bind { host: host.into(), container: container.into(), read_only: true });
        self
    }

    /// Mounts the host's `host` read-write at `container`, e.g. a temp dir
    /// where berthd inside puts its CRI socket for a client on the host.
    pub fn bind_rw(mut self, host: impl Into<PathBuf>, container: impl Into<PathBuf>) -> Self {
        self.binds.push(Bind { host: host.into(), container: container.into(), read_only: false });
        self
    }

    /// Mounts a fresh empty host directory (in the machine's temp dir,
    /// removed with it) read-write at `container`. The container's root is an
    /// overlayfs, which overlayfs refuses as an upper layer: berth's
    /// snapshotter needs its root (`/var/lib/berth`) on such a directory.
    pub fn scratch(mut self, container: impl Into<PathBuf>) -> Self {
        self.scratch.push(container.into());
        self
    }

    /// How long [`SystemdMachine::boot`] waits for the container's first
    /// process to appear (default 30 s).
    pub fn init_timeout(mut self, timeout: Duration) -> Self {
        self.init_timeout = timeout;
        self
    }
}

/// One cgroup hierarchy of the host, as a machine uses it.
#[derive(Clone, Debug)]
pub struct HostCgroup {
    /// The hierarchy's directory name under `/sys/fs/cgroup` (`memory`,
    /// `cpu`, `systemd` for name=systemd, `unified` for the hybrid cgroup2),
    /// or `""` when cgroup2 itself is mounted at `/sys/fs/cgroup`.
    pub hierarchy: String,
    /// The machine's parent cgroup in that hierarchy; every process of the
    /// machine is at or below it. nspawn adds `payload/` (the container) and
    /// `supervisor/` (nspawn) below it in `systemd` and cgroup2.
    pub dir: PathBuf,
    /// Where the hierarchy is mounted.
    mount: PathBuf,
    /// The field of `/proc/<pid>/cgroup` that names this hierarchy: its
    /// controllers (`memory`, `name=systemd`) or `""` for cgroup2.
    controllers: String,
}

/// A systemd booted in a container of its own; see the module docs.
/// Powered off and cleaned up on drop.
pub struct SystemdMachine {
    name: String,
    nspawn: Child,
    init_pid: u32,
    dir: PathBuf,
    log: PathBuf,
    binds: Vec<Bind>,
    cgroups: Vec<HostCgroup>,
    /// Per hierarchy (same order as `cgroups`): the host directory that is
    /// the container's cgroup root, learnt once systemd runs.
    container_cgroup_roots: OnceLock<Vec<PathBuf>>,
    /// Set once [`Self::tear_down`] ran, so that drop after
    /// [`Self::shutdown`] does nothing.
    torn_down: bool,
}

impl SystemdMachine {
    /// Boots the root of `options` under `systemd-nspawn` and returns once the
    /// container's first process exists (call [`Self::wait_running`] next).
    /// Panics, with the boot log, if nspawn fails.
    pub fn boot(options: MachineOptions) -> SystemdMachine {
        assert!(
            options.root.join("lib/systemd/systemd").exists(),
            "no systemd root at {} (hack/setup.sh builds it; BERTH_SYSTEMD_ROOT names another)",
            options.root.display()
        );
        remove_leftovers_of_dead_tests();

        for bind in &options.binds {
            for path in [&bind.host, &bind.container] {
                assert!(path.is_absolute() && !path.to_string_lossy().contains(':'), "bind paths must be absolute, without ':': {}", path.display());
            }
        }
        for path in options.scratch.iter().chain([&options.root]) {
            assert!(
                path.is_absolute() && !path.to_string_lossy().contains([',', ':', ' ']),
                "paths must be absolute, without ',', ':' or ' ': {}",
                path.display()
            );
        }

        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let name = format!("{NAME_PREFIX}{}-{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed));
        // Removed by its guard if boot panics before the machine exists
        // (after that, by the machine's drop).
        let temp_dir =
            tempfile::Builder::new().prefix(&format!("{name}.")).tempdir().unwrap_or_else(|e| panic!("cannot make a temp dir for machine {name}: {e}"));
        let dir = temp_dir.path().to_path_buf();
        assert!(!dir.to_string_lossy().contains([',', ':', ' ']), "overlayfs cannot take the temp dir {} (a ',', ':' or ' ' in TMPDIR?)", dir.display());
        let (upper, work, merged) = (dir.join("upper"), dir.join("work"), dir.join("root"));
        for d in [&upper, &work, &merged, &upper.join("etc")] {
            std::fs::create_dir(d).unwrap_or_else(|e| panic!("mkdir {}: {e}", d.display()));
        }
        // A machine ID of its own (the cached root's is empty), written into
        // the upper layer before the overlay is mounted.
        let machine_id = format!("{:016x}{:016x}", random_u64(), random_u64());
        std::fs::write(upper.join("etc/machine-id"), format!("{machine_id}\n")).unwrap_or_else(|e| panic!("write the machine ID of {name}: {e}"));

        let mut binds = options.binds.clone();
        for (i, container) in options.scratch.iter().enumerate() {
            let host = dir.join("scratch").join(i.to_string());
            std::fs::create_dir_all(&host).unwrap_or_else(|e| panic!("mkdir {}: {e}", host.display()));
            binds.push(Bind { host, container: container.clone(), read_only: false });
        }

        let cgroups = make_cgroup_parents(&name);
        let procs_files: Vec<String> = cgroups.iter().map(|c| c.dir.join("cgroup.procs").to_string_lossy().into_owned()).collect();
        let log = dir.join("boot.log");
        let log_file = std::fs::File::create(&log).unwrap_or_else(|e| panic!("create {}: {e}", log.display()));

        let mut command = Command::new("unshare");
        command
            .args(["--mount", "--propagation", "private", "--", "/bin/sh", "-c", LAUNCH_SCRIPT, "berth-sd-launch"])
            .arg("systemd-nspawn")
            .arg(format!("--directory={}", merged.display()))
            .arg(format!("--machine={name}"))
            .args(["--register=no", "--keep-unit", "--link-journal=no", "--console=read-only"])
            .args(["--capability=all", "--kill-signal=SIGRTMIN+3", "--setenv=SYSTEMD_COLORS=0"]);
        for bind in &binds {
            let flag = if bind.read_only { "--bind-ro" } else { "--bind" };
            command.arg(format!("{flag}={}:{}", bind.host.display(), bind.container.display()));
        }
        command
            .args(["/bin/sh", "-c", INIT_SCRIPT])
            .env("BERTH_SD_CGROUP_PROCS", procs_files.join(" "))
            .env("BERTH_SD_OVERLAY", format!("lowerdir={},upperdir={},workdir={}", options.root.display(), upper.display(), work.display()))
            .env("BERTH_SD_MERGED", &merged)
            .env("SYSTEMD_COLORS", "0")
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().unwrap_or_else(|e| panic!("dup {}: {e}", log.display())))
            .stderr(log_file);
        let nspawn = spawn_detached(command).unwrap_or_else(|e| {
            remove_cgroup_tree(&cgroups);
            panic!("cannot start systemd-nspawn (hack/setup.sh installs systemd-container): {e}")
        });

        let _ = temp_dir.keep();
        let mut machine = SystemdMachine { name, nspawn, init_pid: 0, dir, log, binds, cgroups, container_cgroup_roots: OnceLock::new(), torn_down: false };
        let deadline = Instant::now() + options.init_timeout;
        loop {
            if let Some(pid) = container_init_of(machine.nspawn.id()) {
                machine.init_pid = pid;
                return machine;
            }
            if let Ok(Some(status)) = machine.nspawn.try_wait() {
                panic!("systemd-nspawn for {} exited ({status}) before its container started; {}", machine.name, machine.log_excerpt());
            }
            if Instant::now() > deadline {
                panic!("no container init under systemd-nspawn for {} after {:?}; {}", machine.name, options.init_timeout, machine.log_excerpt());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The machine's name (`berth-sd-<pid>-<n>`): nspawn's `--machine`, and
    /// the name of its cgroup parents and temp dir.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The host PID of the container's PID 1 (systemd, once booted).
    pub fn init_pid(&self) -> u32 {
        self.init_pid
    }

    /// The host PID of `systemd-nspawn`.
    pub fn nspawn_pid(&self) -> u32 {
        self.nspawn.id()
    }

    /// The machine's temp dir on the host: the overlay's `upper/` and
    /// `work/`, `boot.log`, `scratch/` dirs. Removed on drop.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file holding nspawn's output and the container's console: the
    /// boot messages, and what the container's first process printed.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The boot log so far (see [`Self::log_path`]).
    pub fn boot_log(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.log).unwrap_or_default()).into_owned()
    }

    fn log_excerpt(&self) -> String {
        let log = self.boot_log();
        let lines: Vec<&str> = log.lines().collect();
        let tail = lines[lines.len().saturating_sub(40)..].join("\n");
        format!("last lines of {}:\n{tail}", self.log.display())
    }

    /// Waits until `systemctl is-system-running` says `running` or
    /// `degraded` (a failed unit, which this returns for the caller to judge)
    /// and returns that state. Panics after `timeout`, or if the machine
    /// stops or lands in maintenance, with the boot log.
    pub fn wait_running(&self, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        let mut state = String::new();
        loop {
            if !Path::new(&format!("/proc/{}", self.init_pid)).exists() {
                panic!("machine {}: its init (pid {}) is gone; {}", self.name, self.init_pid, self.log_excerpt());
            }
            // Until systemd listens (and while the first process is still
            // the remounting shell), systemctl says "offline" or nothing.
            if let Ok(out) = self.try_exec(&["systemctl", "is-system-running"], None) {
                state = String::from_utf8_lossy(&out.stdout).trim().to_string();
                match state.as_str() {
                    "running" | "degraded" => return state,
                    "maintenance" | "stopping" => {
                        panic!("machine {} is {state}; failed units:\n{}\n{}", self.name, self.failed_units(), self.log_excerpt())
                    }
                    _ => {}
                }
            }
            if Instant::now() > deadline {
                panic!("machine {} not running after {timeout:?} (state {state:?}); failed units:\n{}\n{}", self.name, self.failed_units(), self.log_excerpt());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn failed_units(&self) -> String {
        match self.try_exec(&["systemctl", "--failed", "--no-legend", "--plain"], None) {
            Ok(out) => String::from_utf8_lossy(&out.stdout).into_owned(),
            Err(e) => format!("(systemctl --failed: {e})"),
        }
    }

    /// Runs `argv` inside the container with `nsenter` (all its namespaces,
    /// stdin empty, a clean environment with PATH). Meant for reading state
    /// (`systemctl show`, `cat /proc/...`) and for `systemctl`/`systemd-run`,
    /// which only ask systemd over D-Bus. The process itself stays in the
    /// host's cgroups: a program that creates units or cgroups must run from
    /// a unit instead ([`Self::run_unit`], [`Self::start_service`]).
    pub fn exec(&self, argv: &[&str]) -> Output {
        self.try_exec(argv, None).unwrap_or_else(|e| panic!("machine {}: cannot run nsenter for {argv:?}: {e}", self.name))
    }

    /// [`Self::exec`] that panics, with the command's stderr, unless it
    /// succeeds; returns its stdout.
    pub fn exec_ok(&self, argv: &[&str]) -> String {
        let out = self.exec(argv);
        assert!(
            out.status.success(),
            "machine {}: {argv:?} failed ({}): {}{}",
            self.name,
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// [`Self::exec`] with `input` on the command's stdin.
    pub fn exec_with_input(&self, argv: &[&str], input: &[u8]) -> Output {
        self.try_exec(argv, Some(input)).unwrap_or_else(|e| panic!("machine {}: cannot run nsenter for {argv:?}: {e}", self.name))
    }

    fn try_exec(&self, argv: &[&str], input: Option<&[u8]>) -> std::io::Result<Output> {
        let mut command = Command::new("nsenter");
        command
            .args(["--target", &self.init_pid.to_string(), "--all", "--"])
            .args(argv)
            .env_clear()
            .env("PATH", CONTAINER_PATH)
            .env("LANG", "C.UTF-8")
            .env("SYSTEMD_COLORS", "0")
            .env("SYSTEMD_PAGER", "")
            .stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn()?;
        let Some(input) = input else {
            return child.wait_with_output();
        };
        let mut stdin = child.stdin.take().expect("stdin was piped");
        // Fed from another thread, so a command that writes much before it
        // reads cannot deadlock against us. One that does not read it all
        // gets EPIPE; its exit status says more, so that error is dropped.
        std::thread::scope(|scope| {
            scope.spawn(move || {
                let _ = stdin.write_all(input);
            });
            child.wait_with_output()
        })
    }

    /// Writes `contents` to `container_path` inside the container (its
    /// overlay, or a bind mount), making missing parent directories.
    pub fn write_file(&self, container_path: &str, contents: &[u8]) {
        let out = self.exec_with_input(&["sh", "-c", r#"mkdir -p "$(dirname "$1")" && cat > "$1""#, "sh", container_path], contents);
        assert!(out.status.success(), "machine {}: writing {container_path} failed: {}", self.name, String::from_utf8_lossy(&out.stderr));
    }

    /// Runs `argv` as the transient service `unit` (a name without suffix
    /// gets `.service`) with the unit `properties` (`"MemoryMax=32M"`,
    /// `"Delegate=yes"`...): a process systemd manages, in the container's
    /// cgroups in every hierarchy. Waits for it to end (`systemd-run --wait
    /// --pipe --collect`): the output is the service's stdout and stderr and
    /// the status its exit status.
    pub fn run_unit(&self, unit: &str, argv: &[&str], properties: &[&str]) -> Output {
        let mut command = vec!["systemd-run", "--wait", "--pipe", "--quiet", "--collect", "--service-type=exec", "--unit", unit];
        for property in properties {
            command.extend(["--property", property]);
        }
        command.push("--");
        command.extend(argv);
        self.exec(&command)
    }

    /// Installs `unit_text` as `/etc/systemd/system/<unit>` (in the machine's
    /// overlay), reloads systemd and starts it with `systemctl start`, which
    /// returns once the unit is up: for `Type=notify`, after the service
    /// sent `READY=1` (within its `TimeoutStartSec=`, 90 s unless the text
    /// says otherwise). On failure the error holds `systemctl status` and
    /// the unit's journal (`journalctl -u` works inside the machine).
    pub fn start_service(&self, unit: &str, unit_text: &str) -> Result<(), String> {
        self.write_file(&format!("/etc/systemd/system/{unit}"), unit_text.as_bytes());
        let reload = self.exec(&["systemctl", "daemon-reload"]);
        if !reload.status.success() {
            return Err(format!("machine {}: systemctl daemon-reload failed: {}", self.name, String::from_utf8_lossy(&reload.stderr)));
        }
        let start = self.exec(&["systemctl", "start", unit]);
        if start.status.success() {
            return Ok(());
        }
        let status = self.exec(&["systemctl", "status", "--no-pager", "--full", "--lines=0", unit]);
        let journal = self.exec(&["journalctl", "--no-pager", "--output=short-precise", "--lines=60", "--unit", unit]);
        Err(format!(
            "machine {}: systemctl start {unit} failed ({}): {}\n--- systemctl status {unit}\n{}--- journalctl -u {unit}\n{}",
            self.name,
            start.status,
            String::from_utf8_lossy(&start.stderr).trim(),
            String::from_utf8_lossy(&status.stdout),
            String::from_utf8_lossy(&journal.stdout)
        ))
    }

    /// A unit's cgroup as the container sees it (`ControlGroup`, e.g.
    /// `/system.slice/x.scope`), empty if it has none.
    pub fn unit_cgroup(&self, unit: &str) -> String {
        self.exec_ok(&["systemctl", "show", "--property=ControlGroup", "--value", unit]).trim().to_string()
    }

    /// Where `container_path` is on the host: the host side of a bind mount
    /// when it lies in one (lasting beyond the machine), else the path seen
    /// through the container init's root (`/proc/<pid>/root/...`: the live
    /// container view, overlay and `/run` included, valid while the machine
    /// runs). `container_path` is absolute.
    pub fn host_path(&self, container_path: impl AsRef<Path>) -> PathBuf {
        let path = container_path.as_ref();
        assert!(path.is_absolute(), "host_path takes an absolute path in the container, not {}", path.display());
        // The innermost (longest) bind holding the path wins.
        let bind = self.binds.iter().filter(|b| path.starts_with(&b.container)).max_by_key(|b| b.container.components().count());
        match bind {
            Some(b) => b.host.join(path.strip_prefix(&b.container).expect("starts_with checked")),
            None => Path::new(&format!("/proc/{}/root", self.init_pid)).join(relative(path)),
        }
    }

    /// The machine's cgroup parents on the host, one per hierarchy: all of
    /// the machine's processes are at or below them.
    pub fn cgroup_parent_on_host(&self) -> &[HostCgroup] {
        &self.cgroups
    }

    /// The host directory of the container's cgroup `container_cgroup`
    /// (e.g. [`Self::unit_cgroup`]'s `/system.slice/x.scope`) in
    /// `hierarchy` (`memory`, `cpu`, `pids`, `systemd`, `unified`...), for
    /// reading cgroup files from the host. v1 controllers put the
    /// container's root at the parent itself, `systemd` and cgroup2 at its
    /// `payload/`; this learns which from the container.
    pub fn host_cgroup_dir(&self, hierarchy: &str, container_cgroup: &str) -> PathBuf {
        let roots = self.container_cgroup_roots.get_or_init(|| self.learn_container_cgroup_roots());
        let index = self.cgroups.iter().position(|c| c.hierarchy == hierarchy).unwrap_or_else(|| {
            let known: Vec<&str> = self.cgroups.iter().map(|c| c.hierarchy.as_str()).collect();
            panic!("no cgroup hierarchy {hierarchy:?} on this host (there are {known:?})")
        });
        roots[index].join(relative(Path::new(container_cgroup)))
    }

    /// Pairs each hierarchy's line of the init's `/proc/<pid>/cgroup` as the
    /// host sees it with the same line as the container sees it; the host
    /// path minus the container's is the container's root.
    fn learn_container_cgroup_roots(&self) -> Vec<PathBuf> {
        let host_view = std::fs::read_to_string(format!("/proc/{}/cgroup", self.init_pid))
            .unwrap_or_else(|e| panic!("machine {}: read /proc/{}/cgroup: {e}", self.name, self.init_pid));
        let container_view = self.exec_ok(&["cat", "/proc/1/cgroup"]);
        self.cgroups
            .iter()
            .map(|cgroup| {
                let host = cgroup_line_path(&host_view, &cgroup.controllers);
                let inside = cgroup_line_path(&container_view, &cgroup.controllers);
                let (Some(host), Some(inside)) = (host, inside) else {
                    panic!(
                        "machine {}: no {:?} line in the init's /proc/PID/cgroup (host: {host_view}, container: {container_view})",
                        self.name, cgroup.controllers
                    )
                };
                let root = host
                    .strip_suffix(inside.trim_end_matches('/'))
                    .unwrap_or_else(|| panic!("machine {}: container cgroup {inside} is not a suffix of the host's {host}", self.name));
                cgroup.mount.join(relative(Path::new(root)))
            })
            .collect()
    }

    /// Powers the machine off and removes all it made (what drop does),
    /// then panics if anything is left: a process, a cgroup, a mount or the
    /// temp dir.
    pub fn shutdown(mut self) {
        let leftovers = self.tear_down();
        assert!(leftovers.is_empty(), "machine {} left: {}", self.name, leftovers.join("; "));
    }

    /// Asks the container to power off and waits up to `timeout` for nspawn
    /// to exit; returns whether it did. `systemctl --no-block poweroff`
    /// returns once the job is queued (the container then stops in 1-3 s).
    /// Until systemd listens it fails; nspawn is then sent SIGTERM, which it
    /// forwards to the container's init as its --kill-signal (SIGRTMIN+3,
    /// halt). A signal that reaches systemd before it installed its
    /// handlers is dropped (the init of a PID namespace ignores signals it
    /// does not handle), hence the retries.
    fn request_poweroff(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut queued = false;
        while Instant::now() < deadline {
            if !queued {
                let out = self.try_exec(&["systemctl", "--no-block", "poweroff"], None);
                queued = out.is_ok_and(|out| out.status.success());
                if !queued {
                    kill(self.nspawn.id(), Signal::SIGTERM);
                }
            }
            if wait_exit(&mut self.nspawn, Duration::from_millis(500)) {
                return true;
            }
        }
        false
    }

    /// Powers off, removes the cgroup tree, nspawn's files in /run and the
    /// temp dir. Never panics (it runs in drop, maybe while unwinding);
    /// returns what it could not remove.
    fn tear_down(&mut self) -> Vec<String> {
        if std::mem::replace(&mut self.torn_down, true) {
            return Vec::new();
        }
        let mut leftovers = Vec::new();
        let running = matches!(self.nspawn.try_wait(), Ok(None));
        if running && !self.request_poweroff(Duration::from_secs(20)) {
            eprintln!("machine {}: no poweroff after 20 s, killing its processes; {}", self.name, self.log_excerpt());
            // Killing the container's PID 1 ends its whole PID namespace.
            kill(self.init_pid, Signal::SIGKILL);
            if !wait_exit(&mut self.nspawn, Duration::from_secs(5)) {
                kill(self.nspawn.id(), Signal::SIGKILL);
                let _ = self.nspawn.wait();
            }
        }
        // With nspawn gone the container's PID namespace is gone, and the tree
        // should be empty; anything a test moved into it is the machine's too.
        for _ in 0..50 {
            let pids = processes_in(&self.cgroups);
            if pids.is_empty() {
                break;
            }
            for pid in pids {
                kill(pid, Signal::SIGKILL);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        leftovers.extend(processes_in(&self.cgroups).iter().map(|pid| format!("process {pid}")));
        // A cgroup whose last process just died may still be busy for a moment.
        let deadline = Instant::now() + Duration::from_secs(3);
        while !remove_cgroup_tree(&self.cgroups) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        for cgroup in &self.cgroups {
            if cgroup.dir.exists() {
                leftovers.push(format!("cgroup {}", cgroup.dir.display()));
            }
        }
        remove_nspawn_run_files(&self.name);
        let mounts = mounts_below(&self.dir);
        for mount in mounts.iter().rev() {
            let _ = nix::mount::umount2(mount.as_path(), nix::mount::MntFlags::MNT_DETACH);
        }
        let mounts = mounts_below(&self.dir);
        if mounts.is_empty() {
            // Nothing mounted below: removing cannot reach into a bind mount's source.
            if let Err(e) = std::fs::remove_dir_all(&self.dir) {
                leftovers.push(format!("temp dir {} ({e})", self.dir.display()));
            }
        } else {
            leftovers.extend(mounts.iter().map(|m| format!("mount {}", m.display())));
            leftovers.push(format!("temp dir {} (kept: mounts below it)", self.dir.display()));
        }
        leftovers
    }
}

impl Drop for SystemdMachine {
    fn drop(&mut self) {
        let leftovers = self.tear_down();
        if !leftovers.is_empty() {
            eprintln!("machine {} left: {}", self.name, leftovers.join("; "));
        }
    }
}

/// `path` without its leading `/`, to join below another directory.
fn relative(path: &Path) -> PathBuf {
    path.components().filter(|c| !matches!(c, Component::RootDir)).collect()
}

/// The path on the line of a `/proc/<pid>/cgroup` text whose controller
/// field is `controllers` (`memory`, `name=systemd`, or `""` for cgroup2).
fn cgroup_line_path<'a>(text: &'a str, controllers: &str) -> Option<&'a str> {
    text.lines().find_map(|line| {
        let mut fields = line.splitn(3, ':');
        let (_id, list, path) = (fields.next()?, fields.next()?, fields.next()?);
        (list == controllers).then_some(path)
    })
}

/// The cgroup hierarchies mounted under `/sys/fs/cgroup`, each with the
/// calling process's cgroup in it: `(hierarchy, controllers field, mount
/// point, own cgroup path)`.
fn own_cgroups() -> Vec<(String, String, PathBuf, String)> {
    let own = std::fs::read_to_string("/proc/self/cgroup").expect("read /proc/self/cgroup");
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").expect("read /proc/self/mountinfo");
    let mut found = Vec::new();
    for line in mountinfo.lines() {
        // mountinfo: "id parent maj:min root mountpoint options ... - fstype source superoptions"
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let mount_point = PathBuf::from(left.split(' ').nth(4).unwrap_or_default());
        let mut right = right.split(' ');
        let (fstype, _source, super_options) = (right.next().unwrap_or_default(), right.next(), right.next().unwrap_or_default());
        if !mount_point.starts_with("/sys/fs/cgroup") {
            continue;
        }
        let options: Vec<&str> = super_options.split(',').collect();
        // The line of /proc/self/cgroup for this mount: cgroup2 has an empty
        // controller field; a v1 hierarchy lists exactly the controllers (or
        // name=) among its mount options.
        let line = own.lines().find_map(|l| {
            let mut fields = l.splitn(3, ':');
            let (_id, list, path) = (fields.next()?, fields.next()?, fields.next()?);
            let matches = match fstype {
                "cgroup2" => list.is_empty(),
                "cgroup" => !list.is_empty() && list.split(',').all(|c| options.contains(&c)),
                _ => false,
            };
            matches.then(|| (list.to_string(), path.to_string()))
        });
        if let Some((controllers, path)) = line {
            let hierarchy = mount_point.strip_prefix("/sys/fs/cgroup").expect("checked above").to_string_lossy().into_owned();
            found.push((hierarchy, controllers, mount_point, path));
        }
    }
    found
}

/// Makes `<own cgroup>/<name>` in every hierarchy (cpuset needs its CPUs and
/// memory nodes copied from the parent before a process may join).
fn make_cgroup_parents(name: &str) -> Vec<HostCgroup> {
    let mut made = Vec::new();
    for (hierarchy, controllers, mount, own) in own_cgroups() {
        let parent = mount.join(relative(Path::new(&own)));
        let dir = parent.join(name);
        if let Err(e) = std::fs::create_dir(&dir) {
            remove_cgroup_tree(&made);
            panic!("cannot make cgroup {}: {e}", dir.display());
        }
        made.push(HostCgroup { hierarchy, dir: dir.clone(), mount, controllers: controllers.clone() });
        if controllers.split(',').any(|c| c == "cpuset") {
            for file in ["cpuset.cpus", "cpuset.mems"] {
                let value = std::fs::read_to_string(parent.join(file)).unwrap_or_default();
                if let Err(e) = std::fs::write(dir.join(file), value.trim()) {
                    remove_cgroup_tree(&made);
                    panic!("cannot copy {file} into {}: {e}", dir.display());
                }
            }
        }
    }
    assert!(!made.is_empty(), "no cgroup hierarchy found under /sys/fs/cgroup");
    made
}

/// Removes every cgroup directory below (and including) each parent,
/// deepest first. Returns whether all are gone.
fn remove_cgroup_tree(cgroups: &[HostCgroup]) -> bool {
    fn remove(dir: &Path) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                remove(&entry.path());
            }
        }
        let _ = std::fs::remove_dir(dir);
    }
    for cgroup in cgroups {
        remove(&cgroup.dir);
    }
    cgroups.iter().all(|c| !c.dir.exists())
}

/// Every PID in the machine's cgroup trees.
fn processes_in(cgroups: &[HostCgroup]) -> Vec<u32> {
    let mut pids: Vec<u32> = cgroups.iter().flat_map(|c| crate::cgroups::pids_below(&c.dir)).collect();
    pids.sort_unstable();
    pids.dedup();
    pids
}

/// The mount points at or below `dir` in this process's mount namespace,
/// shallowest first.
fn mounts_below(dir: &Path) -> Vec<PathBuf> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut mounts: Vec<PathBuf> = mountinfo
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        // mountinfo escapes spaces and such as octal (\040); no machine path has them.
        .map(PathBuf::from)
        .filter(|m| m.starts_with(dir))
        .collect();
    mounts.sort_by_key(|m| m.components().count());
    mounts
}

/// What nspawn leaves in the host's `/run/systemd/nspawn` for a machine
/// (this host's /run is on disk, so nothing else clears it). The shared
/// directories stay: another machine may be using them.
fn remove_nspawn_run_files(name: &str) {
    for kind in ["propagate", "unix-export", "incoming"] {
        let path = Path::new("/run/systemd/nspawn").join(kind).join(name);
        if path.is_dir() {
            let _ = std::fs::remove_dir_all(&path);
        } else {
            let _ = std::fs::remove_file(&path);
        }
    }
}

/// The container's PID 1 under nspawn `nspawn_pid`: its child that is PID 1
/// of a PID namespace of its own.
fn container_init_of(nspawn_pid: u32) -> Option<u32> {
    let children = std::fs::read_to_string(format!("/proc/{nspawn_pid}/task/{nspawn_pid}/children")).ok()?;
    children.split_whitespace().filter_map(|p| p.parse::<u32>().ok()).find(|pid| {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        status.lines().find_map(|l| l.strip_prefix("NSpid:")).is_some_and(|ns| {
            let ids: Vec<&str> = ns.split_whitespace().collect();
            ids.len() >= 2 && ids.last() == Some(&"1")
        })
    })
}

fn wait_exit(child: &mut Child, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(_)) | Err(_) => return true,
            Ok(None) if Instant::now() > deadline => return false,
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

fn kill(pid: u32, signal: Signal) {
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), signal);
}

/// 64 random bits without a crate for it: std seeds each `RandomState`
/// from the OS's randomness (and never hands out the same keys twice).
fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    std::collections::hash_map::RandomState::new().build_hasher().finish()
}

/// Spawns `command` in a session of its own, with SIGTERM as its parent-death
/// signal, from one long-lived thread of this process: the kernel sends
/// that signal when the spawning *thread* ends, and a test's own thread ends
/// with the test, while this one ends only with the process. So nspawn
/// (which answers SIGTERM by powering the container off) outlives nothing
/// but a test process killed before it could drop its machine.
fn spawn_detached(command: Command) -> std::io::Result<Child> {
    type Request = (Command, mpsc::Sender<std::io::Result<Child>>);
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<Request>>> = OnceLock::new();
    let spawner = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Request>();
        std::thread::Builder::new()
            .name("berth-sd-spawner".into())
            .spawn(move || {
                for (mut command, reply) in rx {
                    // A pre_exec hook is unsafe by nature (it runs between fork
                    // and exec); std offers no safe setsid or parent-death
                    // signal for a child.
                    // SAFETY: setsid and prctl are async-signal-safe and
                    // allocate nothing, as a pre_exec hook requires.
                    #[allow(unsafe_code)]
                    unsafe {
                        command.pre_exec(|| {
                            if libc::setsid() < 0 || libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM as libc::c_ulong) < 0 {
                                return Err(std::io::Error::last_os_error());
                            }
                            Ok(())
                        });
                    }
                    let _ = reply.send(command.spawn());
                }
            })
            .expect("spawn the berth-sd-spawner thread");
        Mutex::new(tx)
    });
    let (reply_tx, reply_rx) = mpsc::channel();
    spawner.lock().unwrap_or_else(|e| e.into_inner()).send((command, reply_tx)).expect("the berth-sd-spawner thread lives as long as the process");
    reply_rx.recv().expect("the berth-sd-spawner thread answers every request")
}

/// Removes what machines of test processes that no longer exist left behind
/// (a test killed before its machine's drop ran): their cgroup trees once
/// empty, their temp dirs once their cgroups are gone (so no container
/// still uses them) and nothing is mounted below, and nspawn's files in
/// /run. Processes are never touched: a dead test's nspawn got SIGTERM and
/// powers off on its own.
fn remove_leftovers_of_dead_tests() {
    let owner_is_dead = |name: &str| -> bool {
        let Some(rest) = name.strip_prefix(NAME_PREFIX) else {
            return false;
        };
        let Some(pid) = rest.split(['-', '.']).next().and_then(|p| p.parse::<u32>().ok()) else {
            return false;
        };
        pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists()
    };
    let mut stale: Vec<(String, Vec<HostCgroup>)> = Vec::new();
    for (hierarchy, controllers, mount, own) in own_cgroups() {
        let parent = mount.join(relative(Path::new(&own)));
        for entry in std::fs::read_dir(&parent).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if owner_is_dead(&name) && entry.file_type().is_ok_and(|t| t.is_dir()) {
                let cgroup = HostCgroup { hierarchy: hierarchy.clone(), dir: entry.path(), mount: mount.clone(), controllers: controllers.clone() };
                match stale.iter_mut().find(|(n, _)| *n == name) {
                    Some((_, list)) => list.push(cgroup),
                    None => stale.push((name, vec![cgroup])),
                }
            }
        }
    }
    let mut gone: Vec<String> = Vec::new();
    for (name, cgroups) in &stale {
        if processes_in(cgroups).is_empty() && remove_cgroup_tree(cgroups) {
            gone.push(name.clone());
        }
    }
    let temp = std::env::temp_dir();
    for entry in std::fs::read_dir(&temp).into_iter().flatten().flatten() {
        let file_name = entry.file_name();
        let file_name = file_name.to_string_lossy();
        let Some((name, _)) = file_name.split_once('.') else {
            continue;
        };
        let cgroups_gone = gone.iter().any(|g| g == name) || !stale.iter().any(|(n, _)| n == name);
        if owner_is_dead(name) && cgroups_gone && mounts_below(&entry.path()).is_empty() && !nspawn_running(name) {
            let _ = std::fs::remove_dir_all(entry.path());
            remove_nspawn_run_files(name);
        }
    }
}

/// Whether an nspawn process for machine `name` still runs (a dead test's
/// machine powering off after SIGTERM).
fn nspawn_running(name: &str) -> bool {
    let wanted = format!("--machine={name}");
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .any(|entry| std::fs::read(entry.path().join("cmdline")).is_ok_and(|cmdline| cmdline.split(|b| *b == 0).any(|arg| arg == wanted.as_bytes())))
}
