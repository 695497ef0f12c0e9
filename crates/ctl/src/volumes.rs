//! `berthctl volume create/ls/rm`: named volumes, Docker's way of keeping
//! data across containers. Each is a directory under berth's root
//! (`<root>/volumes/<name>`, the root as berthd reports it), bound into a
//! container by `run -v NAME:/path`.

use std::path::{Path, PathBuf};

use clap::Subcommand;
use k8s_cri::v1::{self, runtime_service_client::RuntimeServiceClient};
use tonic::transport::Channel;

use crate::{client::rpc_error, containers::clients, run_flags::is_volume_name};

#[derive(Subcommand)]
pub enum VolumeCommand {
    /// Create a named volume (an existing one is left as it is).
    Create { name: String },
    /// List the named volumes.
    Ls,
    /// Remove named volumes and their data (not while a container uses one).
    Rm { names: Vec<String> },
}

pub async fn run(socket: &Path, cmd: VolumeCommand) -> anyhow::Result<()> {
    let mut c = clients(socket).await?;
    let dir = volume_dir(&mut c.rt).await?;
    match cmd {
        VolumeCommand::Create { name } => {
            anyhow::ensure!(is_volume_name(&name), "{name:?} is not a volume name ([A-Za-z0-9][A-Za-z0-9_.-]*)");
            std::fs::create_dir_all(dir.join(&name))?;
            println!("{name}");
        }
        VolumeCommand::Ls => {
            println!("VOLUME NAME");
            let mut names: Vec<String> =
                std::fs::read_dir(&dir).into_iter().flatten().flatten().filter_map(|e| e.file_name().to_str().map(String::from)).collect();
            names.sort();
            for name in names {
                println!("{name}");
            }
        }
        VolumeCommand::Rm { names } => {
            anyhow::ensure!(!names.is_empty(), "name at least one volume");
            for name in names {
                let path = existing(&dir, &name)?;
                if let Some(user) = used_by(&mut c.rt, &path).await? {
                    anyhow::bail!("volume {name} is in use by container {user}: remove the container first");
                }
                std::fs::remove_dir_all(&path)?;
                println!("{name}");
            }
        }
    }
    Ok(())
}

/// `<root>/volumes`, berthd's root read from its configuration (Status,
/// verbose), so berthctl and berthd agree whatever the root is.
pub async fn volume_dir(rt: &mut RuntimeServiceClient<Channel>) -> anyhow::Result<PathBuf> {
    let status = rt.status(v1::StatusRequest { verbose: true }).await.map_err(rpc_error("status"))?.into_inner();
    let config = status.info.get("config").cloned().unwrap_or_default();
    let root =
        config.lines().find_map(|l| l.strip_prefix("root = ").map(|v| v.trim().trim_matches('"').to_string())).unwrap_or_else(|| "/var/lib/berth".to_string());
    Ok(Path::new(&root).join("volumes"))
}

/// The directory of an existing named volume.
pub fn existing(dir: &Path, name: &str) -> anyhow::Result<PathBuf> {
    let path = dir.join(name);
    anyhow::ensure!(is_volume_name(name) && path.is_dir(), "no such volume: {name} (berthctl volume create {name})");
    Ok(path)
}

/// The first container (id prefix) that mounts `path`.
async fn used_by(rt: &mut RuntimeServiceClient<Channel>, path: &Path) -> anyhow::Result<Option<String>> {
    let all = rt.list_containers(v1::ListContainersRequest::default()).await.map_err(rpc_error("list containers"))?.into_inner().containers;
    for ctr in all {
        let st =
            rt.container_status(v1::ContainerStatusRequest { container_id: ctr.id.clone(), verbose: false }).await.map_err(rpc_error("container status"))?;
        let mounts = st.into_inner().status.map(|s| s.mounts).unwrap_or_default();
        if mounts.iter().any(|m| Path::new(&m.host_path) == path) {
            return Ok(Some(ctr.id[..12.min(ctr.id.len())].to_string()));
        }
    }
    Ok(None)
}
