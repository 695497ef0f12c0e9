//! Docker-style container commands over the CRI: `run`, `ps`, `logs`,
//! `exec`, `stop`, `rm`. A `run` makes a pod of its own for the container
//! (labelled, so `rm` removes the pod with it), as a kubelet would.

use std::{
    collections::HashMap,
    io::Write,
    path::{Path, PathBuf},
};

use clap::Args;
use k8s_cri::v1::{self, image_service_client::ImageServiceClient, runtime_service_client::RuntimeServiceClient};
use tonic::transport::Channel;

use crate::{
    client::{connect, rpc_error},
    interactive, logs, resolve, run_flags, volumes,
};

/// The host ports a `berthctl run` pod publishes, so that a second run can
/// be refused a port already taken (PodSandboxStatus does not show them).
pub(crate) const PORTS_ANNOTATION: &str = "io.berth.ctl/ports";

/// The same ports as `docker port` prints them (`80/tcp -> 0.0.0.0:8080`),
/// `;`-separated, for `berthctl port`.
pub(crate) const MAPPINGS_ANNOTATION: &str = "io.berth.ctl/port-mappings";

/// The pod annotations that record `ports`.
pub(crate) fn port_annotations(ports: &[v1::PortMapping]) -> HashMap<String, String> {
    let shown = |p: &v1::PortMapping| {
        let ip = if p.host_ip.is_empty() { "0.0.0.0" } else { &p.host_ip };
        format!("{}/{} -> {ip}:{}", p.container_port, protocol_name(p.protocol).to_ascii_lowercase(), p.host_port)
    };
    HashMap::from([
        (PORTS_ANNOTATION.to_string(), ports.iter().map(port_key).collect::<Vec<_>>().join(",")),
        (MAPPINGS_ANNOTATION.to_string(), ports.iter().map(shown).collect::<Vec<_>>().join(";")),
    ])
}

/// Marks the pods `berthctl run` made.
pub(crate) const RUN_LABEL: &str = "io.berth.ctl/run";

#[derive(Args)]
pub struct RunArgs {
    /// Container (and pod) name; generated when not given.
    #[arg(long)]
    pub name: Option<String>,
    /// Start and print the container id, without waiting for it.
    #[arg(short, long)]
    pub detach: bool,
    /// Remove the container and its pod when it exits (not with --detach).
    #[arg(long)]
    pub rm: bool,
    /// Keep the container's stdin open and send this one's to it.
    #[arg(short, long)]
    pub interactive: bool,
    /// Give the container a terminal (this one, in raw mode, unless
    /// --detach). With -i or -t, berthctl attaches before the container
    /// starts, so its first output (a shell's prompt) is not lost.
    #[arg(short, long)]
    pub tty: bool,
    /// Environment variables, `KEY=VALUE` (or `KEY`: berthctl's own value).
    #[arg(short, long = "env", value_parser = run_flags::env)]
    pub env: Vec<v1::KeyValue>,
    /// Files of `KEY=VALUE` lines (blank lines and `#` comments skipped).
    #[arg(long = "env-file")]
    pub env_file: Vec<PathBuf>,
    /// `pod` (its own network namespace, through CNI) or `host`.
    #[arg(long, default_value = "pod")]
    pub network: String,
    /// Bind a host directory or a named volume: `HOST_PATH:PATH[:ro]`, `NAME:PATH[:ro]`.
    #[arg(short = 'v', long = "volume", value_parser = run_flags::volume)]
    pub volumes: Vec<run_flags::Volume>,
    /// Publish a port on the host: `[IP:]HOST_PORT:CONTAINER_PORT[/tcp|udp|sctp]` (pod network only).
    #[arg(short = 'p', long = "publish", value_parser = run_flags::port)]
    pub publish: Vec<v1::PortMapping>,
    /// Working directory inside the container.
    #[arg(short = 'w', long)]
    pub workdir: Option<String>,
    /// `UID[:GID]` or a user name from the image.
    #[arg(short = 'u', long, value_parser = run_flags::user)]
    pub user: Option<run_flags::User>,
    /// Replaces the image's entrypoint (the command then gives its arguments).
    #[arg(long)]
    pub entrypoint: Option<String>,
    /// The container's hostname (default: its name).
    #[arg(long)]
    pub hostname: Option<String>,
    /// Memory limit: `512m`, `1g`.
    #[arg(short = 'm', long, value_parser = run_flags::memory)]
    pub memory: Option<i64>,
    /// CPU limit in cores: `0.5`, `2`.
    #[arg(long, value_parser = run_flags::cpus)]
    pub cpus: Option<f64>,
    /// At most N processes (and threads) in the container: its cgroup's
    /// `pids.max`, through berth's `io.berth.pids-limit` annotation (the
    /// CRI has no field for it).
    #[arg(long, value_parser = run_flags::pids_limit)]
    pub pids_limit: Option<i64>,
    /// Mount the container's root filesystem read-only.
    #[arg(long)]
    pub read_only: bool,
    /// Capabilities to add (`NET_ADMIN`, `ALL`).
    #[arg(long = "cap-add")]
    pub cap_add: Vec<String>,
    /// Capabilities to drop.
    #[arg(long = "cap-drop")]
    pub cap_drop: Vec<String>,
    /// All capabilities, the host's devices, no seccomp or masked paths.
    #[arg(long)]
    pub privileged: bool,
    /// Restart the container when it exits: `no`, `always`, `on-failure[:N]`.
    /// berthctl's own (it runs no daemon): only while `run` follows the
    /// container in the foreground, not with --detach.
    #[arg(long, value_parser = run_flags::restart, default_value = "no")]
    pub restart: run_flags::Restart,
    /// When to pull the image: `missing`, `always` or `never`.
    #[arg(long, value_parser = ["missing", "always", "never"], default_value = "missing")]
    pub pull: String,
    /// Where the container's log goes.
    #[arg(long, default_value = "/var/log/berth")]
    pub log_dir: String,
    pub image: String,
    /// Command and arguments (default: the image's).
    #[arg(trailing_var_arg = true)]
    pub command: Vec<String>,
}

