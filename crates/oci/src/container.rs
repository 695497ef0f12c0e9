//! A CRI container config plus its image's config, turned into the OCI
//! runtime spec the shim runs. Pure: berthd resolves everything that needs
//! the disk (users from the image's /etc/passwd, device numbers, seccomp
//! files, host paths) and hands the answers in.

use std::collections::{BTreeMap, HashSet};

use k8s_cri::v1;
use oci_spec::runtime::{LinuxSeccomp, Spec};
use serde_json::{json, Value};

use crate::spec::{DEFAULT_CAPABILITIES, DEFAULT_PATH_ENV, MASKED_PATHS, READONLY_PATHS};

/// The parts of an image config a container starts from.
#[derive(Debug, Clone, Default)]
pub struct ImageDefaults {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub working_dir: String,
}

/// The process identity, already looked up in the image.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResolvedUser {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
}

/// Where a namespace comes from: the container's own, the pod's (a pinned
/// path), or the host's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Namespace {
    Private,
    Join(String),
    Host,
}

#[derive(Debug, Clone)]
pub struct Namespaces {
    pub net: Namespace,
    pub ipc: Namespace,
    pub uts: Namespace,
    pub pid: Namespace,
    /// The pod's user namespace, when it has one (None: the host's).
    pub user: Option<UserNamespace>,
}

/// A pinned user namespace and its maps. The maps go into the spec too:
/// the shim idmaps the rootfs with them, and a reader of the bundle sees
/// who the container's root is on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserNamespace {
    pub path: String,
    pub uids: Vec<v1::IdMapping>,
    pub gids: Vec<v1::IdMapping>,
}

fn id_mappings(ranges: &[v1::IdMapping]) -> Value {
    ranges.iter().map(|r| json!({ "containerID": r.container_id, "hostID": r.host_id, "size": r.length })).collect()
}

/// A host device, with the numbers berthd read from its node.
#[derive(Debug, Clone)]
pub struct HostDevice {
    pub container_path: String,
    pub kind: char,
    pub major: i64,
    pub minor: i64,
    pub file_mode: u32,
    pub permissions: String,
}

/// An image volume (`Mount.image`): the image's layers as the snapshotter
/// shows them (an overlay, or a bind of a single layer), mounted read-only
/// at `container_path`.
#[derive(Debug, Clone)]
pub struct ImageVolume {
    pub container_path: String,
    pub typ: String,
    pub source: String,
    pub options: Vec<String>,
}

/// A bind mount of a file berthd keeps for the pod (resolv.conf, hosts,
/// hostname, the pod's /dev/shm).
#[derive(Debug, Clone)]
pub struct PodFile {
    pub destination: String,
    pub source: String,
    pub readonly: bool,
}

pub struct ContainerInput<'a> {
    pub id: &'a str,
    pub config: &'a v1::ContainerConfig,
    pub sandbox_id: &'a str,
    pub sandbox: &'a v1::PodSandboxConfig,
    pub image: &'a ImageDefaults,
    pub image_name: &'a str,
    pub user: ResolvedUser,
    pub namespaces: Namespaces,
    pub cgroups_path: String,
    pub pod_files: Vec<PodFile>,
    /// CRI mounts with their host paths already resolved (symlinks followed);
    /// image volumes are not among them but in `image_volumes`.
    pub mounts: Vec<v1::Mount>,
    pub image_volumes: Vec<ImageVolume>,
    pub devices: Vec<HostDevice>,
    /// The seccomp profile chosen and loaded; None is unconfined.
    pub seccomp: Option<LinuxSeccomp>,
    /// The AppArmor profile berthd chose and found loaded; None is
    /// unconfined (or a host without AppArmor).
    pub apparmor_profile: Option<String>,
    pub hostname: String,
    /// The capabilities berthd itself holds: what privileged and `ALL` mean.
    pub host_capabilities: Vec<String>,
}

