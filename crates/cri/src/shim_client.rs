//! berthd's side of a container's shim: start it, then drive it with the
//! Task API. The ttrpc client is synchronous; every call runs on the
//! blocking pool so no tokio worker ever waits on a shim, and a slow shim
//! delays only the RPC that talks to it.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use containerd_shim_protos::{api, ttrpc, TaskClient};

#[derive(Debug, thiserror::Error)]
pub enum ShimError {
    #[error("start shim for {id}: {reason}")]
    Start { id: String, reason: String },
    #[error("shim of {id}: {status}")]
    Rpc { id: String, status: String, code: ttrpc::Code },
    #[error("shim of {id}: {0}", id = .1)]
    Transport(String, String),
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

    /// Starts (or finds, if already running) the shim of container `id`.
    pub async fn start(&self, id: &str, bundle: &Path) -> Result<Shim, ShimError> {
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
        Shim::connect(id, &address).await
    }

    /// The shim of `id` if one is listening (after a restart of berthd).
    pub async fn find(&self, id: &str) -> Option<Shim> {
        let socket = self.paths.shim_socket(id);
        if !socket.exists() {
            return None;
        }
        Shim::connect(id, &format!("unix://{}", socket.display())).await.ok()
    }
}

/// A connection to one shim.
#[derive(Clone)]
pub struct Shim {
    id: String,
    client: TaskClient,
}

/// Calls that return quickly get this deadline; Wait has none.
const RPC_TIMEOUT: Duration = Duration::from_secs(30);

impl Shim {
    pub async fn connect(id: &str, address: &str) -> Result<Shim, ShimError> {
        let (id_owned, address) = (id.to_string(), address.to_string());
        let client = tokio::task::spawn_blocking(move || ttrpc::Client::connect(&address))
            .await
            .map_err(|e| ShimError::Transport(e.to_string(), id_owned.clone()))?
            .map_err(|e| ShimError::Transport(e.to_string(), id_owned.clone()))?;
        Ok(Shim { id: id.into(), client: TaskClient::new(client) })
    }

    async fn call<T: Send + 'static>(
        &self,
        timeout: Option<Duration>,
        f: impl FnOnce(&TaskClient, ttrpc::context::Context) -> ttrpc::Result<T> + Send + 'static,
    ) -> Result<T, ShimError> {
        let (client, id) = (self.client.clone(), self.id.clone());
        let ctx = match timeout {
            Some(t) => ttrpc::context::with_timeout(t.as_nanos() as i64),
            None => ttrpc::context::with_timeout(0),
        };
        let result = tokio::task::spawn_blocking(move || f(&client, ctx)).await.map_err(|e| ShimError::Transport(e.to_string(), id.clone()))?;
        result.map_err(|e| match e {
            ttrpc::Error::RpcStatus(s) => ShimError::Rpc { id: self.id.clone(), status: s.message().to_string(), code: s.code() },
            other => ShimError::Transport(other.to_string(), self.id.clone()),
        })
    }

    pub async fn create(&self, req: api::CreateTaskRequest) -> Result<u32, ShimError> {
        self.call(Some(RPC_TIMEOUT), move |c, ctx| c.create(ctx, &req).map(|r| r.pid)).await
    }

    pub async fn start(&self, exec_id: &str) -> Result<u32, ShimError> {
        let req = api::StartRequest { id: self.id.clone(), exec_id: exec_id.into(), ..Default::default() };
        self.call(Some(RPC_TIMEOUT), move |c, ctx| c.start(ctx, &req).map(|r| r.pid)).await
    }

    /// Blocks (on the blocking pool) until the process exits.
    pub async fn wait(&self, exec_id: &str) -> Result<api::WaitResponse, ShimError> {
        let req = api::WaitRequest { id: self.id.clone(), exec_id: exec_id.into(), ..Default::default() };
        self.call(None, move |c, ctx| c.wait(ctx, &req)).await
    }

    pub async fn delete(&self) -> Result<api::DeleteResponse, ShimError> {
        let req = api::DeleteRequest { id: self.id.clone(), ..Default::default() };
        self.call(Some(RPC_TIMEOUT), move |c, ctx| c.delete(ctx, &req)).await
    }

    pub async fn kill(&self, signal: u32, all: bool) -> Result<(), ShimError> {
        self.kill_exec("", signal, all).await
    }

    pub async fn kill_exec(&self, exec_id: &str, signal: u32, all: bool) -> Result<(), ShimError> {
        let req = api::KillRequest { id: self.id.clone(), exec_id: exec_id.into(), signal, all, ..Default::default() };
        self.call(Some(RPC_TIMEOUT), move |c, ctx| c.kill(ctx, &req).map(drop)).await
    }

    /// Registers an exec (an OCI Process as JSON, as containerd sends it);
    /// it runs at `start(exec_id)`.
    pub async fn exec(&self, exec_id: &str, process_json: Vec<u8>, stdout: String, stderr: String) -> Result<(), ShimError> {
        self.exec_with_stdio(exec_id, process_json, ExecStdio { stdout, stderr, ..Default::default() }).await
    }

    /// [`Self::exec`] with every stdio option: a stdin path and a terminal
    /// (the shim allocates the pty; stdout then carries the terminal).
    pub async fn exec_with_stdio(&self, exec_id: &str, process_json: Vec<u8>, stdio: ExecStdio) -> Result<(), ShimError> {
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
        self.call(Some(RPC_TIMEOUT), move |c, ctx| c.exec(ctx, &req).map(drop)).await
    }

    /// Sets the terminal size of a process started with a terminal.
    pub async fn resize_pty(&self, exec_id: &str, width: u32, height: u32) -> Result<(), ShimError> {
        let req = api::ResizePtyRequest { id: self.id.clone(), exec_id: exec_id.into(), width, height, ..Default::default() };
        self.call(Some(RPC_TIMEOUT), move |c, ctx| c.resize_pty(ctx, &req).map(drop)).await
    }

    /// Forgets an exited exec.
    pub async fn delete_exec(&self, exec_id: &str) -> Result<(), ShimError> {
        let req = api::DeleteRequest { id: self.id.clone(), exec_id: exec_id.into(), ..Default::default() };
        self.call(Some(RPC_TIMEOUT), move |c, ctx| c.delete(ctx, &req).map(drop)).await
    }

    pub async fn state(&self) -> Result<api::StateResponse, ShimError> {
        let req = api::StateRequest { id: self.id.clone(), ..Default::default() };
        self.call(Some(RPC_TIMEOUT), move |c, ctx| c.state(ctx, &req)).await
    }

    /// New limits (OCI LinuxResources as JSON) and/or annotations such as
    /// the log-reopen request.
    pub async fn update(&self, resources_json: Option<Vec<u8>>, annotations: Vec<(String, String)>) -> Result<(), ShimError> {
        let resources = resources_json.map(|value| protobuf::well_known_types::any::Any {
            type_url: "types.containerd.io/opencontainers/runtime-spec/1/LinuxResources".into(),
            value,
            ..Default::default()
        });
        let req =
            api::UpdateTaskRequest { id: self.id.clone(), resources: resources.into(), annotations: annotations.into_iter().collect(), ..Default::default() };
        self.call(Some(RPC_TIMEOUT), move |c, ctx| c.update(ctx, &req).map(drop)).await
    }

    /// Asks the shim to exit (it does so only once its container is gone).
    pub async fn shutdown(&self) -> Result<(), ShimError> {
        let req = api::ShutdownRequest { id: self.id.clone(), ..Default::default() };
        self.call(Some(RPC_TIMEOUT), move |c, ctx| c.shutdown(ctx, &req).map(drop)).await
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
