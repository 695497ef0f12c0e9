//! `berthctl cp CONTAINER:SRC DEST` and `berthctl cp SRC CONTAINER:DEST`,
//! as `docker cp`: files and directories, `-` for a tar stream on stdout
//! or stdin. The work inside the container is berthd's (admin API,
//! Containers.CopyFrom/CopyTo): paths resolve inside the container's root
//! and the container needs no tar. Owner, mode and mtime are kept both
//! ways (what `docker cp -a` does). Only a running container.

use std::{
    io::Write,
    path::{Path, PathBuf},
};

use anyhow::Context;
use berth_api::admin::v1::{containers_client::ContainersClient, CopyFromRequest, CopyToChunk};
use berth_api::chunks::{ChunkReader, ChunkWriter};
use clap::Args;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::{
    client::{connect, rpc_error},
    containers::clients,
    resolve,
};

#[derive(Args)]
pub struct CpArgs {
    /// `CONTAINER:PATH`, a local path, or `-` (a tar stream on stdin).
    #[arg(value_parser = location)]
    pub source: Location,
    /// `CONTAINER:PATH`, a local path, or `-` (a tar stream on stdout).
    #[arg(value_parser = location)]
    pub dest: Location,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Location {
    Local(PathBuf),
    Container { name: String, path: String },
    Stdio,
}

/// As docker reads it: `NAME:PATH` when what is before the first `:` is
/// a name (not empty, no `/`, not starting with `.`); otherwise a local
/// path (write `./a:b` for a local file with a colon).
pub fn location(arg: &str) -> Result<Location, String> {
    if arg.is_empty() {
        return Err("an empty path".into());
    }
    if arg == "-" {
        return Ok(Location::Stdio);
    }
    match arg.split_once(':') {
        Some((name, path)) if !name.is_empty() && !name.contains('/') && !name.starts_with('.') => {
            if path.is_empty() {
                return Err(format!("{arg:?}: a path in the container after the colon"));
            }
            // Relative paths are taken from the container's `/`.
            let path = if path.starts_with('/') { path.to_string() } else { format!("/{path}") };
            Ok(Location::Container { name: name.into(), path })
        }
        _ => Ok(Location::Local(PathBuf::from(arg))),
    }
}

/// A usage error (status 2), as clap's own.
fn usage(message: &str) -> ! {
    clap::Error::raw(clap::error::ErrorKind::ArgumentConflict, format!("{message}\n")).exit()
}

pub async fn run(socket: &Path, args: CpArgs) -> anyhow::Result<()> {
    match (args.source, args.dest) {
        (Location::Container { name, path }, dest @ (Location::Local(_) | Location::Stdio)) => copy_out(socket, &name, &path, dest).await,
        (source @ (Location::Local(_) | Location::Stdio), Location::Container { name, path }) => copy_in(socket, source, &name, &path).await,
        (Location::Container { .. }, Location::Container { .. }) => usage("cp: copying between two containers is not supported; one side must be local"),
        _ => usage("cp: one of SOURCE and DEST must be CONTAINER:PATH"),
    }
}

/// The last name of `path` (`None` for `/`, `.` or `..` at the end).
fn base_name(path: &str) -> Option<String> {
    match Path::new(path).components().next_back()? {
        std::path::Component::Normal(n) => Some(n.to_string_lossy().into_owned()),
        _ => None,
    }
}

/// `path` names a directory's contents (`dir/.`), or is the root.
fn contents_of(path: &str) -> bool {
    path.ends_with("/.") || base_name(path).is_none()
}

async fn copy_out(socket: &Path, reference: &str, path: &str, dest: Location) -> anyhow::Result<()> {
    let mut c = clients(socket).await?;
    let id = resolve::container(&mut c.rt, reference).await?.id;
    // Where the archive unpacks, and the name its top entry gets.
    let (into, name) = match &dest {
        Location::Stdio => (None, String::new()),
        Location::Local(dest) if dest.is_dir() => (Some(dest.clone()), if contents_of(path) { ".".into() } else { String::new() }),
        Location::Local(dest) => {
            let name = dest.file_name().with_context(|| format!("{}: name a file or directory", dest.display()))?.to_string_lossy().into_owned();
            let parent = dest.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")).to_path_buf();
            anyhow::ensure!(parent.is_dir(), "{}: no such directory", parent.display());
            (Some(parent), name)
        }
        Location::Container { .. } => unreachable!("checked by the caller"),
    };
    let mut client = ContainersClient::new(connect(socket).await?);
    let request = CopyFromRequest { container_id: id, path: path.into(), name };
    let mut stream = client.copy_from(request).await.map_err(rpc_error(&format!("cp {reference}:{path}")))?.into_inner();
    let (tx, rx) = mpsc::channel(8);
    let unpacker = tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        let reader = ChunkReader::new(rx);
        match into {
            None => {
                let mut reader = reader;
                let mut out = std::io::stdout().lock();
                std::io::copy(&mut reader, &mut out)?;
                out.flush()?;
            }
            Some(dir) => {
                let mut archive = tar::Archive::new(reader);
                archive.set_preserve_permissions(true);
                archive.set_preserve_ownerships(true);
                archive.set_preserve_mtime(true);
                archive.set_overwrite(true);
                // unpack never writes outside `dir` (no `..`, no path
                // through a symlink it made).
                archive.unpack(&dir).with_context(|| format!("unpack into {}", dir.display()))?;
            }
        }
        Ok(())
    });
    let mut failed = None;
    loop {
        match stream.message().await {
            Ok(Some(chunk)) => {
                if tx.send(Ok(chunk.data)).await.is_err() {
                    break;
                }
            }
            Ok(None) => break,
            Err(status) => {
                failed = Some(rpc_error(&format!("cp {reference}:{path}"))(status));
                break;
            }
        }
    }
    drop(tx);
    let unpacked = unpacker.await?;
    if let Some(e) = failed {
        return Err(e);
    }
    unpacked
}