/// Why a config cannot become a spec; `field` names the CRI field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct SpecError {
    pub field: String,
    pub reason: String,
}

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> SpecError {
    SpecError { field: field.into(), reason: reason.into() }
}

/// Every capability Linux knows, for privileged containers and `ALL`.
pub const ALL_CAPABILITIES: [&str; 41] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// The container's capabilities: the defaults (or, when privileged, all
/// that `host` holds), then the config's adds, then its drops. `ALL` works
/// on both sides and means every capability of `host`: the runtime cannot
/// give what it does not have itself (a node may withhold some, like
/// CAP_SYS_RESOURCE on a restricted host).
pub fn capabilities(sc: Option<&v1::LinuxContainerSecurityContext>, host: &[String]) -> Result<Vec<String>, SpecError> {
    let privileged = sc.is_some_and(|s| s.privileged);
    let held = |c: &str| host.iter().any(|h| h == c);
    let mut caps: Vec<String> = if privileged { host.to_vec() } else { DEFAULT_CAPABILITIES.iter().filter(|c| held(c)).map(|c| c.to_string()).collect() };
    let Some(wanted) = sc.and_then(|s| s.capabilities.as_ref()) else { return Ok(caps) };
    let normalize = |field: &str, name: &str| -> Result<String, SpecError> {
        let upper = name.to_ascii_uppercase();
        let full = if upper.starts_with("CAP_") { upper } else { format!("CAP_{upper}") };
        if !ALL_CAPABILITIES.contains(&full.as_str()) {
            Err(invalid(field, format!("unknown capability {name:?}")))
        } else if !held(&full) {
            Err(invalid(field, format!("{full} is not available to containers on this node")))
        } else {
            Ok(full)
        }
    };
    let add_field = "linux.security_context.capabilities.add_capabilities";
    let is_all = |n: &String| n.eq_ignore_ascii_case("ALL");
    if wanted.add_capabilities.iter().any(is_all) {
        caps = host.to_vec();
    } else {
        for name in &wanted.add_capabilities {
            let cap = normalize(add_field, name)?;
            if !caps.contains(&cap) {
                caps.push(cap);
            }
        }
    }
    if wanted.drop_capabilities.iter().any(is_all) {
        // Drop ALL, then the adds that are not ALL come back.
        caps.clear();
        for name in wanted.add_capabilities.iter().filter(|n| !is_all(n)) {
            caps.push(normalize(add_field, name)?);
        }
    } else {
        for name in &wanted.drop_capabilities {
            let upper = name.to_ascii_uppercase();
            let cap = if upper.starts_with("CAP_") { upper } else { format!("CAP_{upper}") };
            if !ALL_CAPABILITIES.contains(&cap.as_str()) {
                return Err(invalid("linux.security_context.capabilities.drop_capabilities", format!("unknown capability {name:?}")));
            }
            caps.retain(|c| *c != cap);
        }
    }
    Ok(caps)
}

/// Capability names from a `CapBnd:`-style hex mask.
pub fn capabilities_in_mask(mask: u64) -> Vec<String> {
    ALL_CAPABILITIES.iter().enumerate().filter(|(bit, _)| mask & (1u64 << bit) != 0).map(|(_, c)| c.to_string()).collect()
}

