//! berth-shim as a runtime handler of a real containerd (Debian's 1.6),
//! driven through containerd's CRI as the kubelet drives it: the handler
//! mode of berth's Helm chart. Both the pod's pause and its containers run
//! under berth-shim, started by containerd with its shim v2 command line.

mod common;

use std::time::Duration;

use common::containerd_node::ContainerdNode;
use k8s_cri::v1;

/// A pod with a container: exec, logs, stats, exit codes and task events
/// as containerd sees them, then a clean stop and remove.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_runs_under_berth_shim_through_containerd() {
    let mut node = ContainerdNode::start().await;
    node.watch_events();
    let pod = node.run_pod("web").await;
    let shims = node.shims();
    assert!(shims.contains_key(&pod.0), "the pod's pause runs under berth-shim: {shims:?}");
    // The binary containerd ran is the one the installer put on its PATH,
    // and containerd's own runc shim serves nothing.
    assert_eq!(std::fs::read_link(format!("/proc/{}/exe", shims[&pod.0])).unwrap(), node.installed_shim());
    assert_eq!(node.runc_shims(), Vec::<i32>::new(), "no containerd-shim-runc-v2 for a pod of handler {}", common::containerd_node::HANDLER);
    assert!(node.shim_socket(&pod.0).exists(), "containerd's shim socket dir holds the pod's shim socket");
    // containerd 1.6 reads the bundle's address when it reloads its shims.
    let address = std::fs::read_to_string(node.bundle(&pod.0).join("address")).unwrap();
    assert_eq!(address, format!("unix://{}", node.shim_socket(&pod.0).display()));
    // Like containerd's runc shim: in containerd's cgroup (containerd.service
    // has KillMode=process), one point likelier than containerd to be
    // chosen by the OOM killer.
    let containerd_pid = node.child.id();
    assert_eq!(berth_testkit::cgroups::proc_cgroups(shims[&pod.0] as u32), berth_testkit::cgroups::proc_cgroups(containerd_pid));
    let score = |pid: u32| std::fs::read_to_string(format!("/proc/{pid}/oom_score_adj")).unwrap().trim().parse::<i32>().unwrap();
    assert_eq!(score(shims[&pod.0] as u32), score(containerd_pid) + 1);

    let main = node.run(&pod, "main", &["sh", "-c", "echo hello-from-berth; echo to-stderr >&2; exec sleep 3600"]).await;
    assert!(node.shims().contains_key(&main), "one berth-shim per container");
    let st = node.status(&main).await;
    assert_eq!(st.state, v1::ContainerState::ContainerRunning as i32);
    node.wait_for_log_line("web", "main", "stdout", "hello-from-berth").await;
    node.wait_for_log_line("web", "main", "stderr", "to-stderr").await;

    // ExecSync: output through containerd's fifos, exit codes through Wait.
    let out = node.exec(&main, &["sh", "-c", "echo exec-out; echo exec-err >&2; exit 3"], 10).await.unwrap();
    assert_eq!((out.exit_code, out.stdout.as_slice(), out.stderr.as_slice()), (3, &b"exec-out\n"[..], &b"exec-err\n"[..]));
    let hostname = node.exec(&main, &["hostname"], 10).await.unwrap();
    assert_eq!(String::from_utf8_lossy(&hostname.stdout).trim(), "web", "the container joined the pause's UTS namespace");

    // Stats as containerd's CRI decodes them (cgroups Metrics in an Any).
    let stats = node.rt.container_stats(v1::ContainerStatsRequest { container_id: main.clone() }).await.unwrap().into_inner().stats.unwrap();
    assert!(stats.memory.and_then(|m| m.working_set_bytes).is_some_and(|w| w.value > 0), "memory from berth-shim's Stats");
    assert!(stats.cpu.is_some_and(|c| c.timestamp > 0), "cpu from berth-shim's Stats");

    // A container that exits: its exit code reaches containerd's CRI.
    let short = node.run(&pod, "short", &["sh", "-c", "exit 7"]).await;
    let st = node.wait_exited(&short, Duration::from_secs(20)).await;
    assert_eq!((st.exit_code, st.reason.as_str()), (7, "Error"));

    // Over its memory limit: TaskOOM reaches containerd's CRI as OOMKilled.
    let mut config = node.container_config("eat", &["tail", "/dev/zero"]);
    config.linux.as_mut().unwrap().resources =
        Some(v1::LinuxContainerResources { memory_limit_in_bytes: 32 << 20, memory_swap_limit_in_bytes: 32 << 20, ..Default::default() });
    let eat = node.create(&pod, config).await.unwrap();
    node.start_container(&eat).await;
    let st = node.wait_exited(&eat, Duration::from_secs(30)).await;
    assert_eq!((st.exit_code, st.reason.as_str()), (137, "OOMKilled"));

    // The task events berth-shim published, as containerd's exchange has them.
    let within = Duration::from_secs(10);
    let is = |topic: &'static str, id: String| move |t: &str, e: &serde_json::Value| t == topic && e["container_id"] == id.as_str();
    node.wait_for_event("TaskCreate", within, is("/tasks/create", main.clone())).await;
    node.wait_for_event("TaskStart", within, is("/tasks/start", main.clone())).await;
    node.wait_for_event("TaskExecAdded", within, is("/tasks/exec-added", main.clone())).await;
    node.wait_for_event("TaskExecStarted", within, is("/tasks/exec-started", main.clone())).await;
    let exit = node.wait_for_event("TaskExit", within, is("/tasks/exit", short.clone())).await;
    assert_eq!((exit["id"].as_str(), exit["exit_status"].as_u64()), (Some(short.as_str()), Some(7)));
    node.wait_for_event("TaskDelete", within, is("/tasks/delete", short.clone())).await;
    node.wait_for_event("TaskOOM", within, is("/tasks/oom", eat.clone())).await;
    let exec_exit =
        node.wait_for_event("exec TaskExit", within, |t, e| t == "/tasks/exit" && e["container_id"] == main.as_str() && e["id"] != main.as_str()).await;
    assert_eq!(exec_exit["exit_status"].as_u64(), Some(3));

    // The default handler on the same containerd still means runc's shim:
    // the handler, not the node, chose berth-shim above.
    let runc_pod = node.run_runc_pod("plain").await;
    assert_eq!(node.runc_shims().len(), 1, "runc's shim serves the pod of the default handler");
    assert!(!node.shims().contains_key(&runc_pod.0), "berth-shim serves nothing of it");

    // The exited containers' shims are gone; the running ones still serve.
    let shims = node.shims();
    assert!(!shims.contains_key(&short) && !shims.contains_key(&eat), "shims of deleted tasks exit: {shims:?}");
    assert!(!node.shim_socket(&short).exists());
    assert!(shims.contains_key(&main) && shims.contains_key(&pod.0));
    node.teardown().await;
}

