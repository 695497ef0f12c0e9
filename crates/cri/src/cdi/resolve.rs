//! From a container config to the edits its CDI devices bring: the names
//! it asks for (`CDI_devices`, and `cdi.k8s.io/*` annotations holding
//! comma-separated names, as older kubelets and device plugins send them),
//! looked up in the spec directories, with what the spec leaves out of a
//! device node (type, numbers, mode) read from the host's node.

use std::{
    collections::HashSet,
    os::unix::fs::{FileTypeExt, MetadataExt},
    path::{Path, PathBuf},
};

use k8s_cri::v1;

use super::{
    names::QualifiedName,
    registry::{self, Registry},
    spec::{ContainerEdits, DeviceNode, MountEdit},
};
use crate::error::{Error, Result};

pub const ANNOTATION_PREFIX: &str = "cdi.k8s.io/";

/// A device asked for, and the CRI field that asked (for messages).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub field: String,
    pub name: QualifiedName,
}

/// Everything the requested devices add to the container, in order: each
/// spec file's own edits once (before its first device's), then each
/// device's.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Injection {
    pub env: Vec<String>,
    pub device_nodes: Vec<Node>,
    pub mounts: Vec<MountEdit>,
    pub additional_gids: Vec<u32>,
}

/// A device node with every number known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub path: String,
    /// `c`, `b` or `p` (fifo).
    pub kind: char,
    pub major: i64,
    pub minor: i64,
    pub file_mode: Option<u32>,
    pub permissions: String,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
}

impl Injection {
    pub fn is_empty(&self) -> bool {
        *self == Injection::default()
    }
}

/// The devices `config` asks for: `CDI_devices` first, then the
/// annotations in key order; a device named twice counts once.
pub fn requests(config: &v1::ContainerConfig) -> Result<Vec<Request>> {
    let mut out: Vec<Request> = Vec::new();
    let mut push = |field: String, text: &str| -> Result<()> {
        let name = registry::parse_name(text.trim())
            .map_err(|e| Error::InvalidArgument(format!("{field}: {text:?} is not a fully-qualified CDI device name (vendor.com/class=name): {e}")))?;
        if !out.iter().any(|r| r.name == name) {
            out.push(Request { field, name });
        }
        Ok(())
    };
    for (i, d) in config.cdi_devices.iter().enumerate() {
        push(format!("config.CDI_devices[{i}]"), &d.name)?;
    }
    let mut keys: Vec<&String> = config.annotations.keys().filter(|k| k.starts_with(ANNOTATION_PREFIX)).collect();
    keys.sort();
    for key in keys {
        let field = format!("config.annotations[{key:?}]");
        let value = &config.annotations[key];
        if value.trim().is_empty() {
            return Err(Error::InvalidArgument(format!("{field}: names no CDI device")));
        }
        for part in value.split(',') {
            push(field.clone(), part)?;
        }
    }
    Ok(out)
}

/// Looks every request up in `dirs` (read now) and gathers its edits.
pub fn resolve(dirs: &[PathBuf], requests: &[Request]) -> Result<Injection> {
    let mut injection = Injection::default();
    if requests.is_empty() {
        return Ok(injection);
    }
    let registry = Registry::load(dirs);
    let mut specs_applied: HashSet<PathBuf> = HashSet::new();
    for r in requests {
        let found = registry
            .find(&r.name)
            .map_err(|e| Error::InvalidArgument(format!("{}: {e}", r.field)))?
            .ok_or_else(|| Error::InvalidArgument(format!("{}: CDI device \"{}\" is unknown ({})", r.field, r.name, registry.searched())))?;
        let context = |what: String| Error::InvalidArgument(format!("{}: CDI device \"{}\" ({}): {what}", r.field, r.name, found.spec.path.display()));
        if specs_applied.insert(found.spec.path.clone()) {
            add(&mut injection, &found.spec.spec.container_edits).map_err(|e| context(format!("the spec's containerEdits: {e}")))?;
        }
        add(&mut injection, &found.device.container_edits).map_err(|e| context(format!("containerEdits: {e}")))?;
    }
    Ok(injection)
}

