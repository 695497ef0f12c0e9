//! The part of a Kubernetes Pod (or a Deployment's pod template) that
//! `berthctl play kube` runs on this node. Every struct refuses fields it
//! does not know, so a manifest asking for what berthctl would not do (a
//! probe, a configMap volume, a node selector...) is an error naming the
//! field with its YAML path, never silently half-run.

use std::collections::BTreeMap;

use serde::Deserialize;

/// Only the kind, read first to pick the shape of the whole document.
#[derive(Deserialize)]
struct Kind {
    kind: String,
}

/// A Pod. Parsed straight from the text, so that an error carries the
/// field's YAML path (`spec.containers[0]: unknown field ...`).
#[derive(Deserialize, Debug)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PodDocument {
    #[allow(dead_code)] // checked by serde, not used
    api_version: String,
    #[allow(dead_code)]
    kind: String,
    metadata: Metadata,
    spec: PodSpec,
}

/// A workload: only its pod template is run (one pod; `replicas`, the
/// selector and the rollout strategy are the controllers' business).
#[derive(Deserialize, Debug)]
#[serde(rename_all = "camelCase")]
struct WorkloadDocument {
    metadata: Metadata,
    spec: WorkloadSpec,
}

#[derive(Deserialize, Debug)]
struct WorkloadSpec {
    template: Template,
}

#[derive(Deserialize, Default, Clone, Debug)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Metadata {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub namespace: Option<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

#[derive(Deserialize, Debug)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Template {
    #[serde(default)]
    pub metadata: Metadata,
    pub spec: PodSpec,
}

#[derive(Deserialize, Default, Debug)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PodSpec {
    pub containers: Vec<Container>,
    #[serde(default)]
    pub init_containers: Vec<Container>,
    #[serde(default)]
    pub volumes: Vec<Volume>,
    /// Always (the default), OnFailure or Never. Under Always and
    /// OnFailure `play kube` leaves a supervisor (`supervise.rs`) that
    /// restarts the containers as the kubelet would; a failing init
    /// container is retried a few times by `play kube` itself (under Never
    /// it fails the play at once).
    #[serde(default)]
    pub restart_policy: Option<String>,
    #[serde(default)]
    pub host_network: bool,
    #[serde(default)]
    pub hostname: Option<String>,
}

#[derive(Deserialize, Clone, Debug)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Container {
    pub name: String,
    pub image: String,
    #[serde(default)]
    pub command: Vec<String>,
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default)]
    pub env: Vec<EnvVar>,
    #[serde(default)]
    pub ports: Vec<ContainerPort>,
    #[serde(default)]
    pub volume_mounts: Vec<VolumeMount>,
    #[serde(default)]
    pub working_dir: Option<String>,
    #[serde(default)]
    pub resources: Option<Resources>,
    #[serde(default)]
    pub security_context: Option<SecurityContext>,
    #[serde(default)]
    pub image_pull_policy: Option<String>,
}

#[derive(Deserialize, Clone, Debug)]
#[serde(deny_unknown_fields)]
pub struct EnvVar {
    pub name: String,
    #[serde(default)]
    pub value: String,
}

#[derive(Deserialize, Clone, Debug)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ContainerPort {
    pub container_port: i32,
    #[serde(default)]
    pub host_port: Option<i32>,
    #[serde(default)]
    pub host_ip: Option<String>,
    #[serde(default)]
    pub protocol: Option<String>,
    #[serde(default)]
    #[allow(dead_code)] // a label for people; nothing to do with it
    pub name: Option<String>,
}

#[derive(Deserialize, Clone, Debug)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VolumeMount {
    pub name: String,
    pub mount_path: String,
    #[serde(default)]
    pub read_only: bool,
}

#[derive(Deserialize, Clone, Debug)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Resources {
    #[serde(default)]
    pub limits: BTreeMap<String, String>,
    #[serde(default)]
    #[allow(dead_code)] // requests schedule; one node has nothing to schedule
    pub requests: BTreeMap<String, String>,
}

#[derive(Deserialize, Clone, Debug)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecurityContext {
    #[serde(default)]
    pub run_as_user: Option<i64>,
    #[serde(default)]
    pub run_as_group: Option<i64>,
    #[serde(default)]
    pub privileged: bool,
    #[serde(default)]
    pub read_only_root_filesystem: bool,
    #[serde(default)]
    pub capabilities: Option<Capabilities>,
}

#[derive(Deserialize, Clone, Default, Debug)]
#[serde(deny_unknown_fields)]
pub struct Capabilities {
    #[serde(default)]
    pub add: Vec<String>,
    #[serde(default)]
    pub drop: Vec<String>,
}

#[derive(Deserialize, Clone, Debug)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Volume {
    pub name: String,
    #[serde(default)]
    pub host_path: Option<HostPath>,
    #[serde(default)]
    pub empty_dir: Option<EmptyDir>,
}