/// Limits that no kernel would take, or that would kill the container at
/// once, are refused here with the field that holds them.
pub fn validate_resources(r: &v1::LinuxContainerResources) -> Result<(), SpecError> {
    let field = |f: &str| format!("linux.resources.{f}");
    if r.memory_limit_in_bytes < 0 {
        return Err(invalid(field("memory_limit_in_bytes"), format!("{} is negative", r.memory_limit_in_bytes)));
    }
    if r.memory_swap_limit_in_bytes < -1 {
        return Err(invalid(field("memory_swap_limit_in_bytes"), format!("{} is below -1", r.memory_swap_limit_in_bytes)));
    }
    // Memory plus swap bounds nothing without a memory limit (the cgroup
    // files take it only beside one): refused rather than dropped.
    if r.memory_swap_limit_in_bytes > 0 && r.memory_limit_in_bytes == 0 {
        return Err(invalid(field("memory_swap_limit_in_bytes"), "is set without memory_limit_in_bytes".to_string()));
    }
    if r.cpu_shares < 0 || r.cpu_shares > 262_144 {
        return Err(invalid(field("cpu_shares"), format!("{} is outside 0..=262144", r.cpu_shares)));
    }
    if r.cpu_period != 0 && !(1_000..=1_000_000).contains(&r.cpu_period) {
        return Err(invalid(field("cpu_period"), format!("{} µs is outside 1000..=1000000", r.cpu_period)));
    }
    if r.cpu_quota != 0 && r.cpu_quota != -1 && r.cpu_quota < 1_000 {
        return Err(invalid(field("cpu_quota"), format!("{} µs is below the kernel's minimum of 1000", r.cpu_quota)));
    }
    if !(-1000..=1000).contains(&r.oom_score_adj) {
        return Err(invalid(field("oom_score_adj"), format!("{} is outside -1000..=1000", r.oom_score_adj)));
    }
    for (name, list) in [("cpuset_cpus", &r.cpuset_cpus), ("cpuset_mems", &r.cpuset_mems)] {
        if !list.is_empty() && !is_cpu_list(list) {
            return Err(invalid(field(name), format!("{list:?} is not a list like \"0-2,4\"")));
        }
    }
    for h in &r.hugepage_limits {
        if hugepage_size(&h.page_size).is_none() {
            return Err(invalid(field("hugepage_limits.page_size"), format!("{:?} is not a size like \"2MB\"", h.page_size)));
        }
    }
    Ok(())
}

fn is_cpu_list(s: &str) -> bool {
    s.split(',').all(|part| {
        let mut ends = part.splitn(2, '-').map(|n| n.trim().parse::<u32>());
        match (ends.next(), ends.next()) {
            (Some(Ok(_)), None) => true,
            (Some(Ok(a)), Some(Ok(b))) => a <= b,
            _ => false,
        }
    })
}

fn hugepage_size(s: &str) -> Option<&str> {
    let digits = s.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = &s[digits.len()..];
    (!digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) && matches!(unit, "KB" | "MB" | "GB")).then_some(s)
}

/// The container's pids limit, from berth's annotation (the CRI has no
/// field for it).
pub fn pids_limit(config: &v1::ContainerConfig) -> Result<Option<i64>, SpecError> {
    let Some(value) = config.annotations.get(crate::spec::PIDS_LIMIT_ANNOTATION) else { return Ok(None) };
    match value.trim().parse::<i64>() {
        Ok(n) if n > 0 => Ok(Some(n)),
        _ => Err(invalid(format!("annotations[{}]", crate::spec::PIDS_LIMIT_ANNOTATION), format!("{value:?} is not a positive number of processes"))),
    }
}

/// OCI resources from CRI resources (already validated).
pub fn resources(r: &v1::LinuxContainerResources) -> Value {
    let mut out = json!({});
    let mut cpu = serde_json::Map::new();
    if r.cpu_shares > 0 {
        cpu.insert("shares".into(), json!(r.cpu_shares));
    }
    // -1: no quota, which an update uses to lift one (containerd writes
    // it too); 0: not set.
    if r.cpu_quota > 0 || r.cpu_quota == -1 {
        cpu.insert("quota".into(), json!(r.cpu_quota));
    }
    if r.cpu_period > 0 {
        cpu.insert("period".into(), json!(r.cpu_period));
    }
    if !r.cpuset_cpus.is_empty() {
        cpu.insert("cpus".into(), json!(r.cpuset_cpus));
    }
    if !r.cpuset_mems.is_empty() {
        cpu.insert("mems".into(), json!(r.cpuset_mems));
    }
    if !cpu.is_empty() {
        out["cpu"] = Value::Object(cpu);
    }
    if r.memory_limit_in_bytes > 0 {
        out["memory"] = json!({ "limit": r.memory_limit_in_bytes });
        if r.memory_swap_limit_in_bytes != 0 {
            out["memory"]["swap"] = json!(r.memory_swap_limit_in_bytes);
        }
    }
    if !r.hugepage_limits.is_empty() {
        out["hugepageLimits"] = r.hugepage_limits.iter().map(|h| json!({ "pageSize": h.page_size, "limit": h.limit })).collect();
    }
    if !r.unified.is_empty() {
        out["unified"] = json!(r.unified.iter().collect::<BTreeMap<_, _>>());
    }
    out
}

