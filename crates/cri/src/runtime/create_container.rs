use std::{
    os::unix::fs::{FileTypeExt, MetadataExt},
    path::Path,
    str::FromStr,
    sync::Arc,
};

use berth_image::index::ImageRecord;
use berth_oci::container::{container_spec, ContainerInput, HostDevice, ImageDefaults, ImageVolume, Namespace, Namespaces};
use k8s_cri::v1;

use super::{host_devices, pod_files, user, user_namespace, Runtime};
use crate::{
    cdi,
    error::{blocking, Error, Result},
    state::{new_id, now_nanos, Container, ContainerRecord, ContainerState, Sandbox},
};

/// What CreateContainer settles from the config before it makes anything.
struct Checked {
    image: ImageRecord,
    image_name: String,
    cdi: cdi::Injection,
    /// None: unconfined.
    apparmor: Option<String>,
}

/// The image config fields a container starts from.
struct ImageConfig {
    defaults: ImageDefaults,
    user: String,
    stop_signal: u32,
}

impl Runtime {
    /// Makes the container's thin layer, resolves its user, mounts and
    /// devices, and writes its OCI bundle. Nothing runs until Start (as in
    /// containerd): a created container costs no process.
    pub(crate) async fn create_container(self: &Arc<Self>, req: v1::CreateContainerRequest) -> Result<v1::CreateContainerResponse> {
        let sandbox = self.sandboxes.get(&req.pod_sandbox_id).map_err(|e| e.context("pod_sandbox_id"))?;
        // Held until the container is registered, so a concurrent Stop or
        // Remove of the pod cannot miss it.
        let _pod = sandbox.op.lock().await;
        if !sandbox.is_ready() {
            return Err(Error::FailedPrecondition(format!("pod sandbox {} is not ready (stopped)", sandbox.id)));
        }
        let config = req.config.ok_or_else(|| Error::InvalidArgument("config is missing".into()))?;
        let srec = sandbox.snapshot();
        check_container_config(&config, srec.id_map().as_ref(), &srec.config.log_directory)?;
        let meta = config.metadata.clone().unwrap_or_default();
        // CDI devices are resolved before anything is made: an unknown or
        // malformed one fails here, with nothing to undo.
        let cdi_requests = cdi::requests(&config)?;
        let dirs = self.info.cdi_spec_dirs.clone();
        let injection = blocking(move || cdi::resolve(&dirs, &cdi_requests)).await?;
        // So is the AppArmor profile (an unloaded localhost one is refused;
        // berth's default is loaded if missing).
        let sc = config.linux.as_ref().and_then(|l| l.security_context.clone());
        let host = self.host.clone();
        let apparmor = blocking(move || host.apparmor_profile(sc.as_ref())).await?;
        let image_name = config.image.as_ref().map(|i| i.image.clone()).unwrap_or_default();
        // The lease lasts until this function returns, after the
        // container's snapshot is built on the image's top layer.
        let (image, _lease) = self
            .images
            .lease_image(&image_name)
            .ok_or_else(|| Error::NotFound(format!("config.image.image: image {image_name:?} not found; pull it first")))?;
        let checked = Checked { image, image_name, cdi: injection, apparmor };
        let pod = sandbox.snapshot().metadata();
        if let Some(claimed) = req.sandbox_config.as_ref().and_then(|c| c.metadata.as_ref()) {
            if claimed.uid != pod.uid || claimed.name != pod.name || claimed.namespace != pod.namespace {
                return Err(Error::InvalidArgument(format!(
                    "sandbox_config describes pod {}/{} (uid {}), but pod_sandbox_id {} is pod {}/{} (uid {})",
                    claimed.namespace, claimed.name, claimed.uid, sandbox.id, pod.namespace, pod.name, pod.uid
                )));
            }
        }
        let name = format!("{}_{}_{}_{}_{}", meta.name, pod.name, pod.namespace, pod.uid, meta.attempt);
        let id = new_id()?;
        self.container_names.reserve(&name, &id).map_err(|e| match e {
            berth_store::Error::NameTaken { holder, .. } => Error::AlreadyExists(format!("container name {name:?} is reserved by container {holder}")),
            other => other.into(),
        })?;
        match self.build_container(&id, &name, config, &checked, &sandbox).await {
            Ok(container) => {
                self.containers.insert(id.clone(), container.clone());
                self.emit(v1::ContainerEventType::ContainerCreatedEvent, &container);
                tracing::info!(container_id = %id, pod_id = %sandbox.id, name = %name, "container created");
                Ok(v1::CreateContainerResponse { container_id: id })
            }
            Err(e) => {
                self.container_names.release(&name, &id);
                // Logged inside; the create's own error is the answer.
                let _ = self.remove_container_files(&id).await;
                Err(e)
            }
        }
    }