#[derive(Deserialize, Clone, Debug)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HostPath {
    pub path: String,
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
}

#[derive(Deserialize, Clone, Default, Debug)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EmptyDir {
    #[serde(default)]
    pub medium: Option<String>,
    #[serde(default)]
    #[allow(dead_code)] // a limit the kubelet enforces by eviction
    pub size_limit: Option<String>,
}

/// The pod: its name and labels, and its spec, from a Pod or a workload's
/// template. Errors name the field with its YAML path.
pub fn parse(text: &str) -> anyhow::Result<(Metadata, PodSpec)> {
    let kind: Kind = serde_norway::from_str(text).map_err(|e| anyhow::anyhow!("{e}"))?;
    match kind.kind.as_str() {
        "Pod" => {
            let pod: PodDocument = serde_norway::from_str(text).map_err(|e| anyhow::anyhow!("{e}"))?;
            check(pod.metadata, pod.spec, "spec")
        }
        "Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet" | "Job" => {
            let workload: WorkloadDocument = serde_norway::from_str(text).map_err(|e| anyhow::anyhow!("{e}"))?;
            let mut metadata = workload.metadata;
            metadata.labels.extend(workload.spec.template.metadata.labels);
            check(metadata, workload.spec.template.spec, "spec.template.spec")
        }
        other => anyhow::bail!("kind: {other:?} is not a Pod (or a workload with a pod template)"),
    }
}

fn check(metadata: Metadata, spec: PodSpec, prefix: &str) -> anyhow::Result<(Metadata, PodSpec)> {
    anyhow::ensure!(!metadata.name.is_empty(), "metadata.name: missing");
    anyhow::ensure!(!spec.containers.is_empty(), "{prefix}.containers: a pod needs at least one container");
    for (i, v) in spec.volumes.iter().enumerate() {
        let field = format!("{prefix}.volumes[{i}]");
        match (&v.host_path, &v.empty_dir) {
            (Some(_), None) => {}
            (None, Some(e)) if e.medium.as_deref().unwrap_or("").is_empty() => {}
            (None, Some(_)) => anyhow::bail!("{field}.emptyDir.medium: only the default (a directory on disk) is supported"),
            _ => anyhow::bail!("{field}: only hostPath and emptyDir volumes are supported"),
        }
    }
    if let Some(policy) = &spec.restart_policy {
        anyhow::ensure!(["Always", "OnFailure", "Never"].contains(&policy.as_str()), "{prefix}.restartPolicy: {policy:?} is not Always, OnFailure or Never");
    }
    for (kind, list) in [("initContainers", &spec.init_containers), ("containers", &spec.containers)] {
        for (i, c) in list.iter().enumerate() {
            for (j, m) in c.volume_mounts.iter().enumerate() {
                anyhow::ensure!(
                    spec.volumes.iter().any(|v| v.name == m.name),
                    "{prefix}.{kind}[{i}].volumeMounts[{j}].name: no volume {:?} in the pod",
                    m.name
                );
            }
            if let Some(r) = &c.resources {
                if let Some(key) = r.limits.keys().find(|k| *k != "memory" && *k != "cpu") {
                    anyhow::bail!("{prefix}.{kind}[{i}].resources.limits.{key}: only cpu and memory limits are supported");
                }
            }
        }
    }
    Ok((metadata, spec))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pods_and_templates_parse_and_unknown_fields_are_named_with_their_path() {
        let pod = "apiVersion: v1\nkind: Pod\nmetadata: {name: web}\nspec:\n  containers:\n  - {name: a, image: busybox, ports: [{containerPort: 80, hostPort: 8080}]}\n";
        let (meta, spec) = parse(pod).unwrap();
        assert_eq!((meta.name.as_str(), spec.containers[0].ports[0].host_port), ("web", Some(8080)));
        let deployment = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\nspec:\n  replicas: 3\n  template:\n    metadata: {labels: {app: d}}\n    spec:\n      containers: [{name: a, image: busybox}]\n";
        let (meta, _) = parse(deployment).unwrap();
        assert_eq!(meta.labels["app"], "d");
        let probe = "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n  - name: a\n    image: busybox\n    livenessProbe: {}\n";
        let e = parse(probe).unwrap_err().to_string();
        assert!(e.contains("spec") && e.contains("containers[0]") && e.contains("livenessProbe"), "{e}");
        let config_map =
            "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers: [{name: a, image: b}]\n  volumes: [{name: c, configMap: {name: x}}]\n";
        assert!(parse(config_map).unwrap_err().to_string().contains("configMap"));
        assert!(parse("apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: {}\n").unwrap_err().to_string().contains("kind: \"Service\""));
        let dangling = "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers: [{name: a, image: b, volumeMounts: [{name: v, mountPath: /v}]}]\n";
        assert!(parse(dangling).unwrap_err().to_string().contains("spec.containers[0].volumeMounts[0].name"));
    }
}
