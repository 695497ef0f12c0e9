//! Registry credentials where Docker keeps them: `$DOCKER_CONFIG/config.json`
//! (default `~/.docker/config.json`), `{"auths": {"host:port": {"auth":
//! base64("user:password")}}}`, mode 0600. `login` and `logout` edit that
//! entry and keep every other key of the file; `push` and `pull` send the
//! entry of the image's registry when there is one (berthd otherwise uses
//! its own `registry.auth_file`, by default root's file).

use std::{
    io::Write,
    os::unix::fs::{OpenOptionsExt, PermissionsExt},
    path::PathBuf,
};

use anyhow::Context;
use base64::Engine;
use serde_json::{Map, Value};

/// Docker files Docker Hub under its v1 URL; so does berthctl.
const DOCKER_HUB_KEY: &str = "https://index.docker.io/v1/";

pub fn config_file() -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir).join("config.json"));
    }
    let home = std::env::var_os("HOME").filter(|h| !h.is_empty()).context("neither DOCKER_CONFIG nor HOME is set")?;
    Ok(PathBuf::from(home).join(".docker/config.json"))
}

/// `host[:port]` from what a user types after `login`: `r.io:5000`,
/// `https://r.io:5000/v2/`, `docker.io`. A usage error names it.
pub fn registry_arg(s: &str) -> Result<String, String> {
    let bare = s.strip_prefix("https://").or_else(|| s.strip_prefix("http://")).unwrap_or(s);
    let host = bare.split('/').next().unwrap_or("");
    // A host is what a reference takes for its registry part.
    let valid = !host.is_empty()
        && host.chars().all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c))
        && berth_image::reference::parse(&format!("{host}/x")).is_ok_and(|r| r.registry().eq_ignore_ascii_case(host) || is_hub(host));
    if !valid {
        return Err(format!("{s:?} is not a registry host (host[:port])"));
    }
    Ok(if is_hub(host) { "docker.io".into() } else { host.to_ascii_lowercase() })
}

fn is_hub(host: &str) -> bool {
    matches!(host.to_ascii_lowercase().as_str(), "docker.io" | "index.docker.io" | "registry-1.docker.io")
}

fn key_of(registry: &str) -> String {
    if registry == "docker.io" {
        DOCKER_HUB_KEY.into()
    } else {
        registry.into()
    }
}

/// The host part of a config.json key, as `registry_arg` normalises it.
fn host_of_key(key: &str) -> String {
    registry_arg(key).unwrap_or_else(|_| key.to_string())
}

fn read(file: &PathBuf) -> anyhow::Result<Map<String, Value>> {
    match std::fs::read(file) {
        Ok(bytes) if bytes.iter().all(u8::is_ascii_whitespace) => Ok(Map::new()),
        Ok(bytes) => match serde_json::from_slice(&bytes).with_context(|| format!("{} is not JSON", file.display()))? {
            Value::Object(map) => Ok(map),
            _ => anyhow::bail!("{} is not a JSON object", file.display()),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Map::new()),
        Err(e) => Err(e).with_context(|| format!("read {}", file.display())),
    }
}

/// Written whole to a temp file of mode 0600 beside it, then renamed.
fn write(file: &PathBuf, config: &Map<String, Value>) -> anyhow::Result<()> {
    let dir = file.parent().context("the config file has no directory")?;
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    let temp = dir.join(format!(".config.json.{}", std::process::id()));
    let mut out =
        std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&temp).with_context(|| format!("create {}", temp.display()))?;
    out.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    out.write_all(&serde_json::to_vec_pretty(&Value::Object(config.clone()))?)?;
    out.write_all(b"\n")?;
    out.sync_all()?;
    std::fs::rename(&temp, file).with_context(|| format!("write {}", file.display()))
}

/// Stores `user` and `password` for `registry`; returns the file.
pub fn store(registry: &str, user: &str, password: &str) -> anyhow::Result<PathBuf> {
    let file = config_file()?;
    let mut config = read(&file)?;
    let auths = config.entry("auths").or_insert_with(|| Value::Object(Map::new()));
    let auths = auths.as_object_mut().with_context(|| format!("{}: auths is not an object", file.display()))?;
    auths.retain(|k, _| host_of_key(k) != registry);
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    auths.insert(key_of(registry), serde_json::json!({ "auth": encoded }));
    write(&file, &config)?;
    Ok(file)
}

/// Removes `registry`'s entry; whether there was one.
pub fn remove(registry: &str) -> anyhow::Result<bool> {
    let file = config_file()?;
    let mut config = read(&file)?;
    let Some(Value::Object(auths)) = config.get_mut("auths") else { return Ok(false) };
    let before = auths.len();
    auths.retain(|k, _| host_of_key(k) != registry);
    if auths.len() == before {
        return Ok(false);
    }
    write(&file, &config)?;
    Ok(true)
}

/// The stored user and password for the registry `image` names, if any.
pub fn for_image(image: &str) -> anyhow::Result<Option<(String, String)>> {
    let Ok(reference) = berth_image::reference::parse(image) else { return Ok(None) };
    let file = config_file()?;
    let config = read(&file)?;
    let Some(Value::Object(auths)) = config.get("auths") else { return Ok(None) };
    let registry = registry_arg(reference.registry()).unwrap_or_default();
    let Some(entry) = auths.iter().find(|(k, _)| host_of_key(k) == registry).map(|(_, v)| v) else { return Ok(None) };
    let Some(encoded) = entry.get("auth").and_then(Value::as_str) else { return Ok(None) };
    let decoded = base64::engine::general_purpose::STANDARD.decode(encoded.trim()).ok().and_then(|d| String::from_utf8(d).ok());
    let pair = decoded
        .as_deref()
        .and_then(|d| d.split_once(':'))
        .with_context(|| format!("{}: the entry of {registry} is not base64 of user:password", file.display()))?;
    Ok(Some((pair.0.to_string(), pair.1.to_string())))
}

/// An image name for clap: a malformed one is a usage error naming it.
pub fn image_arg(s: &str) -> Result<String, String> {
    berth_image::reference::parse(s).map(|_| s.to_string()).map_err(|e| format!("{s:?} is not an image reference: {e}"))
}

/// A name to give an image (`tag`'s target, `push`'s image): a reference
/// with a tag or none, not a digest.
pub fn tag_arg(s: &str) -> Result<String, String> {
    let reference = berth_image::reference::parse(s).map_err(|e| format!("{s:?} is not an image reference: {e}"))?;
    match reference.digest() {
        Some(_) => Err(format!("{s:?} names a digest; give a tag (NAME[:TAG])")),
        None => Ok(s.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registries_are_hosts_in_any_spelling() {
        assert_eq!(registry_arg("127.0.0.1:5000").unwrap(), "127.0.0.1:5000");
        assert_eq!(registry_arg("https://R.io:5000/v2/").unwrap(), "r.io:5000");
        assert_eq!(registry_arg("https://index.docker.io/v1/").unwrap(), "docker.io");
        assert_eq!(registry_arg("docker.io").unwrap(), "docker.io");
        for bad in ["", "bad host", "a!b", "https://", "host:port:9"] {
            assert!(registry_arg(bad).is_err(), "{bad}");
        }
    }
}