    async fn build_container(&self, id: &str, name: &str, config: v1::ContainerConfig, checked: &Checked, sandbox: &Sandbox) -> Result<Arc<Container>> {
        let (image, image_name) = (&checked.image, checked.image_name.as_str());
        let srec = sandbox.snapshot();
        let image_config = self.image_config(image).await?;
        let (snapshots, top, key) = (self.snapshots.clone(), image.chain_ids.last().cloned(), id.to_string());
        let rootfs = blocking(move || Ok(snapshots.prepare(&key, top.as_deref())?)).await?;

        let sc = config.linux.as_ref().and_then(|l| l.security_context.as_ref());
        let files = user::ImageFiles::from_mounts(&rootfs);
        let user = user::resolve(&files, sc, &image_config.user)?;
        if let Some(map) = &srec.id_map() {
            user_namespace::check_user(map, &user)?;
        }
        let (host_mounts, image_mounts): (Vec<_>, Vec<_>) =
            config.mounts.iter().enumerate().partition(|(_, m)| m.image.as_ref().is_none_or(|i| i.image.is_empty()));
        let mounts = resolve_mounts(&host_mounts)?;
        let image_volumes = self.image_volumes(id, &image_mounts, &srec).await?;
        let mut devices = resolve_devices(&config.devices)?;
        if sc.is_some_and(|s| s.privileged) {
            // The host's devices, and the ones the config names on top
            // (they may be at other paths in the container).
            let named: Vec<String> = devices.iter().map(|d| d.container_path.clone()).collect();
            let host = blocking(|| host_devices::host_devices(Path::new("/dev"))).await?;
            devices.extend(host.into_iter().filter(|d| !named.contains(&d.container_path)));
        }
        let caps = berth_oci::container::capabilities(sc, &self.host_capabilities)?;
        let seccomp = seccomp_profile(sc, &caps)?;
        let namespaces = self.namespaces_for(&srec, sc)?;
        let cgroups_path = self.cgroups_path(&self.cgroup_parent_of(&srec.config), id);
        let host_ipc = srec.namespace_options().ipc == v1::NamespaceMode::Node as i32;
        let pod_dir = self.paths.sandbox_dir(&srec.id)?;
        let hostname = std::fs::read_to_string(pod_dir.join("hostname")).unwrap_or_default().trim().to_string();
        let input = ContainerInput {
            id,
            config: &config,
            sandbox_id: &srec.id,
            sandbox: &srec.config,
            image: &image_config.defaults,
            image_name,
            user: user.clone(),
            namespaces,
            cgroups_path: cgroups_path.clone(),
            pod_files: pod_files::for_containers(&pod_dir, srec.shm.as_ref(), host_ipc),
            mounts,
            image_volumes,
            devices,
            seccomp,
            apparmor_profile: checked.apparmor.clone(),
            hostname,
            host_capabilities: self.host_capabilities.clone(),
        };
        let spec = with_cdi(container_spec(&input)?, &checked.cdi, sc.is_some_and(|s| s.privileged))?;
        let log_path = log_path(&srec.config.log_directory, &config.log_path)?;

        let bundle = self.paths.bundle(id)?;
        let spec_json = serde_json::to_vec_pretty(&spec).map_err(Error::internal("encode spec"))?;
        blocking(move || {
            std::fs::create_dir_all(bundle.join("rootfs")).map_err(Error::io(format!("create bundle {}", bundle.display())))?;
            Ok(berth_store::atomic_write(&bundle.join("config.json"), &spec_json, 0o600)?)
        })
        .await?;

        let resources = config.linux.as_ref().and_then(|l| l.resources.clone()).unwrap_or_default();
        let record = ContainerRecord {
            id: id.to_string(),
            sandbox_id: srec.id.clone(),
            name: name.to_string(),
            image_name: image_name.to_string(),
            image_id: image.id.clone(),
            image_ref: image.repo_digests.first().cloned().unwrap_or_else(|| image.id.clone()),
            config,
            state: ContainerState::Created,
            created_at: now_nanos(),
            started_at: 0,
            finished_at: 0,
            exit_code: 0,
            reason: String::new(),
            message: String::new(),
            pid: 0,
            log_path,
            cgroups_path,
            stop_signal: image_config.stop_signal,
            uid: user.uid,
            gid: user.gid,
            additional_gids: user.additional_gids,
            resources,
        };
        let container = Arc::new(Container::new(record));
        self.save_container(&container).await?;
        Ok(container)
    }

