//! A real berthd on temp dirs and a tonic client on its socket.

#![allow(dead_code)]

use std::{
    path::{Path, PathBuf},
    process::{Child, Command},
    time::{Duration, Instant},
};

use hyper_util::rt::TokioIo;
use tonic::transport::{Channel, Endpoint, Uri};

pub struct Berthd {
    pub child: Child,
    pub dir: tempfile::TempDir,
    pub socket: PathBuf,
    pub config: PathBuf,
}

impl Berthd {
    /// berthd with every default but its directories (socket, root and
    /// state in a temp dir) and `extra` config lines.
    pub fn start(extra: &str) -> Berthd {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        Self::start_with_root(dir, &root, extra)
    }

    /// [`Self::start`] with these environment variables set (`Some`) or
    /// removed (`None`).
    #[allow(dead_code)]
    pub fn start_with_env(extra: &str, env: &[(&str, Option<&str>)]) -> Berthd {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        Self::start_in(dir, &root, extra, env)
    }

    /// [`Self::start`] with the image and snapshot stores under `root`
    /// (e.g. a small filesystem), the rest in `dir`.
    pub fn start_with_root(dir: tempfile::TempDir, root: &Path, extra: &str) -> Berthd {
        Self::start_in(dir, root, extra, &[])
    }

    fn start_in(dir: tempfile::TempDir, root: &Path, extra: &str, env: &[(&str, Option<&str>)]) -> Berthd {
        let config = dir.path().join("config.toml");
        // Only when the suite is pointed at another shim: otherwise berthd's
        // own default (the shim beside it) is what is tested.
        let shim = std::env::var_os(SHIM_BIN_ENV).map(|_| format!("shim_binary = \"{}\"\n", shim_binary().display())).unwrap_or_default();
        std::fs::write(
            &config,
            format!("socket = \"{0}/b.sock\"\nroot = \"{1}\"\nstate = \"{0}/state\"\n{shim}{extra}\n", dir.path().display(), root.display()),
        )
        .unwrap();
        let socket = dir.path().join("b.sock");
        let mut command = Command::new(env!("CARGO_BIN_EXE_berthd"));
        command.arg("--config").arg(&config);
        for (name, value) in env {
            match value {
                Some(v) => command.env(name, v),
                None => command.env_remove(name),
            };
        }
        let child = command.spawn().unwrap();
        Berthd { child, dir, socket, config }
    }

    /// Kills berthd (SIGKILL, like a crash) and starts it again on the same
    /// config and directories.
    pub fn restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.child = spawn(&self.config);
    }

    /// Kills berthd (SIGKILL), waits `down`, and starts it again: what
    /// happens meanwhile happens without berthd.
    pub fn restart_after(&mut self, down: Duration) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        std::thread::sleep(down);
        self.child = spawn(&self.config);
    }

    /// SIGKILL, like a crash, and reaps it; berthd stays down until
    /// [`Self::start_again`].
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts berthd again on the same config and directories (after
    /// [`Self::kill`]).
    pub fn start_again(&mut self) {
        self.child = spawn(&self.config);
    }

    /// SIGTERM, and waits for berthd to exit.
    pub fn stop_gracefully(&mut self) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.child.id() as i32), nix::sys::signal::Signal::SIGTERM);
        let status = self.child.wait().unwrap();
        assert!(status.success(), "berthd exits cleanly on SIGTERM: {status}");
    }

    pub fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }
}

/// Names another berth-shim for the tests than the one built beside
/// berthd: hack/test.sh runs some of them again on the statically linked
/// shim that ships (hack/build-dist.sh).
pub const SHIM_BIN_ENV: &str = "BERTH_SHIM_BIN";

/// The berth-shim under test: `BERTH_SHIM_BIN`, or the one built beside
/// berthd (nextest builds the whole workspace).
pub fn shim_binary() -> PathBuf {
    let shim = std::env::var_os(SHIM_BIN_ENV).map(PathBuf::from).unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_berthd")).with_file_name("berth-shim"));
    assert!(shim.is_file(), "{} missing: build the workspace (hack/test.sh does), or hack/build-dist.sh for BERTH_SHIM_BIN", shim.display());
    // the shim runs the berth-runtime beside it (symlinks resolved)
    let runtime = shim.canonicalize().unwrap().with_file_name("berth-runtime");
    assert!(runtime.is_file(), "{} missing beside berth-shim: build the workspace, or hack/build-dist.sh for BERTH_SHIM_BIN", runtime.display());
    shim
}

fn spawn(config: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_berthd")).arg("--config").arg(config).spawn().unwrap()
}

impl Drop for Berthd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Connects to berthd's socket, waiting for it to come up.
pub async fn channel(socket: &Path) -> Channel {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let path = socket.to_path_buf();
        let result = Endpoint::try_from("http://berth.invalid")
            .unwrap()
            .connect_with_connector(tower::service_fn(move |_: Uri| {
                let path = path.clone();
                async move { Ok::<_, std::io::Error>(TokioIo::new(tokio::net::UnixStream::connect(path).await?)) }
            }))
            .await;
        match result {
            Ok(c) => return c,
            Err(e) if Instant::now() > deadline => panic!("berthd never came up: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

pub mod containerd_node;
pub mod cri_calls;
pub mod node;
pub mod stream_client;
