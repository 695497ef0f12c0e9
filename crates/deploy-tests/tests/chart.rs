//! The Helm chart (deploy/helm/berth): lint, rendering in both modes,
//! validation of every object against the Kubernetes API schemas, the
//! DaemonSet's host mounts, the RuntimeClass handler, bad values, and the
//! rendered berthd config against berthd's own parser.

use std::{collections::BTreeSet, process::Command};

use berth_deploy_tests::*;
use serde_json::Value;

/// The oldest Kubernetes the chart supports (Chart.yaml's kubeVersion) and
/// the newest the validator bundles.
const K8S_VERSIONS: [&str; 2] = ["1.25.0", "1.37.0"];

#[test]
fn lint_is_clean() {
    for mode in ["handler", "node"] {
        let out = run(Command::new(helm()).arg("lint").arg("--strict").arg(chart()).args(["--set", &format!("mode={mode}")]));
        assert!(out.status.success(), "helm lint (mode {mode}): {}{}", text(&out.stdout), text(&out.stderr));
    }
}

/// Renders with each set of arguments, validates all the objects (one
/// validator run per Kubernetes version), and returns each rendering's.
fn render_and_validate_all(renders: &[&[&str]]) -> Vec<Vec<Value>> {
    let yamls: Vec<String> = renders.iter().map(|args| template(args).unwrap_or_else(|e| panic!("helm template {args:?}: {e}"))).collect();
    let all = yamls.iter().map(|y| format!("---\n{y}\n")).collect::<String>();
    for v in K8S_VERSIONS {
        let report = validate(&all, v).unwrap_or_else(|e| panic!("objects of {renders:?} invalid for Kubernetes {v}:\n{e}"));
        assert!(!report.contains("ERROR") && !report.contains("WARN"), "{report}");
        let passed = report.matches("passed for resource").count();
        let total: usize = yamls.iter().map(|y| objects(y).len()).sum();
        assert_eq!(passed, total, "every object was validated: {report}");
    }
    yamls.iter().map(|y| objects(y)).collect()
}

fn render_and_validate(args: &[&str]) -> Vec<Value> {
    render_and_validate_all(&[args]).remove(0)
}

#[test]
fn every_object_is_valid_in_both_modes_and_with_defaults() {
    let kinds =
        |objs: &[Value]| objs.iter().map(|o| format!("{}/{}", o["kind"].as_str().unwrap(), o["metadata"]["name"].as_str().unwrap())).collect::<BTreeSet<_>>();
    let cleanup =
        ["ServiceAccount/t-berth-cleanup", "Role/t-berth-cleanup", "RoleBinding/t-berth-cleanup", "DaemonSet/t-berth-cleanup", "Job/t-berth-cleanup-wait"];

    let mut rendered = render_and_validate_all(&[
        &[],
        &["--set", "mode=handler", "--set", "nodeSelector.berth\\.io/node=yes", "--set", "tolerations[0].operator=Exists"],
        &["--set", "mode=node", "--set", "config.log_level=debug", "--set", "node.switchKubelet=true"],
    ])
    .into_iter();
    let (default, handler, node) = (rendered.next().unwrap(), rendered.next().unwrap(), rendered.next().unwrap());
    let want: BTreeSet<String> = ["DaemonSet/t-berth", "RuntimeClass/berth"].iter().chain(cleanup.iter()).map(|s| s.to_string()).collect();
    assert_eq!(kinds(&default), want, "default values (handler mode)");
    let rc = find(&handler, "RuntimeClass", "berth");
    assert_eq!(rc["scheduling"]["nodeSelector"]["berth.io/node"], "yes", "{rc}");

    let want: BTreeSet<String> = ["DaemonSet/t-berth", "ConfigMap/t-berth-config"].iter().chain(cleanup.iter()).map(|s| s.to_string()).collect();
    assert_eq!(kinds(&node), want, "node mode: berthd's config, no RuntimeClass");

    // the validator itself catches a broken object (so "valid" means something)
    let yaml = template(&[]).unwrap().replace("periodSeconds: 5", "periodSecond: 5");
    let err = validate(&yaml, "1.37.0").unwrap_err();
    assert!(err.contains("periodSecond"), "{err}");
}