    /// Entrypoint, cmd, env, workdir, user and stop signal from the image's
    /// config blob.
    async fn image_config(&self, image: &ImageRecord) -> Result<ImageConfig> {
        let path = self.images.content.blob_path(&image.id)?;
        let id = image.id.clone();
        let bytes = blocking(move || std::fs::read(&path).map_err(|e| Error::FailedPrecondition(format!("image {id}: config blob unreadable: {e}")))).await?;
        let value: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|e| Error::FailedPrecondition(format!("image {}: config is not JSON: {e}", image.id)))?;
        let c = &value["config"];
        let strings = |v: &serde_json::Value| -> Vec<String> {
            v.as_array().map(|a| a.iter().filter_map(|s| s.as_str().map(String::from)).collect()).unwrap_or_default()
        };
        let stop_signal = c["StopSignal"].as_str().map(parse_signal).transpose()?.unwrap_or(libc_sigterm());
        Ok(ImageConfig {
            defaults: ImageDefaults {
                entrypoint: strings(&c["Entrypoint"]),
                cmd: strings(&c["Cmd"]),
                env: strings(&c["Env"]),
                working_dir: c["WorkingDir"].as_str().unwrap_or("").to_string(),
            },
            user: c["User"].as_str().unwrap_or("").to_string(),
            stop_signal,
        })
    }

    /// The pod's pinned namespaces; the container's own PID namespace
    /// unless it asks for the host's or another container's.
    fn namespaces_for(&self, srec: &crate::state::SandboxRecord, sc: Option<&v1::LinuxContainerSecurityContext>) -> Result<Namespaces> {
        let pinned = |p: &Option<std::path::PathBuf>| p.as_ref().map(|p| Namespace::Join(p.display().to_string())).unwrap_or(Namespace::Host);
        let opts = sc.and_then(|s| s.namespace_options.clone()).unwrap_or_default();
        let pid = match v1::NamespaceMode::try_from(opts.pid) {
            Ok(v1::NamespaceMode::Container) => Namespace::Private,
            Ok(v1::NamespaceMode::Node) => Namespace::Host,
            Ok(v1::NamespaceMode::Pod) => match srec.pause_pid {
                Some(pid) => Namespace::Join(format!("/proc/{pid}/ns/pid")),
                None => {
                    return Err(Error::FailedPrecondition(format!(
                        "config.linux.security_context.namespace_options.pid is POD, but pod {} was not created with a shared PID namespace",
                        srec.id
                    )))
                }
            },
            Ok(v1::NamespaceMode::Target) => {
                let target = self.containers.get(&opts.target_id).map_err(|e| e.context("config.linux.security_context.namespace_options.target_id"))?;
                let t = target.snapshot();
                if t.state != ContainerState::Running || t.sandbox_id != srec.id {
                    return Err(Error::FailedPrecondition(format!("namespace_options.target_id: container {} is not running in this pod", t.id)));
                }
                Namespace::Join(format!("/proc/{}/ns/pid", t.pid))
            }
            Err(_) => return Err(Error::InvalidArgument(format!("config.linux.security_context.namespace_options.pid: unknown mode {}", opts.pid))),
        };
        Ok(Namespaces { net: pinned(&srec.netns), ipc: pinned(&srec.ipcns), uts: pinned(&srec.utsns), pid, user: srec.user_namespace() })
    }

    /// Image volumes (`Mount.image`): each gets a snapshot of its own on the
    /// image's top layer (`<container id>-image-<n>`), which holds the
    /// layers against image GC for as long as the container exists; the
    /// container mounts it read-only. The image must have been pulled (the
    /// kubelet pulls it first).
    ///
    /// In a pod with a user namespace the volume is mounted by berthd on
    /// idmapped layers under the bundle (see `user_namespace`) and given to
    /// the container as a bind of that, so its files keep their owners.
    async fn image_volumes(&self, id: &str, mounts: &[(usize, &v1::Mount)], srec: &crate::state::SandboxRecord) -> Result<Vec<ImageVolume>> {
        let mut volumes = Vec::new();
        for &(i, m) in mounts {
            let field = format!("config.mounts[{i}]");
            let reference = m.image.as_ref().map(|s| s.image.clone()).unwrap_or_default();
            if !m.host_path.is_empty() {
                return Err(Error::InvalidArgument(format!("{field}: host_path {:?} and image {reference:?} are mutually exclusive", m.host_path)));
            }
            if m.recursive_read_only || m.propagation != v1::MountPropagation::PropagationPrivate as i32 {
                return Err(Error::InvalidArgument(format!("{field}: an image volume takes neither recursive_read_only nor propagation")));
            }
            let (image, lease) = self
                .images
                .lease_image(&reference)
                .ok_or_else(|| Error::InvalidArgument(format!("{field}.image: image {reference:?} is not present; pull it first")))?;
            let top = image.chain_ids.last().cloned().ok_or_else(|| Error::InvalidArgument(format!("{field}.image: image {reference:?} has no layers")))?;
            let (snapshots, key) = (self.snapshots.clone(), format!("{id}-image-{i}"));
            let shown = blocking(move || Ok(snapshots.prepare(&key, Some(&top))?)).await?;
            // Built on: the image's layer is now a parent, which no
            // collection removes.
            drop(lease);
            let [mount] = shown.as_slice() else {
                return Err(Error::Internal(format!("{field}.image: the snapshotter gave {} mounts, not one", shown.len())));
            };
            if let (Some(pin), Some(map)) = (srec.userns.clone(), srec.id_map()) {
                let target = self.paths.bundle(id)?.join("image-volumes").join(i.to_string());
                let (mount, shown_at) = (mount.clone(), target.clone());
                blocking(move || user_namespace::mount_image_volume(&mount, &shown_at, &pin, &map)).await.map_err(|e| e.context(field))?;
                volumes.push(ImageVolume {
                    container_path: m.container_path.clone(),
                    typ: "bind".into(),
                    source: target.display().to_string(),
                    options: vec!["rbind".into()],
                });
                continue;
            }
            volumes.push(ImageVolume {
                container_path: m.container_path.clone(),
                typ: mount.typ.clone(),
                source: mount.source.clone(),
                options: mount.options.clone(),
            });
        }
        Ok(volumes)
    }

    /// Removes what a failed or removed container leaves: its thin layer
    /// and image volume snapshots, bundle and record directory. Missing
    /// parts are fine.
    /// Removes the container's thin layer, bundle, record and sockets. An
    /// error is logged and returned: RemoveContainer must not answer OK
    /// while the record is still on disk (it would be back after a
    /// restart); the kubelet's retry finishes the job.
    pub(crate) async fn remove_container_files(&self, id: &str) -> Result<()> {
        let (snapshots, key, host) = (self.snapshots.clone(), id.to_string(), self.host.clone());
        let (bundle, record_dir, trash) = (self.paths.bundle(id), self.paths.container_dir(id), self.paths.trash());
        let sockets = [self.paths.shim_socket(id), self.paths.attach_socket(id)];
        let result = blocking(move || {
            // The shim removes them when it exits, unless it died half way
            // through (a SIGKILL during Delete): a removed container leaves
            // no socket either way. Any shim of it has exited or is exiting.
            for socket in sockets {
                let _ = std::fs::remove_file(socket);
            }
            let bundle = bundle?;
            user_namespace::unmount_image_volumes(&bundle);
            // Normally the shim's Delete unmounted it; not if the shim
            // died. Removing the snapshot and the bundle under a live
            // overlay would fail (busy) and leave the mount.
            let _ = host.unmount(&bundle.join("rootfs"));
            // The thin layers and the record's directory hold the most
            // files, on the persistent disk, where each unlink is a journal
            // write: they leave by one rename each and are deleted after
            // the reply (RemoveContainer took 2.5 times containerd's under
            // critest's benchmark while it deleted them first).
            let mut doomed = Vec::new();
            let volumes = format!("{key}-image-");
            for info in snapshots.list()?.into_iter().filter(|s| s.key.starts_with(&volumes)) {
                doomed.extend(snapshots.detach(&info.key)?);
            }
            doomed.extend(snapshots.detach(&key)?);
            doomed.push(record_dir?);
            // The bundle is in the state directory (tmpfs on a node).
            remove_dir_if_present(&bundle)?;
            // What is in the trash is deleted whatever happens next.
            let (mut deferred, mut failed) = (Vec::new(), Ok(()));
            for (n, dir) in doomed.into_iter().enumerate() {
                match move_to_trash(&dir, &trash, &format!("{key}.{n}")) {
                    Some(moved) => deferred.push(moved),
                    None => failed = failed.and(remove_dir_if_present(&dir)),
                }
            }
            Ok((deferred, failed))
        })
        .await;
        let result = result.and_then(|(deferred, failed)| {
            tokio::task::spawn_blocking(move || {
                for dir in deferred {
                    if let Err(e) = std::fs::remove_dir_all(&dir) {
                        tracing::warn!(path = %dir.display(), error = %e, "delete a removed container's files (start-up retries)");
                    }
                }
            });
            failed
        });
        if let Err(e) = &result {
            tracing::error!(container_id = %id, error = %e, "remove container files");
        }
        result
    }
}

