//! `berthctl history IMAGE`: the image's layers and the steps that made
//! them, newest first, as `docker history` shows them. SIZE is the
//! layer's stored (compressed) size.

use std::path::Path;

use berth_api::admin::v1::{images_client::ImagesClient, HistoryRequest};

use crate::client::{connect, rpc_error};

pub async fn history(socket: &Path, image: &str, no_trunc: bool) -> anyhow::Result<()> {
    let mut client = ImagesClient::new(connect(socket).await?);
    let answer = client.history(HistoryRequest { image: image.into() }).await.map_err(rpc_error("history"))?.into_inner();
    let now = chrono::Utc::now();
    println!("{:<14} {:<16} {:<48} {:>10}  COMMENT", "IMAGE", "CREATED", "CREATED BY", "SIZE");
    for (i, entry) in answer.entries.iter().enumerate() {
        let id = if i == 0 { answer.image_id.trim_start_matches("sha256:").chars().take(12).collect() } else { "<missing>".to_string() };
        let created = match chrono::DateTime::parse_from_rfc3339(&entry.created) {
            Ok(t) => format!("{} ago", crate::ps::span((now - t.with_timezone(&chrono::Utc)).num_nanoseconds().unwrap_or(i64::MAX))),
            Err(_) => "<unknown>".into(),
        };
        let by = entry.created_by.replace('\n', " ");
        let by = if no_trunc || by.chars().count() <= 45 { by } else { format!("{}...", by.chars().take(45).collect::<String>()) };
        let size = if entry.empty_layer { "0 B".to_string() } else { human(entry.size) };
        println!("{id:<14} {created:<16} {by:<48} {size:>10}  {}", entry.comment);
    }
    Ok(())
}

fn human(bytes: u64) -> String {
    match bytes {
        0..=999 => format!("{bytes} B"),
        1000..=999_999 => format!("{:.1} kB", bytes as f64 / 1e3),
        _ => format!("{:.1} MB", bytes as f64 / 1e6),
    }
}
