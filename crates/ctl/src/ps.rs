//! `berthctl ps`: the containers berthd runs, as `docker ps` lists them:
//! running ones (all with `-a`), filtered by `--filter KEY=VALUE`, printed
//! as a table, ids only (`-q`), JSON lines (`--format json`) or a template
//! of `{{.Field}}`s (`--format '{{.Names}} {{.Status}}'`).

use std::{collections::HashMap, path::Path};

use clap::Args;
use comfy_table::{presets::NOTHING, Table};
use k8s_cri::v1;
use serde_json::json;

use crate::{
    client::rpc_error,
    containers::{clients, status},
};

#[derive(Args)]
pub struct PsArgs {
    /// All containers, not only running ones.
    #[arg(short, long)]
    pub all: bool,
    /// Only the container ids.
    #[arg(short, long)]
    pub quiet: bool,
    /// `name=NAME`, `id=PREFIX`, `status=created|running|exited`,
    /// `label=KEY` or `label=KEY=VALUE`, `pod=ID`; all must hold.
    #[arg(short, long, value_parser = parse_filter)]
    pub filter: Vec<(String, String)>,
    /// `table` (default), `json` (one object a line), or a template of
    /// fields: {{.ID}} {{.FullID}} {{.Image}} {{.CreatedAt}} {{.Status}} {{.State}} {{.Names}} {{.Pod}} {{.FullPod}}
    /// {{.Restarts}} (the container's attempt: how often it was restarted).
    #[arg(long)]
    pub format: Option<String>,
}

const FILTER_KEYS: [&str; 5] = ["name", "id", "status", "label", "pod"];

fn parse_filter(s: &str) -> Result<(String, String), String> {
    let (key, value) = s.split_once('=').ok_or_else(|| format!("{s:?} is not KEY=VALUE"))?;
    if !FILTER_KEYS.contains(&key) {
        return Err(format!("{s:?}: {key:?} is not one of {}", FILTER_KEYS.join(", ")));
    }
    if key == "status" && !["created", "running", "exited"].contains(&value) {
        return Err(format!("{s:?}: status is created, running or exited"));
    }
    Ok((key.to_string(), value.to_string()))
}

/// One listed container, with the fields the formats print.
struct Row {
    fields: HashMap<&'static str, String>,
    labels: HashMap<String, String>,
}

pub async fn run(socket: &Path, args: PsArgs) -> anyhow::Result<()> {
    let mut c = clients(socket).await?;
    let containers = c.rt.list_containers(v1::ListContainersRequest::default()).await.map_err(rpc_error("list containers"))?.into_inner().containers;
    let images: HashMap<String, String> = c
        .img
        .list_images(v1::ListImagesRequest::default())
        .await
        .map_err(rpc_error("list images"))?
        .into_inner()
        .images
        .into_iter()
        .map(|i| (i.id.clone(), i.repo_tags.first().cloned().unwrap_or(i.id)))
        .collect();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as i64).unwrap_or(0);
    let mut rows = Vec::new();
    for ctr in containers {
        let st = status(&mut c.rt, &ctr.id).await?;
        let state = state_name(st.state);
        let row = Row {
            fields: HashMap::from([
                ("ID", ctr.id[..12.min(ctr.id.len())].to_string()),
                ("FullID", ctr.id.clone()),
                ("Image", images.get(&ctr.image_id).cloned().unwrap_or_else(|| ctr.image_ref.clone())),
                ("CreatedAt", format!("{} ago", span(now - ctr.created_at))),
                ("Status", status_text(&st, now)),
                ("State", state.to_string()),
                ("Names", ctr.metadata.as_ref().map(|m| m.name.clone()).unwrap_or_default()),
                ("Pod", ctr.pod_sandbox_id[..12.min(ctr.pod_sandbox_id.len())].to_string()),
                ("FullPod", ctr.pod_sandbox_id.clone()),
                ("Restarts", ctr.metadata.as_ref().map_or(0, |m| m.attempt).to_string()),
            ]),
            labels: ctr.labels.clone(),
        };
        if (args.all || state == "running") && args.filter.iter().all(|(k, v)| matches(&row, k, v)) {
            rows.push(row);
        }
    }
    print(&rows, &args)
}

fn matches(row: &Row, key: &str, value: &str) -> bool {
    match key {
        "name" => row.fields["Names"] == value,
        "id" => row.fields["FullID"].starts_with(value),
        "status" => row.fields["State"] == value,
        "pod" => row.fields["FullPod"].starts_with(value),
        "label" => match value.split_once('=') {
            Some((k, v)) => row.labels.get(k).is_some_and(|l| l == v),
            None => row.labels.contains_key(value),
        },
        _ => false,
    }
}