/// Renames `dir` into `trash` as `name`; `None` if it cannot be (another
/// filesystem, say), for the caller to delete it in place. A missing
/// `dir` is nothing to do.
fn move_to_trash(dir: &std::path::Path, trash: &std::path::Path, name: &str) -> Option<std::path::PathBuf> {
    if !dir.exists() {
        return None;
    }
    let target = trash.join(name);
    let moved = std::fs::create_dir_all(trash).and_then(|()| std::fs::rename(dir, &target));
    match moved {
        Ok(()) => Some(target),
        Err(e) => {
            tracing::debug!(path = %dir.display(), error = %e, "not moved to the trash; deleted in place");
            None
        }
    }
}

fn remove_dir_if_present(dir: &std::path::Path) -> Result<()> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(format!("remove {}", dir.display()))(e)),
    }
}

/// The bounding set berthd runs with: all a container can be given.
pub(super) fn host_capabilities() -> Vec<String> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let mask = status.lines().find_map(|l| l.strip_prefix("CapBnd:")).and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok()).unwrap_or(0);
    berth_oci::container::capabilities_in_mask(mask)
}

fn libc_sigterm() -> u32 {
    nix::sys::signal::Signal::SIGTERM as u32
}

/// `SIGTERM`, `TERM` or `15`.
pub(super) fn parse_signal(s: &str) -> Result<u32> {
    if let Ok(n) = s.parse::<u32>() {
        return Ok(n);
    }
    let name = if s.starts_with("SIG") { s.to_string() } else { format!("SIG{s}") };
    nix::sys::signal::Signal::from_str(&name.to_ascii_uppercase())
        .map(|sig| sig as u32)
        .map_err(|_| Error::FailedPrecondition(format!("image StopSignal {s:?} is not a signal")))
}

