use std::sync::Arc;

use berth_network::{NamespaceSet, PodNetwork, PortMapping};
use k8s_cri::v1;

use super::{cgroup_paths::check_cgroup_parent, pod_files, user_namespace, Runtime};
use crate::{
    error::{blocking, Error, Result},
    state::{new_id, now_nanos, Sandbox, SandboxRecord, SandboxState},
};

impl Runtime {
    /// Pins the pod's namespaces, writes its files, wires its network. The
    /// record is saved before the network is touched, so a crash half way
    /// leaves a NotReady pod that Remove (or the next start) cleans up; a
    /// failure half way undoes everything and frees the name for a retry.
    pub(crate) async fn run_pod_sandbox(self: &Arc<Self>, req: v1::RunPodSandboxRequest) -> Result<v1::RunPodSandboxResponse> {
        // The id map is the config's, kept in the record; checked here.
        let CheckedPod { config, meta, runtime_handler, id_map: _, shared_pid, host_network, host_ipc, port_mappings } =
            check_pod_request(req, &self.info.runtime_handlers, self.info.systemd_cgroup, || super::features::user_namespaces(&self.paths.snapshots()))?;

        let name = format!("{}_{}_{}_{}", meta.name, meta.namespace, meta.uid, meta.attempt);
        let id = new_id()?;
        self.pod_names.reserve(&name, &id).map_err(|e| Error::AlreadyExists(format!("pod sandbox name {name:?} is reserved by {}", holder(&e))))?;

        let hostname = if !config.hostname.is_empty() {
            config.hostname.clone()
        } else if host_network {
            nix::unistd::gethostname().map(|h| h.to_string_lossy().into_owned()).unwrap_or_default()
        } else {
            meta.name.chars().take(63).collect()
        };
        let record = SandboxRecord {
            id: id.clone(),
            name: name.clone(),
            config,
            runtime_handler,
            state: SandboxState::NotReady,
            created_at: now_nanos(),
            netns: None,
            ipcns: None,
            utsns: None,
            pause_pid: None,
            userns: None,
            ip: None,
            additional_ips: Vec::new(),
            cni_result: None,
            shm: None,
        };
        let sandbox = Arc::new(Sandbox::new(record));
        let _op = sandbox.op.lock().await;
        self.sandboxes.insert(id.clone(), sandbox.clone());
        match self.set_up_pod(&sandbox, &hostname, host_network, host_ipc, shared_pid, &port_mappings).await {
            Ok(()) => {
                tracing::info!(pod_id = %id, name = %name, ip = ?sandbox.record().ip, "pod sandbox ready");
                Ok(v1::RunPodSandboxResponse { pod_sandbox_id: id })
            }
            Err(e) => {
                tracing::warn!(pod_id = %id, error = %e, "pod sandbox failed; undoing");
                if let Err(undo) = self.tear_down_pod(&sandbox).await {
                    tracing::error!(pod_id = %id, error = %undo, "undo of a failed pod left something behind");
                }
                self.remove_sandbox_state(&sandbox).await;
                Err(e)
            }
        }
    }

