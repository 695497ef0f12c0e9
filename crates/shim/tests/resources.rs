//! cgroup limits are enforced, reported and updatable.

mod common;

use berth_cgroups::Version;
use common::*;
use containerd_shim_protos::{api, cgroups::metrics::Metrics as V1Metrics, cgroups_v2::metrics::Metrics as V2Metrics, protobuf::Message};
use oci_spec::runtime::{LinuxMemoryBuilder, LinuxPidsBuilder, LinuxResources, LinuxResourcesBuilder};

fn with_resources(spec: &mut oci_spec::runtime::Spec, r: LinuxResources) {
    let linux = spec.linux_mut().as_mut().unwrap();
    let mut merged = r;
    merged.set_devices(linux.resources().as_ref().and_then(|x| x.devices().clone()));
    linux.set_resources(Some(merged));
}

/// What the tests read of the Stats answer, from v1 or v2 Metrics (the
/// one this host's hierarchy gives).
struct Figures {
    oom_kills: u64,
    max_usage: u64,
    pids_limit: u64,
    cpu_usage_ns: u64,
}

fn metrics(shim: &Shim) -> Figures {
    let req = api::StatsRequest { id: shim.id.clone(), ..Default::default() };
    let any = shim.client.stats(Shim::ctx(), &req).unwrap().stats.unwrap();
    match shim.cgroup().version() {
        Version::V1 => {
            assert_eq!(any.type_url, "io.containerd.cgroups.v1.Metrics");
            let m = V1Metrics::parse_from_bytes(&any.value).unwrap();
            Figures { oom_kills: m.memory_oom_control.oom_kill, max_usage: m.memory.usage.max, pids_limit: m.pids.limit, cpu_usage_ns: m.cpu.usage.total }
        }
        Version::V2 => {
            assert_eq!(any.type_url, "io.containerd.cgroups.v2.Metrics");
            let m = V2Metrics::parse_from_bytes(&any.value).unwrap();
            // v2 reports CPU in microseconds.
            Figures { oom_kills: m.memory_events.oom_kill, max_usage: m.memory.max_usage, pids_limit: m.pids.limit, cpu_usage_ns: m.cpu.usage_usec * 1000 }
        }
    }
}

#[test]
fn memory_limit_oom_kills_and_the_kill_is_reported() {
    let shim = Shim::start("oom");
    let mut spec = spec(&shim.id, &["tail", "/dev/zero"]);
    let limit = 32i64 << 20;
    with_resources(
        &mut spec,
        LinuxResourcesBuilder::default().memory(LinuxMemoryBuilder::default().limit(limit).swap(limit).build().unwrap()).build().unwrap(),
    );
    let pid = shim.run(&spec);
    assert_eq!(shim.cgroup().memory_limit(), limit as u64);
    assert_eq!(shim.wait(""), 137, "SIGKILL by the OOM killer");
    let m = metrics(&shim);
    assert!(m.oom_kills >= 1, "oom_kill counter: {}", m.oom_kills);
    // memory.peak (v2) is newer than some kernels; v1 always has max usage.
    if shim.cgroup().version() == Version::V1 || shim.cgroup().dir("memory").join("memory.peak").exists() {
        assert!(m.max_usage >= (limit as u64) / 2, "max usage {}", m.max_usage);
    }
    shim.delete_and_assert_clean(pid);
}

#[test]
fn pids_limit_stops_a_fork_bomb() {
    let shim = Shim::start("pids");
    let script = "for i in $(seq 1 40); do sleep 1000 & done; echo all-forked";
    let mut spec = spec(&shim.id, &["sh", "-c", script]);
    with_resources(&mut spec, LinuxResourcesBuilder::default().pids(LinuxPidsBuilder::default().limit(10).build().unwrap()).build().unwrap());
    let pid = shim.run(&spec);
    // ash gives up on the first refused fork: the bomb is stopped.
    assert_ne!(shim.wait(""), 0);
    let text = shim.log_text();
    assert!(text.contains("can't fork") && !text.contains("all-forked"), "{text}");
    let events = shim.cgroup().read("pids", "pids.events", "pids.events");
    assert!(events.trim() != "max 0", "the pids controller refused nothing: {events}");
    assert_eq!(metrics(&shim).pids_limit, 10);
    shim.delete_and_assert_clean(pid);
}

#[test]
fn update_changes_limits_of_a_running_container() {
    let shim = Shim::start("update");
    let pid = shim.run(&spec(&shim.id, &["sleep", "1000"]));
    let r = LinuxResourcesBuilder::default().memory(LinuxMemoryBuilder::default().limit(64i64 << 20).build().unwrap()).build().unwrap();
    let any = containerd_shim_protos::protobuf::well_known_types::any::Any {
        type_url: "types.containerd.io/opencontainers/runtime-spec/1/LinuxResources".into(),
        value: serde_json::to_vec(&r).unwrap(),
        ..Default::default()
    };
    let req = api::UpdateTaskRequest { id: shim.id.clone(), resources: Some(any).into(), ..Default::default() };
    shim.client.update(Shim::ctx(), &req).unwrap();
    assert_eq!(shim.cgroup().memory_limit(), 64u64 << 20);
    // An impossible value is refused with InvalidArgument and changes nothing.
    let bad = r#"{"cpu":{"quota":5}}"#;
    let any = containerd_shim_protos::protobuf::well_known_types::any::Any { value: bad.as_bytes().to_vec(), ..Default::default() };
    let req = api::UpdateTaskRequest { id: shim.id.clone(), resources: Some(any).into(), ..Default::default() };
    let (c, msg) = code(&shim.client.update(Shim::ctx(), &req).unwrap_err());
    assert_eq!(c, ttrpc::Code::INVALID_ARGUMENT, "{msg}");
    assert!(msg.contains("cpu.quota"), "{msg}");
    // So is what is not LinuxResources at all (parsed by berth-runtime).
    let any = containerd_shim_protos::protobuf::well_known_types::any::Any { value: b"[1, 2]".to_vec(), ..Default::default() };
    let req = api::UpdateTaskRequest { id: shim.id.clone(), resources: Some(any).into(), ..Default::default() };
    let (c, msg) = code(&shim.client.update(Shim::ctx(), &req).unwrap_err());
    assert_eq!(c, ttrpc::Code::INVALID_ARGUMENT, "{msg}");
    assert!(msg.contains("not OCI LinuxResources"), "{msg}");
    assert_eq!(shim.cgroup().memory_limit(), 64u64 << 20);
    shim.delete_and_assert_clean(pid);
}

#[test]
fn stats_move_when_the_container_burns_cpu() {
    let shim = Shim::start("cpu");
    let pid = shim.run(&spec(&shim.id, &["sh", "-c", "while :; do :; done"]));
    let first = metrics(&shim).cpu_usage_ns;
    std::thread::sleep(std::time::Duration::from_millis(300));
    let second = metrics(&shim).cpu_usage_ns;
    assert!(second > first + 50_000_000, "cpu usage {first} -> {second} ns");
    let pids = shim.client.pids(Shim::ctx(), &api::PidsRequest { id: shim.id.clone(), ..Default::default() }).unwrap();
    assert_eq!(pids.processes.iter().map(|p| p.pid).collect::<Vec<_>>(), vec![pid]);
    shim.delete_and_assert_clean(pid);
}