/// CreateContainer's checks of the config itself, before it looks up
/// anything or makes anything: the metadata, the user namespace against
/// the pod's (`pod_id_map`), CDI device names, the image name and the log
/// path (under the pod's `log_directory`). Every refusal is an
/// InvalidArgument naming the field. Public for the fuzz target
/// `cri_create_container` (`crates/fuzz`).
pub fn check_container_config(config: &v1::ContainerConfig, pod_id_map: Option<&berth_network::IdMap>, log_directory: &str) -> Result<()> {
    let meta = config.metadata.as_ref().ok_or_else(|| Error::InvalidArgument("config.metadata is missing".into()))?;
    if meta.name.is_empty() {
        return Err(Error::InvalidArgument("config.metadata.name is empty".into()));
    }
    check_user_namespace(config, pod_id_map)?;
    cdi::requests(config)?;
    if config.image.as_ref().is_none_or(|i| i.image.is_empty()) {
        return Err(Error::InvalidArgument("config.image.image is empty".into()));
    }
    log_path(log_directory, &config.log_path)?;
    Ok(())
}

/// The container shares the pod's user namespace, and only its volumes
/// marked with the pod's maps are idmapped.
fn check_user_namespace(config: &v1::ContainerConfig, pod: Option<&berth_network::IdMap>) -> Result<()> {
    let sc = config.linux.as_ref().and_then(|l| l.security_context.as_ref());
    user_namespace::check_container(sc.and_then(|s| s.namespace_options.as_ref()).and_then(|n| n.userns_options.as_ref()), pod)?;
    for (i, m) in config.mounts.iter().enumerate() {
        user_namespace::check_mount(i, m, pod)?;
    }
    Ok(())
}