pub(crate) struct Clients {
    pub(crate) rt: RuntimeServiceClient<Channel>,
    pub(crate) img: ImageServiceClient<Channel>,
}

/// RunPodSandbox with berth's default handler; the new pod's id.
pub(crate) async fn run_pod_sandbox(c: &mut Clients, config: &v1::PodSandboxConfig) -> anyhow::Result<String> {
    let request = v1::RunPodSandboxRequest { config: Some(config.clone()), runtime_handler: String::new() };
    Ok(c.rt.run_pod_sandbox(request).await.map_err(rpc_error("run pod"))?.into_inner().pod_sandbox_id)
}

pub(crate) async fn clients(socket: &Path) -> anyhow::Result<Clients> {
    let ch = connect(socket).await?;
    Ok(Clients { rt: RuntimeServiceClient::new(ch.clone()), img: ImageServiceClient::new(ch) })
}

pub async fn run(socket: &Path, args: RunArgs) -> anyhow::Result<i32> {
    anyhow::ensure!(!(args.rm && args.detach), "--rm waits for the exit; it cannot go with --detach");
    let restarting = args.restart != run_flags::Restart::No;
    anyhow::ensure!(
        !(restarting && args.detach),
        "--restart is berthctl's own (it runs no daemon): it works while run follows the container, not with --detach"
    );
    anyhow::ensure!(!(restarting && args.rm), "--restart and --rm contradict each other");
    let host_network = match args.network.as_str() {
        "pod" => false,
        "host" => true,
        other => anyhow::bail!("--network {other:?}: use pod or host"),
    };
    anyhow::ensure!(args.publish.is_empty() || !host_network, "-p publishes through the pod's network; with --network host the ports are the host's already");
    let mut envs = Vec::new();
    for file in &args.env_file {
        let text = std::fs::read_to_string(file).map_err(|e| anyhow::anyhow!("--env-file {}: {e}", file.display()))?;
        for (n, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty() && !l.trim_start().starts_with('#')) {
            envs.push(run_flags::env(line.trim()).map_err(|e| anyhow::anyhow!("--env-file {} line {}: {e}", file.display(), n + 1))?);
        }
    }
    envs.extend(args.env.iter().cloned());
    let mut c = clients(socket).await?;
    let mounts = volume_mounts(&mut c.rt, &args.volumes).await?;
    let ports_taken = published_ports(&mut c.rt).await?;
    if let Some(p) = args.publish.iter().find(|p| ports_taken.contains(&port_key(p))) {
        anyhow::bail!("-p: host port {} ({}) is already published by another berthctl container", p.host_port, protocol_name(p.protocol));
    }
    let image = v1::ImageSpec { image: args.image.clone(), ..Default::default() };
    let present =
        c.img.image_status(v1::ImageStatusRequest { image: Some(image.clone()), verbose: false }).await.map_err(rpc_error("image status"))?.into_inner().image;
    match (args.pull.as_str(), present.is_some()) {
        ("never", false) => anyhow::bail!("image {} is not present and --pull never", args.image),
        ("always", _) | (_, false) => {
            eprintln!("pulling {}", args.image);
            c.img.pull_image(v1::PullImageRequest { image: Some(image.clone()), ..Default::default() }).await.map_err(rpc_error("pull"))?;
        }
        _ => {}
    }
    if let Some(taken) = &args.name {
        let all = c.rt.list_containers(v1::ListContainersRequest::default()).await.map_err(rpc_error("list containers"))?.into_inner().containers;
        if let Some(holder) = all.iter().find(|ctr| ctr.metadata.as_ref().is_some_and(|m| m.name == *taken)) {
            anyhow::bail!("--name {taken:?} is in use by container {}: remove it first (berthctl rm {taken})", &holder.id[..12.min(holder.id.len())]);
        }
    }
    let suffix: String = format!("{:x}", std::process::id() as u64 ^ std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_nanos() as u64);
    let name = args.name.clone().unwrap_or_else(|| format!("run-{}", &suffix[suffix.len().saturating_sub(8)..]));
    let namespaces = v1::NamespaceOption {
        network: if host_network { v1::NamespaceMode::Node as i32 } else { v1::NamespaceMode::Pod as i32 },
        pid: v1::NamespaceMode::Container as i32,
        ..Default::default()
    };
    let pod_config = v1::PodSandboxConfig {
        metadata: Some(v1::PodSandboxMetadata { name: name.clone(), uid: format!("berthctl-{suffix}"), namespace: "berthctl".into(), attempt: 0 }),
        hostname: if host_network { String::new() } else { args.hostname.clone().unwrap_or_else(|| name.clone()) },
        log_directory: Path::new(&args.log_dir).join(&name).display().to_string(),
        labels: HashMap::from([(RUN_LABEL.to_string(), name.clone())]),
        annotations: port_annotations(&args.publish),
        port_mappings: args.publish.clone(),
        linux: Some(v1::LinuxPodSandboxConfig {
            security_context: Some(v1::LinuxSandboxSecurityContext { namespace_options: Some(namespaces.clone()), ..Default::default() }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let pod_id = run_pod_sandbox(&mut c, &pod_config).await?;
    // --entrypoint replaces the image's; the arguments follow it, as
    // with docker (the CRI's command is the entrypoint, args the cmd).
    let (command, cmd_args) = match &args.entrypoint {
        Some(entrypoint) => (vec![entrypoint.clone()], args.command.clone()),
        None => (args.command.clone(), Vec::new()),
    };
    let run_flags::User { uid: run_as_user, name: run_as_username, gid: run_as_group } = args.user.clone().unwrap_or_default();
    let resources = v1::LinuxContainerResources {
        memory_limit_in_bytes: args.memory.unwrap_or(0),
        cpu_period: if args.cpus.is_some() { 100_000 } else { 0 },
        cpu_quota: args.cpus.map(|n| (n * 100_000.0) as i64).unwrap_or(0),
        ..Default::default()
    };
    let config = v1::ContainerConfig {
        metadata: Some(v1::ContainerMetadata { name: name.clone(), attempt: 0 }),
        image: Some(image),
        command,
        args: cmd_args,
        envs,
        working_dir: args.workdir.clone().unwrap_or_default(),
        mounts,
        log_path: format!("{name}.log"),
        labels: HashMap::from([(RUN_LABEL.to_string(), name.clone())]),
        annotations: args.pids_limit.map(|n| (berth_oci::spec::PIDS_LIMIT_ANNOTATION.to_string(), n.to_string())).into_iter().collect(),
        stdin: args.interactive,
        // As `docker run -i`: the stdin closes with the client's EOF.
        stdin_once: args.interactive && !args.detach,
        tty: args.tty,
        linux: Some(v1::LinuxContainerConfig {
            resources: Some(resources),
            security_context: Some(v1::LinuxContainerSecurityContext {
                namespace_options: Some(namespaces),
                run_as_user: run_as_user.map(|value| v1::Int64Value { value }),
                run_as_username: run_as_username.unwrap_or_default(),
                run_as_group: run_as_group.map(|value| v1::Int64Value { value }),
                readonly_rootfs: args.read_only,
                privileged: args.privileged,
                capabilities: Some(v1::Capability { add_capabilities: args.cap_add.clone(), drop_capabilities: args.cap_drop.clone(), ..Default::default() }),
                ..Default::default()
            }),
        }),
        ..Default::default()
    };
    let created = c
        .rt
        .create_container(v1::CreateContainerRequest { pod_sandbox_id: pod_id.clone(), config: Some(config.clone()), sandbox_config: Some(pod_config.clone()) })
        .await;
    let id = match created {
        Ok(r) => r.into_inner().container_id,
        Err(e) => {
            remove_pod(&mut c.rt, &pod_id).await;
            return Err(rpc_error("create container")(e));
        }
    };
    if args.detach {
        if let Err(e) = c.rt.start_container(v1::StartContainerRequest { container_id: id.clone() }).await {
            return Err(rpc_error("start container")(e));
        }
        println!("{id}");
        return Ok(0);
    }
    let attached = args.interactive || args.tty;
    let first = start_and_wait(&mut c.rt, &id, attached, args.interactive, args.tty).await;
    let mut code = match first {
        Ok(code) => code,
        Err(e) => {
            if args.rm {
                remove_pod(&mut c.rt, &pod_id).await;
            }
            return Err(e);
        }
    };
    let (mut id, mut restarts) = (id, 0);
    while args.restart.again(code, restarts) {
        restarts += 1;
        eprintln!("berthctl: {name} exited with {code}; restart {restarts} (--restart)");
        c.rt.remove_container(v1::RemoveContainerRequest { container_id: id.clone() }).await.map_err(rpc_error("remove"))?;
        // A new attempt, as the kubelet restarts a container, with a log
        // of its own.
        let mut again = config.clone();
        again.metadata = Some(v1::ContainerMetadata { name: name.clone(), attempt: restarts });
        again.log_path = format!("{name}.{restarts}.log");
        let req = v1::CreateContainerRequest { pod_sandbox_id: pod_id.clone(), config: Some(again), sandbox_config: Some(pod_config.clone()) };
        id = c.rt.create_container(req).await.map_err(rpc_error("create container"))?.into_inner().container_id;
        code = start_and_wait(&mut c.rt, &id, attached, args.interactive, args.tty).await?;
    }
    if args.rm {
        remove_pod(&mut c.rt, &pod_id).await;
    }
    Ok(code)
}

/// Starts the Created container `id` and follows it to its exit: its log,
/// or (`attached`, for -i/-t) its own stdio through an attach made before
/// the start, so that its first byte is seen. Its exit code.
async fn start_and_wait(rt: &mut RuntimeServiceClient<Channel>, id: &str, attached: bool, stdin: bool, tty: bool) -> anyhow::Result<i32> {
    let session = if attached { Some(interactive::attach_before_start(rt, id, stdin, tty).await?) } else { None };
    rt.start_container(v1::StartContainerRequest { container_id: id.into() }).await.map_err(rpc_error("start container"))?;
    match session {
        Some(session) => session.run().await,
        None => follow(rt, id, true).await,
    }
}

/// The CRI mounts of `-v`: host paths as given, named volumes as their
/// directory under berth's root (which must exist).
async fn volume_mounts(rt: &mut RuntimeServiceClient<Channel>, volumes: &[run_flags::Volume]) -> anyhow::Result<Vec<v1::Mount>> {
    let mut mounts = Vec::new();
    // berthd's root, asked once and only when a named volume needs it.
    let mut volume_dir = None;
    for v in volumes {
        let host_path = match &v.source {
            run_flags::VolumeSource::Host(path) => path.clone(),
            run_flags::VolumeSource::Named(name) => {
                if volume_dir.is_none() {
                    volume_dir = Some(volumes::volume_dir(rt).await?);
                }
                volumes::existing(volume_dir.as_deref().unwrap_or(Path::new("")), name)?.display().to_string()
            }
        };
        mounts.push(v1::Mount { container_path: v.container_path.clone(), host_path, readonly: v.readonly, ..Default::default() });
    }
    Ok(mounts)
}

fn protocol_name(p: i32) -> &'static str {
    v1::Protocol::try_from(p).map(|p| p.as_str_name()).unwrap_or("?")
}

pub(crate) fn port_key(p: &v1::PortMapping) -> String {
    format!("{}/{}", p.host_port, protocol_name(p.protocol).to_ascii_lowercase())
}

/// The host ports other `berthctl run` pods publish.
pub(crate) async fn published_ports(rt: &mut RuntimeServiceClient<Channel>) -> anyhow::Result<Vec<String>> {
    let pods = rt.list_pod_sandbox(v1::ListPodSandboxRequest::default()).await.map_err(rpc_error("list pods"))?.into_inner().items;
    Ok(pods
        .iter()
        .filter(|p| p.state == v1::PodSandboxState::SandboxReady as i32)
        .filter_map(|p| p.annotations.get(PORTS_ANNOTATION))
        .flat_map(|ports| ports.split(',').filter(|s| !s.is_empty()).map(String::from).collect::<Vec<_>>())
        .collect())
}

async fn remove_pod(rt: &mut RuntimeServiceClient<Channel>, pod_id: &str) {
    let _ = rt.stop_pod_sandbox(v1::StopPodSandboxRequest { pod_sandbox_id: pod_id.into() }).await;
    let _ = rt.remove_pod_sandbox(v1::RemovePodSandboxRequest { pod_sandbox_id: pod_id.into() }).await;
}

pub(crate) async fn status(rt: &mut RuntimeServiceClient<Channel>, id: &str) -> anyhow::Result<v1::ContainerStatus> {
    rt.container_status(v1::ContainerStatusRequest { container_id: id.into(), verbose: false })
        .await
        .map_err(rpc_error("container status"))?
        .into_inner()
        .status
        .ok_or_else(|| anyhow::anyhow!("berthd sent no status"))
}

/// Prints the container's log as it grows until the container exits;
/// returns its exit code.
async fn follow(rt: &mut RuntimeServiceClient<Channel>, id: &str, until_exit: bool) -> anyhow::Result<i32> {
    logs::follow(rt, id, until_exit, &logs::LogOptions::default()).await
}

pub async fn exec(socket: &Path, reference: &str, command: Vec<String>, timeout: i64) -> anyhow::Result<i32> {
    anyhow::ensure!(!command.is_empty(), "name a command to run");
    let mut c = clients(socket).await?;
    let id = resolve::container(&mut c.rt, reference).await?.id;
    let r = c.rt.exec_sync(v1::ExecSyncRequest { container_id: id, cmd: command, timeout }).await.map_err(rpc_error("exec"))?.into_inner();
    std::io::stdout().write_all(&r.stdout)?;
    std::io::stderr().write_all(&r.stderr)?;
    Ok(r.exit_code)
}

/// Stops each named container; every name is resolved first, so an
/// unknown one stops nothing.
pub async fn stop(socket: &Path, references: Vec<String>, timeout: i64) -> anyhow::Result<()> {
    anyhow::ensure!(!references.is_empty(), "name at least one container");
    let mut c = clients(socket).await?;
    let mut targets = Vec::new();
    for reference in references {
        targets.push((resolve::container(&mut c.rt, &reference).await?.id, reference));
    }
    for (id, reference) in targets {
        c.rt.stop_container(v1::StopContainerRequest { container_id: id, timeout }).await.map_err(rpc_error("stop"))?;
        println!("{reference}");
    }
    Ok(())
}

/// Removes containers (a running one only with `force`); the pod of a
/// `berthctl run` container goes with it.
pub async fn rm(socket: &Path, references: Vec<String>, force: bool) -> anyhow::Result<()> {
    anyhow::ensure!(!references.is_empty(), "name at least one container");
    let mut c = clients(socket).await?;
    for reference in references {
        let ctr = resolve::container(&mut c.rt, &reference).await?;
        if ctr.state == v1::ContainerState::ContainerRunning as i32 && !force {
            anyhow::bail!("container {reference} is running: stop it first, or use --force");
        }
        c.rt.remove_container(v1::RemoveContainerRequest { container_id: ctr.id.clone() }).await.map_err(rpc_error("remove"))?;
        if ctr.labels.contains_key(RUN_LABEL) {
            remove_pod(&mut c.rt, &ctr.pod_sandbox_id).await;
        }
        println!("{reference}");
    }
    Ok(())
}