/// A new `r` (already validated) into a container's spec: what
/// UpdateContainerResources does to a container that has no task yet, so
/// that its Start runs it with the new limits. As the shim does to a
/// running container, the limits `r` sets replace the old ones and those
/// it leaves at zero stay (`oom_score_adj` too, into `process`); the pids
/// limit (an annotation) and the device rules are not CRI resources and
/// stay too.
pub fn update_resources(spec: &mut serde_json::Map<String, Value>, r: &v1::LinuxContainerResources) {
    if r.oom_score_adj != 0 {
        object_at(spec, "process").insert("oomScoreAdj".into(), json!(r.oom_score_adj));
    }
    let old = object_at(object_at(spec, "linux"), "resources");
    if let Value::Object(new) = resources(r) {
        for (key, value) in new {
            match (old.get_mut(&key), value) {
                (Some(Value::Object(old_group)), Value::Object(new_group)) => old_group.extend(new_group),
                (_, value) => {
                    old.insert(key, value);
                }
            }
        }
    }
}

/// The limits a container has after an update `new` of `old`, by the same
/// rule as [`update_resources`] and the shim: what the update sets (as
/// [`resources`] would write it, and `oom_score_adj`) replaces, what it
/// leaves at zero stays.
pub fn merged_resources(old: &v1::LinuxContainerResources, new: &v1::LinuxContainerResources) -> v1::LinuxContainerResources {
    let mut out = old.clone();
    if new.oom_score_adj != 0 {
        out.oom_score_adj = new.oom_score_adj;
    }
    if new.cpu_shares > 0 {
        out.cpu_shares = new.cpu_shares;
    }
    if new.cpu_quota > 0 || new.cpu_quota == -1 {
        out.cpu_quota = new.cpu_quota;
    }
    if new.cpu_period > 0 {
        out.cpu_period = new.cpu_period;
    }
    if !new.cpuset_cpus.is_empty() {
        out.cpuset_cpus = new.cpuset_cpus.clone();
    }
    if !new.cpuset_mems.is_empty() {
        out.cpuset_mems = new.cpuset_mems.clone();
    }
    if new.memory_limit_in_bytes > 0 {
        out.memory_limit_in_bytes = new.memory_limit_in_bytes;
        if new.memory_swap_limit_in_bytes != 0 {
            out.memory_swap_limit_in_bytes = new.memory_swap_limit_in_bytes;
        }
    }
    if !new.hugepage_limits.is_empty() {
        out.hugepage_limits = new.hugepage_limits.clone();
    }
    out.unified.extend(new.unified.iter().map(|(k, v)| (k.clone(), v.clone())));
    out
}

/// The object under `key`, made one if it is missing or not an object.
fn object_at<'a>(map: &'a mut serde_json::Map<String, Value>, key: &str) -> &'a mut serde_json::Map<String, Value> {
    let slot = map.entry(key).or_insert_with(|| json!({}));
    if !slot.is_object() {
        *slot = json!({});
    }
    match slot {
        Value::Object(object) => object,
        _ => unreachable!("made an object just above"),
    }
}

