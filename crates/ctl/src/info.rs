use std::path::Path;

use k8s_cri::v1::{runtime_service_client::RuntimeServiceClient, StatusRequest, VersionRequest};

use crate::client::{connect, rpc_error};

pub async fn run(socket: &Path) -> anyhow::Result<()> {
    let mut rt = RuntimeServiceClient::new(connect(socket).await?);
    let v = rt.version(VersionRequest::default()).await.map_err(rpc_error("version"))?.into_inner();
    println!("{} {} (CRI {})", v.runtime_name, v.runtime_version, v.runtime_api_version);
    let status = rt.status(StatusRequest { verbose: false }).await.map_err(rpc_error("status"))?.into_inner();
    for c in status.status.map(|s| s.conditions).unwrap_or_default() {
        let state = if c.status { "yes".to_string() } else { format!("no: {} ({})", c.message, c.reason) };
        println!("{:<14} {state}", c.r#type);
    }
    Ok(())
}
