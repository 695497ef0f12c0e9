use std::{
    path::PathBuf,
    sync::{Mutex, MutexGuard},
};

use berth_store::Versioned;
use k8s_cri::v1;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SandboxState {
    Ready,
    NotReady,
}

/// `/var/lib/berth/sandboxes/<id>/sandbox.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SandboxRecord {
    pub id: String,
    /// The reserved name: `<name>_<namespace>_<uid>_<attempt>`.
    pub name: String,
    #[serde(with = "super::proto_hex")]
    pub config: v1::PodSandboxConfig,
    pub runtime_handler: String,
    pub state: SandboxState,
    pub created_at: i64,
    /// Pinned namespaces (None: the host's).
    pub netns: Option<PathBuf>,
    pub ipcns: Option<PathBuf>,
    pub utsns: Option<PathBuf>,
    pub ip: Option<String>,
    #[serde(default)]
    pub additional_ips: Vec<String>,
    /// The CNI result, handed back to DEL; None once the network is down.
    pub cni_result: Option<serde_json::Value>,
    /// The pod's /dev/shm (a tmpfs berthd mounts), when it has its own IPC.
    pub shm: Option<PathBuf>,
    /// The pause process holding the pod's shared PID namespace, if the
    /// pod has one (NamespaceMode POD).
    #[serde(default)]
    pub pause_pid: Option<u32>,
    /// The pod's pinned user namespace (None: the host's).
    #[serde(default)]
    pub userns: Option<PathBuf>,
}

impl Versioned for SandboxRecord {
    const VERSION: u32 = 1;
}

pub struct Sandbox {
    pub id: String,
    record: Mutex<SandboxRecord>,
    /// Serialises Run/Stop/Remove of this pod.
    pub op: tokio::sync::Mutex<()>,
}

impl Sandbox {
    pub fn new(record: SandboxRecord) -> Self {
        Self { id: record.id.clone(), record: Mutex::new(record), op: tokio::sync::Mutex::new(()) }
    }

    pub fn record(&self) -> MutexGuard<'_, SandboxRecord> {
        self.record.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn snapshot(&self) -> SandboxRecord {
        self.record().clone()
    }

    pub fn config(&self) -> v1::PodSandboxConfig {
        self.record().config.clone()
    }

    pub fn is_ready(&self) -> bool {
        self.record().state.can_run_containers()
    }
}

impl SandboxRecord {
    pub fn metadata(&self) -> v1::PodSandboxMetadata {
        self.config.metadata.clone().unwrap_or_default()
    }

    /// The id map of the pod's user namespace, if it has one (checked at
    /// RunPodSandbox, so a stored config always gives a valid one).
    pub fn id_map(&self) -> Option<berth_network::IdMap> {
        let opts = self.namespace_options().userns_options?;
        (opts.mode == v1::NamespaceMode::Pod as i32).then(|| crate::runtime::user_namespace::to_id_map(&opts.uids, &opts.gids))
    }

    /// The pinned user namespace and its maps, for the specs of the pod's
    /// processes.
    pub fn user_namespace(&self) -> Option<berth_oci::container::UserNamespace> {
        let (path, opts) = (self.userns.as_ref()?, self.namespace_options().userns_options?);
        Some(berth_oci::container::UserNamespace { path: path.display().to_string(), uids: opts.uids, gids: opts.gids })
    }

    pub fn namespace_options(&self) -> v1::NamespaceOption {
        self.config.linux.as_ref().and_then(|l| l.security_context.as_ref()).and_then(|s| s.namespace_options.clone()).unwrap_or_default()
    }
}
