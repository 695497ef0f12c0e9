//! The baseline container spec every berth container starts from: the
//! namespaces, mounts, devices, capabilities and hidden paths that
//! container users expect from Docker, containerd and CRI-O alike.

use oci_spec::runtime::Spec;
use serde_json::json;

/// Capabilities a container gets unless it asks for others (the set Docker,
/// containerd and CRI-O agree on).
pub const DEFAULT_CAPABILITIES: [&str; 14] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// Kernel interfaces that leak host information or allow host changes.
pub const MASKED_PATHS: [&str; 11] = [
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

pub const READONLY_PATHS: [&str; 5] = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"];

/// Spec annotation that makes the container's init the pod's pid-1 reaper
/// instead of exec'ing `process.args` (pods sharing one PID namespace).
pub const PAUSE_ANNOTATION: &str = "io.berth.pause";

/// Container annotation (CRI `ContainerConfig.annotations`) that sets the
/// container cgroup's `pids.max` (a positive number): the CRI's
/// LinuxContainerResources has no field for it (the kubelet limits pids
/// per pod, on the pod's cgroup). `berthctl run --pids-limit` sets it.
pub const PIDS_LIMIT_ANNOTATION: &str = "io.berth.pids-limit";

/// Annotation on a Task Update asking the shim to reopen the container's
/// CRI log (after the kubelet rotated it): the Task API has no verb for
/// it, and Update is the call that changes a running container.
pub const REOPEN_LOG_ANNOTATION: &str = "io.berth.log.reopen";

/// Annotation on a Task Update carrying a new oom_score_adj for the
/// container's init (UpdateContainerResources' `oom_score_adj`): OCI
/// LinuxResources, the Update's payload, has no field for it.
pub const OOM_SCORE_ADJ_ANNOTATION: &str = "io.berth.oom-score-adj";

pub const DEFAULT_PATH_ENV: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// A complete spec for `args` in `rootfs`, with every default filled in.
/// Callers (berthd's CRI layer, tests) adjust it from there.
pub fn default_spec(rootfs: &str, args: &[&str]) -> Spec {
    let caps = DEFAULT_CAPABILITIES.to_vec();
    let value = json!({
        "ociVersion": "1.1.0",
        "root": { "path": rootfs, "readonly": false },
        "process": {
            "terminal": false,
            "user": { "uid": 0, "gid": 0 },
            "args": args,
            "env": [DEFAULT_PATH_ENV],
            "cwd": "/",
            "capabilities": {
                "bounding": caps, "effective": caps, "permitted": caps
            },
            "noNewPrivileges": false
        },
        "hostname": "berth",
        "mounts": [
            { "destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"] },
            { "destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"] },
            { "destination": "/dev/pts", "type": "devpts", "source": "devpts",
              "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"] },
            { "destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"] },
            { "destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"] },
            { "destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"] },
            { "destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["nosuid", "noexec", "nodev", "relatime", "ro"] }
        ],
        "linux": {
            "namespaces": [
                { "type": "pid" }, { "type": "network" }, { "type": "ipc" },
                { "type": "uts" }, { "type": "mount" }, { "type": "cgroup" }
            ],
            "resources": { "devices": default_device_rules() },
            "maskedPaths": MASKED_PATHS,
            "readonlyPaths": READONLY_PATHS
        }
    });
    serde_json::from_value(value).expect("the built-in default spec is valid")
}

/// devices cgroup: deny everything, then allow the default device nodes
/// and the container's own ptys.
fn default_device_rules() -> serde_json::Value {
    let allow = |typ: &str, major: i64, minor: Option<i64>| json!({ "allow": true, "type": typ, "major": major, "minor": minor, "access": "rwm" });
    json!([
        { "allow": false, "access": "rwm" },
        allow("c", 1, Some(3)),   // null
        allow("c", 1, Some(5)),   // zero
        allow("c", 1, Some(7)),   // full
        allow("c", 1, Some(8)),   // random
        allow("c", 1, Some(9)),   // urandom
        allow("c", 5, Some(0)),   // tty
        allow("c", 5, Some(1)),   // console
        allow("c", 5, Some(2)),   // ptmx
        allow("c", 136, None),    // pts/*
        allow("c", 10, Some(200)) // net/tun
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_spec_is_complete() {
        let spec = default_spec("rootfs", &["/bin/sh"]);
        let linux = spec.linux().as_ref().unwrap();
        assert_eq!(linux.namespaces().as_ref().unwrap().len(), 6);
        assert_eq!(spec.mounts().as_ref().unwrap().len(), 7);
        let caps = spec.process().as_ref().unwrap().capabilities().as_ref().unwrap();
        assert_eq!(caps.bounding().as_ref().unwrap().len(), DEFAULT_CAPABILITIES.len());
        assert_eq!(linux.resources().as_ref().unwrap().devices().as_ref().unwrap().len(), 11);
    }
}