async fn copy_in(socket: &Path, source: Location, reference: &str, path: &str) -> anyhow::Result<()> {
    let mut c = clients(socket).await?;
    let id = resolve::container(&mut c.rt, reference).await?.id;
    let (name, local) = match &source {
        Location::Stdio => (".".to_string(), None),
        Location::Local(src) => {
            let meta = std::fs::symlink_metadata(src).with_context(|| format!("{}", src.display()))?;
            let text = src.to_string_lossy();
            let name = if meta.is_dir() && contents_of(&text) {
                ".".to_string()
            } else {
                base_name(&text).with_context(|| format!("{}: name a file or directory", src.display()))?
            };
            (name, Some(src.clone()))
        }
        Location::Container { .. } => unreachable!("checked by the caller"),
    };
    let (tx, rx) = mpsc::channel::<Vec<u8>>(8);
    let top = name.clone();
    let reader = tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        let mut sink = ChunkWriter::new(tx, |data| data, "berthd ended the copy");
        match local {
            None => {
                std::io::copy(&mut std::io::stdin().lock(), &mut sink).context("read stdin")?;
            }
            Some(src) => {
                let mut tar = tar::Builder::new(&mut sink);
                tar.follow_symlinks(false);
                tar.mode(tar::HeaderMode::Complete);
                if top == "." {
                    for entry in std::fs::read_dir(&src).with_context(|| format!("read {}", src.display()))? {
                        let entry = entry?;
                        append(&mut tar, &entry.path(), Path::new(&entry.file_name()))?;
                    }
                } else {
                    append(&mut tar, &src, Path::new(&top))?;
                }
                tar.finish()?;
            }
        }
        sink.flush()?;
        Ok(())
    });
    let mut first = Some((id, path.to_string(), name));
    let requests = tokio_stream::StreamExt::map(ReceiverStream::new(rx), move |data| match first.take() {
        Some((container_id, path, name)) => CopyToChunk { container_id, path, name, data },
        None => CopyToChunk { data, ..Default::default() },
    });
    let mut client = ContainersClient::new(connect(socket).await?);
    let sent = client.copy_to(requests).await;
    let read = reader.await?;
    sent.map_err(rpc_error(&format!("cp to {reference}:{path}")))?;
    read
}

/// `path` into the archive as `name`: a directory with all below it,
/// anything else as itself (a symlink as a link).
fn append(tar: &mut tar::Builder<&mut ChunkWriter<Vec<u8>>>, path: &Path, name: &Path) -> anyhow::Result<()> {
    let meta = std::fs::symlink_metadata(path).with_context(|| format!("{}", path.display()))?;
    if meta.is_dir() {
        tar.append_dir_all(name, path).with_context(|| format!("read {}", path.display()))?;
    } else {
        tar.append_path_with_name(path, name).with_context(|| format!("read {}", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_read_as_docker_reads_them() {
        assert_eq!(location("web:/etc/hosts"), Ok(Location::Container { name: "web".into(), path: "/etc/hosts".into() }));
        assert_eq!(location("web:tmp"), Ok(Location::Container { name: "web".into(), path: "/tmp".into() }));
        assert_eq!(location("./a:b"), Ok(Location::Local("./a:b".into())));
        assert_eq!(location("/x/a:b"), Ok(Location::Local("/x/a:b".into())));
        assert_eq!(location("-"), Ok(Location::Stdio));
        assert!(location("web:").is_err() && location("").is_err());
        assert!(contents_of("/a/.") && contents_of("/") && !contents_of("/a"));
        assert_eq!(base_name("/a/b/"), Some("b".into()));
    }
}
