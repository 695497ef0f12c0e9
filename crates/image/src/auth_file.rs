//! Registry credentials stored the way Docker stores them
//! (`~/.docker/config.json`, written by `docker login` and `berthctl
//! login`): `{"auths": {"host:port": {"auth": base64("user:password")}}}`.
//! berthd reads its `registry.auth_file` at each pull or push that names
//! no credentials, so a login takes effect without a restart.

use std::path::Path;

use base64::Engine;

use crate::error::{Error, Result};

/// Docker Hub's host names (`docker login` files it under
/// `https://index.docker.io/v1/`).
const DOCKER_HUB: [&str; 3] = ["docker.io", "index.docker.io", "registry-1.docker.io"];

/// The user and password stored for `registry` (`host[:port]`, as a
/// reference names it), if the file exists and has an entry for it.
pub fn credentials(path: &Path, registry: &str) -> Result<Option<(String, String)>> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io("read", path)(e)),
    };
    let bad = |reason: String| Error::AuthFile { path: path.to_path_buf(), reason };
    let value: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| bad(format!("not JSON: {e}")))?;
    let Some(auths) = value.get("auths") else { return Ok(None) };
    let auths = auths.as_object().ok_or_else(|| bad("auths is not an object".into()))?;
    let wanted = host_key(registry);
    let Some((key, entry)) = auths.iter().find(|(key, _)| host_key(key) == wanted) else {
        return Ok(None);
    };
    if let Some(encoded) = entry.get("auth").and_then(|a| a.as_str()).filter(|a| !a.is_empty()) {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .ok()
            .and_then(|d| String::from_utf8(d).ok())
            .ok_or_else(|| bad(format!("auths.{key:?}.auth is not base64 of user:password")))?;
        let (user, password) = decoded.split_once(':').ok_or_else(|| bad(format!("auths.{key:?}.auth is not base64 of user:password")))?;
        return Ok(Some((user.to_string(), password.to_string())));
    }
    let field = |name: &str| entry.get(name).and_then(|v| v.as_str()).unwrap_or("").to_string();
    let (user, password) = (field("username"), field("password"));
    Ok((!user.is_empty()).then_some((user, password)))
}

/// `https://host:port/v1/` and `host:port` name the same registry.
pub fn host_key(key: &str) -> String {
    let bare = key.strip_prefix("https://").or_else(|| key.strip_prefix("http://")).unwrap_or(key);
    let host = bare.split('/').next().unwrap_or("").to_ascii_lowercase();
    if DOCKER_HUB.contains(&host.as_str()) {
        return "docker.io".into();
    }
    host
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_found_by_host_in_every_spelling() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("config.json");
        assert_eq!(credentials(&file, "r:5000").unwrap(), None, "no file, no credentials");
        let auth = base64::engine::general_purpose::STANDARD.encode("u:p:w");
        std::fs::write(
            &file,
            format!(r#"{{"auths": {{"https://r:5000/v1/": {{"auth": "{auth}"}}, "https://index.docker.io/v1/": {{"auth": "{auth}"}}, "o:1": {{"username": "a", "password": "b"}}}}}}"#),
        )
        .unwrap();
        assert_eq!(credentials(&file, "r:5000").unwrap(), Some(("u".into(), "p:w".into())));
        assert_eq!(credentials(&file, "docker.io").unwrap(), Some(("u".into(), "p:w".into())));
        assert_eq!(credentials(&file, "o:1").unwrap(), Some(("a".into(), "b".into())));
        assert_eq!(credentials(&file, "r:5001").unwrap(), None);
        std::fs::write(&file, r#"{"auths": {"r:5000": {"auth": "%%%"}}}"#).unwrap();
        assert!(credentials(&file, "r:5000").unwrap_err().to_string().contains("base64"));
    }
}