fn host_paths(objs: &[Value], name: &str) -> BTreeSet<String> {
    let ds = find(objs, "DaemonSet", name);
    let spec = &ds["spec"]["template"]["spec"];
    let mut paths = BTreeSet::new();
    for v in spec["volumes"].as_array().unwrap() {
        if let Some(hp) = v.get("hostPath") {
            assert_eq!(hp["type"], "Directory", "no host directory is created by the kubelet: {v}");
            let path = hp["path"].as_str().unwrap().to_owned();
            let mount = spec["containers"][0]["volumeMounts"].as_array().unwrap().iter().find(|m| m["name"] == v["name"]).unwrap();
            assert_eq!(mount["mountPath"].as_str().unwrap(), format!("/host{path}"), "mounted under --host-root /host");
            paths.insert(path);
        }
    }
    paths
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

#[test]
fn daemonset_mounts_exactly_the_host_paths_it_needs() {
    let handler = objects(&template(&[]).unwrap());
    assert_eq!(host_paths(&handler, "t-berth"), set(&["/etc/containerd", "/usr/local/bin", "/var/lib"]));
    assert_eq!(host_paths(&handler, "t-berth-cleanup"), set(&["/etc/containerd", "/usr/local/bin", "/var/lib"]));
    let k3s = objects(
        &template(&["--set", "handler.containerdConfig=/var/lib/rancher/k3s/agent/etc/containerd/config.toml", "--set", "installPrefix=/opt/berth"]).unwrap(),
    );
    assert_eq!(host_paths(&k3s, "t-berth"), set(&["/var/lib/rancher/k3s/agent/etc/containerd", "/opt/berth/bin", "/var/lib"]));
    let node = objects(&template(&["--set", "mode=node"]).unwrap());
    assert_eq!(host_paths(&node, "t-berth"), set(&["/etc", "/usr/local/bin", "/var/lib"]));
    let kubelet =
        objects(&template(&["--set", "mode=node", "--set", "node.switchKubelet=true", "--set", "node.kubeletFlagsFile=/etc/default/kubelet"]).unwrap());
    assert_eq!(host_paths(&kubelet, "t-berth"), set(&["/etc", "/usr/local/bin", "/var/lib"]));
    let elsewhere =
        objects(&template(&["--set", "mode=node", "--set", "node.switchKubelet=true", "--set", "node.kubeletFlagsFile=/opt/k8s/kubelet.env"]).unwrap());
    assert_eq!(host_paths(&elsewhere, "t-berth"), set(&["/etc", "/usr/local/bin", "/var/lib", "/opt/k8s"]));
}

/// The installer's arguments in the rendered DaemonSet.
fn installer_args(objs: &[Value], name: &str) -> Vec<String> {
    let c = &find(objs, "DaemonSet", name)["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c["command"][0], "/opt/berth/bin/berth-install");
    c["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap().to_owned()).collect()
}

/// Runs the rendered installer and cleanup DaemonSets' commands against a
/// scratch host: everything they change lies under the DaemonSet's host
/// paths, and the cleanup restores the host.
fn run_rendered(host: &Host, objs: &[Value], extra: &[&str]) -> Vec<std::path::PathBuf> {
    let mounted = host_paths(objs, "t-berth");
    let before = host.tree(false);
    let mut args = installer_args(objs, "t-berth");
    args.extend(extra.iter().map(|s| s.to_string()));
    host.install_ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let changed = before.changed(&host.tree(false));
    assert!(!changed.is_empty());
    for p in &changed {
        assert!(mounted.iter().any(|m| p.starts_with(m)), "the installer changed {} outside the DaemonSet's mounts {mounted:?}", p.display());
    }
    let cleanup = installer_args(objs, "t-berth-cleanup");
    assert_eq!(cleanup[0], "uninstall");
    host.install_ok(&cleanup.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(before, host.tree(false), "the cleanup DaemonSet's command restores the host");
    changed
}

#[test]
fn the_rendered_installer_stays_inside_its_mounts_and_the_runtime_class_names_its_runtime() {
    // handler mode, with a real containerd config
    let host = Host::new();
    let conf = host.path("/etc/containerd/config.toml");
    std::fs::create_dir_all(conf.parent().unwrap()).unwrap();
    let default = run(Command::new("containerd").args(["config", "default"]));
    assert!(default.status.success());
    std::fs::write(&conf, &default.stdout).unwrap();
    let objs = objects(&template(&["--set", "handler.runtimeName=berth-x", "--set", "runtimeClass.name=sandboxed"]).unwrap());
    let handler = find(&objs, "RuntimeClass", "sandboxed")["handler"].as_str().unwrap().to_owned();
    let mounted = host_paths(&objs, "t-berth");
    let before = host.tree(false);
    let args = installer_args(&objs, "t-berth");
    host.install_ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
    for p in before.changed(&host.tree(false)) {
        assert!(mounted.iter().any(|m| p.starts_with(m)), "changed {} outside {mounted:?}", p.display());
    }
    // containerd itself, reading the edited config, has the handler's runtime
    let dump = run(Command::new("containerd").arg("--config").arg(&conf).args(["config", "dump"]));
    assert!(dump.status.success(), "{}", text(&dump.stderr));
    let dump: toml::Table = text(&dump.stdout).parse().unwrap();
    let runtime = &dump["plugins"]["io.containerd.grpc.v1.cri"]["containerd"]["runtimes"][&handler];
    assert_eq!(runtime["runtime_type"].as_str(), Some("io.containerd.berth.v2"), "{runtime}");
    assert_eq!(runtime["runtime_path"].as_str(), Some("/usr/local/bin/containerd-shim-berth-v2"));
    assert!(host.path("/usr/local/bin/containerd-shim-berth-v2").exists());
    assert!(host.path("/usr/local/bin/berth-runtime").exists(), "berth-runtime beside the shim");
    let cleanup = installer_args(&objs, "t-berth-cleanup");
    host.install_ok(&cleanup.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(before, host.tree(false));

    // node mode, with the rendered config and the kubelet switch
    let host = Host::new();
    let objs = objects(&template(&["--set", "mode=node", "--set", "config.log_level=debug", "--set", "node.switchKubelet=true"]).unwrap());
    let config = host.dir.path().join("config.toml");
    std::fs::write(&config, find(&objs, "ConfigMap", "t-berth-config")["data"]["config.toml"].as_str().unwrap()).unwrap();
    std::fs::create_dir_all(host.path("/var/lib/kubelet")).unwrap();
    std::fs::write(
        host.path("/var/lib/kubelet/kubeadm-flags.env"),
        "KUBELET_KUBEADM_ARGS=\"--container-runtime-endpoint=unix:///run/containerd/containerd.sock\"\n",
    )
    .unwrap();
    let changed = run_rendered(&host, &objs, &["--config", config.to_str().unwrap()]);
    for p in [
        "/usr/local/bin/berthd",
        "/usr/local/bin/berth-shim",
        "/usr/local/bin/berth-runtime",
        "/etc/berth/config.toml",
        "/etc/systemd/system/berthd.service",
        "/var/lib/kubelet/kubeadm-flags.env",
    ] {
        assert!(changed.contains(&std::path::PathBuf::from(p)), "{p} not installed: {changed:?}");
    }
}

#[test]
fn bad_values_fail_naming_the_value() {
    let cases: &[(&[&str], &[&str])] = &[
        (&["--set", "mode=both"], &["mode"]),
        (&["--set", "mode={handler,node}"], &["mode"]),
        (&["--set", "mode=kata"], &["mode"]),
        (&["--set", "mode="], &["mode"]),
        (&["--set", "mode=node", "--set", "config.sockt=/x.sock"], &["sockt"]),
        (&["--set", "mode=node", "--set", "config.cni.confdir=/x"], &["confdir", "cni"]),
        (&["--set", "mode=node", "--set", "config.streaming.port=http"], &["port"]),
        (&["--set", "mode=node", "--set", "config.cgroup_driver=cgroupv3"], &["cgroup_driver"]),
        (&["--set", "mode=node", "--set", "config.registry.mirrors.docker\\.io=m"], &["mirrors"]),
        (&["--set", "handler.runtimeName=Berth_Shim"], &["runtimeName"]),
        (&["--set", "node.switchKubelet=true"], &["node.switchKubelet", "mode"]),
        (&["--set", "config.log_level=debug"], &["config", "log_level", "mode"]),
        (&["--set", "imageTag=1"], &["imageTag"]),
    ];
    for (args, names) in cases {
        let err = template(args).expect_err(&format!("helm template {args:?} should fail"));
        for n in *names {
            assert!(err.contains(n), "helm template {args:?}: the message does not name {n:?}:\n{err}");
        }
    }
}

/// Every key of berthd's config, each set to a value other than its default.
const ALL_KEYS: &[&str] = &[
    "config.socket=/run/b/b.sock",
    "config.root=/var/lib/b",
    "config.state=/run/b",
    "config.cgroup_driver=cgroupfs",
    "config.log_level=berth_cri=debug\\,info",
    "config.shim_binary=/usr/local/bin/berth-shim",
    "config.default_cgroup_parent=/b",
    "config.runtime_handlers={berth,kata}",
    "config.cni.conf_dir=/etc/cni/b",
    "config.cni.bin_dirs={/opt/cni/bin}",
    "config.cni.plugin_timeout_secs=30",
    "config.registry.insecure={127.0.0.1:5000}",
    "config.registry.stall_timeout_secs=120",
    "config.registry.max_concurrent_downloads=2",
    "config.registry.certs_dir=/etc/b/certs.d",
    "config.registry.auth_file=/etc/b/auth.json",
    "config.registry.mirrors.docker\\.io={mirror.local:5000,m2}",
    "config.streaming.address=127.0.0.2",
    "config.streaming.port=10010",
    "config.streaming.idle_timeout_secs=3600",
    "config.streaming.stream_creation_timeout_secs=10",
    "config.streaming.token_ttl_secs=30",
    "config.streaming.tls_cert_file=/etc/berth/tls.crt",
    "config.streaming.tls_key_file=/etc/berth/tls.key",
    "config.metrics.address=127.0.0.1:9339",
    "config.cdi.spec_dirs={/etc/b/cdi,/run/b/cdi}",
];

#[test]
fn the_rendered_config_is_what_berthd_reads() {
    let mut args = vec!["--set", "mode=node"];
    for kv in ALL_KEYS {
        args.extend(["--set", kv]);
    }
    let objs = render_and_validate(&args);
    let toml_text = find(&objs, "ConfigMap", "t-berth-config")["data"]["config.toml"].as_str().unwrap().to_owned();
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("config.toml");
    std::fs::write(&f, &toml_text).unwrap();
    berthd_accepts(&f).unwrap_or_else(|e| panic!("berthd refuses the rendered config:\n{toml_text}\n{e}"));
    let t: toml::Table = toml_text.parse().unwrap();
    assert_eq!(t["log_level"].as_str(), Some("berth_cri=debug,info"));
    assert_eq!(t["cni"]["plugin_timeout_secs"].as_integer(), Some(30), "integers stay integers");
    assert_eq!(t["streaming"]["port"].as_integer(), Some(10010));
    assert_eq!(t["registry"]["mirrors"]["docker.io"].as_array().unwrap().len(), 2);
    // the kubelet is pointed at the socket the config names
    let args = installer_args(&objs, "t-berth");
    let i = args.iter().position(|a| a == "--kubelet-endpoint").unwrap();
    assert_eq!(args[i + 1], "unix:///run/b/b.sock");

    // and the check is real: berthd refuses a key it does not know
    std::fs::write(&f, format!("{toml_text}\nsockt = \"/x\"\n")).unwrap();
    let err = berthd_accepts(&f).unwrap_err();
    assert!(err.contains("sockt"), "{err}");
}

/// NOTES.txt (which `helm template` does not render) says what was
/// installed and how to check it, in each mode.
#[test]
fn notes_say_what_was_installed_and_how_to_check() {
    let notes = |args: &[&str]| {
        let out = run(Command::new(helm()).args(["install", "--dry-run", "t"]).arg(chart()).args(["--namespace", "berth-system"]).args(args));
        assert!(out.status.success(), "helm install --dry-run {args:?}: {}", text(&out.stderr));
        let all = text(&out.stdout);
        all[all.find("NOTES:").expect("NOTES rendered")..].to_owned()
    };
    let handler = notes(&[]);
    for s in [
        "/usr/local/bin/containerd-shim-berth-v2",
        "/usr/local/bin/berth-runtime",
        "io.containerd.berth.v2",
        "kubectl get runtimeclass berth",
        "rollout status daemonset/t-berth",
        "runtimeClassName",
    ] {
        assert!(handler.contains(s), "{s:?} not in\n{handler}");
    }
    assert!(!handler.contains("Warning"), "{handler}");
    // containerd 1.6.0-1.6.20 finds the shim on its PATH only.
    let elsewhere = notes(&["--set", "installPrefix=/opt/berth"]);
    assert!(
        elsewhere.contains("Warning: containerd 1.6.0-1.6.20 and 1.7.0 ignore runtime_path") && elsewhere.contains("/opt/berth/bin is not on"),
        "{elsewhere}"
    );
    let node = notes(&["--set", "mode=node", "--set", "config.socket=/run/b.sock"]);
    for s in [
        "berth-runtime",
        "/etc/systemd/system/berthd.service",
        "/etc/berth/config.toml",
        "systemctl status berthd",
        "unix:///run/b.sock",
        "node.switchKubelet=true",
    ] {
        assert!(node.contains(s), "{s:?} not in\n{node}");
    }
    let switched = notes(&["--set", "mode=node", "--set", "node.switchKubelet=true"]);
    assert!(switched.contains("/var/lib/kubelet/kubeadm-flags.env now names berthd"), "{switched}");
}
