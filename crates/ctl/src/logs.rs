//! `berthctl logs`: a container's CRI log file (`<time> <stream> <P|F>
//! <text>` lines, partial records joined), stdout to stdout and stderr to
//! stderr, as `docker logs` prints them: `--tail N`, `--since`,
//! `--timestamps`, `--follow`.

use std::{
    io::{Read, Seek, Write},
    path::Path,
    time::Duration,
};

use clap::Args;
use k8s_cri::v1::{self, runtime_service_client::RuntimeServiceClient};
use tonic::transport::Channel;

use crate::{
    containers::{clients, status},
    resolve,
};

#[derive(Args, Default, Clone)]
pub struct LogOptions {
    /// Keep printing until the container exits.
    #[arg(short, long)]
    pub follow: bool,
    /// Only the last N lines (of what there is when it starts).
    #[arg(long, value_name = "N")]
    pub tail: Option<usize>,
    /// Only lines since a time: RFC 3339 (`2026-11-30T17:00:00Z`) or a
    /// duration before now (`90s`, `10m`, `2h`).
    #[arg(long, value_parser = parse_since)]
    pub since: Option<String>,
    /// Each line with its time.
    #[arg(short, long)]
    pub timestamps: bool,
}

/// The cut-off as a log timestamp: CRI log times are RFC 3339 in UTC with
/// nine fraction digits, so they compare as strings.
fn parse_since(s: &str) -> Result<String, String> {
    let format = |t: chrono::DateTime<chrono::Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(format(t.with_timezone(&chrono::Utc)));
    }
    let (digits, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: i64 = digits.parse().map_err(|_| format!("{s:?} is neither an RFC 3339 time nor a duration such as 10m"))?;
    let secs = match unit {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        _ => return Err(format!("{s:?}: unit {unit:?} is not s, m or h")),
    };
    Ok(format(chrono::Utc::now() - chrono::Duration::seconds(secs)))
}

pub async fn run(socket: &Path, reference: &str, options: LogOptions) -> anyhow::Result<()> {
    let mut c = clients(socket).await?;
    let id = resolve::container(&mut c.rt, reference).await?.id;
    follow(&mut c.rt, &id, options.follow, &options).await.map(drop)
}

/// Prints the log; with `until_exit`, keeps following until the container
/// exited and returns its exit code.
pub async fn follow(rt: &mut RuntimeServiceClient<Channel>, id: &str, until_exit: bool, options: &LogOptions) -> anyhow::Result<i32> {
    let mut printer = LogPrinter { options: options.clone(), ..Default::default() };
    loop {
        let st = status(rt, id).await?;
        printer.print_new(&st.log_path)?;
        let running = st.state == v1::ContainerState::ContainerRunning as i32 || st.state == v1::ContainerState::ContainerCreated as i32;
        if !until_exit || !running {
            if !running {
                // The last lines may land just before the exit is recorded.
                printer.print_new(&st.log_path)?;
            }
            return Ok(st.exit_code);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One log record: its time, its stream (0 stdout, 1 stderr), its text.
type Record = (String, usize, String);

/// Reads a CRI log file incrementally. Partial (P) records are joined
/// until their full (F) record.
#[derive(Default)]
struct LogPrinter {
    options: LogOptions,
    offset: u64,
    pending: [String; 2],
    /// Whether the first read (the one `--tail` applies to) happened.
    started: bool,
}

impl LogPrinter {
    fn print_new(&mut self, path: &str) -> anyhow::Result<()> {
        if path.is_empty() {
            return Ok(());
        }
        let Ok(mut file) = std::fs::File::open(path) else { return Ok(()) };
        file.seek(std::io::SeekFrom::Start(self.offset))?;
        // Bytes, not a String: the log holds the container's output as it
        // wrote it, which need not be UTF-8 (read_to_string failed the
        // whole command on one such byte).
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        let (consumed, mut records) = self.records(&bytes);
        self.offset += consumed as u64;
        if let Some(since) = &self.options.since {
            records.retain(|(time, _, _)| time.as_str() >= since.as_str());
        }
        if let (Some(n), false) = (self.options.tail, self.started) {
            let skip = records.len().saturating_sub(n);
            records.drain(..skip);
        }
        self.started = true;
        let (mut out, mut err) = (std::io::stdout().lock(), std::io::stderr().lock());
        for (time, stream, text) in records {
            let line = if self.options.timestamps { format!("{time} {text}") } else { text };
            if stream == 1 {
                writeln!(err, "{line}")?;
            } else {
                writeln!(out, "{line}")?;
            }
        }
        Ok(())
    }

    /// The records in the whole lines of `bytes` (the log from `offset`
    /// on), partial (P) records joined to their full (F) one across calls;
    /// and how many bytes that was: the rest is a line still being
    /// written, read next time. Text that is not UTF-8 is shown with
    /// U+FFFD in its place.
    fn records(&mut self, bytes: &[u8]) -> (usize, Vec<Record>) {
        let complete = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        let mut records = Vec::new();
        // A blank line is no record (a CRI log line always has a time).
        for line in bytes[..complete].split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            let line = String::from_utf8_lossy(line.strip_suffix(b"\r").unwrap_or(line));
            let mut parts = line.splitn(4, ' ');
            let (time, stream, tag, msg) =
                (parts.next().unwrap_or(""), parts.next().unwrap_or("stdout"), parts.next().unwrap_or("F"), parts.next().unwrap_or(""));
            let i = usize::from(stream == "stderr");
            self.pending[i].push_str(msg);
            if tag == "F" {
                records.push((time.to_string(), i, std::mem::take(&mut self.pending[i])));
            }
        }
        (complete, records)
    }
}

/// The `cri_log` fuzz target (`crates/fuzz`): a CRI log file, whatever a
/// container wrote into it or a disk full cut off.
#[cfg(test)]
mod fuzz {
    use super::*;

    const LOG: &str = "2026-11-30T17:00:00.000000001Z stdout F hello\n\
                       2026-11-30T17:00:00.000000002Z stderr P part one \n\
                       2026-11-30T17:00:00.000000003Z stdout F out\n\
                       2026-11-30T17:00:00.000000004Z stderr F and two\r\n\
                       2026-11-30T17:00:00.000000005Z stdout F unfinished";

    #[test]
    fn cri_log() {
        berth_fuzz::Target::new("cri_log").seed("typical", LOG).seed("binary", b"2026-11-30T17:00:00Z stdout F \xff\xfe\x00\n".to_vec()).run(|input| {
            let (consumed, records) = LogPrinter::default().records(input);
            assert!(consumed == 0 || input[consumed - 1] == b'\n', "only whole lines are consumed");
            assert!(!input[consumed..].contains(&b'\n'), "every whole line is consumed");
            assert!(records.iter().all(|(_, stream, text)| *stream <= 1 && !text.contains('\n')));
            // `--follow` reads the file in pieces wherever the writer
            // happens to be: any cut must give the same records.
            let cut = input.first().map_or(0, |b| usize::from(*b) * input.len() / 256);
            let mut printer = LogPrinter::default();
            let (first, mut pieces) = printer.records(&input[..cut]);
            let rest = [&input[first..cut], &input[cut..]].concat();
            let (second, more) = printer.records(&rest);
            pieces.extend(more);
            assert_eq!(first + second, consumed);
            assert_eq!(pieces, records, "reading in two pieces changed the records");
        });
    }
}