fn print(rows: &[Row], args: &PsArgs) -> anyhow::Result<()> {
    if args.quiet {
        for r in rows {
            println!("{}", r.fields["ID"]);
        }
        return Ok(());
    }
    match args.format.as_deref() {
        None | Some("table") => {
            let mut table = Table::new();
            table.load_preset(NOTHING).set_header(["CONTAINER", "IMAGE", "STATUS", "CREATED", "NAME", "POD", "RESTARTS"]);
            for r in rows {
                table.add_row(["ID", "Image", "Status", "CreatedAt", "Names", "Pod", "Restarts"].map(|f| r.fields[f].clone()));
            }
            print_table(&mut table);
        }
        Some("json") => {
            for r in rows {
                let object: serde_json::Map<String, serde_json::Value> = r.fields.iter().map(|(k, v)| (k.to_string(), json!(v))).collect();
                println!("{}", serde_json::Value::Object(object));
            }
        }
        Some(template) => {
            for r in rows {
                println!("{}", render(template, &r.fields)?);
            }
        }
    }
    Ok(())
}

/// A table as docker prints one: columns two spaces apart, flush left.
pub fn print_table(table: &mut Table) {
    for column in table.column_iter_mut() {
        column.set_padding((0, 2));
    }
    for line in table.lines() {
        println!("{}", line.trim_end());
    }
}

/// Replaces each `{{.Field}}` (spaces allowed inside the braces); an
/// unknown field is an error naming it.
fn render(template: &str, fields: &HashMap<&'static str, String>) -> anyhow::Result<String> {
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let end = rest[start..].find("}}").ok_or_else(|| anyhow::anyhow!("--format: unclosed {{{{ in {template:?}"))? + start;
        let name = rest[start + 2..end].trim().trim_start_matches('.');
        let value = fields
            .get(name)
            .ok_or_else(|| anyhow::anyhow!("--format: no field {name:?} (ID, FullID, Image, CreatedAt, Status, State, Names, Pod, FullPod, Restarts)"))?;
        out.push_str(value);
        rest = &rest[end + 2..];
    }
    out.push_str(rest);
    Ok(out.replace("\\t", "\t"))
}

/// `created`, `running`, `exited` (`unknown` for anything else).
pub(crate) fn state_name(state: i32) -> &'static str {
    match v1::ContainerState::try_from(state) {
        Ok(v1::ContainerState::ContainerCreated) => "created",
        Ok(v1::ContainerState::ContainerRunning) => "running",
        Ok(v1::ContainerState::ContainerExited) => "exited",
        _ => "unknown",
    }
}

/// Docker's STATUS column: `Up 5 minutes`, `Exited (3) 2 seconds ago`,
/// `Created`.
fn status_text(st: &v1::ContainerStatus, now: i64) -> String {
    match v1::ContainerState::try_from(st.state) {
        Ok(v1::ContainerState::ContainerCreated) => "Created".into(),
        Ok(v1::ContainerState::ContainerRunning) => format!("Up {}", span(now - st.started_at)),
        Ok(v1::ContainerState::ContainerExited) => format!("Exited ({}) {} ago", st.exit_code, span(now - st.finished_at)),
        _ => "Unknown".into(),
    }
}

/// A duration in nanoseconds as people say it: `5 seconds`, `3 minutes`.
pub(crate) fn span(nanos: i64) -> String {
    let secs = (nanos / 1_000_000_000).max(0);
    let (n, unit) = match secs {
        0..=59 => (secs, "second"),
        60..=3599 => (secs / 60, "minute"),
        3600..=86399 => (secs / 3600, "hour"),
        _ => (secs / 86400, "day"),
    };
    format!("{n} {unit}{}", if n == 1 { "" } else { "s" })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_and_filters() {
        let fields = HashMap::from([("ID", "abc".to_string()), ("Names", "web".to_string())]);
        assert_eq!(render("{{.ID}}\\t{{ .Names }}!", &fields).unwrap(), "abc\tweb!");
        assert!(render("{{.Nope}}", &fields).unwrap_err().to_string().contains("no field \"Nope\""));
        assert!(render("{{.ID", &fields).is_err());
        assert!(parse_filter("status=running").is_ok());
        assert!(parse_filter("status=dead").is_err() && parse_filter("color=red").is_err() && parse_filter("name").is_err());
        assert_eq!(span(61_000_000_000), "1 minute");
    }
}
