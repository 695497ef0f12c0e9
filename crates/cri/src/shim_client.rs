//! berthd's side of a container's shim: start it, then drive it with the
//! Task API over ttrpc's asynchronous client. A call in flight is a future,
//! not a thread: the Wait that each running container's exit monitor keeps
//! open costs a task and a map entry, so berthd's thread count does not
//! grow with the containers it runs, and nothing blocks its shutdown.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use async_trait::async_trait;
use containerd_shim_protos::{api, shim_async::TaskClient, ttrpc};

#[derive(Debug, thiserror::Error)]
pub enum ShimError {
    #[error("start shim for {id}: {reason}")]
    Start { id: String, reason: String },
    #[error("shim of {id}: {status}")]
    Rpc { id: String, status: String, code: ttrpc::Code },
    #[error("shim of {id}: {0}", id = .1)]
    Transport(String, String),
}

/// A connection to one shim, as the runtime holds it: [`TtrpcShim`] in
/// berthd, a recording fake in berth-cri's unit tests.
pub type Shim = Arc<dyn TaskShim>;

/// Starting and finding shims: the seam between the runtime's logic and
/// the `berth-shim` processes ([`ShimLauncher`] in berthd).
///
/// `async_trait` (boxed futures) rather than native async fns in traits:
/// the runtime holds these as trait objects, which native async methods
/// do not allow yet; one allocation per call is nothing next to the
/// process start or ttrpc round trip behind it.
#[async_trait]
pub trait Shims: Send + Sync {
    /// Starts (or finds, if already running) the shim of container `id`.
    async fn start(&self, id: &str, bundle: &Path) -> Result<Shim, ShimError>;
    /// The shim of `id` if one is listening (after a restart of berthd).
    async fn find(&self, id: &str) -> Option<Shim>;
}

/// The Task API calls berthd makes of one shim ([`TtrpcShim`] in berthd).
#[async_trait]
pub trait TaskShim: Send + Sync {
    /// Creates the task (the container's init, not yet running).
    async fn create(&self, req: api::CreateTaskRequest) -> Result<u32, ShimError>;
    async fn start(&self, exec_id: &str) -> Result<u32, ShimError>;
    /// Returns when the process exits (a pending future meanwhile, no thread).
    async fn wait(&self, exec_id: &str) -> Result<api::WaitResponse, ShimError>;
    async fn delete(&self) -> Result<api::DeleteResponse, ShimError>;
    async fn kill(&self, signal: u32, all: bool) -> Result<(), ShimError> {
        self.kill_exec("", signal, all).await
    }
    async fn kill_exec(&self, exec_id: &str, signal: u32, all: bool) -> Result<(), ShimError>;
    /// Registers an exec (an OCI Process as JSON, as containerd sends it);
    /// it runs at `start(exec_id)`.
    async fn exec(&self, exec_id: &str, process_json: Vec<u8>, stdout: String, stderr: String) -> Result<(), ShimError> {
        self.exec_with_stdio(exec_id, process_json, ExecStdio { stdout, stderr, ..Default::default() }).await
    }
    /// [`Self::exec`] with every stdio option: a stdin path and a terminal
    /// (the shim allocates the pty; stdout then carries the terminal).
    async fn exec_with_stdio(&self, exec_id: &str, process_json: Vec<u8>, stdio: ExecStdio) -> Result<(), ShimError>;
    /// Sets the terminal size of a process started with a terminal.
    async fn resize_pty(&self, exec_id: &str, width: u32, height: u32) -> Result<(), ShimError>;
    /// Forgets an exited exec.
    async fn delete_exec(&self, exec_id: &str) -> Result<(), ShimError>;
    async fn state(&self) -> Result<api::StateResponse, ShimError>;
    /// New limits (OCI LinuxResources as JSON) and/or annotations such as
    /// the log-reopen request.
    async fn update(&self, resources_json: Option<Vec<u8>>, annotations: Vec<(String, String)>) -> Result<(), ShimError>;
    /// Asks the shim to exit (it does so only once its container is gone).
    async fn shutdown(&self) -> Result<(), ShimError>;
}

/// Starts shims: `berth-shim start`, which returns once the shim listens.
#[derive(Debug, Clone)]
pub struct ShimLauncher {
    binary: PathBuf,
    paths: berth_store::Paths,
    /// Under the systemd driver each shim gets a scope of its own
    /// (`berth-shim-<id>.scope` in system.slice); otherwise shims share
    /// the shim's default cgroupfs home.
    systemd: bool,
}

impl ShimLauncher {
    pub fn new(binary: impl Into<PathBuf>, paths: berth_store::Paths, systemd: bool) -> Self {
        Self { binary: binary.into(), paths, systemd }
    }
}

/// The binary berth-shim runs for a container's create, init, update and
/// delete. The shim looks for it in the directory of its own executable
/// (symlinks resolved), so it is installed beside the shim, whatever name
/// the shim has there (`containerd-shim-berth-v2` in handler mode).
pub const RUNTIME_BINARY: &str = "berth-runtime";

