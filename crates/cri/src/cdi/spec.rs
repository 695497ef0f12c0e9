//! A CDI spec file (JSON or YAML) as written by a device plugin or a DRA
//! driver: a kind, its devices, and the container edits the spec and each
//! device bring.
//!
//! Edits berth does not apply (`hooks`, `intelRdt`, `netDevices`) are still
//! read, so a device that needs them is refused by name instead of being
//! injected half; an edit field berth does not know at all fails the file,
//! for the same reason.

use std::{collections::BTreeMap, path::Path};

use serde::Deserialize;

use super::names;

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SpecFile {
    pub cdi_version: String,
    pub kind: String,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    pub devices: Vec<DeviceSpec>,
    #[serde(default)]
    pub container_edits: ContainerEdits,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceSpec {
    pub name: String,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    pub container_edits: ContainerEdits,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct ContainerEdits {
    pub env: Vec<String>,
    pub device_nodes: Vec<DeviceNode>,
    pub mounts: Vec<MountEdit>,
    #[serde(rename = "additionalGIDs")]
    pub additional_gids: Vec<u32>,
    /// hooks, intelRdt and netDevices are not applied by berth: read only
    /// to be refused.
    pub hooks: Vec<serde_json::Value>,
    pub intel_rdt: Option<serde_json::Value>,
    pub net_devices: Vec<serde_json::Value>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct DeviceNode {
    /// Required; an empty one is refused when the device is resolved.
    pub path: String,
    pub host_path: Option<String>,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub major: Option<i64>,
    pub minor: Option<i64>,
    pub file_mode: Option<u32>,
    pub permissions: Option<String>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MountEdit {
    pub host_path: String,
    pub container_path: String,
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    #[serde(default)]
    pub options: Vec<String>,
}

impl ContainerEdits {
    /// The edits berth cannot apply, by their spec field name.
    pub fn unsupported(&self) -> Vec<&'static str> {
        let mut found = Vec::new();
        if !self.hooks.is_empty() {
            found.push("hooks");
        }
        if self.intel_rdt.is_some() {
            found.push("intelRdt");
        }
        if !self.net_devices.is_empty() {
            found.push("netDevices");
        }
        found
    }
}

/// Parses one spec file by its extension (`.json`, or `.yaml`/`.yml`),
/// then checks its version, kind and device names.
pub fn parse(path: &Path, text: &str) -> Result<SpecFile, String> {
    let spec: SpecFile = match path.extension().and_then(|e| e.to_str()) {
        Some("json") => serde_json::from_str(text).map_err(|e| e.to_string())?,
        _ => serde_norway::from_str(text).map_err(|e| e.to_string())?,
    };
    check_version(&spec.cdi_version)?;
    names::parse_kind(&spec.kind)?;
    let mut seen = std::collections::HashSet::new();
    for d in &spec.devices {
        names::check_device_name(&d.name).map_err(|e| format!("devices: {e}"))?;
        if !seen.insert(d.name.as_str()) {
            return Err(format!("devices: {:?} is defined twice", d.name));
        }
    }
    Ok(spec)
}

/// CDI versions are 0.x.y and 1.x.y so far; a later major version may mean
/// things berth does not know.
fn check_version(version: &str) -> Result<(), String> {
    let mut parts = version.split('.');
    let major = parts.next().and_then(|m| m.parse::<u32>().ok());
    let rest_ok = parts.all(|p| p.parse::<u32>().is_ok());
    match major {
        Some(0 | 1) if rest_ok => Ok(()),
        _ => Err(format!("cdiVersion {version:?} is not a CDI version berth knows (0.x.y or 1.x.y)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const YAML: &str = r#"
cdiVersion: "0.6.0"
kind: vendor.example/gpu
containerEdits:
  env: ["GPU_DRIVER=1"]
devices:
  - name: "0"
    containerEdits:
      deviceNodes:
        - path: /dev/gpu0
          hostPath: /dev/null
          type: c
          major: 1
          minor: 3
          fileMode: 0o640
          permissions: rw
          uid: 1000
          gid: 44
      mounts:
        - hostPath: /opt/gpu/lib
          containerPath: /usr/lib/gpu
          options: [ro, rbind]
      additionalGIDs: [44]
"#;

    #[test]
    fn yaml_and_json_specs_parse_with_every_edit() {
        let spec = parse(Path::new("/etc/cdi/gpu.yaml"), YAML).unwrap();
        assert_eq!(spec.kind, "vendor.example/gpu");
        assert_eq!(spec.container_edits.env, ["GPU_DRIVER=1"]);
        let edits = &spec.devices[0].container_edits;
        let node = &edits.device_nodes[0];
        assert_eq!((node.major, node.minor, node.file_mode, node.uid, node.gid), (Some(1), Some(3), Some(0o640), Some(1000), Some(44)));
        assert_eq!(node.permissions.as_deref(), Some("rw"));
        assert_eq!(edits.mounts[0].options, ["ro", "rbind"]);
        assert_eq!(edits.additional_gids, [44]);
        assert!(edits.unsupported().is_empty());

        let json = r#"{"cdiVersion":"1.0.0","kind":"vendor.example/net","devices":[{"name":"a","containerEdits":{"env":["A=1"],
            "hooks":[{"hookName":"createContainer","path":"/bin/true"}]}}]}"#;
        let spec = parse(Path::new("/etc/cdi/net.json"), json).unwrap();
        assert_eq!(spec.devices[0].container_edits.unsupported(), ["hooks"]);
    }

    #[test]
    fn bad_files_say_what_is_wrong() {
        let p = Path::new("x.yaml");
        let err = |text: &str| parse(p, text).unwrap_err();
        assert!(err("cdiVersion: \"2.0.0\"\nkind: a.b/c\ndevices: []\n").contains("cdiVersion \"2.0.0\""));
        assert!(err("cdiVersion: \"0.6.0\"\nkind: nokind\ndevices: []\n").contains("kind \"nokind\""));
        assert!(err("cdiVersion: \"0.6.0\"\nkind: a.b/c\ndevices: [{name: \"-x\", containerEdits: {}}]\n").contains("devices: the device name"));
        let twice = "cdiVersion: \"0.6.0\"\nkind: a.b/c\ndevices: [{name: x, containerEdits: {}}, {name: x, containerEdits: {}}]\n";
        assert!(err(twice).contains("defined twice"));
        // An edit berth does not know is not skipped.
        assert!(err("cdiVersion: \"0.6.0\"\nkind: a.b/c\ndevices: [{name: x, containerEdits: {rlimits: []}}]\n").contains("rlimits"));
        assert!(err("{not yaml: [").contains("line"));
    }
}