/// The command line: the config's command replaces the entrypoint, its
/// args replace the image's cmd (Kubernetes' rules, same as Docker's).
pub fn process_args(config: &v1::ContainerConfig, image: &ImageDefaults) -> Result<Vec<String>, SpecError> {
    let entrypoint = if config.command.is_empty() { &image.entrypoint } else { &config.command };
    let args = if !config.args.is_empty() {
        &config.args
    } else if config.command.is_empty() {
        &image.cmd
    } else {
        &Vec::new()
    };
    let all: Vec<String> = entrypoint.iter().chain(args).cloned().collect();
    if all.is_empty() {
        return Err(invalid("command", "neither the container config nor the image names a command"));
    }
    Ok(all)
}

/// Image env, then the config's: a config variable replaces the image's.
pub fn environment(config: &v1::ContainerConfig, image: &ImageDefaults, hostname: &str) -> Vec<String> {
    let mut env: Vec<String> = Vec::new();
    let mut set = |entry: String| {
        let key = entry.split('=').next().unwrap_or("").to_string();
        env.retain(|e| e.split('=').next() != Some(key.as_str()));
        env.push(entry);
    };
    if !image.env.iter().any(|e| e.starts_with("PATH=")) {
        set(DEFAULT_PATH_ENV.to_string());
    }
    if !hostname.is_empty() {
        set(format!("HOSTNAME={hostname}"));
    }
    for e in &image.env {
        set(e.clone());
    }
    for kv in &config.envs {
        set(format!("{}={}", kv.key, kv.value));
    }
    env
}