/// Why no container can start with the shim binary `shim`, if none can:
/// `shim` is not a file, or there is no `berth-runtime` beside it (beside
/// the file `shim` resolves to, where the shim itself looks). berthd warns
/// with this at start and Status reports it (RuntimeReady false, reason
/// ShimMissing).
pub fn missing_shim_binary(shim: &Path) -> Option<String> {
    if !shim.is_file() {
        return Some(format!("berth-shim not found at {}", shim.display()));
    }
    let runtime = std::fs::canonicalize(shim).unwrap_or_else(|_| shim.to_path_buf()).with_file_name(RUNTIME_BINARY);
    (!runtime.is_file()).then(|| format!("{RUNTIME_BINARY} not found at {} (it must be installed beside berth-shim)", runtime.display()))
}

#[async_trait]
impl Shims for ShimLauncher {
    async fn start(&self, id: &str, bundle: &Path) -> Result<Shim, ShimError> {
        let socket = self.paths.shim_socket(id);
        let err = |reason: String| ShimError::Start { id: id.into(), reason };
        let mut command = tokio::process::Command::new(&self.binary);
        command.args(["start", "--id", id, "--socket"]).arg(&socket).arg("--bundle").arg(bundle);
        // Only berthd talks to its service manager.
        command.env_remove("NOTIFY_SOCKET").env_remove("WATCHDOG_USEC").env_remove("WATCHDOG_PID");
        if self.systemd {
            command.args(["--cgroup", &format!("{}:berth-shim:{id}", berth_cgroups::systemd::DEFAULT_SLICE)]);
        }
        let out = command.output().await.map_err(|e| err(format!("run {}: {e}", self.binary.display())))?;
        if !out.status.success() {
            return Err(err(String::from_utf8_lossy(&out.stderr).trim().to_string()));
        }
        let address = String::from_utf8_lossy(&out.stdout).trim().to_string();
        TtrpcShim::connect(id, &address).await
    }

    async fn find(&self, id: &str) -> Option<Shim> {
        let socket = self.paths.shim_socket(id);
        if !socket.exists() {
            return None;
        }
        TtrpcShim::connect(id, &format!("unix://{}", socket.display())).await.ok()
    }
}

/// A connection to one shim, over ttrpc.
pub struct TtrpcShim {
    id: String,
    client: TaskClient,
}

/// Calls that return quickly get this deadline; Wait has none.
const RPC_TIMEOUT: Duration = Duration::from_secs(30);

fn quick() -> ttrpc::context::Context {
    ttrpc::context::with_timeout(RPC_TIMEOUT.as_nanos() as i64)
}

/// A zero timeout is ttrpc's "no deadline".
fn no_deadline() -> ttrpc::context::Context {
    ttrpc::context::with_timeout(0)
}

impl TtrpcShim {
    pub async fn connect(id: &str, address: &str) -> Result<Shim, ShimError> {
        let client = ttrpc::asynchronous::Client::connect(address).await.map_err(|e| ShimError::Transport(e.to_string(), id.to_string()))?;
        Ok(Arc::new(TtrpcShim { id: id.into(), client: TaskClient::new(client) }))
    }

    fn error(&self, e: ttrpc::Error) -> ShimError {
        match e {
            ttrpc::Error::RpcStatus(s) => ShimError::Rpc { id: self.id.clone(), status: s.message().to_string(), code: s.code() },
            other => ShimError::Transport(other.to_string(), self.id.clone()),
        }
    }
}

#[async_trait]
impl TaskShim for TtrpcShim {
    async fn create(&self, req: api::CreateTaskRequest) -> Result<u32, ShimError> {
        self.client.create(quick(), &req).await.map(|r| r.pid).map_err(|e| self.error(e))
    }

    async fn start(&self, exec_id: &str) -> Result<u32, ShimError> {
        let req = api::StartRequest { id: self.id.clone(), exec_id: exec_id.into(), ..Default::default() };
        self.client.start(quick(), &req).await.map(|r| r.pid).map_err(|e| self.error(e))
    }

    async fn wait(&self, exec_id: &str) -> Result<api::WaitResponse, ShimError> {
        let req = api::WaitRequest { id: self.id.clone(), exec_id: exec_id.into(), ..Default::default() };
        self.client.wait(no_deadline(), &req).await.map_err(|e| self.error(e))
    }

    async fn delete(&self) -> Result<api::DeleteResponse, ShimError> {
        let req = api::DeleteRequest { id: self.id.clone(), ..Default::default() };
        self.client.delete(quick(), &req).await.map_err(|e| self.error(e))
    }

    async fn kill_exec(&self, exec_id: &str, signal: u32, all: bool) -> Result<(), ShimError> {
        let req = api::KillRequest { id: self.id.clone(), exec_id: exec_id.into(), signal, all, ..Default::default() };
        self.client.kill(quick(), &req).await.map(drop).map_err(|e| self.error(e))
    }

