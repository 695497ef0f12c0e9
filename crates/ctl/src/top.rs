//! `berthctl top CONTAINER`: the container's processes as the host sees
//! them (host pids, like `docker top`): every process in the PID
//! namespace of the container's process.

use std::path::Path;

use comfy_table::{presets::NOTHING, Table};
use k8s_cri::v1;

use crate::{client::rpc_error, containers::clients, resolve};

pub async fn run(socket: &Path, reference: &str) -> anyhow::Result<()> {
    let mut c = clients(socket).await?;
    let ctr = resolve::container(&mut c.rt, reference).await?;
    anyhow::ensure!(ctr.state == v1::ContainerState::ContainerRunning as i32, "container {reference} is not running");
    let status = c.rt.container_status(v1::ContainerStatusRequest { container_id: ctr.id, verbose: true }).await.map_err(rpc_error("container status"))?;
    let info: serde_json::Value = status.into_inner().info.get("info").and_then(|i| serde_json::from_str(i).ok()).unwrap_or_default();
    let pid = info["pid"].as_i64().filter(|p| *p > 0).ok_or_else(|| anyhow::anyhow!("berthd reports no process for {reference}"))?;
    let namespace =
        std::fs::read_link(format!("/proc/{pid}/ns/pid")).map_err(|e| anyhow::anyhow!("the container's process {pid}: {e} (top reads /proc: run as root)"))?;
    let mut table = Table::new();
    table.load_preset(NOTHING).set_header(["PID", "PPID", "UID", "CMD"]);
    let mut pids: Vec<i64> = std::fs::read_dir("/proc")?.flatten().filter_map(|e| e.file_name().to_str()?.parse().ok()).collect();
    pids.sort();
    for p in pids {
        if std::fs::read_link(format!("/proc/{p}/ns/pid")).ok().as_ref() != Some(&namespace) {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/status")) else { continue };
        let field = |name: &str| stat.lines().find_map(|l| l.strip_prefix(name)).and_then(|v| v.split_whitespace().next()).unwrap_or("?").to_string();
        let cmdline = std::fs::read(format!("/proc/{p}/cmdline")).unwrap_or_default();
        let cmd = String::from_utf8_lossy(&cmdline).split('\0').filter(|s| !s.is_empty()).collect::<Vec<_>>().join(" ");
        table.add_row([p.to_string(), field("PPid:"), field("Uid:"), cmd]);
    }
    crate::ps::print_table(&mut table);
    Ok(())
}