pub fn container_spec(input: &ContainerInput<'_>) -> Result<Spec, SpecError> {
    let config = input.config;
    let linux = config.linux.as_ref();
    let sc = linux.and_then(|l| l.security_context.as_ref());
    let privileged = sc.is_some_and(|s| s.privileged);
    let empty = v1::LinuxContainerResources::default();
    let res = linux.and_then(|l| l.resources.as_ref()).unwrap_or(&empty);
    validate_resources(res)?;

    let args = process_args(config, input.image)?;
    let cwd = if !config.working_dir.is_empty() {
        config.working_dir.clone()
    } else if !input.image.working_dir.is_empty() {
        input.image.working_dir.clone()
    } else {
        "/".to_string()
    };
    if !cwd.starts_with('/') {
        return Err(invalid("working_dir", format!("{cwd:?} is not an absolute path")));
    }
    let caps = capabilities(sc, &input.host_capabilities)?;
    let mut process = json!({
        "terminal": config.tty,
        "user": { "uid": input.user.uid, "gid": input.user.gid, "additionalGids": input.user.additional_gids },
        "args": args,
        "env": environment(config, input.image, &input.hostname),
        "cwd": cwd,
        "capabilities": { "bounding": caps, "effective": caps, "permitted": caps },
        "noNewPrivileges": sc.is_some_and(|s| s.no_new_privs),
    });
    if res.oom_score_adj != 0 {
        process["oomScoreAdj"] = json!(res.oom_score_adj);
    }
    if let Some(profile) = &input.apparmor_profile {
        process["apparmorProfile"] = json!(profile);
    }

    let mounts = mounts(input, privileged)?;
    let propagation = rootfs_propagation(&input.mounts);

    let mut namespaces = vec![json!({ "type": "mount" }), json!({ "type": "cgroup" })];
    for (kind, ns) in [("network", &input.namespaces.net), ("ipc", &input.namespaces.ipc), ("uts", &input.namespaces.uts), ("pid", &input.namespaces.pid)] {
        match ns {
            Namespace::Private => namespaces.push(json!({ "type": kind })),
            Namespace::Join(path) => namespaces.push(json!({ "type": kind, "path": path })),
            Namespace::Host => {}
        }
    }
    if let Some(user) = &input.namespaces.user {
        namespaces.push(json!({ "type": "user", "path": user.path }));
    }

    let mut resources = resources(res);
    if let Some(limit) = pids_limit(config)? {
        resources["pids"] = json!({ "limit": limit });
    }
    resources["devices"] = if privileged { json!([{ "allow": true, "access": "rwm" }]) } else { device_rules(&input.devices) };

    let sandbox_linux = input.sandbox.linux.as_ref();
    let sysctls: BTreeMap<&String, &String> = sandbox_linux.map(|l| l.sysctls.iter().collect()).unwrap_or_default();
    let (masked, readonly) = if privileged {
        (Vec::new(), Vec::new())
    } else {
        let masked = sc.map(|s| s.masked_paths.clone()).filter(|m| !m.is_empty()).unwrap_or_else(|| MASKED_PATHS.iter().map(|s| s.to_string()).collect());
        let ro = sc.map(|s| s.readonly_paths.clone()).filter(|m| !m.is_empty()).unwrap_or_else(|| READONLY_PATHS.iter().map(|s| s.to_string()).collect());
        (masked, ro)
    };
    let devices: Vec<Value> = input
        .devices
        .iter()
        .map(|d| json!({ "path": d.container_path, "type": d.kind.to_string(), "major": d.major, "minor": d.minor, "fileMode": d.file_mode, "uid": 0, "gid": 0 }))
        .collect();

    let mut linux_section = json!({
        "namespaces": namespaces,
        "resources": resources,
        "cgroupsPath": input.cgroups_path,
        "sysctl": sysctls,
        "maskedPaths": masked,
        "readonlyPaths": readonly,
        "devices": devices,
    });
    if let Some(p) = propagation {
        linux_section["rootfsPropagation"] = json!(p);
    }
    if let Some(user) = &input.namespaces.user {
        linux_section["uidMappings"] = id_mappings(&user.uids);
        linux_section["gidMappings"] = id_mappings(&user.gids);
    }
    if let Some(seccomp) = &input.seccomp {
        linux_section["seccomp"] = serde_json::to_value(seccomp).map_err(|e| invalid("linux.security_context.seccomp", e.to_string()))?;
    }

    let metadata = config.metadata.as_ref();
    let sandbox_meta = input.sandbox.metadata.as_ref();
    let annotations: BTreeMap<&str, String> = BTreeMap::from([
        ("io.kubernetes.cri.container-type", "container".to_string()),
        ("io.kubernetes.cri.container-name", metadata.map(|m| m.name.clone()).unwrap_or_default()),
        ("io.kubernetes.cri.sandbox-id", input.sandbox_id.to_string()),
        ("io.kubernetes.cri.sandbox-name", sandbox_meta.map(|m| m.name.clone()).unwrap_or_default()),
        ("io.kubernetes.cri.sandbox-namespace", sandbox_meta.map(|m| m.namespace.clone()).unwrap_or_default()),
        ("io.kubernetes.cri.sandbox-uid", sandbox_meta.map(|m| m.uid.clone()).unwrap_or_default()),
        ("io.kubernetes.cri.image-name", input.image_name.to_string()),
    ]);
    let readonly_root = sc.is_some_and(|s| s.readonly_rootfs);
    let spec = json!({
        "ociVersion": "1.1.0",
        "root": { "path": "rootfs", "readonly": readonly_root },
        "process": process,
        "mounts": mounts,
        "linux": linux_section,
        "annotations": annotations,
    });
    serde_json::from_value(spec).map_err(|e| invalid("config", format!("does not make a valid OCI spec: {e}")))
}

