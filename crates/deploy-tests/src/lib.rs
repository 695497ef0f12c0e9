//! Support for the tests of `deploy/`: where the repo, the tools
//! (`hack/setup.sh` installs them in `$BERTH_TOOLS`) and the built binaries
//! are; rendering the chart; running the installer against a scratch host
//! root; snapshots of a directory tree to show that a run changed nothing,
//! or that an uninstall put everything back.

use std::{
    collections::BTreeMap,
    os::unix::fs::{MetadataExt, PermissionsExt},
    path::{Path, PathBuf},
    process::{Command, Output},
};

use sha2::{Digest, Sha256};

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

pub fn chart() -> PathBuf {
    repo().join("deploy/helm/berth")
}

pub fn installer() -> PathBuf {
    repo().join("deploy/installer/berth-install")
}

fn tools() -> PathBuf {
    PathBuf::from(std::env::var("BERTH_TOOLS").unwrap_or_else(|_| "/var/cache/berth-tools".into()))
}

fn tool(rel: &str) -> PathBuf {
    let p = tools().join(rel);
    assert!(p.exists(), "{} is missing: run hack/setup.sh (the test command does)", p.display());
    p
}

pub fn helm() -> PathBuf {
    tool("bin/helm")
}

/// The workspace's built binary (the test command builds them all).
pub fn built(name: &str) -> PathBuf {
    let p = std::env::current_exe().unwrap().parent().unwrap().parent().unwrap().join(name);
    assert!(p.exists(), "build {name} first (the test command builds the workspace): {}", p.display());
    p
}

