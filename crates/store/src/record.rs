//! Versioned JSON records: `{"version": N, "data": {...}}`. A record written
//! by a newer berth (higher version) is refused rather than misread.

use std::path::Path;

use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::{
    atomic::atomic_write,
    error::{Error, Result},
};

/// A type stored as a record, with the schema version it is written at.
pub trait Versioned: Serialize + DeserializeOwned {
    const VERSION: u32;
}

#[derive(Serialize)]
struct Envelope<'a, T> {
    version: u32,
    data: &'a T,
}

#[derive(Deserialize)]
struct RawEnvelope {
    version: u32,
    data: serde_json::Value,
}

pub fn save_record<T: Versioned>(path: &Path, value: &T) -> Result<()> {
    let bytes = serde_json::to_vec_pretty(&Envelope { version: T::VERSION, data: value })
        .map_err(|e| Error::Corrupt { path: path.into(), reason: format!("encode: {e}") })?;
    atomic_write(path, &bytes, 0o600)
}

pub fn load_record<T: Versioned>(path: &Path) -> Result<T> {
    let bytes = std::fs::read(path).map_err(Error::io("read", path))?;
    let raw: RawEnvelope = serde_json::from_slice(&bytes).map_err(|e| Error::Corrupt { path: path.into(), reason: e.to_string() })?;
    if raw.version > T::VERSION {
        return Err(Error::TooNew { path: path.into(), found: raw.version, supported: T::VERSION });
    }
    serde_json::from_value(raw.data).map_err(|e| Error::Corrupt { path: path.into(), reason: e.to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Pod {
        name: String,
        #[serde(default)]
        ip: Option<String>,
    }

    impl Versioned for Pod {
        const VERSION: u32 = 2;
    }

    #[test]
    fn round_trip_and_older_versions_load() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pod.json");
        let pod = Pod { name: "web".into(), ip: Some("10.88.0.2".into()) };
        save_record(&path, &pod).unwrap();
        assert_eq!(load_record::<Pod>(&path).unwrap(), pod);
        std::fs::write(&path, r#"{"version":1,"data":{"name":"old"}}"#).unwrap();
        assert_eq!(load_record::<Pod>(&path).unwrap(), Pod { name: "old".into(), ip: None });
    }

    #[test]
    fn newer_and_corrupt_records_are_refused_with_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pod.json");
        std::fs::write(&path, r#"{"version":3,"data":{"name":"future"}}"#).unwrap();
        let e = load_record::<Pod>(&path).unwrap_err();
        assert!(matches!(e, Error::TooNew { found: 3, supported: 2, .. }), "{e}");
        std::fs::write(&path, b"{\"version\":2,\"da").unwrap();
        let e = load_record::<Pod>(&path).unwrap_err().to_string();
        assert!(e.contains("pod.json") && e.contains("corrupt"), "{e}");
        assert!(load_record::<Pod>(&dir.path().join("none.json")).unwrap_err().is_not_found());
    }
}