    async fn exec_with_stdio(&self, exec_id: &str, process_json: Vec<u8>, stdio: ExecStdio) -> Result<(), ShimError> {
        let spec = protobuf::well_known_types::any::Any {
            type_url: "types.containerd.io/opencontainers/runtime-spec/1/Process".into(),
            value: process_json,
            ..Default::default()
        };
        let req = api::ExecProcessRequest {
            id: self.id.clone(),
            exec_id: exec_id.into(),
            spec: Some(spec).into(),
            stdin: stdio.stdin,
            stdout: stdio.stdout,
            stderr: stdio.stderr,
            terminal: stdio.terminal,
            ..Default::default()
        };
        self.client.exec(quick(), &req).await.map(drop).map_err(|e| self.error(e))
    }

    async fn resize_pty(&self, exec_id: &str, width: u32, height: u32) -> Result<(), ShimError> {
        let req = api::ResizePtyRequest { id: self.id.clone(), exec_id: exec_id.into(), width, height, ..Default::default() };
        self.client.resize_pty(quick(), &req).await.map(drop).map_err(|e| self.error(e))
    }

    async fn delete_exec(&self, exec_id: &str) -> Result<(), ShimError> {
        let req = api::DeleteRequest { id: self.id.clone(), exec_id: exec_id.into(), ..Default::default() };
        self.client.delete(quick(), &req).await.map(drop).map_err(|e| self.error(e))
    }

    async fn state(&self) -> Result<api::StateResponse, ShimError> {
        let req = api::StateRequest { id: self.id.clone(), ..Default::default() };
        self.client.state(quick(), &req).await.map_err(|e| self.error(e))
    }

    async fn update(&self, resources_json: Option<Vec<u8>>, annotations: Vec<(String, String)>) -> Result<(), ShimError> {
        let resources = resources_json.map(|value| protobuf::well_known_types::any::Any {
            type_url: "types.containerd.io/opencontainers/runtime-spec/1/LinuxResources".into(),
            value,
            ..Default::default()
        });
        let req =
            api::UpdateTaskRequest { id: self.id.clone(), resources: resources.into(), annotations: annotations.into_iter().collect(), ..Default::default() };
        self.client.update(quick(), &req).await.map(drop).map_err(|e| self.error(e))
    }

    async fn shutdown(&self) -> Result<(), ShimError> {
        let req = api::ShutdownRequest { id: self.id.clone(), ..Default::default() };
        self.client.shutdown(quick(), &req).await.map(drop).map_err(|e| self.error(e))
    }
}

/// Stdio targets of an exec, as the shim's ExecProcessRequest takes them.
#[derive(Debug, Clone, Default)]
pub struct ExecStdio {
    pub stdin: String,
    pub stdout: String,
    pub stderr: String,
    pub terminal: bool,
}

#[cfg(test)]
mod tests {
    use super::missing_shim_binary;

    #[test]
    fn a_shim_without_berth_runtime_beside_it_is_missing_a_binary() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        let shim = bin.join("berth-shim");
        let runtime = bin.join("berth-runtime");

        let missing = missing_shim_binary(&shim).unwrap();
        assert_eq!(missing, format!("berth-shim not found at {}", shim.display()));

        std::fs::write(&shim, "").unwrap();
        let missing = missing_shim_binary(&shim).unwrap();
        assert_eq!(missing, format!("berth-runtime not found at {} (it must be installed beside berth-shim)", runtime.display()));

        // a directory of that name is no binary either
        std::fs::create_dir(&runtime).unwrap();
        assert!(missing_shim_binary(&shim).is_some());
        std::fs::remove_dir(&runtime).unwrap();

        std::fs::write(&runtime, "").unwrap();
        assert_eq!(missing_shim_binary(&shim), None);
    }

    /// A symlink to the shim (`containerd-shim-berth-v2` in the bench, or a
    /// `shim_binary` naming a link): the shim looks beside the file it
    /// resolves to, not beside the link, and so does the check.
    #[test]
    fn a_linked_shim_needs_berth_runtime_beside_the_file_it_resolves_to() {
        let dir = tempfile::tempdir().unwrap();
        let (real, links) = (dir.path().join("dist"), dir.path().join("links"));
        std::fs::create_dir(&real).unwrap();
        std::fs::create_dir(&links).unwrap();
        std::fs::write(real.join("berth-shim"), "").unwrap();
        let link = links.join("containerd-shim-berth-v2");
        std::os::unix::fs::symlink(real.join("berth-shim"), &link).unwrap();

        // beside the link only: not where the shim looks
        std::fs::write(links.join("berth-runtime"), "").unwrap();
        let missing = missing_shim_binary(&link).unwrap();
        assert!(missing.contains(&real.canonicalize().unwrap().join("berth-runtime").display().to_string()), "{missing}");

        std::fs::write(real.join("berth-runtime"), "").unwrap();
        std::fs::remove_file(links.join("berth-runtime")).unwrap();
        assert_eq!(missing_shim_binary(&link), None);
    }
}