/// The spec with the CDI devices' edits applied, after berth's own: a
/// device's env var or mount replaces the container's at the same name.
fn with_cdi(spec: oci_spec::runtime::Spec, injection: &cdi::Injection, privileged: bool) -> Result<oci_spec::runtime::Spec> {
    if injection.is_empty() {
        return Ok(spec);
    }
    let mut value = serde_json::to_value(&spec).map_err(Error::internal("encode spec"))?;
    cdi::apply::apply(&mut value, injection, privileged);
    serde_json::from_value(value).map_err(|e| Error::InvalidArgument(format!("config.CDI_devices: the devices' edits do not make a valid OCI spec: {e}")))
}

/// Host paths must exist; symlinks are followed so the container gets what
/// the link points at, as the kubelet expects.
fn resolve_mounts(mounts: &[(usize, &v1::Mount)]) -> Result<Vec<v1::Mount>> {
    mounts
        .iter()
        .map(|&(i, m)| {
            if m.recursive_read_only && !super::features::recursive_read_only_mounts() {
                return Err(Error::InvalidArgument(format!(
                    "config.mounts[{i}].recursive_read_only: this kernel has no mount_setattr(2), so submounts cannot be made read-only"
                )));
            }
            let field = format!("config.mounts[{i}].host_path");
            if m.host_path.is_empty() {
                return Err(Error::InvalidArgument(format!("{field} is empty")));
            }
            let real = std::fs::canonicalize(&m.host_path).map_err(|e| Error::InvalidArgument(format!("{field}: {}: {e}", m.host_path)))?;
            Ok(v1::Mount { host_path: real.display().to_string(), ..(*m).clone() })
        })
        .collect()
}

