//! Puts an [`Injection`] into a container's OCI spec (as JSON): env vars,
//! device nodes with their device-cgroup rules, mounts and groups. Pure,
//! so each rule is unit-tested.

use serde_json::{json, Value};

use super::resolve::Injection;

/// `privileged` containers already may use every device: their nodes are
/// still created, but no cgroup rule is added.
pub fn apply(spec: &mut Value, injection: &Injection, privileged: bool) {
    apply_env(&mut spec["process"]["env"], &injection.env);
    apply_gids(&mut spec["process"]["user"]["additionalGids"], &injection.additional_gids);
    for n in &injection.device_nodes {
        let mut node = json!({ "path": n.path, "type": n.kind.to_string(), "major": n.major, "minor": n.minor });
        for (key, v) in [("fileMode", n.file_mode), ("uid", n.uid), ("gid", n.gid)] {
            if let Some(v) = v {
                node[key] = json!(v);
            }
        }
        replace_or_push(&mut spec["linux"]["devices"], "path", node);
        // A fifo is not a device the cgroup controls.
        if !privileged && n.kind != 'p' {
            push(
                &mut spec["linux"]["resources"]["devices"],
                json!({ "allow": true, "type": n.kind.to_string(), "major": n.major, "minor": n.minor, "access": n.permissions }),
            );
        }
    }
    if !injection.mounts.is_empty() {
        let mut added: Vec<Value> = injection
            .mounts
            .iter()
            .map(|m| json!({ "destination": m.container_path, "type": m.kind.clone().unwrap_or_default(), "source": m.host_path, "options": m.options }))
            .collect();
        // A mount under another CDI mount must come after it; otherwise the
        // spec's order stands (stable sort).
        added.sort_by_key(|m| depth(m["destination"].as_str().unwrap_or("")));
        for m in added {
            replace_or_push(&mut spec["mounts"], "destination", m);
        }
    }
}

/// A variable the container already sets is replaced, not duplicated: the
/// device's value is the one its software expects.
fn apply_env(env: &mut Value, added: &[String]) {
    for e in added {
        let key = e.split_once('=').map(|(k, _)| k).unwrap_or(e);
        let list = list(env);
        list.retain(|v| v.as_str().and_then(|s| s.split_once('=')).is_none_or(|(k, _)| k != key));
        list.push(json!(e));
    }
}

fn apply_gids(gids: &mut Value, added: &[u32]) {
    let list = list(gids);
    for &g in added {
        if !list.iter().any(|v| v.as_u64() == Some(g as u64)) {
            list.push(json!(g));
        }
    }
}

/// The later entry wins for the same `key` value (a device node's path, a
/// mount's destination), and goes last.
fn replace_or_push(array: &mut Value, key: &str, item: Value) {
    let list = list(array);
    list.retain(|v| v[key] != item[key]);
    list.push(item);
}

fn push(array: &mut Value, item: Value) {
    list(array).push(item);
}

fn list(v: &mut Value) -> &mut Vec<Value> {
    if !v.is_array() {
        *v = json!([]);
    }
    v.as_array_mut().expect("an array")
}

fn depth(path: &str) -> usize {
    path.split('/').filter(|c| !c.is_empty()).count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cdi::{resolve::Node, spec::MountEdit};

    fn spec() -> Value {
        json!({
            "process": { "env": ["PATH=/bin", "GPU=old"], "user": { "uid": 0, "gid": 0, "additionalGids": [10] } },
            "mounts": [{ "destination": "/dev", "type": "tmpfs", "source": "tmpfs" }, { "destination": "/data", "type": "bind", "source": "/old" }],
            "linux": { "devices": [], "resources": { "devices": [{ "allow": false, "access": "rwm" }] } }
        })
    }

    fn node(path: &str, kind: char) -> Node {
        Node { path: path.into(), kind, major: 1, minor: 3, file_mode: Some(0o620), permissions: "rw".into(), uid: Some(1000), gid: None }
    }

    fn mount(host: &str, dest: &str) -> MountEdit {
        MountEdit { host_path: host.into(), container_path: dest.into(), kind: Some("bind".into()), options: vec!["rbind".into(), "ro".into()] }
    }

    #[test]
    fn every_edit_lands_in_the_spec() {
        let mut s = spec();
        let inj = Injection {
            env: vec!["GPU=new".into(), "EXTRA=1".into()],
            device_nodes: vec![node("/dev/gpu0", 'c'), node("/dev/fifo", 'p')],
            mounts: vec![mount("/host/lib/sub", "/data/lib/sub"), mount("/host/data", "/data"), mount("/host/lib", "/data/lib")],
            additional_gids: vec![10, 44],
        };
        apply(&mut s, &inj, false);
        assert_eq!(s["process"]["env"], json!(["PATH=/bin", "GPU=new", "EXTRA=1"]));
        assert_eq!(s["process"]["user"]["additionalGids"], json!([10, 44]));
        assert_eq!(s["linux"]["devices"][0], json!({ "path": "/dev/gpu0", "type": "c", "major": 1, "minor": 3, "fileMode": 0o620, "uid": 1000 }));
        assert_eq!(s["linux"]["devices"][1]["type"], "p");
        let rules = s["linux"]["resources"]["devices"].as_array().unwrap();
        assert_eq!(rules.len(), 2, "the deny-all, then one rule for the char device, none for the fifo");
        assert_eq!(rules[1], json!({ "allow": true, "type": "c", "major": 1, "minor": 3, "access": "rw" }));
        let dests: Vec<&str> = s["mounts"].as_array().unwrap().iter().map(|m| m["destination"].as_str().unwrap()).collect();
        assert_eq!(dests, ["/dev", "/data", "/data/lib", "/data/lib/sub"], "replaced at the same place, parents first");
        assert_eq!(s["mounts"][1]["source"], "/host/data");
        // The result is still a spec the shim reads.
        let _: oci_spec::runtime::Spec = serde_json::from_value(json!({ "ociVersion": "1.1.0", "root": { "path": "rootfs" }, "process": {
            "cwd": "/", "args": ["sh"], "user": s["process"]["user"], "env": s["process"]["env"] }, "mounts": s["mounts"], "linux": s["linux"] }))
        .unwrap();
    }

    #[test]
    fn privileged_containers_get_nodes_but_no_extra_rules_and_empty_changes_nothing() {
        let mut s = spec();
        apply(&mut s, &Injection { device_nodes: vec![node("/dev/gpu0", 'c')], ..Default::default() }, true);
        assert_eq!(s["linux"]["devices"].as_array().unwrap().len(), 1);
        assert_eq!(s["linux"]["resources"]["devices"].as_array().unwrap().len(), 1);
        let mut s = spec();
        apply(&mut s, &Injection::default(), false);
        assert_eq!(s, spec());
    }
}