/// The standard mounts, then the pod's files, then the config's mounts;
/// a later mount at the same destination replaces an earlier one.
fn mounts(input: &ContainerInput<'_>, privileged: bool) -> Result<Vec<Value>, SpecError> {
    let sys_mode = if privileged { "rw" } else { "ro" };
    let mut list: Vec<(String, Value)> = vec![
        ("/proc".into(), json!({ "destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"] })),
        ("/dev".into(), json!({ "destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"] })),
        (
            "/dev/pts".into(),
            json!({ "destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"] }),
        ),
        ("/dev/mqueue".into(), json!({ "destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"] })),
        ("/sys".into(), json!({ "destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", sys_mode] })),
        (
            "/sys/fs/cgroup".into(),
            json!({ "destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["nosuid", "noexec", "nodev", "relatime", sys_mode] }),
        ),
    ];
    if !input.pod_files.iter().any(|f| f.destination == "/dev/shm") {
        list.push((
            "/dev/shm".into(),
            json!({ "destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"] }),
        ));
    }
    let mut push = |dest: String, value: Value| {
        list.retain(|(d, _)| *d != dest);
        list.push((dest, value));
    };
    let user_dests: HashSet<&str> = input.mounts.iter().map(|m| m.container_path.trim_end_matches('/')).collect();
    for f in &input.pod_files {
        if user_dests.contains(f.destination.as_str()) {
            continue;
        }
        let mode = if f.readonly { "ro" } else { "rw" };
        push(f.destination.clone(), json!({ "destination": f.destination, "type": "bind", "source": f.source, "options": ["rbind", "rprivate", mode] }));
    }
    for (i, m) in input.mounts.iter().enumerate() {
        let field = format!("mounts[{i}]");
        if !m.container_path.starts_with('/') {
            return Err(invalid(format!("{field}.container_path"), format!("{:?} is not an absolute path", m.container_path)));
        }
        if !m.host_path.starts_with('/') {
            return Err(invalid(format!("{field}.host_path"), format!("{:?} is not an absolute path", m.host_path)));
        }
        let propagation = match v1::MountPropagation::try_from(m.propagation) {
            Ok(v1::MountPropagation::PropagationPrivate) => "rprivate",
            Ok(v1::MountPropagation::PropagationHostToContainer) => "rslave",
            Ok(v1::MountPropagation::PropagationBidirectional) => "rshared",
            Err(_) => return Err(invalid(format!("{field}.propagation"), format!("unknown value {}", m.propagation))),
        };
        // Plain read-only covers the mount itself, not what is mounted
        // under it; recursive_read_only covers all of it. The CRI requires
        // the latter to come with readonly and private propagation: a
        // shared or slave mount could receive new, writable submounts.
        if m.recursive_read_only && !m.readonly {
            return Err(invalid(format!("{field}.recursive_read_only"), "is set but readonly is false; a recursively read-only mount must be read-only"));
        }
        if m.recursive_read_only && propagation != "rprivate" {
            return Err(invalid(
                format!("{field}.recursive_read_only"),
                format!("needs propagation PROPAGATION_PRIVATE, not {}", v1::MountPropagation::try_from(m.propagation).map(|p| p.as_str_name()).unwrap_or("?")),
            ));
        }
        let mut options = vec!["rbind", propagation, if m.readonly { "ro" } else { "rw" }];
        if m.recursive_read_only {
            options.push("rro");
        }
        let dest = m.container_path.trim_end_matches('/').to_string();
        let dest = if dest.is_empty() { "/".to_string() } else { dest };
        let mut mount = json!({ "destination": dest, "type": "bind", "source": m.host_path, "options": options });
        // Idmapped (the kubelet's volumes of a pod with a user namespace):
        // files keep their on-disk owners and show through the maps.
        if !m.uid_mappings.is_empty() || !m.gid_mappings.is_empty() {
            mount["uidMappings"] = id_mappings(&m.uid_mappings);
            mount["gidMappings"] = id_mappings(&m.gid_mappings);
        }
        push(dest.clone(), mount);
    }
    for v in &input.image_volumes {
        if !v.container_path.starts_with('/') {
            return Err(invalid("mounts[].container_path", format!("{:?} is not an absolute path", v.container_path)));
        }
        // Read-only whatever the request says: the kubelet's image volumes
        // are, and the snapshot under it is the container's only hold on
        // the image's layers, not a place to write.
        let mut options = v.options.iter().filter(|o| *o != "rw").cloned().collect::<Vec<_>>();
        options.extend(["ro".to_string(), "nosuid".to_string(), "nodev".to_string()]);
        let dest = v.container_path.trim_end_matches('/').to_string();
        push(dest.clone(), json!({ "destination": dest, "type": v.typ, "source": v.source, "options": options }));
    }
    Ok(list.into_iter().map(|(_, v)| v).collect())
}