fn resolve_devices(devices: &[v1::Device]) -> Result<Vec<HostDevice>> {
    devices
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let field = format!("config.devices[{i}]");
            let meta = std::fs::metadata(&d.host_path).map_err(|e| Error::InvalidArgument(format!("{field}.host_path: {}: {e}", d.host_path)))?;
            let kind = if meta.file_type().is_char_device() {
                'c'
            } else if meta.file_type().is_block_device() {
                'b'
            } else {
                return Err(Error::InvalidArgument(format!("{field}.host_path: {} is not a device node", d.host_path)));
            };
            let rdev = meta.rdev();
            let permissions = if d.permissions.is_empty() { "rwm".to_string() } else { d.permissions.clone() };
            if !permissions.chars().all(|c| matches!(c, 'r' | 'w' | 'm')) {
                return Err(Error::InvalidArgument(format!("{field}.permissions: {permissions:?} is not a subset of \"rwm\"")));
            }
            let container_path = if d.container_path.is_empty() { d.host_path.clone() } else { d.container_path.clone() };
            if !Path::new(&container_path).is_absolute() {
                return Err(Error::InvalidArgument(format!("{field}.container_path: {container_path:?} is not absolute")));
            }
            Ok(HostDevice {
                container_path,
                kind,
                major: nix::sys::stat::major(rdev) as i64,
                minor: nix::sys::stat::minor(rdev) as i64,
                file_mode: meta.mode() & 0o777,
                permissions,
            })
        })
        .collect()
}

/// RuntimeDefault is berth's profile for the container's capabilities;
/// Localhost is a JSON file on the node (OCI seccomp format); unset and
/// Unconfined run without a filter, as the CRI defines. The deprecated
/// `seccomp_profile_path` is still read: older kubelets send only it.
#[allow(deprecated)]
fn seccomp_profile(sc: Option<&v1::LinuxContainerSecurityContext>, caps: &[String]) -> Result<Option<oci_spec::runtime::LinuxSeccomp>> {
    let Some(sc) = sc else { return Ok(None) };
    if sc.privileged {
        return Ok(None);
    }
    let field = "config.linux.security_context.seccomp";
    let (kind, localhost) = match &sc.seccomp {
        Some(p) => (
            v1::security_profile::ProfileType::try_from(p.profile_type)
                .map_err(|_| Error::InvalidArgument(format!("{field}.profile_type: unknown {}", p.profile_type)))?,
            p.localhost_ref.clone(),
        ),
        None => match sc.seccomp_profile_path.as_str() {
            "" | "unconfined" => (v1::security_profile::ProfileType::Unconfined, String::new()),
            "runtime/default" | "docker/default" => (v1::security_profile::ProfileType::RuntimeDefault, String::new()),
            p => match p.strip_prefix("localhost/") {
                Some(path) => (v1::security_profile::ProfileType::Localhost, path.to_string()),
                None => return Err(Error::InvalidArgument(format!("config.linux.security_context.seccomp_profile_path: {p:?} is unknown"))),
            },
        },
    };
    match kind {
        v1::security_profile::ProfileType::Unconfined => Ok(None),
        v1::security_profile::ProfileType::RuntimeDefault => Ok(Some(berth_oci::seccomp::runtime_default(caps))),
        v1::security_profile::ProfileType::Localhost => {
            let text = std::fs::read_to_string(&localhost).map_err(|e| Error::InvalidArgument(format!("{field}.localhost_ref: {localhost}: {e}")))?;
            serde_json::from_str(&text)
                .map(Some)
                .map_err(|e| Error::InvalidArgument(format!("{field}.localhost_ref: {localhost} is not an OCI seccomp profile: {e}")))
        }
    }
}

/// The kubelet's log path: relative to the pod's log directory.
fn log_path(directory: &str, path: &str) -> Result<String> {
    match (directory, path) {
        (_, "") => Ok(String::new()),
        ("", p) if p.starts_with('/') => Ok(p.to_string()),
        ("", p) => Err(Error::InvalidArgument(format!("config.log_path {p:?} is relative but the pod has no log_directory"))),
        (d, p) => {
            // Relative to the directory even when it starts with '/', as
            // containerd joins them: Path::join would put an absolute one
            // anywhere on the host (the fuzz target cri_create_container
            // found `/etc/...` accepted as a log path).
            let full = Path::new(d).join(p.trim_start_matches('/'));
            if p.split('/').any(|c| c == "..") {
                return Err(Error::InvalidArgument(format!("config.log_path {p:?} leaves the pod's log directory")));
            }
            Ok(full.display().to_string())
        }
    }
}
