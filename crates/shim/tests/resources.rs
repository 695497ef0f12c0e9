//! cgroup limits are enforced, reported and updatable.

mod common;

use common::*;
use containerd_shim_protos::{api, cgroups::metrics::Metrics, protobuf::Message};
use oci_spec::runtime::{LinuxMemoryBuilder, LinuxPidsBuilder, LinuxResources, LinuxResourcesBuilder};

fn with_resources(spec: &mut oci_spec::runtime::Spec, r: LinuxResources) {
    let linux = spec.linux_mut().as_mut().unwrap();
    let mut merged = r;
    merged.set_devices(linux.resources().as_ref().and_then(|x| x.devices().clone()));
    linux.set_resources(Some(merged));
}

fn metrics(shim: &Shim) -> Metrics {
    let req = api::StatsRequest { id: shim.id.clone(), ..Default::default() };
    let any = shim.client.stats(Shim::ctx(), &req).unwrap().stats.unwrap();
    assert_eq!(any.type_url, "io.containerd.cgroups.v1.Metrics");
    Metrics::parse_from_bytes(&any.value).unwrap()
}

#[test]
fn memory_limit_oom_kills_and_the_kill_is_reported() {
    let shim = Shim::start("oom");
    let mut spec = spec(&shim.id, &["tail", "/dev/zero"]);
    let limit = 32i64 << 20;
    with_resources(&mut spec, LinuxResourcesBuilder::default().memory(LinuxMemoryBuilder::default().limit(limit).swap(limit).build().unwrap()).build().unwrap());
    let pid = shim.run(&spec);
    let limit_file = std::fs::read_to_string(shim.cgroup_dir("memory").join("memory.limit_in_bytes")).unwrap();
    assert_eq!(limit_file.trim(), limit.to_string());
    assert_eq!(shim.wait(""), 137, "SIGKILL by the OOM killer");
    let m = metrics(&shim);
    assert!(m.memory_oom_control.oom_kill >= 1, "oom_kill counter: {:?}", m.memory_oom_control);
    assert!(m.memory.usage.max >= (limit as u64) / 2, "max usage {}", m.memory.usage.max);
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
    let events = std::fs::read_to_string(shim.cgroup_dir("pids").join("pids.events")).unwrap();
    assert!(events.trim() != "max 0", "the pids controller refused nothing: {events}");
    assert_eq!(metrics(&shim).pids.limit, 10);
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
    let limit = std::fs::read_to_string(shim.cgroup_dir("memory").join("memory.limit_in_bytes")).unwrap();
    assert_eq!(limit.trim(), (64u64 << 20).to_string());
    // An impossible value is refused with InvalidArgument and changes nothing.
    let bad = r#"{"cpu":{"quota":5}}"#;
    let any = containerd_shim_protos::protobuf::well_known_types::any::Any { value: bad.as_bytes().to_vec(), ..Default::default() };
    let req = api::UpdateTaskRequest { id: shim.id.clone(), resources: Some(any).into(), ..Default::default() };
    let (c, msg) = code(&shim.client.update(Shim::ctx(), &req).unwrap_err());
    assert_eq!(c, ttrpc::Code::INVALID_ARGUMENT, "{msg}");
    assert!(msg.contains("cpu.quota"), "{msg}");
    shim.delete_and_assert_clean(pid);
}

#[test]
fn stats_move_when_the_container_burns_cpu() {
    let shim = Shim::start("cpu");
    let pid = shim.run(&spec(&shim.id, &["sh", "-c", "while :; do :; done"]));
    let first = metrics(&shim).cpu.usage.total;
    std::thread::sleep(std::time::Duration::from_millis(300));
    let second = metrics(&shim).cpu.usage.total;
    assert!(second > first + 50_000_000, "cpu usage {first} -> {second} ns");
    let pids = shim.client.pids(Shim::ctx(), &api::PidsRequest { id: shim.id.clone(), ..Default::default() }).unwrap();
    assert_eq!(pids.processes.iter().map(|p| p.pid).collect::<Vec<_>>(), vec![pid]);
    shim.delete_and_assert_clean(pid);
}
