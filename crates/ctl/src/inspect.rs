//! `berthctl inspect`: what berthd knows of a container, pod or image, as
//! JSON (an array, one object per name, as `docker inspect` prints). A name
//! is tried as a container first, then a pod, then an image.

use std::path::Path;

use k8s_cri::v1;
use serde_json::{json, Value};

use crate::{client::rpc_error, containers::clients, resolve};

pub async fn run(socket: &Path, references: Vec<String>) -> anyhow::Result<()> {
    anyhow::ensure!(!references.is_empty(), "name at least one container, pod or image");
    let mut c = clients(socket).await?;
    let mut out = Vec::new();
    for reference in &references {
        if let Ok(ctr) = resolve::container(&mut c.rt, reference).await {
            let r = c.rt.container_status(v1::ContainerStatusRequest { container_id: ctr.id, verbose: true }).await.map_err(rpc_error("container status"))?;
            let r = r.into_inner();
            out.push(container_json(r.status.unwrap_or_default(), &r.info, &ctr.pod_sandbox_id));
            continue;
        }
        if let Some(pod) = find_pod(&mut c.rt, reference).await? {
            let r = c.rt.pod_sandbox_status(v1::PodSandboxStatusRequest { pod_sandbox_id: pod, verbose: true }).await.map_err(rpc_error("pod status"))?;
            let r = r.into_inner();
            out.push(pod_json(r.status.unwrap_or_default(), &r.info));
            continue;
        }
        let image = v1::ImageSpec { image: reference.clone(), ..Default::default() };
        let r = c.img.image_status(v1::ImageStatusRequest { image: Some(image), verbose: true }).await.map_err(rpc_error("image status"))?.into_inner();
        match r.image {
            Some(image) => out.push(image_json(image, &r.info)),
            None => anyhow::bail!("no such container, pod or image: {reference}"),
        }
    }
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}

/// A pod by id, unique id prefix or name.
async fn find_pod(rt: &mut v1::runtime_service_client::RuntimeServiceClient<tonic::transport::Channel>, reference: &str) -> anyhow::Result<Option<String>> {
    let pods = rt.list_pod_sandbox(v1::ListPodSandboxRequest::default()).await.map_err(rpc_error("list pods"))?.into_inner().items;
    let named: Vec<&v1::PodSandbox> = pods.iter().filter(|p| p.metadata.as_ref().is_some_and(|m| m.name == reference)).collect();
    let matching: Vec<&v1::PodSandbox> = if named.is_empty() { pods.iter().filter(|p| p.id.starts_with(reference)).collect() } else { named };
    match matching.as_slice() {
        [one] => Ok(Some(one.id.clone())),
        [] => Ok(None),
        _ => anyhow::bail!("{reference:?} names {} pods: give more of the id", matching.len()),
    }
}

/// berthd's verbose `info` entries, parsed where they are JSON.
fn info_json(info: &std::collections::HashMap<String, String>) -> Value {
    info.iter().map(|(k, v)| (k.clone(), serde_json::from_str(v).unwrap_or_else(|_| Value::String(v.clone())))).collect::<serde_json::Map<_, _>>().into()
}

fn container_json(s: v1::ContainerStatus, info: &std::collections::HashMap<String, String>, pod: &str) -> Value {
    let mounts: Vec<Value> = s.mounts.iter().map(|m| json!({ "Source": m.host_path, "Destination": m.container_path, "ReadOnly": m.readonly })).collect();
    json!({
        "Kind": "container",
        "Id": s.id,
        "Name": s.metadata.as_ref().map(|m| m.name.clone()).unwrap_or_default(),
        "PodId": pod,
        "RestartCount": s.metadata.as_ref().map_or(0, |m| m.attempt),
        "State": {
            "Status": crate::ps::state_name(s.state),
            "ExitCode": s.exit_code,
            "Reason": s.reason,
            "Message": s.message,
            "CreatedAt": s.created_at,
            "StartedAt": s.started_at,
            "FinishedAt": s.finished_at,
        },
        "Image": s.image.as_ref().map(|i| i.image.clone()).unwrap_or_default(),
        "ImageRef": s.image_ref,
        "LogPath": s.log_path,
        "Labels": s.labels,
        "Annotations": s.annotations,
        "Mounts": mounts,
        "Info": info_json(info),
    })
}

fn pod_json(s: v1::PodSandboxStatus, info: &std::collections::HashMap<String, String>) -> Value {
    let meta = s.metadata.clone().unwrap_or_default();
    json!({
        "Kind": "pod",
        "Id": s.id,
        "Name": meta.name,
        "Namespace": meta.namespace,
        "Uid": meta.uid,
        "State": if s.state == v1::PodSandboxState::SandboxReady as i32 { "ready" } else { "notready" },
        "CreatedAt": s.created_at,
        "IP": s.network.as_ref().map(|n| n.ip.clone()).unwrap_or_default(),
        "Labels": s.labels,
        "Annotations": s.annotations,
        "RuntimeHandler": s.runtime_handler,
        "Info": info_json(info),
    })
}

fn image_json(i: v1::Image, info: &std::collections::HashMap<String, String>) -> Value {
    json!({
        "Kind": "image",
        "Id": i.id,
        "RepoTags": i.repo_tags,
        "RepoDigests": i.repo_digests,
        "Size": i.size,
        "User": i.uid.map(|u| u.value.to_string()).unwrap_or(i.username),
        "Pinned": i.pinned,
        "Info": info_json(info),
    })
}
