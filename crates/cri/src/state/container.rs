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
