//! `berthctl port CONTAINER`: the host ports its pod publishes, as
//! `docker port` prints them. The CRI does not report a pod's port
//! mappings, so berthctl reads what `run -p` and `play kube` recorded on
//! the pod.

use std::path::Path;

use k8s_cri::v1;

use crate::{
    client::rpc_error,
    containers::{clients, MAPPINGS_ANNOTATION},
    resolve,
};

pub async fn run(socket: &Path, reference: &str) -> anyhow::Result<()> {
    let mut c = clients(socket).await?;
    let ctr = resolve::container(&mut c.rt, reference).await?;
    let filter = v1::PodSandboxFilter { id: ctr.pod_sandbox_id.clone(), ..Default::default() };
    let pods = c.rt.list_pod_sandbox(v1::ListPodSandboxRequest { filter: Some(filter) }).await.map_err(rpc_error("list pods"))?.into_inner().items;
    let mappings = pods.first().and_then(|p| p.annotations.get(MAPPINGS_ANNOTATION)).cloned().unwrap_or_default();
    for line in mappings.split(';').filter(|l| !l.is_empty()) {
        println!("{line}");
    }
    Ok(())
}