    async fn set_up_pod(&self, sandbox: &Sandbox, hostname: &str, host_network: bool, host_ipc: bool, shared_pid: bool, ports: &[PortMapping]) -> Result<()> {
        let id = sandbox.id.clone();
        let (dir, state_dir) = (self.paths.sandbox_dir(&id)?, self.paths.sandbox_state(&id)?);
        let config = sandbox.config();
        let dns = config.dns_config.clone();
        let hostname_owned = hostname.to_string();
        let want = NamespaceSet { net: !host_network, ipc: !host_ipc, uts: !host_network, user: sandbox.snapshot().id_map() };
        let host = self.host.clone();
        let (pins, shm) = blocking(move || {
            pod_files::write(&dir, &hostname_owned, dns.as_ref(), host_network)?;
            let pins = host.create_namespaces(&state_dir.join("ns"), want, Some(&hostname_owned))?;
            let shm = if host_ipc {
                None
            } else {
                let target = state_dir.join("shm");
                host.mount_shm(&target)?;
                Some(target)
            };
            Ok((pins, shm))
        })
        .await?;
        {
            let mut r = sandbox.record();
            r.netns = pins.net.clone();
            r.ipcns = pins.ipc;
            r.utsns = pins.uts;
            r.userns = pins.user;
            r.shm = shm;
        }
        self.save_sandbox(sandbox).await?;
        if shared_pid {
            let pid = self.start_pause(sandbox).await?;
            sandbox.record().pause_pid = Some(pid);
            self.save_sandbox(sandbox).await?;
        }
        if let Some(netns) = &pins.net {
            let meta = config.metadata.clone().unwrap_or_default();
            let pod = PodNetwork { id: &id, netns, name: &meta.name, namespace: &meta.namespace, uid: &meta.uid, port_mappings: ports };
            let result = self.cni.setup(&pod).await?;
            let mut r = sandbox.record();
            r.ip = result.ip;
            r.additional_ips = result.additional_ips;
            r.cni_result = Some(result.result);
        }
        sandbox.record().mark_ready()?;
        self.save_sandbox(sandbox).await
    }
}

/// What RunPodSandbox settles from its request before it makes anything.
#[derive(Debug)]
pub struct CheckedPod {
    pub config: v1::PodSandboxConfig,
    pub meta: v1::PodSandboxMetadata,
    pub runtime_handler: String,
    pub id_map: Option<berth_network::IdMap>,
    pub shared_pid: bool,
    pub host_network: bool,
    pub host_ipc: bool,
    pub port_mappings: Vec<PortMapping>,
}

/// RunPodSandbox's checks of its request (the kubelet's, or any client's
/// on the socket), before anything is made: every refusal here is an
/// InvalidArgument naming the field. `can_idmap` asks the node whether it
/// can give a pod a user namespace (asked only if one is wanted). Public
/// for the fuzz target `cri_run_pod_sandbox` (`crates/fuzz`).
pub fn check_pod_request(
    req: v1::RunPodSandboxRequest,
    runtime_handlers: &[String],
    systemd_cgroup: bool,
    can_idmap: impl FnOnce() -> bool,
) -> Result<CheckedPod> {
    let config = req.config.ok_or_else(|| Error::InvalidArgument("config is missing".into()))?;
    let meta = config.metadata.clone().ok_or_else(|| Error::InvalidArgument("config.metadata is missing".into()))?;
    for (field, value) in [("name", &meta.name), ("namespace", &meta.namespace), ("uid", &meta.uid)] {
        if value.is_empty() {
            return Err(Error::InvalidArgument(format!("config.metadata.{field} is empty")));
        }
    }
    if !req.runtime_handler.is_empty() && !runtime_handlers.contains(&req.runtime_handler) {
        return Err(Error::InvalidArgument(format!(
            "runtime_handler {:?} is unknown; this berthd serves {:?}",
            req.runtime_handler,
            std::iter::once("").chain(runtime_handlers.iter().map(String::as_str)).collect::<Vec<_>>()
        )));
    }
    let ns = config.linux.as_ref().and_then(|l| l.security_context.as_ref()).and_then(|s| s.namespace_options.clone()).unwrap_or_default();
    if v1::NamespaceMode::try_from(ns.pid).is_err() || ns.pid == v1::NamespaceMode::Target as i32 {
        return Err(Error::InvalidArgument(format!("config.linux.security_context.namespace_options.pid: mode {} is not valid for a pod", ns.pid)));
    }
    let id_map = user_namespace::pod_map(user_namespace::POD_FIELD, ns.userns_options.as_ref())?;
    let shared_pid = ns.pid == v1::NamespaceMode::Pod as i32;
    let host_network = ns.network == v1::NamespaceMode::Node as i32;
    let host_ipc = ns.ipc == v1::NamespaceMode::Node as i32;
    if id_map.is_some() && !can_idmap() {
        return Err(Error::InvalidArgument(format!(
            "{}.mode: POD, but this node cannot idmap the image layers of a pod with a user namespace (see berthd's log); Status does not advertise user namespaces",
            user_namespace::POD_FIELD
        )));
    }
    if id_map.is_some() {
        // The pod's root must own its namespaces (sysfs, net sysctls
        // and mqueue are mounted and set as that root); the host's are
        // not its to own. The kubelet refuses the same combinations.
        let shared: Vec<&str> = [("network", host_network), ("ipc", host_ipc), ("pid", ns.pid == v1::NamespaceMode::Node as i32)]
            .into_iter()
            .filter_map(|(name, host)| host.then_some(name))
            .collect();
        if let Some(first) = shared.first() {
            return Err(Error::InvalidArgument(format!(
                "config.linux.security_context.namespace_options.{first}: NODE, but a pod with a user namespace cannot share the host's {}",
                shared.join(", ")
            )));
        }
    }
    check_sysctls(&config, host_network, host_ipc)?;
    check_cgroup_parent(config.linux.as_ref().map(|l| l.cgroup_parent.as_str()).unwrap_or(""), systemd_cgroup)?;
    let port_mappings = pod_ports(&config)?;
    Ok(CheckedPod { config, meta, runtime_handler: req.runtime_handler, id_map, shared_pid, host_network, host_ipc, port_mappings })
}

