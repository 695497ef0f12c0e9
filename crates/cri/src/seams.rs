//! Where the runtime's logic meets root: the traits the RuntimeService
//! reaches the node through, besides the shims
//! ([`crate::shim_client::Shims`]) and the snapshotter
//! ([`berth_snapshot::Snapshotter`]). berthd wires the real ones
//! ([`Seams::real`]); berth-cri's unit tests put recording fakes in
//! (`crate::testing`), so create, start, stop, recovery and the undoing
//! of failed calls are tested without root.

use std::{path::Path, sync::Arc};

use async_trait::async_trait;
use berth_network::{Cni, NamespaceSet, PodNamespaces, PodNetwork, SetupResult};
use k8s_cri::v1;
use serde_json::Value;

use crate::{error::Result, shim_client::Shims};

/// The pod network: CNI ADD and DEL ([`Cni`] in berthd).
#[async_trait]
pub trait PodNetworks: Send + Sync {
    /// Ok when a pod could be networked now; the error is the reason.
    fn status(&self) -> berth_network::Result<()>;
    async fn setup(&self, pod: &PodNetwork<'_>) -> berth_network::Result<SetupResult>;
    /// DEL, with the result of the ADD when there was one.
    async fn teardown(&self, pod: &PodNetwork<'_>, prev: Option<&Value>) -> berth_network::Result<()>;
}

#[async_trait]
impl PodNetworks for Cni {
    fn status(&self) -> berth_network::Result<()> {
        Cni::status(self)
    }

    async fn setup(&self, pod: &PodNetwork<'_>) -> berth_network::Result<SetupResult> {
        Cni::setup(self, pod).await
    }

    async fn teardown(&self, pod: &PodNetwork<'_>, prev: Option<&Value>) -> berth_network::Result<()> {
        Cni::teardown(self, pod, prev).await
    }
}

/// What a pod and a container need of the node's kernel that takes root:
/// pinned namespaces, the pod's /dev/shm, unmounting what a dead shim
/// left, and AppArmor ([`KernelHost`] in berthd). Synchronous: callers
/// run it on the blocking pool.
pub trait PodHost: Send + Sync {
    /// Creates and pins the wanted namespaces under `dir` (nothing stays
    /// pinned on error).
    fn create_namespaces(&self, dir: &Path, want: NamespaceSet, hostname: Option<&str>) -> berth_network::Result<PodNamespaces>;
    /// Unpins every namespace under `dir` and removes it; missing is fine.
    fn remove_namespaces(&self, dir: &Path) -> berth_network::Result<()>;
    /// The pins still under `dir` (after a restart; a reboot loses them).
    fn find_namespaces(&self, dir: &Path) -> PodNamespaces;
    /// Mounts the pod's /dev/shm tmpfs at `target`.
    fn mount_shm(&self, target: &Path) -> Result<()>;
    /// Unmounts and removes the pod's /dev/shm; gone already is fine.
    fn unmount_shm(&self, target: &Path) -> Result<()>;
    /// Detaches whatever is mounted at `path` (a rootfs a dead shim left);
    /// nothing mounted there is fine.
    fn unmount(&self, path: &Path) -> Result<()>;
    /// The AppArmor profile for a container (None: unconfined); berth's
    /// default is loaded if it is chosen and missing.
    fn apparmor_profile(&self, sc: Option<&v1::LinuxContainerSecurityContext>) -> Result<Option<String>>;
}

/// The node itself.
pub struct KernelHost;

impl PodHost for KernelHost {
    fn create_namespaces(&self, dir: &Path, want: NamespaceSet, hostname: Option<&str>) -> berth_network::Result<PodNamespaces> {
        PodNamespaces::create(dir, want, hostname)
    }

    fn remove_namespaces(&self, dir: &Path) -> berth_network::Result<()> {
        PodNamespaces::remove(dir)
    }

    fn find_namespaces(&self, dir: &Path) -> PodNamespaces {
        PodNamespaces::find(dir)
    }

    fn mount_shm(&self, target: &Path) -> Result<()> {
        crate::runtime::pod_files::mount_shm(target)
    }

    fn unmount_shm(&self, target: &Path) -> Result<()> {
        crate::runtime::pod_files::unmount_shm(target)
    }

    fn unmount(&self, path: &Path) -> Result<()> {
        match nix::mount::umount2(path, nix::mount::MntFlags::MNT_DETACH) {
            Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => Ok(()),
            Err(e) => Err(crate::error::Error::io(format!("unmount {}", path.display()))(e)),
        }
    }

    fn apparmor_profile(&self, sc: Option<&v1::LinuxContainerSecurityContext>) -> Result<Option<String>> {
        crate::runtime::apparmor::profile(sc)
    }
}

/// Everything between the RuntimeService's logic and root, as one value.
pub struct Seams {
    pub shims: Arc<dyn Shims>,
    pub network: Arc<dyn PodNetworks>,
    pub host: Arc<dyn PodHost>,
    pub snapshots: Arc<dyn berth_snapshot::Snapshotter>,
    /// The cgroup tree exits and stats read (a temp dir in unit tests).
    pub hierarchy: berth_cgroups::Hierarchy,
}

impl Seams {
    /// berthd's: the shim binary, the configured CNI, this kernel, the
    /// image stores' overlay snapshotter and this host's cgroup layout.
    pub fn real(info: &crate::RuntimeInfo, paths: &berth_store::Paths, snapshots: Arc<berth_snapshot::Overlay>) -> Result<Self> {
        Ok(Self {
            shims: Arc::new(crate::shim_client::ShimLauncher::new(&info.shim_binary, paths.clone(), info.systemd_cgroup)),
            network: Arc::new(Cni::new(info.cni.clone().unwrap_or_default())),
            host: Arc::new(KernelHost),
            snapshots,
            hierarchy: berth_cgroups::Hierarchy::detect().map_err(crate::error::Error::internal("cgroup hierarchy"))?,
        })
    }
}