/// A berth-shim killed with SIGKILL: containerd runs `delete`, which kills
/// the container and cleans up after it; the CRI reports the container
/// exited, and the rest of the pod goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containerd_cleans_up_after_a_killed_berth_shim() {
    let mut node = ContainerdNode::start().await;
    node.watch_events();
    let pod = node.run_pod("victim").await;
    let doomed = node.run(&pod, "doomed", &["sleep", "3600"]).await;
    let other = node.run(&pod, "other", &["sleep", "3600"]).await;
    let shim = node.shims()[&doomed];
    let workload = node.status(&doomed).await;
    assert_eq!(workload.state, v1::ContainerState::ContainerRunning as i32);
    let init_pid = std::fs::read_to_string(node.bundle(&doomed).join("init.pid")).unwrap().trim().parse::<u64>().unwrap();
    let rootfs = node.bundle(&doomed).join("rootfs");
    assert!(node.mounts().iter().any(|m| *m == rootfs.display().to_string()), "rootfs mounted by the shim");

    nix::sys::signal::kill(nix::unistd::Pid::from_raw(shim), nix::sys::signal::Signal::SIGKILL).unwrap();
    let st = node.wait_exited(&doomed, Duration::from_secs(20)).await;
    // containerd 1.6's CRI takes the exit from its Wait call, which the
    // shim's death breaks first: 255 ("unknown"), whatever the shim (runc's
    // too). What `delete` answered is the TaskExit containerd publishes
    // after running it: the init's pid, SIGKILLed.
    assert_eq!(st.exit_code, 255);
    let exit = node.wait_for_event("TaskExit from `delete`", Duration::from_secs(10), |t, e| t == "/tasks/exit" && e["container_id"] == doomed.as_str()).await;
    assert_eq!((exit["pid"].as_u64(), exit["exit_status"].as_u64()), (Some(init_pid), Some(137)), "{exit}");
    assert!(!node.shim_socket(&doomed).exists(), "`delete` removed the dead shim's socket");
    assert!(!node.mounts().iter().any(|m| m.contains(&doomed)), "`delete` unmounted the rootfs: {:?}", node.mounts());
    let cgroup = berth_testkit::cgroups::HostCgroup::new(&format!("{}/victim/{doomed}", node.cgroup_parent));
    assert!(cgroup.existing_dirs().is_empty(), "`delete` killed and removed the container's cgroup");

    // The pod and its other container are untouched.
    let out = node.exec(&other, &["echo", "still-here"], 10).await.unwrap();
    assert_eq!(out.stdout, b"still-here\n");
    node.teardown().await;
}

/// containerd restarts while berth-shims run: it finds them again through
/// the bundle's address file, and drives them as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn berth_shims_outlive_a_containerd_restart() {
    let mut node = ContainerdNode::start().await;
    let pod = node.run_pod("steady").await;
    let main = node.run(&pod, "main", &["sleep", "3600"]).await;
    let before = node.shims();
    node.restart_containerd().await;
    assert_eq!(node.shims(), before, "the shims kept running");
    let st = node.status(&main).await;
    assert_eq!(st.state, v1::ContainerState::ContainerRunning as i32);
    let out = node.exec(&main, &["echo", "reconnected"], 10).await.unwrap();
    assert_eq!(out.stdout, b"reconnected\n");
    node.rt.stop_container(v1::StopContainerRequest { container_id: main.clone(), timeout: 2 }).await.unwrap();
    let st = node.wait_exited(&main, Duration::from_secs(20)).await;
    assert_eq!(st.exit_code, 137, "sleep ignores SIGTERM as pid 1: killed after the timeout");
    node.teardown().await;
}
