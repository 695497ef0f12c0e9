//! `berthctl stats`: CPU and memory of running containers, from the CRI's
//! ContainerStats (berth reads them from the containers' cgroups). A live
//! table refreshed every second on a terminal, or one table with
//! `--no-stream` (what scripts want).

use std::{collections::HashMap, io::IsTerminal, path::Path, time::Duration};

use comfy_table::{presets::NOTHING, Table};
use k8s_cri::v1::{self, runtime_service_client::RuntimeServiceClient};
use tonic::transport::Channel;

use crate::{client::rpc_error, containers::clients, resolve};

/// Between the two samples a CPU percentage is computed from.
const SAMPLE: Duration = Duration::from_millis(500);

pub async fn run(socket: &Path, references: Vec<String>, no_stream: bool) -> anyhow::Result<()> {
    let mut c = clients(socket).await?;
    let mut ids = Vec::new();
    for reference in &references {
        ids.push(resolve::container(&mut c.rt, reference).await?.id);
    }
    let live = !no_stream && std::io::stdout().is_terminal();
    loop {
        let mut table = sample(&mut c.rt, &ids).await?;
        if live {
            crossterm::execute!(std::io::stdout(), crossterm::terminal::Clear(crossterm::terminal::ClearType::All), crossterm::cursor::MoveTo(0, 0))?;
        }
        crate::ps::print_table(&mut table);
        if no_stream {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// One table: the named containers (all running ones when none is named),
/// CPU over [`SAMPLE`], memory as the kubelet counts it (working set).
async fn sample(rt: &mut RuntimeServiceClient<Channel>, ids: &[String]) -> anyhow::Result<Table> {
    let first = stats(rt, ids).await?;
    tokio::time::sleep(SAMPLE).await;
    let second = stats(rt, ids).await?;
    let before: HashMap<&str, (i64, u64)> = first.iter().map(|s| (id_of(s), cpu_of(s))).collect();
    let mut table = Table::new();
    table.load_preset(NOTHING).set_header(["CONTAINER", "NAME", "CPU %", "MEM USAGE", "MEM LIMIT"]);
    for s in &second {
        let (t1, cpu1) = cpu_of(s);
        let percent = match before.get(id_of(s)) {
            Some(&(t0, cpu0)) if t1 > t0 => (cpu1.saturating_sub(cpu0)) as f64 / (t1 - t0) as f64 * 100.0,
            _ => 0.0,
        };
        let memory = s.memory.as_ref();
        let used = memory.and_then(|m| m.working_set_bytes).map(|v| v.value).unwrap_or(0);
        let available = memory.and_then(|m| m.available_bytes).map(|v| v.value).filter(|v| *v > 0);
        let name = s.attributes.as_ref().and_then(|a| a.metadata.as_ref()).map(|m| m.name.clone()).unwrap_or_default();
        table.add_row([
            id_of(s)[..12.min(id_of(s).len())].to_string(),
            name,
            format!("{percent:.2}%"),
            human(used),
            available.map(|a| human(a + used)).unwrap_or_else(|| "-".into()),
        ]);
    }
    Ok(table)
}

async fn stats(rt: &mut RuntimeServiceClient<Channel>, ids: &[String]) -> anyhow::Result<Vec<v1::ContainerStats>> {
    if ids.is_empty() {
        let all = rt.list_container_stats(v1::ListContainerStatsRequest { filter: None }).await.map_err(rpc_error("container stats"))?;
        return Ok(all.into_inner().stats);
    }
    let mut out = Vec::new();
    for id in ids {
        let s = rt.container_stats(v1::ContainerStatsRequest { container_id: id.clone() }).await.map_err(rpc_error("container stats"))?;
        out.extend(s.into_inner().stats);
    }
    Ok(out)
}

fn id_of(s: &v1::ContainerStats) -> &str {
    s.attributes.as_ref().map(|a| a.id.as_str()).unwrap_or("")
}

/// (timestamp in ns, CPU time in ns) of a sample.
fn cpu_of(s: &v1::ContainerStats) -> (i64, u64) {
    s.cpu.as_ref().map(|c| (c.timestamp, c.usage_core_nano_seconds.map(|v| v.value).unwrap_or(0))).unwrap_or((0, 0))
}

/// `12.3MiB`, as docker prints sizes.
pub fn human(bytes: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < units.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes}B")
    } else {
        format!("{value:.1}{}", units[unit])
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn sizes_read_like_dockers() {
        assert_eq!(super::human(512), "512B");
        assert_eq!(super::human(1536), "1.5KiB");
        assert_eq!(super::human(300 << 20), "300.0MiB");
    }
}
