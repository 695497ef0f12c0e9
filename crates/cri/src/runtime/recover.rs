//! Start-up: the records are checkpoints, the shims the truth. Reload every
//! pod and container, reconnect to the shims still running, record the
//! exits that happened while berthd was away, and remove what a crash left
//! half-made (state dirs, bundles and thin layers without a record).

use std::{collections::HashSet, path::Path, sync::Arc};

use berth_store::load_record;
use containerd_shim_protos::api;

use super::Runtime;
use crate::{
    error::{blocking, Result},
    state::{now_nanos, Container, ContainerRecord, ContainerState, ExitInfo, Sandbox, SandboxRecord, SandboxState},
};

pub(crate) async fn recover(rt: &Arc<Runtime>) -> Result<()> {
    let root = rt.paths.root().to_path_buf();
    let sandboxes: Vec<SandboxRecord> = blocking({
        let dir = root.join("sandboxes");
        move || Ok(load_all(&dir, "sandbox.json"))
    })
    .await?;
    for mut record in sandboxes {
        let pins = rt.host.find_namespaces(&rt.paths.sandbox_state(&record.id)?.join("ns"));
        let lost = (record.netns.is_some() && pins.net.is_none()) || (record.userns.is_some() && pins.user.is_none());
        if record.state == SandboxState::Ready && lost {
            // The pinned namespaces are gone (a reboot emptied /run).
            tracing::warn!(pod_id = %record.id, "pod namespaces lost; pod is NotReady");
            record.mark_not_ready();
            record.netns = None;
            record.ipcns = None;
            record.utsns = None;
            record.userns = None;
            record.cni_result = None;
            record.shm = None;
        }
        if let Err(e) = rt.pod_names.reserve(&record.name, &record.id) {
            tracing::error!(pod_id = %record.id, error = %e, "pod name already taken; skipping the record");
            continue;
        }
        rt.sandboxes.insert(record.id.clone(), Arc::new(Sandbox::new(record)));
    }

    let containers: Vec<ContainerRecord> = blocking({
        let dir = root.join("containers");
        move || Ok(load_all(&dir, "container.json"))
    })
    .await?;
    let (mut running, mut lost) = (0, 0);
    for record in containers {
        if rt.sandboxes.get(&record.sandbox_id).is_err() {
            tracing::warn!(container_id = %record.id, pod_id = %record.sandbox_id, "container of a removed pod; removing it");
            // Logged inside; the next start tries again.
            let _ = rt.remove_container_files(&record.id).await;
            continue;
        }
        if let Err(e) = rt.container_names.reserve(&record.name, &record.id) {
            tracing::error!(container_id = %record.id, error = %e, "container name already taken; skipping the record");
            continue;
        }
        let state = record.state;
        let container = Arc::new(Container::new(record));
        rt.containers.insert(container.id.clone(), container.clone());
        // A socket means a shim was started and not yet deleted: whether it
        // still runs is the question for every state, not only Running.
        let socket = rt.paths.shim_socket(&container.id).exists();
        let rootfs = rt.paths.bundle(&container.id)?.join("rootfs");
        let cgroups_path = container.record().cgroups_path.clone();
        match state {
            ContainerState::Running | ContainerState::Created => match rt.shims.find(&container.id).await {
                Some(shim) => match shim.state().await {
                    Ok(s) if state == ContainerState::Running || s.status.value() != api::Status::CREATED as i32 => {
                        // Running, or exited while berthd was away: the
                        // monitor's Wait returns at once in the second case.
                        if state == ContainerState::Created {
                            container.record().mark_started(s.pid, now_nanos())?;
                            // Saved now: if berthd dies again before the
                            // exit, the next start must not find a Created
                            // record for a container that ran (its shim
                            // gone, its processes orphaned).
                            if let Err(e) = rt.save_container(&container).await {
                                tracing::error!(container_id = %container.id, error = %e, "save a start found at recovery");
                            }
                        }
                        rt.end_orphaned_execs(&container, &shim).await;
                        container.set_shim(Some(shim));
                        rt.spawn_exit_monitor(container.clone());
                        running += 1;
                    }
                    _ => {
                        // A Start interrupted before the task ran.
                        let _ = shim.kill(9, true).await;
                        let _ = shim.delete().await;
                        let _ = shim.shutdown().await;
                    }
                },
                None if state == ContainerState::Running => {
                    lost += 1;
                    // The shim died while berthd was away; its container's
                    // processes may still run, reparented: they are killed,
                    // as the shim's Delete would have.
                    rt.clean_up_after_dead_shim(&container.id, &cgroups_path, Some(rootfs)).await;
                    let exit = ExitInfo { code: 255, at: now_nanos(), reason: "Unknown".into(), message: "its shim was gone when berthd restarted".into() };
                    rt.record_exit(&container, exit).await;
                }
                None if socket => {
                    // A Start interrupted, then its shim died: what it
                    // started is killed; the container stays Created, so
                    // the kubelet's retry of Start can start it.
                    rt.clean_up_after_dead_shim(&container.id, &cgroups_path, Some(rootfs)).await;
                }
                None => {}
            },
            ContainerState::Exited if socket => {
                // The exit was saved, but berthd died before the shim's
                // Delete (the exit monitor saves first): finish that, or
                // do the dead shim's part.
                match rt.shims.find(&container.id).await {
                    Some(shim) => {
                        if let Err(e) = shim.delete().await {
                            tracing::warn!(container_id = %container.id, error = %e, "delete the task of an exited container");
                        }
                        let _ = shim.shutdown().await;
                    }
                    None => rt.clean_up_after_dead_shim(&container.id, &cgroups_path, Some(rootfs)).await,
                }
            }
            ContainerState::Exited | ContainerState::Unknown => {}
        }
    }
    collect_orphans(rt).await?;
    tracing::info!(pods = rt.sandboxes.list().len(), containers = rt.containers.list().len(), running, lost, "state recovered");
    Ok(())
}

