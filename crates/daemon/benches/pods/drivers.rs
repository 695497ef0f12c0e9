//! `hack/bench-pods.sh PODS --cgroup-driver systemd`: pod-ready latency
//! under each cgroup driver. This host has no systemd as init, so both
//! runs happen inside one systemd-nspawn machine (berth_testkit::systemd),
//! with berthd as the `Type=notify` service of deploy/systemd, the second
//! time with `cgroup_driver = "systemd"`: the two differ in the driver
//! alone.

use std::{path::Path, time::Duration};

use berth_testkit::systemd::{MachineOptions, SystemdMachine};
use k8s_cri::v1::{self, image_service_client::ImageServiceClient, runtime_service_client::RuntimeServiceClient};

use super::{channel, cni_dir, ms, p, pod_ready_in, remove_all};

pub async fn compare(pods: usize, registry: &str, image: &str, work: &Path) {
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_berthd")).parent().unwrap().to_path_buf();
    let machine = SystemdMachine::boot(
        MachineOptions::new().bind_ro(&bin_dir, &bin_dir).bind_rw(work, work).bind_ro("/usr/lib/cni", "/usr/lib/cni").scratch("/var/lib/berth"),
    );
    machine.wait_running(Duration::from_secs(60));
    let unit = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/systemd/berthd.service")).unwrap();
    println!("pod ready (RunPodSandbox + CreateContainer + StartContainer), {pods} pods in sequence, berthd in one systemd-nspawn machine:");
    for (index, driver) in [(203, "cgroupfs"), (204, "systemd")] {
        let dir = work.join(format!("driver-{driver}"));
        std::fs::create_dir_all(&dir).unwrap();
        let conf = cni_dir(&dir, index);
        let config = dir.join("config.toml");
        std::fs::write(
            &config,
            format!(
                "socket = \"{d}/b.sock\"\nroot = \"/var/lib/berth/{driver}\"\nstate = \"/run/berth-{driver}\"\ncgroup_driver = \"{driver}\"\nlog_level = \"warn\"\n[registry]\ninsecure = [\"{registry}\"]\n[cni]\nconf_dir = \"{c}\"\n",
                d = dir.display(),
                c = conf.display()
            ),
        )
        .unwrap();
        let name = format!("berthd-{driver}.service");
        let exec_start = format!("ExecStart={} --config {}", bin_dir.join("berthd").display(), config.display());
        machine.start_service(&name, &unit.replace("ExecStart=/usr/bin/berthd", &exec_start)).unwrap_or_else(|e| panic!("{e}"));
        let ch = channel(&dir.join("b.sock")).await;
        let (mut rt, mut img) = (RuntimeServiceClient::new(ch.clone()), ImageServiceClient::new(ch));
        img.pull_image(v1::PullImageRequest { image: Some(v1::ImageSpec { image: image.into(), ..Default::default() }), ..Default::default() }).await.unwrap();
        let parent = |pod: &str| match driver {
            "systemd" => format!("berthbench-{pod}.slice"),
            _ => format!("/berthbench/{pod}"),
        };
        let logs = dir.join("logs");
        let _ = pod_ready_in(&mut rt, &logs, &parent("warmup"), "warmup", image).await;
        remove_all(&mut rt).await;
        let mut ready = Vec::new();
        for i in 0..pods {
            let pod = format!("seq{i}");
            ready.push(pod_ready_in(&mut rt, &logs, &parent(&pod), &pod, image).await.0);
        }
        remove_all(&mut rt).await;
        machine.exec_ok(&["systemctl", "stop", &name]);
        let _ = std::process::Command::new("ip").args(["link", "del", &format!("bb{index}")]).output();
        println!("  cgroup_driver = {driver:9} p50 {}  p90 {}", ms(p(&ready, 50)), ms(p(&ready, 90)));
    }
}
