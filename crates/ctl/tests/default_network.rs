//! A node with no pod network gets one from the setup `hack/run.sh` runs
//! (hack/default-cni.sh), and `berthctl run` works on it at once.

mod common;

use std::{path::Path, process::Command};

use common::{berthctl_code, remove_cgroup_parent, Daemon};

fn default_cni(conf_dir: &Path) -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../hack/default-cni.sh");
    let out = Command::new(script).arg(conf_dir).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_default_network_runs_a_container() {
    assert!(nix::unistd::geteuid().is_root(), "run as root (README)");
    let work = tempfile::tempdir().unwrap();
    // A node whose network plugin installed a config keeps it alone.
    let cluster = work.path().join("cluster.d");
    std::fs::create_dir_all(&cluster).unwrap();
    std::fs::write(cluster.join("10-calico.conflist"), "{}").unwrap();
    assert_eq!(default_cni(&cluster), "");
    assert_eq!(std::fs::read_dir(&cluster).unwrap().count(), 1);

    // A bare one gets the default, and is told so.
    let conf_dir = work.path().join("net.d");
    let said = default_cni(&conf_dir);
    assert!(said.contains("99-berth-default.conflist") && said.contains("remove it with"), "{said}");
    assert_eq!(default_cni(&conf_dir), "", "a second run changes nothing");

    let registry = berth_testkit::Registry::start();
    berth_testkit::build_and_push(&registry, work.path(), "net/box:1", None);
    let parent = format!("/berth-default-net-{}", std::process::id());
    let bridge_existed = Path::new("/sys/class/net/berth0").exists();
    let ipam = Path::new("/var/lib/cni/networks/berth-default");
    let ipam_existed = ipam.exists();
    let daemon = Daemon::start(&registry.host(), &format!("default_cgroup_parent = \"{parent}\"\n[cni]\nconf_dir = \"{}\"", conf_dir.display()));
    let logs = daemon.dir.path().join("logs").display().to_string();
    let image = format!("{}/net/box:1", registry.host());
    let (code, out, err) = berthctl_code(&daemon.socket, &["run", "--rm", "--log-dir", &logs, &image, "sh", "-c", "ip -4 addr show eth0; echo hi"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("inet 10.88.") && out.ends_with("hi\n"), "the pod has an address of the default network: {out}");

    // -p publishes a port through the network's portmap plugin: a busybox
    // httpd's page on the host port (through the bridge's address, the
    // node's own, as a node-local client reaches it). The same host port
    // twice is refused, and nothing is made for the refused run.
    let host_port = (21000 + std::process::id() % 9000).to_string();
    let publish = format!("{host_port}:8080");
    let serve = "mkdir -p /www && echo hello-from-berth > /www/index.html && exec httpd -f -p 8080 -h /www";
    let (code, out, err) = berthctl_code(&daemon.socket, &["run", "-d", "--name", "web", "-p", &publish, "--log-dir", &logs, &image, "sh", "-c", serve]);
    assert_eq!(code, 0, "{out}{err}");
    let page = (0..100)
        .find_map(|_| {
            let got = std::process::Command::new("busybox").args(["wget", "-q", "-O", "-", &format!("http://10.88.0.1:{host_port}/")]).output().ok()?;
            if got.status.success() {
                return Some(String::from_utf8_lossy(&got.stdout).into_owned());
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
            None
        })
        .expect("the published port answers");
    assert_eq!(page, "hello-from-berth\n");
    let (code, out, err) = berthctl_code(&daemon.socket, &["port", "web"]);
    assert_eq!((code, out), (0, format!("8080/tcp -> 0.0.0.0:{host_port}\n")), "{err}");
    let before = common::berthctl(&daemon.socket, &["ps", "-a"]).1;
    let (code, _, err) = berthctl_code(&daemon.socket, &["run", "-d", "-p", &publish, "--log-dir", &logs, &image, "true"]);
    assert!(code == 1 && err.contains(&format!("host port {host_port} (TCP) is already published")), "{code}: {err}");
    assert_eq!(common::berthctl(&daemon.socket, &["ps", "-a"]).1.lines().count(), before.lines().count(), "nothing made for the refused run");
    let (code, _, err) = berthctl_code(&daemon.socket, &["rm", "-f", "web"]);
    assert_eq!(code, 0, "{err}");

    // play kube: a two-container pod sharing an emptyDir (one writes the
    // page after an init container checked the volume, the other serves
    // it) on a hostPort; down leaves no pod, container or volume.
    let manifest = work.path().join("pod.yaml");
    std::fs::write(
        &manifest,
        format!(
            r#"apiVersion: v1
kind: Pod
metadata:
  name: site
  labels: {{app: site}}
spec:
  volumes:
  - name: shared
    emptyDir: {{}}
  initContainers:
  - name: check
    image: {image}
    command: ["sh", "-c", "test -d /shared && test -w /shared"]
    volumeMounts: [{{name: shared, mountPath: /shared}}]
  containers:
  - name: writer
    image: {image}
    command: ["sh", "-c", "echo made-by-writer > /shared/index.html; exec sleep 3600"]
    volumeMounts: [{{name: shared, mountPath: /shared}}]
  - name: server
    image: {image}
    command: ["httpd", "-f", "-p", "8080", "-h", "/www"]
    ports: [{{containerPort: 8080, hostPort: {host_port}}}]
    volumeMounts: [{{name: shared, mountPath: /www, readOnly: true}}]
    resources: {{limits: {{memory: 64Mi}}}}
"#
        ),
    )
    .unwrap();
    let manifest = manifest.to_str().unwrap();
    let (code, out, err) = berthctl_code(&daemon.socket, &["play", "kube", "--log-dir", &logs, manifest]);
    assert_eq!(code, 0, "{out}{err}");
    let page = (0..100)
        .find_map(|_| {
            let got = Command::new("busybox").args(["wget", "-q", "-O", "-", &format!("http://10.88.0.1:{host_port}/")]).output().ok()?;
            if got.status.success() {
                return Some(String::from_utf8_lossy(&got.stdout).into_owned());
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
            None
        })
        .expect("the pod's hostPort answers");
    assert_eq!(page, "made-by-writer\n", "the server reads what the writer wrote in the shared emptyDir");
    let (_, names, _) = common::berthctl(&daemon.socket, &["ps", "--format", "{{.Names}}"]);
    let mut names: Vec<&str> = names.lines().collect();
    names.sort();
    assert_eq!(names, ["server", "writer"]);
    let (code, _, err) = berthctl_code(&daemon.socket, &["play", "kube", "--log-dir", &logs, manifest]);
    assert!(code == 1 && err.contains("already running"), "{err}");
    let volumes = daemon.dir.path().join("root/volumes");
    assert!(std::fs::read_dir(&volumes).unwrap().any(|e| e.unwrap().file_name() == "kube-site-shared"));
    let (code, _, err) = berthctl_code(&daemon.socket, &["down", manifest]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(common::berthctl(&daemon.socket, &["ps", "-a", "-q"]).1, "", "down removes every container");
    assert_eq!(std::fs::read_dir(&volumes).unwrap().count(), 0, "and the emptyDir");
    let (code, _, err) = berthctl_code(&daemon.socket, &["down", manifest]);
    assert!(code == 1 && err.contains("no pod site"), "{err}");
    // A manifest berthctl cannot honour names the field and makes nothing.
    std::fs::write(
        work.path().join("probe.yaml"),
        format!("apiVersion: v1\nkind: Pod\nmetadata: {{name: p}}\nspec:\n  containers:\n  - name: a\n    image: {image}\n    livenessProbe: {{}}\n"),
    )
    .unwrap();
    let (code, _, err) = berthctl_code(&daemon.socket, &["play", "kube", work.path().join("probe.yaml").to_str().unwrap()]);
    assert!(code == 1 && err.contains("livenessProbe"), "{err}");
    assert_eq!(common::berthctl(&daemon.socket, &["ps", "-a", "-q"]).1, "");
    drop(daemon);
    remove_cgroup_parent(&parent);
    if !bridge_existed {
        let _ = Command::new("ip").args(["link", "del", "berth0"]).output();
    }
    if !ipam_existed {
        let _ = std::fs::remove_dir_all(ipam);
    }
}