/// Every record named `file` in the subdirectories of `dir`. A record that
/// cannot be read is logged and left on disk for a human, never deleted.
fn load_all<T: berth_store::Versioned>(dir: &Path, file: &str) -> Vec<T> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path().join(file);
        let _ = berth_store::remove_stale_temps(&entry.path());
        match load_record::<T>(&path) {
            Ok(r) => out.push(r),
            Err(e) if e.is_not_found() => {
                // A directory whose record was never written: a create
                // that crashed before its first save.
                let _ = std::fs::remove_dir_all(entry.path());
            }
            Err(e) => tracing::error!(path = %path.display(), error = %e, "unreadable record; left in place"),
        }
    }
    out
}

async fn collect_orphans(rt: &Arc<Runtime>) -> Result<()> {
    let pods: HashSet<String> = rt.sandboxes.list().iter().map(|s| s.id.clone()).collect();
    let containers: HashSet<String> = rt.containers.list().iter().map(|c| c.id.clone()).collect();
    let (state, snapshots, host, trash) = (rt.paths.state().to_path_buf(), rt.snapshots.clone(), rt.host.clone(), rt.paths.trash());
    let live_pods: HashSet<String> = rt.sandboxes.list().iter().filter(|s| s.is_ready()).map(|s| s.id.clone()).collect();
    blocking(move || {
        let mut removed = 0;
        // Files of removed containers that berthd had not deleted yet.
        for entry in std::fs::read_dir(&trash).into_iter().flatten().flatten() {
            let _ = std::fs::remove_dir_all(entry.path());
            removed += 1;
        }
        // Pod state of removed pods, and of pods whose namespaces are gone.
        for entry in std::fs::read_dir(state.join("sandboxes")).into_iter().flatten().flatten() {
            let id = entry.file_name().to_string_lossy().into_owned();
            if live_pods.contains(&id) {
                continue;
            }
            let _ = host.remove_namespaces(&entry.path().join("ns"));
            let _ = host.unmount_shm(&entry.path().join("shm"));
            if !pods.contains(&id) {
                let _ = std::fs::remove_dir_all(entry.path());
                removed += 1;
            }
        }
        for entry in std::fs::read_dir(state.join("containers")).into_iter().flatten().flatten() {
            let id = entry.file_name().to_string_lossy().into_owned();
            if !containers.contains(&id) {
                let _ = host.unmount(&entry.path().join("rootfs"));
                let _ = std::fs::remove_dir_all(entry.path());
                removed += 1;
            }
        }
        for info in snapshots.list()? {
            // A container's own snapshot is keyed by its id, its image
            // volumes' by `<id>-image-<n>`.
            let owner = info.key.split_once("-image-").map_or(info.key.as_str(), |(id, _)| id);
            if info.kind == berth_snapshot::Kind::Active && !info.key.starts_with(berth_image::pull::EXTRACT_PREFIX) && !containers.contains(owner) {
                snapshots.remove(&info.key)?;
                removed += 1;
            }
        }
        if removed > 0 {
            tracing::info!(removed, "removed state left by a crash");
        }
        Ok(())
    })
    .await
}