fn holder(e: &berth_store::Error) -> String {
    match e {
        berth_store::Error::NameTaken { holder, .. } => format!("pod sandbox {holder}"),
        other => other.to_string(),
    }
}

/// Namespaced sysctls only, and only those of namespaces the pod owns:
/// a net.* sysctl on a host-network pod would change the node.
fn check_sysctls(config: &v1::PodSandboxConfig, host_network: bool, host_ipc: bool) -> Result<()> {
    let Some(linux) = config.linux.as_ref() else { return Ok(()) };
    for key in linux.sysctls.keys() {
        let ipc = key.starts_with("kernel.shm") || key.starts_with("kernel.msg") || key.starts_with("kernel.sem") || key.starts_with("fs.mqueue.");
        let net = key.starts_with("net.");
        let problem = if !ipc && !net {
            Some("is not a namespaced sysctl")
        } else if net && host_network {
            Some("needs the pod's own network namespace (the pod uses the host's)")
        } else if ipc && host_ipc {
            Some("needs the pod's own IPC namespace (the pod uses the host's)")
        } else {
            None
        };
        if let Some(p) = problem {
            return Err(Error::InvalidArgument(format!("config.linux.sysctls[{key:?}] {p}")));
        }
    }
    Ok(())
}

/// The pod's published ports, in the CNI `portMappings` form (ports with
/// no host port are not published).
pub(super) fn pod_ports(config: &v1::PodSandboxConfig) -> Result<Vec<PortMapping>> {
    let mut ports = Vec::new();
    for (i, p) in config.port_mappings.iter().enumerate() {
        let mapping = port_mapping(i, p)?;
        if mapping.host_port > 0 {
            ports.push(mapping);
        }
    }
    Ok(ports)
}

fn port_mapping(i: usize, p: &v1::PortMapping) -> Result<PortMapping> {
    let field = |f: &str| format!("config.port_mappings[{i}].{f}");
    if !(1..=65535).contains(&p.container_port) {
        return Err(Error::InvalidArgument(format!("{} {} is not a port", field("container_port"), p.container_port)));
    }
    if !(0..=65535).contains(&p.host_port) {
        return Err(Error::InvalidArgument(format!("{} {} is not a port", field("host_port"), p.host_port)));
    }
    let protocol = match v1::Protocol::try_from(p.protocol) {
        Ok(v1::Protocol::Tcp) => "tcp",
        Ok(v1::Protocol::Udp) => "udp",
        Ok(v1::Protocol::Sctp) => "sctp",
        Err(_) => return Err(Error::InvalidArgument(format!("{} {} is unknown", field("protocol"), p.protocol))),
    };
    Ok(PortMapping { host_port: p.host_port, container_port: p.container_port, protocol: protocol.into(), host_ip: p.host_ip.clone() })
}
