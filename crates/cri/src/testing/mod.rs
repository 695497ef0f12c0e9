//! Unit tests of the RuntimeService's logic on fakes of everything that
//! takes root (see [`crate::seams`]): a [`Node`] is a temp dir with the
//! image stores and an image in them, and a [`fakes::World`] standing in
//! for the kernel, CNI and the shims. Nothing here mounts, unshares,
//! reads /proc/self/mountinfo or writes under /sys or /run, so these run as
//! any user.

mod exec_and_update;
pub mod fakes;
mod stats;
mod tests;

use std::sync::Arc;

use k8s_cri::v1;

use crate::{image::ImageServer, runtime::Runtime, seams::Seams, RuntimeInfo};
use fakes::{FakeHost, FakeNetwork, FakeShims, FakeSnapshots, World};

/// The image every test container runs.
pub const IMAGE: &str = "docker.io/library/fake:1";
const CONFIG_DIGEST: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
const LAYER: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

/// A node: berthd's directories in a temp dir, the image stores with one
/// image, and the fake world.
pub struct Node {
    pub dir: tempfile::TempDir,
    pub paths: berth_store::Paths,
    pub world: Arc<World>,
    pub images: Arc<ImageServer>,
}

impl Node {
    pub async fn new() -> Node {
        let dir = tempfile::tempdir().unwrap();
        let paths = berth_store::Paths::new(dir.path().join("lib"), dir.path().join("run"));
        let images = Arc::new(ImageServer::open(paths.clone(), Default::default(), berth_metrics::Metrics::new()).unwrap());
        // One image: a config blob and one committed layer.
        let config = serde_json::json!({ "config": { "Cmd": ["/bin/sleep", "1000"], "StopSignal": "SIGTERM" } });
        let blob = images.content.blob_path(CONFIG_DIGEST).unwrap();
        std::fs::create_dir_all(blob.parent().unwrap()).unwrap();
        std::fs::write(&blob, serde_json::to_vec(&config).unwrap()).unwrap();
        images.snapshots.prepare("unpack-layer", None).unwrap();
        images.snapshots.commit(LAYER, "unpack-layer").unwrap();
        images
            .index
            .add(&berth_image::pull::Pulled {
                reference: IMAGE.into(),
                manifest_digest: "sha256:3333333333333333333333333333333333333333333333333333333333333333".into(),
                config_digest: CONFIG_DIGEST.into(),
                chain_ids: vec![LAYER.into()],
                blobs: vec![CONFIG_DIGEST.into()],
                user: String::new(),
                size: 1,
                downloaded_bytes: 0,
            })
            .unwrap();
        Node { dir, paths, world: Arc::new(World::default()), images }
    }

    /// A berthd on this node, before recovery.
    pub async fn runtime(&self) -> Arc<Runtime> {
        let info = RuntimeInfo { default_cgroup_parent: "/berth-test".into(), ..Default::default() };
        let streaming = berth_streaming::Streaming::bind(berth_streaming::Config::default()).await.unwrap();
        let seams = Seams {
            shims: Arc::new(FakeShims(self.world.clone(), self.paths.clone())),
            network: Arc::new(FakeNetwork(self.world.clone())),
            host: Arc::new(FakeHost(self.world.clone())),
            snapshots: Arc::new(FakeSnapshots(self.world.clone(), self.images.snapshots.clone())),
            hierarchy: berth_cgroups::Hierarchy::v2(self.dir.path().join("cgroup")),
        };
        Runtime::new(info, self.paths.clone(), self.images.clone(), streaming, seams)
    }

    /// berthd starts: a runtime on this node, recovered from its records.
    pub async fn start(&self) -> Arc<Runtime> {
        let rt = self.runtime().await;
        crate::runtime::recover::recover(&rt).await.unwrap();
        rt
    }

    /// Pod records on disk.
    pub fn pod_records(&self) -> Vec<String> {
        ls(&self.paths.root().join("sandboxes"))
    }

    /// Container records on disk.
    pub fn container_records(&self) -> Vec<String> {
        ls(&self.paths.root().join("containers"))
    }

    /// Active snapshots (the containers' thin layers).
    pub fn thin_layers(&self) -> Vec<String> {
        let mut keys: Vec<String> =
            self.images.snapshots.list().unwrap().into_iter().filter(|i| i.kind == berth_snapshot::Kind::Active).map(|i| i.key).collect();
        keys.sort();
        keys
    }
}

fn ls(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir).into_iter().flatten().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names
}

/// A pod of its own network, IPC and UTS namespaces, each container in its
/// own PID namespace (the kubelet's default).
pub fn pod_request(name: &str) -> v1::RunPodSandboxRequest {
    pod_request_with_pid(name, v1::NamespaceMode::Container)
}

pub fn pod_request_with_pid(name: &str, pid: v1::NamespaceMode) -> v1::RunPodSandboxRequest {
    v1::RunPodSandboxRequest {
        config: Some(v1::PodSandboxConfig {
            metadata: Some(v1::PodSandboxMetadata { name: name.into(), namespace: "default".into(), uid: format!("uid-{name}"), attempt: 0 }),
            linux: Some(v1::LinuxPodSandboxConfig {
                security_context: Some(v1::LinuxSandboxSecurityContext {
                    namespace_options: Some(v1::NamespaceOption { pid: pid as i32, ..Default::default() }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        runtime_handler: String::new(),
    }
}

pub fn container_config(name: &str) -> v1::ContainerConfig {
    v1::ContainerConfig {
        metadata: Some(v1::ContainerMetadata { name: name.into(), attempt: 0 }),
        image: Some(v1::ImageSpec { image: IMAGE.into(), ..Default::default() }),
        linux: Some(v1::LinuxContainerConfig {
            security_context: Some(v1::LinuxContainerSecurityContext {
                namespace_options: Some(v1::NamespaceOption { pid: v1::NamespaceMode::Container as i32, ..Default::default() }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub fn container_request(pod_id: &str, name: &str) -> v1::CreateContainerRequest {
    v1::CreateContainerRequest { pod_sandbox_id: pod_id.into(), config: Some(container_config(name)), sandbox_config: None }
}

/// A Ready pod named `name`.
pub async fn ready_pod(node: &Node, rt: &Arc<Runtime>, name: &str) -> String {
    let _ = node;
    rt.run_pod_sandbox(pod_request(name)).await.unwrap().pod_sandbox_id
}

/// A container named `name`, created and started in `pod`.
pub async fn running_container(rt: &Arc<Runtime>, pod: &str, name: &str) -> String {
    let id = rt.create_container(container_request(pod, name)).await.unwrap().container_id;
    rt.start_container(v1::StartContainerRequest { container_id: id.clone() }).await.unwrap();
    id
}

/// A started node with a Ready pod "web" and its running container
/// "app": (node, runtime, container id).
pub async fn node_with_running_container() -> (Node, Arc<Runtime>, String) {
    let node = Node::new().await;
    let rt = node.start().await;
    let pod = ready_pod(&node, &rt, "web").await;
    let id = running_container(&rt, &pod, "app").await;
    (node, rt, id)
}

pub fn state_of(rt: &Runtime, id: &str) -> crate::state::ContainerState {
    rt.containers.get(id).unwrap().state()
}

/// Waits (up to 5 s) until `done` holds.
pub async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    while !done() {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}
