//! `berthctl container prune` and `berthctl system df`: what stopped
//! containers and images hold, and giving it back.

use std::{collections::HashSet, path::Path};

use k8s_cri::v1;

use crate::{
    client::rpc_error,
    containers::{clients, Clients, RUN_LABEL},
    stats::human,
    volumes,
};

/// Removes every exited container (and the pod `berthctl run` made for
/// it); prints their ids.
pub async fn containers(socket: &Path) -> anyhow::Result<()> {
    let mut c = clients(socket).await?;
    let exited = v1::ContainerFilter { state: Some(v1::ContainerStateValue { state: v1::ContainerState::ContainerExited as i32 }), ..Default::default() };
    let list = c.rt.list_containers(v1::ListContainersRequest { filter: Some(exited) }).await.map_err(rpc_error("list containers"))?.into_inner().containers;
    for ctr in list {
        c.rt.remove_container(v1::RemoveContainerRequest { container_id: ctr.id.clone() }).await.map_err(rpc_error("remove"))?;
        if ctr.labels.contains_key(RUN_LABEL) {
            let _ = c.rt.stop_pod_sandbox(v1::StopPodSandboxRequest { pod_sandbox_id: ctr.pod_sandbox_id.clone() }).await;
            let _ = c.rt.remove_pod_sandbox(v1::RemovePodSandboxRequest { pod_sandbox_id: ctr.pod_sandbox_id.clone() }).await;
        }
        println!("{}", ctr.id);
    }
    Ok(())
}

/// Removes every image no container (running or not) uses; prints their
/// ids and the bytes given back.
pub async fn images(socket: &Path) -> anyhow::Result<()> {
    let mut c = clients(socket).await?;
    let (images, containers) = images_and_containers(&mut c).await?;
    let used: HashSet<&str> = containers.iter().map(|c| c.image_id.as_str()).collect();
    let mut freed = 0;
    for image in images.iter().filter(|i| !used.contains(i.id.as_str()) && !i.pinned) {
        let spec = v1::ImageSpec { image: image.id.clone(), ..Default::default() };
        c.img.remove_image(v1::RemoveImageRequest { image: Some(spec) }).await.map_err(rpc_error("remove image"))?;
        freed += image.size;
        println!("{}", image.id);
    }
    println!("reclaimed {}", human(freed));
    Ok(())
}

/// Images, containers and volumes: how many, how large, how much of it
/// nothing uses.
pub async fn df(socket: &Path) -> anyhow::Result<()> {
    let mut c = clients(socket).await?;
    let (images, containers) = images_and_containers(&mut c).await?;
    let used: HashSet<&str> = containers.iter().map(|c| c.image_id.as_str()).collect();
    let image_bytes: u64 = images.iter().map(|i| i.size).sum();
    let unused_bytes: u64 = images.iter().filter(|i| !used.contains(i.id.as_str())).map(|i| i.size).sum();
    let running = containers.iter().filter(|c| c.state == v1::ContainerState::ContainerRunning as i32).count();
    let volume_dir = volumes::volume_dir(&mut c.rt).await?;
    let (mut volume_count, mut volume_bytes) = (0, 0);
    for entry in std::fs::read_dir(&volume_dir).into_iter().flatten().flatten() {
        volume_count += 1;
        volume_bytes += size_of(&entry.path());
    }
    let mut table = comfy_table::Table::new();
    table.load_preset(comfy_table::presets::NOTHING).set_header(["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"]);
    table.add_row(["Images".to_string(), images.len().to_string(), used.len().to_string(), human(image_bytes), human(unused_bytes)]);
    table.add_row(["Containers".to_string(), containers.len().to_string(), running.to_string(), "-".into(), "-".into()]);
    table.add_row(["Volumes".to_string(), volume_count.to_string(), "-".into(), human(volume_bytes), "-".into()]);
    crate::ps::print_table(&mut table);
    Ok(())
}

/// Bytes of the files under `path` (not following links).
fn size_of(path: &Path) -> u64 {
    let Ok(meta) = std::fs::symlink_metadata(path) else { return 0 };
    if !meta.is_dir() {
        return meta.len();
    }
    std::fs::read_dir(path).into_iter().flatten().flatten().map(|e| size_of(&e.path())).sum()
}

/// Every image and every container (running or not).
async fn images_and_containers(c: &mut Clients) -> anyhow::Result<(Vec<v1::Image>, Vec<v1::Container>)> {
    let images = c.img.list_images(v1::ListImagesRequest::default()).await.map_err(rpc_error("list images"))?.into_inner().images;
    let containers = c.rt.list_containers(v1::ListContainersRequest::default()).await.map_err(rpc_error("list containers"))?.into_inner().containers;
    Ok((images, containers))
}
