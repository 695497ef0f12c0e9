use std::sync::{Mutex, MutexGuard};

use berth_store::Versioned;
use k8s_cri::v1;
use serde::{Deserialize, Serialize};

use crate::shim_client::Shim;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ContainerState {
    Created,
    Running,
    Exited,
    Unknown,
}

impl ContainerState {
    pub fn to_cri(self) -> v1::ContainerState {
        match self {
            ContainerState::Created => v1::ContainerState::ContainerCreated,
            ContainerState::Running => v1::ContainerState::ContainerRunning,
            ContainerState::Exited => v1::ContainerState::ContainerExited,
            ContainerState::Unknown => v1::ContainerState::ContainerUnknown,
        }
    }
}

/// `/var/lib/berth/containers/<id>/container.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContainerRecord {
    pub id: String,
    pub sandbox_id: String,
    /// The reserved name: `<name>_<pod name>_<namespace>_<uid>_<attempt>`.
    pub name: String,
    #[serde(with = "super::proto_hex")]
    pub config: v1::ContainerConfig,
    /// The image as the kubelet named it, and the id it resolved to.
    pub image_name: String,
    pub image_id: String,
    pub image_ref: String,
    pub state: ContainerState,
    pub created_at: i64,
    pub started_at: i64,
    pub finished_at: i64,
    pub exit_code: i32,
    pub reason: String,
    pub message: String,
    pub pid: u32,
    /// Absolute log path ("" when the kubelet asked for none).
    pub log_path: String,
    pub cgroups_path: String,
    pub stop_signal: u32,
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    /// The limits now in force (set at create, changed by updates).
    #[serde(with = "super::proto_hex")]
    pub resources: v1::LinuxContainerResources,
}

impl Versioned for ContainerRecord {
    const VERSION: u32 = 1;
}

/// How a container ended, as its exit monitor saw it.
#[derive(Debug, Clone)]
pub struct ExitInfo {
    pub code: i32,
    pub at: i64,
    pub reason: String,
    pub message: String,
}

pub struct Container {
    pub id: String,
    pub sandbox_id: String,
    record: Mutex<ContainerRecord>,
    shim: Mutex<Option<Shim>>,
    /// Flips to true once the exit is recorded.
    exited: tokio::sync::watch::Sender<bool>,
    /// The last (time, cpu usage) sample, for usage_nano_cores.
    pub cpu_sample: Mutex<Option<(i64, u64)>>,
    /// Serialises Start/Stop/Remove/Update of this container.
    pub op: tokio::sync::Mutex<()>,
    /// What berthd last saw of the output the shim dropped, so that each
    /// change is logged once, not at every read.
    pub log_drops_seen: Mutex<berth_oci::log_drops::LogDrops>,
    /// Attaches asked for while the container was Created.
    pub early_attach: EarlyAttach,
}

/// Attach before Start (`berthctl run -it`: create, attach, start, so the
/// first byte of output is seen). The Attach RPC of a Created container
/// expects a client; StartContainer creates the task (the shim's stdio and
/// attach socket exist from then on), waits a bounded time for every
/// expected client to be registered with the shim, and only then starts
/// the process.
pub struct EarlyAttach {
    task_created: tokio::sync::watch::Sender<bool>,
    /// StartContainer's side: one receiver per expected client.
    expected: Mutex<Vec<tokio::sync::oneshot::Receiver<()>>>,
    /// The streams' side: each early stream takes one and fires it once
    /// the shim acknowledged it (or drops it, giving up).
    arrivals: Mutex<std::collections::VecDeque<tokio::sync::oneshot::Sender<()>>>,
}

impl Default for EarlyAttach {
    fn default() -> Self {
        Self { task_created: tokio::sync::watch::channel(false).0, expected: Mutex::default(), arrivals: Mutex::default() }
    }
}

impl EarlyAttach {
    /// An attach URL was handed out for the Created container.
    pub fn expect(&self) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.expected.lock().unwrap_or_else(|e| e.into_inner()).push(rx);
        self.arrivals.lock().unwrap_or_else(|e| e.into_inner()).push_back(tx);
    }

    /// An early stream's token to report its registration with.
    pub fn arrival(&self) -> Option<tokio::sync::oneshot::Sender<()>> {
        self.arrivals.lock().unwrap_or_else(|e| e.into_inner()).pop_front()
    }

    pub fn set_task_created(&self) {
        self.task_created.send_replace(true);
    }

    /// Resolves once the shim holds the task (its stdio and attach socket).
    pub async fn wait_task_created(&self) {
        let mut rx = self.task_created.subscribe();
        let _ = rx.wait_for(|c| *c).await;
    }

    /// Waits, at most `limit` in all, until every expected client is
    /// registered with the shim or gave up. True if none was left waiting.
    pub async fn wait_registered(&self, limit: std::time::Duration) -> bool {
        let expected = std::mem::take(&mut *self.expected.lock().unwrap_or_else(|e| e.into_inner()));
        let deadline = tokio::time::Instant::now() + limit;
        let mut all = true;
        for rx in expected {
            all &= tokio::time::timeout_at(deadline, rx).await.is_ok();
        }
        all
    }
}

impl Container {
    pub fn new(record: ContainerRecord) -> Self {
        let exited = record.state == ContainerState::Exited;
        Self {
            id: record.id.clone(),
            sandbox_id: record.sandbox_id.clone(),
            record: Mutex::new(record),
            shim: Mutex::new(None),
            exited: tokio::sync::watch::channel(exited).0,
            cpu_sample: Mutex::new(None),
            op: tokio::sync::Mutex::new(()),
            log_drops_seen: Mutex::default(),
            early_attach: EarlyAttach::default(),
        }
    }

    pub fn record(&self) -> MutexGuard<'_, ContainerRecord> {
        self.record.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn snapshot(&self) -> ContainerRecord {
        self.record().clone()
    }

    pub fn state(&self) -> ContainerState {
        self.record().state
    }

    pub fn shim(&self) -> Option<Shim> {
        self.shim.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The shim of a running container, for an exec; anything else is
    /// FailedPrecondition naming the state.
    pub fn shim_for_exec(&self) -> crate::error::Result<Shim> {
        let state = self.state();
        match (state.can_exec(), self.shim()) {
            (true, Some(shim)) => Ok(shim),
            _ => Err(crate::error::Error::FailedPrecondition(format!("container {} is {state:?}; exec needs it Running", self.id))),
        }
    }

    pub fn set_shim(&self, shim: Option<Shim>) {
        *self.shim.lock().unwrap_or_else(|e| e.into_inner()) = shim;
    }

    pub fn mark_exited(&self) {
        self.exited.send_replace(true);
    }

    /// Resolves once the exit has been recorded.
    pub async fn wait_exited(&self) {
        let mut rx = self.exited.subscribe();
        let _ = rx.wait_for(|e| *e).await;
    }
}