fn add(injection: &mut Injection, edits: &ContainerEdits) -> Result<(), String> {
    if let [first, ..] = edits.unsupported().as_slice() {
        return Err(format!(
            "{first} are not supported by berth (it runs no OCI hooks and sets no RDT or network devices), so the device is refused, not injected in part"
        ));
    }
    for e in &edits.env {
        match e.split_once('=') {
            Some((key, _)) if !key.is_empty() => injection.env.push(e.clone()),
            _ => return Err(format!("env {e:?} is not KEY=VALUE")),
        }
    }
    for n in &edits.device_nodes {
        injection.device_nodes.push(complete_node(n)?);
    }
    for m in &edits.mounts {
        for (what, p) in [("hostPath", &m.host_path), ("containerPath", &m.container_path)] {
            if !Path::new(p).is_absolute() {
                return Err(format!("mounts: {what} {p:?} is not absolute"));
            }
        }
        // No type means a bind mount (what CDI's mounts are for).
        let kind = m.kind.clone().filter(|t| !t.is_empty()).or_else(|| Some("bind".to_string()));
        injection.mounts.push(MountEdit { kind, ..m.clone() });
    }
    for &gid in &edits.additional_gids {
        if gid != 0 && !injection.additional_gids.contains(&gid) {
            injection.additional_gids.push(gid);
        }
    }
    Ok(())
}

