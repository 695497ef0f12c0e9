//! `berthctl play kube FILE` and `berthctl down FILE`: a Kubernetes Pod
//! (or a workload's pod template) run on this node without a cluster, as
//! the kubelet would run it through the CRI: one pod sandbox, the init
//! containers one after the other to success, then the containers.
//! `hostPort`s are published through the pod's network, `emptyDir`
//! volumes are directories under berth's root that go with `down`.

use std::{collections::HashMap, path::Path, time::Duration};

use clap::Args;
use k8s_cri::v1::{self, runtime_service_client::RuntimeServiceClient};
use tonic::transport::Channel;

use crate::{
    client::rpc_error,
    containers::{clients, port_annotations, published_ports, run_pod_sandbox, status, Clients},
    kube_manifest::{self, Container, PodSpec},
    supervise::{self, Policy},
    volumes,
};

/// Marks the pods `play kube` made, by the manifest's pod name.
const KUBE_LABEL: &str = "io.berth.ctl/kube";

#[derive(Args)]
pub struct PlayArgs {
    /// A Pod, Deployment, ReplicaSet, StatefulSet, DaemonSet or Job (YAML).
    pub file: std::path::PathBuf,
    /// Where the containers' logs go (`<dir>/<pod>/<container>.log`).
    #[arg(long, default_value = "/var/log/berth")]
    pub log_dir: String,
}

fn read(file: &Path) -> anyhow::Result<(kube_manifest::Metadata, PodSpec)> {
    let text = std::fs::read_to_string(file).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    kube_manifest::parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))
}