pub fn run(cmd: &mut Command) -> Output {
    cmd.output().unwrap_or_else(|e| panic!("run {cmd:?}: {e}"))
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `helm template` of the chart with `args`: the YAML text, or helm's stderr.
pub fn template(args: &[&str]) -> Result<String, String> {
    let out = run(Command::new(helm()).arg("template").arg("t").arg(chart()).args(["--namespace", "berth-system"]).args(args));
    if out.status.success() {
        Ok(text(&out.stdout))
    } else {
        Err(text(&out.stderr))
    }
}

/// The objects of a multi-document YAML text, as JSON (through PyYAML in the
/// tools' venv, which kubernetes-validate brings).
pub fn objects(yaml: &str) -> Vec<serde_json::Value> {
    let mut child = Command::new(tool("venv/bin/python"))
        .args(["-c", "import sys, json, yaml; print(json.dumps([d for d in yaml.safe_load_all(sys.stdin) if d]))"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(yaml.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Validates every object of `yaml` against the Kubernetes API schemas of
/// `version` (strict: unknown fields are errors). Err carries the report.
pub fn validate(yaml: &str, version: &str) -> Result<String, String> {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("rendered.yaml");
    std::fs::write(&f, yaml).unwrap();
    let out = run(Command::new(tool("venv/bin/kubernetes-validate")).args(["--strict", "-k", version]).arg(&f));
    let report = text(&out.stdout) + &text(&out.stderr);
    if out.status.success() {
        Ok(report)
    } else {
        Err(report)
    }
}

pub fn find<'a>(objs: &'a [serde_json::Value], kind: &str, name: &str) -> &'a serde_json::Value {
    objs.iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} among {:?}", objs.iter().map(|o| (&o["kind"], &o["metadata"]["name"])).collect::<Vec<_>>()))
}

/// A file system tree: every entry under a root with its type, mode,
/// content (digest) and, optionally, modification time.
#[derive(Debug, PartialEq, Eq, Clone)]
pub struct Tree(pub BTreeMap<PathBuf, String>);

impl Tree {
    pub fn of(root: &Path, with_mtime: bool) -> Tree {
        let mut map = BTreeMap::new();
        walk(root, root, with_mtime, &mut map);
        Tree(map)
    }

    /// Paths whose entry differs between the two trees (added, removed, changed).
    pub fn changed(&self, after: &Tree) -> Vec<PathBuf> {
        let mut out: Vec<PathBuf> = after.0.iter().filter(|(p, e)| self.0.get(*p) != Some(e)).map(|(p, _)| p.clone()).collect();
        out.extend(self.0.keys().filter(|p| !after.0.contains_key(*p)).cloned());
        out.sort();
        out
    }
}

fn walk(root: &Path, dir: &Path, with_mtime: bool, map: &mut BTreeMap<PathBuf, String>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    entries.sort();
    for p in entries {
        let md = std::fs::symlink_metadata(&p).unwrap();
        let rel = Path::new("/").join(p.strip_prefix(root).unwrap());
        let mode = md.permissions().mode() & 0o7777;
        let desc = if md.is_dir() {
            walk(root, &p, with_mtime, map);
            format!("dir {mode:o}")
        } else if md.file_type().is_symlink() {
            format!("link {}", std::fs::read_link(&p).unwrap().display())
        } else {
            let digest = hex::encode(Sha256::digest(std::fs::read(&p).unwrap()));
            if with_mtime {
                format!("file {mode:o} {digest} mtime {}.{} ino {}", md.mtime(), md.mtime_nsec(), md.ino())
            } else {
                format!("file {mode:o} {digest}")
            }
        };
        map.insert(rel, desc);
    }
}

/// The binaries the installer image and the package ship. berth-shim runs
/// berth-runtime from its own directory, so wherever a shim goes (also as
/// `containerd-shim-berth-v2`), berth-runtime goes beside it.
pub const BINARIES: [&str; 4] = ["berthd", "berth-shim", "berth-runtime", "berthctl"];

/// A scratch host root for the installer, with a stub `systemctl` (the
/// installer's BERTH_INSTALL_SYSTEMCTL) that logs its arguments, and a
/// fake installer image layout (`image/bin`, `image/share/berth`).
pub struct Host {
    pub dir: tempfile::TempDir,
}

impl Host {
    pub fn new() -> Host {
        let dir = tempfile::tempdir().unwrap();
        let h = Host { dir };
        for d in ["root/var/lib", "root/usr/local/bin", "root/etc", "image/bin", "image/share/berth"] {
            std::fs::create_dir_all(h.dir.path().join(d)).unwrap();
        }
        let stub = h.dir.path().join("systemctl");
        std::fs::write(&stub, format!("#!/bin/sh\necho \"$*\" >> {}\n", h.log_path().display())).unwrap();
        std::fs::set_permissions(&stub, std::fs::Permissions::from_mode(0o755)).unwrap();
        h.set_binaries("1");
        std::fs::copy(repo().join("deploy/systemd/berthd.service"), h.dir.path().join("image/share/berth/berthd.service")).unwrap();
        h
    }

    pub fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    pub fn image_bin(&self) -> PathBuf {
        self.dir.path().join("image/bin")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("systemctl.log")
    }

    /// Small stand-ins for the binaries, of a given build `tag` (a new tag
    /// is an upgrade).
    pub fn set_binaries(&self, tag: &str) {
        for b in BINARIES {
            let p = self.image_bin().join(b);
            std::fs::write(&p, format!("#!/bin/sh\necho {b} build {tag}\n")).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
    }

    /// systemctl calls since the last call of this.
    pub fn take_systemctl(&self) -> Vec<String> {
        let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let _ = std::fs::remove_file(self.log_path());
        log.lines().map(str::to_owned).collect()
    }

    pub fn tree(&self, with_mtime: bool) -> Tree {
        Tree::of(&self.root(), with_mtime)
    }

    /// Runs berth-install with `args`, then this host's root and image.
    pub fn install(&self, args: &[&str]) -> Output {
        run(Command::new(installer())
            .args(args)
            .arg("--host-root")
            .arg(self.root())
            .arg("--bin-dir")
            .arg(self.image_bin())
            .arg("--no-stay")
            .env("BERTH_INSTALL_SYSTEMCTL", self.dir.path().join("systemctl")))
    }

    pub fn install_ok(&self, args: &[&str]) -> String {
        let out = self.install(args);
        assert!(out.status.success(), "berth-install {args:?}: {}{}", text(&out.stdout), text(&out.stderr));
        text(&out.stdout)
    }

    pub fn path(&self, host_path: &str) -> PathBuf {
        self.root().join(host_path.trim_start_matches('/'))
    }
}

impl Default for Host {
    fn default() -> Self {
        Host::new()
    }
}

/// Whether berthd's own config parser accepts `config`: berthd is started
/// with `--socket` naming a socket this process listens on, so a config it
/// accepts ends at "is in use" before berthd does anything; a config it
/// refuses ends earlier with the parser's message.
pub fn berthd_accepts(config: &Path) -> Result<(), String> {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("busy.sock");
    let _listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let out = run(Command::new(built("berthd")).arg("--config").arg(config).arg("--socket").arg(&sock));
    let err = text(&out.stderr);
    assert!(!out.status.success(), "berthd ran with a busy socket: {err}");
    if err.contains("is in use") {
        Ok(())
    } else {
        Err(err)
    }
}

/// `systemd-analyze verify` of `unit` (a path inside `root`) with `root` as
/// the root directory; the targets a service needs come from the host's
/// systemd. Err carries every complaint: any output at all is one.
pub fn verify_unit(root: &Path, unit: &str) -> Result<(), String> {
    let units = root.join("lib/systemd/system");
    std::fs::create_dir_all(&units).unwrap();
    for e in std::fs::read_dir("/lib/systemd/system").unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        if (name.ends_with(".target") || name.ends_with(".slice")) && !units.join(&name).exists() {
            let _ = std::fs::copy(&p, units.join(&name));
        }
    }
    let out = run(Command::new("systemd-analyze").arg("verify").arg("--man=no").arg(format!("--root={}", root.display())).arg(unit));
    let report = text(&out.stdout) + &text(&out.stderr);
    if out.status.success() && report.trim().is_empty() {
        Ok(())
    } else {
        Err(report)
    }
}
