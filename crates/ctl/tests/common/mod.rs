//! berthctl against a real berthd (the one cargo built) on temp dirs.

#![allow(dead_code)]

use std::{
    path::{Path, PathBuf},
    process::{Child, Command},
};

pub fn berthctl(socket: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_berthctl")).arg("--socket").arg(socket).args(args).output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

/// berthctl's exit code.
pub fn berthctl_code(socket: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_berthctl")).arg("--socket").arg(socket).args(args).output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

/// Removes the (empty) cgroup parent the tests gave berthd, in every
/// hierarchy this host has.
pub fn remove_cgroup_parent(parent: &str) {
    berth_testkit::remove_cgroup_everywhere(parent);
}

/// berthctl with `input` on its stdin; its exit code and output.
pub fn berthctl_with_stdin(socket: &Path, args: &[&str], input: &[u8]) -> (i32, String, String) {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_berthctl"))
        .arg("--socket")
        .arg(socket)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    let out = child.wait_with_output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

pub struct Daemon {
    pub child: Child,
    pub dir: tempfile::TempDir,
    pub socket: PathBuf,
}

impl Daemon {
    /// berthd on temp dirs, trusting `registry` over plain http, with
    /// `extra` config lines.
    pub fn start(registry: &str, extra: &str) -> Daemon {
        Self::start_with(registry, extra, "")
    }

    /// [`Daemon::start`] with `registry_extra` lines in `[registry]`.
    pub fn start_with(registry: &str, extra: &str, registry_extra: &str) -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("config.toml");
        std::fs::write(
            &config,
            format!(
                "socket = \"{0}/b.sock\"\nroot = \"{0}/root\"\nstate = \"{0}/state\"\n{extra}\n[registry]\ninsecure = [\"{registry}\"]\n{registry_extra}\n",
                dir.path().display()
            ),
        )
        .unwrap();
        // berthd lives in the berth-daemon crate; the test runs the one cargo built.
        let berthd = Path::new(env!("CARGO_BIN_EXE_berthctl")).with_file_name("berthd");
        assert!(berthd.exists(), "build berthd first (the test command builds the workspace)");
        let child = Command::new(berthd).arg("--config").arg(&config).spawn().unwrap();
        let socket = dir.path().join("b.sock");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::os::unix::net::UnixStream::connect(&socket).is_err() {
            assert!(std::time::Instant::now() < deadline, "berthd did not come up");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        Daemon { child, dir, socket }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