pub async fn play(socket: &Path, args: PlayArgs) -> anyhow::Result<()> {
    let (meta, spec) = read(&args.file)?;
    let mut c = clients(socket).await?;
    anyhow::ensure!(pods_of(&mut c.rt, &meta.name).await?.is_empty(), "pod {} is already running: berthctl down {} first", meta.name, args.file.display());
    let ports = host_ports(&spec)?;
    let taken = published_ports(&mut c.rt).await?;
    if let Some(p) = ports.iter().find(|p| taken.contains(&crate::containers::port_key(p))) {
        anyhow::bail!("hostPort {} is already published by another berthctl pod", p.host_port);
    }
    for container in spec.init_containers.iter().chain(&spec.containers) {
        ensure_image(&mut c, container).await?;
    }
    let volume_dir = volumes::volume_dir(&mut c.rt).await?;
    let mut made_dirs = Vec::new();
    let result = run_pod(&mut c, socket, &meta, &spec, &ports, &volume_dir, &args.log_dir, &mut made_dirs).await;
    if result.is_err() {
        for pod in pods_of(&mut c.rt, &meta.name).await.unwrap_or_default() {
            let dir = supervise::state_dir(&volume_dir, &pod);
            supervise::stop(&dir, &pod);
            remove_pod(&mut c.rt, &pod).await;
            let _ = std::fs::remove_dir_all(dir);
        }
        for dir in made_dirs {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
    println!("{}", result?);
    Ok(())
}

pub async fn down(socket: &Path, file: &Path) -> anyhow::Result<()> {
    let (meta, _) = read(file)?;
    let mut c = clients(socket).await?;
    let pods = pods_of(&mut c.rt, &meta.name).await?;
    anyhow::ensure!(!pods.is_empty(), "no pod {} from {} is running", meta.name, file.display());
    let volume_dir = volumes::volume_dir(&mut c.rt).await?;
    for pod in pods {
        // The supervisor first, so that it restarts nothing in between.
        let dir = supervise::state_dir(&volume_dir, &pod);
        supervise::stop(&dir, &pod);
        remove_pod(&mut c.rt, &pod).await;
        let _ = std::fs::remove_dir_all(dir);
        println!("{pod}");
    }
    let prefix = empty_dir_prefix(&meta.name);
    for entry in std::fs::read_dir(&volume_dir).into_iter().flatten().flatten() {
        if entry.file_name().to_string_lossy().starts_with(&prefix) {
            std::fs::remove_dir_all(entry.path())?;
        }
    }
    Ok(())
}

fn empty_dir_prefix(pod: &str) -> String {
    format!("kube-{pod}-")
}

async fn pods_of(rt: &mut RuntimeServiceClient<Channel>, name: &str) -> anyhow::Result<Vec<String>> {
    let filter = v1::PodSandboxFilter { label_selector: HashMap::from([(KUBE_LABEL.to_string(), name.to_string())]), ..Default::default() };
    let pods = rt.list_pod_sandbox(v1::ListPodSandboxRequest { filter: Some(filter) }).await.map_err(rpc_error("list pods"))?.into_inner().items;
    Ok(pods.into_iter().map(|p| p.id).collect())
}

async fn remove_pod(rt: &mut RuntimeServiceClient<Channel>, pod: &str) {
    let _ = rt.stop_pod_sandbox(v1::StopPodSandboxRequest { pod_sandbox_id: pod.into() }).await;
    let _ = rt.remove_pod_sandbox(v1::RemovePodSandboxRequest { pod_sandbox_id: pod.into() }).await;
}

fn host_ports(spec: &PodSpec) -> anyhow::Result<Vec<v1::PortMapping>> {
    let mut out = Vec::new();
    for (i, c) in spec.containers.iter().enumerate() {
        for (j, p) in c.ports.iter().enumerate() {
            let Some(host_port) = p.host_port else { continue };
            let field = format!("spec.containers[{i}].ports[{j}]");
            let protocol = match p.protocol.as_deref().unwrap_or("TCP") {
                "TCP" => v1::Protocol::Tcp,
                "UDP" => v1::Protocol::Udp,
                "SCTP" => v1::Protocol::Sctp,
                other => anyhow::bail!("{field}.protocol: {other:?} is not TCP, UDP or SCTP"),
            };
            anyhow::ensure!((1..=65535).contains(&host_port) && (1..=65535).contains(&p.container_port), "{field}: ports are 1-65535");
            anyhow::ensure!(!spec.host_network, "{field}.hostPort: with hostNetwork the ports are the host's already");
            out.push(v1::PortMapping {
                protocol: protocol as i32,
                container_port: p.container_port,
                host_port,
                host_ip: p.host_ip.clone().unwrap_or_default(),
            });
        }
    }
    Ok(out)
}

async fn ensure_image(c: &mut Clients, container: &Container) -> anyhow::Result<()> {
    let image = v1::ImageSpec { image: container.image.clone(), ..Default::default() };
    let present = c.img.image_status(v1::ImageStatusRequest { image: Some(image.clone()), verbose: false }).await.map_err(rpc_error("image status"))?;
    let always = container.image_pull_policy.as_deref() == Some("Always");
    if present.into_inner().image.is_none() || always {
        anyhow::ensure!(container.image_pull_policy.as_deref() != Some("Never"), "image {} is not present and imagePullPolicy is Never", container.image);
        eprintln!("pulling {}", container.image);
        c.img.pull_image(v1::PullImageRequest { image: Some(image), ..Default::default() }).await.map_err(rpc_error("pull"))?;
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn run_pod(
    c: &mut Clients,
    socket: &Path,
    meta: &kube_manifest::Metadata,
    spec: &PodSpec,
    ports: &[v1::PortMapping],
    volume_dir: &Path,
    log_dir: &str,
    made_dirs: &mut Vec<std::path::PathBuf>,
) -> anyhow::Result<String> {
    // Volumes by name: a host path as given, an emptyDir made here.
    let mut volumes = HashMap::new();
    for v in &spec.volumes {
        let path = match (&v.host_path, &v.empty_dir) {
            (Some(h), _) => {
                if matches!(h.kind.as_deref(), Some("DirectoryOrCreate")) {
                    std::fs::create_dir_all(&h.path)?;
                }
                h.path.clone()
            }
            _ => {
                let dir = volume_dir.join(format!("{}{}", empty_dir_prefix(&meta.name), v.name));
                std::fs::create_dir_all(&dir)?;
                // An emptyDir is writable by every user of the pod.
                std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o777))?;
                made_dirs.push(dir.clone());
                dir.display().to_string()
            }
        };
        volumes.insert(v.name.clone(), path);
    }
    let namespace = meta.namespace.clone().unwrap_or_else(|| "default".into());
    let mut labels: HashMap<String, String> = meta.labels.clone().into_iter().collect();
    labels.insert(KUBE_LABEL.into(), meta.name.clone());
    let network = if spec.host_network { v1::NamespaceMode::Node } else { v1::NamespaceMode::Pod };
    let pod_config = v1::PodSandboxConfig {
        metadata: Some(v1::PodSandboxMetadata { name: meta.name.clone(), uid: format!("berthctl-kube-{}", meta.name), namespace, attempt: 0 }),
        hostname: if spec.host_network { String::new() } else { spec.hostname.clone().unwrap_or_else(|| meta.name.clone()) },
        log_directory: Path::new(log_dir).join(&meta.name).display().to_string(),
        port_mappings: ports.to_vec(),
        labels,
        annotations: meta.annotations.clone().into_iter().chain(port_annotations(ports)).collect(),
        linux: Some(v1::LinuxPodSandboxConfig {
            security_context: Some(v1::LinuxSandboxSecurityContext {
                namespace_options: Some(v1::NamespaceOption { network: network as i32, pid: v1::NamespaceMode::Container as i32, ..Default::default() }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let pod = run_pod_sandbox(c, &pod_config).await?;
    let policy = Policy::of(spec.restart_policy.as_deref());
    for (i, init) in spec.init_containers.iter().enumerate() {
        let field = format!("spec.initContainers[{i}]");
        // Under Never a failed init container fails the pod; under
        // OnFailure and Always it is tried again after the supervisor's
        // back-off, INIT_RETRIES times at most, here in the foreground
        // (the kubelet would try forever; a command must end).
        let mut attempt = 0;
        loop {
            let id = start(c, &pod, &pod_config, init, &volumes, &field, attempt).await?;
            let code = wait_exit(&mut c.rt, &id).await?;
            if code == 0 {
                break;
            }
            anyhow::ensure!(
                policy != Policy::Never && attempt < INIT_RETRIES,
                "{field} ({}) exited with {code}{}; the pod is not started",
                init.name,
                if attempt > 0 { format!(" at attempt {attempt}") } else { String::new() }
            );
            let wait = supervise::backoff(attempt);
            eprintln!("{field} ({}) exited with {code}; trying again in {wait:?} (restartPolicy {policy:?})", init.name);
            tokio::time::sleep(wait).await;
            let _ = c.rt.remove_container(v1::RemoveContainerRequest { container_id: id }).await;
            attempt += 1;
        }
    }
    let mut configs = Vec::new();
    for (i, container) in spec.containers.iter().enumerate() {
        let field = format!("spec.containers[{i}]");
        start(c, &pod, &pod_config, container, &volumes, &field, 0).await?;
        configs.push(container_config(container, &volumes, &field, 0)?);
    }
    if policy != Policy::Never {
        supervise::spawn(socket, &supervise::state_dir(volume_dir, &pod), &pod, policy, &pod_config, configs)?;
    }
    Ok(pod)
}

/// How many times a failing init container is tried again under
/// OnFailure and Always (after 1, 2, 4 and 8 s).
const INIT_RETRIES: u32 = 4;

async fn wait_exit(rt: &mut RuntimeServiceClient<Channel>, id: &str) -> anyhow::Result<i32> {
    loop {
        let st = status(rt, id).await?;
        if st.state == v1::ContainerState::ContainerExited as i32 {
            return Ok(st.exit_code);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn start(
    c: &mut Clients,
    pod: &str,
    pod_config: &v1::PodSandboxConfig,
    k: &Container,
    volumes: &HashMap<String, String>,
    field: &str,
    attempt: u32,
) -> anyhow::Result<String> {
    let config = container_config(k, volumes, field, attempt)?;
    let req = v1::CreateContainerRequest { pod_sandbox_id: pod.into(), config: Some(config), sandbox_config: Some(pod_config.clone()) };
    let id = c.rt.create_container(req).await.map_err(|s| anyhow::anyhow!("{field} ({}): {} ({:?})", k.name, s.message(), s.code()))?.into_inner().container_id;
    c.rt.start_container(v1::StartContainerRequest { container_id: id.clone() }).await.map_err(|s| anyhow::anyhow!("{field} ({}): {}", k.name, s.message()))?;
    Ok(id)
}

fn container_config(k: &Container, volumes: &HashMap<String, String>, field: &str, attempt: u32) -> anyhow::Result<v1::ContainerConfig> {
    let limits = k.resources.as_ref().map(|r| r.limits.clone()).unwrap_or_default();
    let memory = limits
        .get("memory")
        .map(|q| memory_quantity(q).ok_or_else(|| anyhow::anyhow!("{field}.resources.limits.memory: {q:?} is not a quantity")))
        .transpose()?;
    let cpu = limits.get("cpu").map(|q| cpu_quantity(q).ok_or_else(|| anyhow::anyhow!("{field}.resources.limits.cpu: {q:?} is not a quantity"))).transpose()?;
    let sc = k.security_context.clone();
    let caps = sc.as_ref().and_then(|s| s.capabilities.clone()).unwrap_or_default();
    Ok(v1::ContainerConfig {
        metadata: Some(v1::ContainerMetadata { name: k.name.clone(), attempt }),
        image: Some(v1::ImageSpec { image: k.image.clone(), ..Default::default() }),
        command: k.command.clone(),
        args: k.args.clone(),
        working_dir: k.working_dir.clone().unwrap_or_default(),
        envs: k.env.iter().map(|e| v1::KeyValue { key: e.name.clone(), value: e.value.clone() }).collect(),
        mounts: k
            .volume_mounts
            .iter()
            .map(|m| v1::Mount { container_path: m.mount_path.clone(), host_path: volumes[&m.name].clone(), readonly: m.read_only, ..Default::default() })
            .collect(),
        log_path: supervise::log_path(&k.name, attempt),
        linux: Some(v1::LinuxContainerConfig {
            resources: Some(v1::LinuxContainerResources {
                memory_limit_in_bytes: memory.unwrap_or(0),
                cpu_period: if cpu.is_some() { 100_000 } else { 0 },
                cpu_quota: cpu.map(|millis| millis * 100).unwrap_or(0),
                ..Default::default()
            }),
            security_context: Some(v1::LinuxContainerSecurityContext {
                run_as_user: sc.as_ref().and_then(|s| s.run_as_user).map(|value| v1::Int64Value { value }),
                run_as_group: sc.as_ref().and_then(|s| s.run_as_group).map(|value| v1::Int64Value { value }),
                privileged: sc.as_ref().is_some_and(|s| s.privileged),
                readonly_rootfs: sc.as_ref().is_some_and(|s| s.read_only_root_filesystem),
                capabilities: Some(v1::Capability { add_capabilities: caps.add, drop_capabilities: caps.drop, ..Default::default() }),
                namespace_options: Some(v1::NamespaceOption { pid: v1::NamespaceMode::Container as i32, ..Default::default() }),
                ..Default::default()
            }),
        }),
        ..Default::default()
    })
}

/// `64Mi`, `1Gi`, `500M`, `1000000`: bytes.
fn memory_quantity(q: &str) -> Option<i64> {
    let (digits, unit) = q.split_at(q.find(|c: char| !c.is_ascii_digit()).unwrap_or(q.len()));
    let n: i64 = digits.parse().ok()?;
    let scale: i64 = match unit {
        "" => 1,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "k" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        _ => return None,
    };
    n.checked_mul(scale)
}

/// `500m`, `1`, `0.5`: millicores.
fn cpu_quantity(q: &str) -> Option<i64> {
    match q.strip_suffix('m') {
        Some(millis) => millis.parse().ok().filter(|m: &i64| *m > 0),
        None => q.parse::<f64>().ok().filter(|c| *c > 0.0).map(|c| (c * 1000.0) as i64),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities() {
        assert_eq!(memory_quantity("64Mi"), Some(64 << 20));
        assert_eq!(memory_quantity("500M"), Some(500_000_000));
        assert_eq!(memory_quantity("12x"), None);
        assert_eq!(cpu_quantity("500m"), Some(500));
        assert_eq!(cpu_quantity("1.5"), Some(1500));
        assert_eq!(cpu_quantity("0"), None);
    }
}