/// The spec of a pod's pause process (pods sharing one PID namespace): the
/// init itself stays as pid 1 and only reaps; it runs with no capability,
/// no_new_privs and an empty rootfs, in the pod's namespaces.
pub fn pause_spec(net: &Namespace, ipc: &Namespace, uts: &Namespace, user: Option<&UserNamespace>, cgroups_path: &str) -> Spec {
    let mut namespaces = vec![json!({ "type": "pid" }), json!({ "type": "mount" })];
    for (kind, ns) in [("network", net), ("ipc", ipc), ("uts", uts)] {
        match ns {
            Namespace::Private => namespaces.push(json!({ "type": kind })),
            Namespace::Join(path) => namespaces.push(json!({ "type": kind, "path": path })),
            Namespace::Host => {}
        }
    }
    if let Some(user) = user {
        namespaces.push(json!({ "type": "user", "path": user.path }));
    }
    let mut spec = json!({
        "ociVersion": "1.1.0",
        "root": { "path": "rootfs", "readonly": true },
        "process": {
            "user": { "uid": 0, "gid": 0 },
            "args": ["pause"],
            "cwd": "/",
            "capabilities": { "bounding": [], "effective": [], "permitted": [] },
            "noNewPrivileges": true
        },
        "mounts": [],
        "linux": { "namespaces": namespaces, "cgroupsPath": cgroups_path, "resources": { "devices": [{ "allow": false, "access": "rwm" }] } },
        "annotations": { (crate::spec::PAUSE_ANNOTATION): "true" }
    });
    if let Some(user) = user {
        spec["linux"]["uidMappings"] = id_mappings(&user.uids);
        spec["linux"]["gidMappings"] = id_mappings(&user.gids);
    }
    serde_json::from_value(spec).expect("the pause spec is valid")
}

/// A bidirectional mount needs the rootfs shared, a host-to-container one
/// needs it a slave; otherwise the default (private) is right.
fn rootfs_propagation(mounts: &[v1::Mount]) -> Option<&'static str> {
    let has = |p: v1::MountPropagation| mounts.iter().any(|m| m.propagation == p as i32);
    if has(v1::MountPropagation::PropagationBidirectional) {
        Some("rshared")
    } else if has(v1::MountPropagation::PropagationHostToContainer) {
        Some("rslave")
    } else {
        None
    }
}

fn device_rules(devices: &[HostDevice]) -> Value {
    let base = crate::spec::default_spec("rootfs", &["/bin/true"]);
    let mut rules = serde_json::to_value(base.linux().as_ref().and_then(|l| l.resources().as_ref()).and_then(|r| r.devices().clone()).unwrap_or_default())
        .unwrap_or(json!([]));
    if let Some(list) = rules.as_array_mut() {
        for d in devices {
            list.push(json!({ "allow": true, "type": d.kind.to_string(), "major": d.major, "minor": d.minor, "access": d.permissions }));
        }
    }
    rules
}

#[cfg(test)]
mod tests;

impl berth_error_kind::HasKind for SpecError {
    /// The config asked for something no spec can express.
    fn kind(&self) -> berth_error_kind::ErrorKind {
        berth_error_kind::ErrorKind::InvalidArgument
    }
}