/// Fills in what the spec left out from the host's node (`hostPath`, or
/// `path` when it has none), as the CDI specification allows.
fn complete_node(n: &DeviceNode) -> Result<Node, String> {
    let field = format!("deviceNodes {:?}", n.path);
    if !Path::new(&n.path).is_absolute() {
        return Err(format!("{field}: path is not absolute"));
    }
    let permissions = n.permissions.clone().filter(|p| !p.is_empty()).unwrap_or_else(|| "rwm".into());
    if !permissions.chars().all(|c| matches!(c, 'r' | 'w' | 'm')) {
        return Err(format!("{field}: permissions {permissions:?} is not a subset of \"rwm\""));
    }
    let given = match n.kind.as_deref() {
        None | Some("") => None,
        Some("c" | "u") => Some('c'),
        Some("b") => Some('b'),
        Some("p") => Some('p'),
        Some(other) => return Err(format!("{field}: type {other:?} is not c, b, u or p")),
    };
    let numbers_known = given == Some('p') || (n.major.is_some() && n.minor.is_some());
    let host = n.host_path.clone().filter(|h| !h.is_empty()).unwrap_or_else(|| n.path.clone());
    let (kind, major, minor, file_mode) = if let (Some(kind), true) = (given, numbers_known) {
        (kind, n.major.unwrap_or(0), n.minor.unwrap_or(0), n.file_mode)
    } else {
        let meta = std::fs::metadata(&host).map_err(|e| format!("{field}: host node {host}: {e}"))?;
        let ft = meta.file_type();
        let found = if ft.is_char_device() {
            'c'
        } else if ft.is_block_device() {
            'b'
        } else if ft.is_fifo() {
            'p'
        } else {
            return Err(format!("{field}: host node {host} is not a device node"));
        };
        let kind = given.unwrap_or(found);
        let rdev = meta.rdev();
        (
            kind,
            n.major.unwrap_or(nix::sys::stat::major(rdev) as i64),
            n.minor.unwrap_or(nix::sys::stat::minor(rdev) as i64),
            n.file_mode.or(Some(meta.mode() & 0o7777)),
        )
    };
    Ok(Node { path: n.path.clone(), kind, major, minor, file_mode, permissions, uid: n.uid, gid: n.gid })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn config(devices: &[&str], annotations: &[(&str, &str)]) -> v1::ContainerConfig {
        v1::ContainerConfig {
            cdi_devices: devices.iter().map(|d| v1::CdiDevice { name: d.to_string() }).collect(),
            annotations: annotations.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<HashMap<_, _>>(),
            ..Default::default()
        }
    }

    #[test]
    fn requests_come_from_the_field_and_the_annotations_once_each() {
        let c = config(&["a.example/x=0"], &[("cdi.k8s.io/b", "a.example/x=1, a.example/x=0"), ("cdi.k8s.io/a", "b.example/y=z"), ("other", "v")]);
        let got: Vec<(String, String)> = requests(&c).unwrap().into_iter().map(|r| (r.field, r.name.to_string())).collect();
        assert_eq!(
            got,
            [
                ("config.CDI_devices[0]".to_string(), "a.example/x=0".to_string()),
                ("config.annotations[\"cdi.k8s.io/a\"]".to_string(), "b.example/y=z".to_string()),
                ("config.annotations[\"cdi.k8s.io/b\"]".to_string(), "a.example/x=1".to_string()),
            ]
        );
        let e = requests(&config(&["ok.example/x=0", "nope"], &[])).unwrap_err().to_string();
        assert!(e.starts_with("config.CDI_devices[1]: \"nope\" is not a fully-qualified CDI device name"), "{e}");
        let e = requests(&config(&[], &[("cdi.k8s.io/foo", "a.example/x=0,,")])).unwrap_err().to_string();
        assert!(e.starts_with("config.annotations[\"cdi.k8s.io/foo\"]: \"\" is not"), "{e}");
        let e = requests(&config(&[], &[("cdi.k8s.io/foo", "")])).unwrap_err().to_string();
        assert!(e.contains("names no CDI device"), "{e}");
    }

    fn write_spec(dir: &Path, file: &str, text: &str) {
        std::fs::write(dir.join(file), text).unwrap();
    }

    #[test]
    fn resolving_gathers_spec_edits_once_and_reads_missing_numbers_from_the_host() {
        let tmp = tempfile::tempdir().unwrap();
        write_spec(
            tmp.path(),
            "t.yaml",
            r#"cdiVersion: "0.6.0"
kind: t.example/dev
containerEdits:
  env: [SPEC=1]
  additionalGIDs: [0, 44]
devices:
  - name: a
    containerEdits:
      deviceNodes: [{path: /dev/t-a, hostPath: /dev/null}]
      mounts: [{hostPath: /opt, containerPath: /mnt/opt}]
      additionalGIDs: [44, 45]
  - name: b
    containerEdits:
      env: [B=1]
      deviceNodes: [{path: /dev/t-b, type: b, major: 7, minor: 0, permissions: r}]
"#,
        );
        let reqs = requests(&config(&["t.example/dev=a", "t.example/dev=b"], &[])).unwrap();
        let inj = resolve(&[tmp.path().to_path_buf()], &reqs).unwrap();
        assert_eq!(inj.env, ["SPEC=1", "B=1"], "the spec's env once");
        assert_eq!(inj.additional_gids, [44, 45], "no gid 0, no duplicate");
        let null = &inj.device_nodes[0];
        assert_eq!((null.kind, null.major, null.minor, null.permissions.as_str()), ('c', 1, 3, "rwm"), "from the host's /dev/null");
        assert_eq!(null.file_mode, Some(0o666));
        let b = &inj.device_nodes[1];
        assert_eq!((b.kind, b.major, b.minor, b.file_mode, b.permissions.as_str()), ('b', 7, 0, None, "r"));
        assert_eq!(inj.mounts[0].kind.as_deref(), Some("bind"));

        let unknown = requests(&config(&["t.example/dev=c"], &[])).unwrap();
        let e = resolve(&[tmp.path().to_path_buf(), PathBuf::from("/nonexistent/cdi")], &unknown).unwrap_err().to_string();
        assert_eq!(e, format!("config.CDI_devices[0]: CDI device \"t.example/dev=c\" is unknown (searched {}, /nonexistent/cdi)", tmp.path().display()));
        assert!(resolve(&[], &[]).unwrap().is_empty());
    }

    #[test]
    fn devices_berth_cannot_inject_whole_are_refused_by_name() {
        let tmp = tempfile::tempdir().unwrap();
        let device = |name: &str, edits: &str| format!("  - name: {name}\n    containerEdits: {edits}\n");
        let text = [
            "cdiVersion: \"0.6.0\"\nkind: t.example/bad\ndevices:\n".to_string(),
            device("hook", "{hooks: [{hookName: createContainer, path: /bin/true}]}"),
            device("gone", "{deviceNodes: [{path: /dev/x, hostPath: /nonexistent/node}]}"),
            device("file", "{deviceNodes: [{path: /dev/x, hostPath: /etc/hostname}]}"),
            device("rel", "{mounts: [{hostPath: opt, containerPath: /opt}]}"),
            device("perm", "{deviceNodes: [{path: /dev/x, type: c, major: 1, minor: 3, permissions: rwx}]}"),
            device("env", "{env: [NOEQUALS]}"),
        ]
        .concat();
        write_spec(tmp.path(), "bad.yaml", &text);
        let dirs = [tmp.path().to_path_buf()];
        for (name, needle) in [
            ("hook", "hooks are not supported by berth"),
            ("gone", "host node /nonexistent/node: No such file"),
            ("file", "/etc/hostname is not a device node"),
            ("rel", "hostPath \"opt\" is not absolute"),
            ("perm", "\"rwx\" is not a subset"),
            ("env", "\"NOEQUALS\" is not KEY=VALUE"),
        ] {
            let reqs = requests(&config(&[&format!("t.example/bad={name}")], &[])).unwrap();
            let e = resolve(&dirs, &reqs).unwrap_err().to_string();
            assert!(e.starts_with(&format!("config.CDI_devices[0]: CDI device \"t.example/bad={name}\" ({}/bad.yaml)", tmp.path().display())), "{e}");
            assert!(e.contains(needle), "{name}: {e}");
        }
    }
}
