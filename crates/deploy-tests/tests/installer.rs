//! deploy/installer/berth-install against scratch directories standing for
//! the host root: what each mode writes, that a second run changes nothing,
//! that an upgrade replaces files by rename, that uninstall restores every
//! file byte for byte, and that a host it cannot handle is refused and left
//! as it was. systemctl is a stub that logs (no systemd runs here).

use std::{os::unix::fs::MetadataExt, path::Path, process::Command};

use berth_deploy_tests::*;

fn containerd_default_config() -> Vec<u8> {
    let out = run(Command::new("containerd").args(["config", "default"]));
    assert!(out.status.success(), "containerd config default: {}", text(&out.stderr));
    out.stdout
}

/// The real configs: containerd's built-in default, and the one Debian's
/// containerd package installs.
fn real_containerd_configs() -> Vec<(&'static str, Vec<u8>)> {
    let debian = std::fs::read("/etc/containerd/config.toml").expect("Debian's containerd package (hack/setup.sh installs it)");
    vec![("containerd config default", containerd_default_config()), ("Debian's /etc/containerd/config.toml", debian)]
}

fn dump(config: &Path) -> toml::Table {
    let out = run(Command::new("containerd").arg("--config").arg(config).args(["config", "dump"]));
    assert!(out.status.success(), "containerd config dump: {}", text(&out.stderr));
    text(&out.stdout).parse().unwrap()
}

fn runtimes(t: &mut toml::Table) -> &mut toml::Table {
    t.get_mut("plugins").unwrap()["io.containerd.grpc.v1.cri"]["containerd"]["runtimes"].as_table_mut().unwrap()
}

#[test]
fn handler_mode_registers_berth_in_a_real_containerd_config_once_and_uninstall_restores_it() {
    for (what, original) in real_containerd_configs() {
        let host = Host::new();
        let conf = host.path("/etc/containerd/config.toml");
        std::fs::create_dir_all(conf.parent().unwrap()).unwrap();
        std::fs::write(&conf, &original).unwrap();
        let dump_before = dump(&conf);
        let before = host.tree(false);

        host.install_ok(&["install"]);
        assert_eq!(host.take_systemctl(), ["restart containerd.service"], "{what}");
        let shim = host.path("/usr/local/bin/containerd-shim-berth-v2");
        assert_eq!(std::fs::read(&shim).unwrap(), std::fs::read(host.image_bin().join("berth-shim")).unwrap());
        assert_eq!(std::fs::metadata(&shim).unwrap().mode() & 0o777, 0o755);
        // the shim runs berth-runtime from its own directory
        let runtime = host.path("/usr/local/bin/berth-runtime");
        assert_eq!(std::fs::read(&runtime).unwrap(), std::fs::read(host.image_bin().join("berth-runtime")).unwrap(), "{what}");
        assert_eq!(std::fs::metadata(&runtime).unwrap().mode() & 0o777, 0o755);

        // containerd reads the edited config: the berth runtime is there and
        // nothing else changed (containerd 1.x drops its built-in runc as
        // soon as a config names any runtime, so the installer spells runc
        // out when the config lacks it; only runc's all-default options
        // then print differently)
        let mut after = dump(&conf);
        let berth = runtimes(&mut after).remove("berth").unwrap_or_else(|| panic!("{what}: no berth runtime in {after}"));
        assert_eq!(berth["runtime_type"].as_str(), Some("io.containerd.berth.v2"));
        assert_eq!(berth["runtime_path"].as_str(), Some("/usr/local/bin/containerd-shim-berth-v2"));
        let mut want = dump_before.clone();
        let runc_before = runtimes(&mut want)["runc"].clone();
        let runc_after = runtimes(&mut after).get("runc").cloned().unwrap_or_else(|| panic!("{what}: the default runtime is gone"));
        if runc_before != runc_after {
            let opts = runc_before["options"].as_table().unwrap();
            assert!(
                opts.values()
                    .all(|v| matches!(v, toml::Value::String(s) if s.is_empty()) || *v == toml::Value::Integer(0) || *v == toml::Value::Boolean(false)),
                "{opts}"
            );
            runtimes(&mut want).insert("runc".into(), runc_after);
        }
        assert_eq!(after, want, "{what}: containerd's config differs beyond berth's runtime");

        let installed = host.tree(true);
        host.install_ok(&["install"]);
        assert_eq!(installed, host.tree(true), "{what}: a second run changes nothing");
        assert!(host.take_systemctl().is_empty(), "{what}: and restarts nothing");

        // a new berth-shim and berth-runtime: replaced by rename,
        // containerd not restarted (its config did not change; new pods
        // get the new shim)
        let inos = [&shim, &runtime].map(|p| std::fs::metadata(p).unwrap().ino());
        host.set_binaries("2");
        host.install_ok(&["install"]);
        for (p, ino) in [&shim, &runtime].into_iter().zip(inos) {
            assert!(std::fs::read_to_string(p).unwrap().contains("build 2"), "{}", p.display());
            assert_ne!(std::fs::metadata(p).unwrap().ino(), ino, "{} replaced by rename, not rewritten in place", p.display());
        }
        assert!(host.take_systemctl().is_empty());

        host.install_ok(&["uninstall"]);
        assert_eq!(host.take_systemctl(), ["restart containerd.service"]);
        assert!(!shim.exists() && !runtime.exists(), "{what}: uninstall removes the shim and berth-runtime");
        assert_eq!(before, host.tree(false), "{what}: uninstall restores the host");
        assert_eq!(std::fs::read(&conf).unwrap(), original, "{what}: byte for byte");
        host.install_ok(&["uninstall"]);
        assert!(host.take_systemctl().is_empty(), "a second uninstall does nothing");
    }
}

/// containerd 2.x (config version 3) merges imported files key by key: a
/// drop-in and an `imports` entry. No containerd 2.x package is available
/// here, so these configs are written in containerd 2's default style.
#[test]
fn handler_mode_on_version_3_uses_a_drop_in_and_an_import() {
    let configs = [
        "version = 3\nroot = '/var/lib/containerd'\nstate = '/run/containerd'\nimports = []\n\n[plugins]\n  [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]\n    runtime_type = 'io.containerd.runc.v2'\n",
        "# no imports yet\nversion = 3\n\n[plugins.'io.containerd.cri.v1.images']\n  snapshotter = 'overlayfs'\n",
        "version = 3\nimports = ['/etc/containerd/certs.toml']   # registry settings\n",
        "version = 3\nimports = ['/etc/containerd/conf.d/*.toml']\n",
    ];
    for original in configs {
        let host = Host::new();
        let conf = host.path("/etc/containerd/config.toml");
        std::fs::create_dir_all(conf.parent().unwrap()).unwrap();
        std::fs::write(&conf, original).unwrap();
        let before = host.tree(false);
        host.install_ok(&["install"]);
        assert_eq!(host.take_systemctl(), ["restart containerd.service"]);

        assert!(host.path("/usr/local/bin/containerd-shim-berth-v2").is_file() && host.path("/usr/local/bin/berth-runtime").is_file());
        let dropin: toml::Table = std::fs::read_to_string(host.path("/etc/containerd/conf.d/berth.toml")).unwrap().parse().unwrap();
        assert_eq!(dropin["version"].as_integer(), Some(3));
        let rt = &dropin["plugins"]["io.containerd.cri.v1.runtime"]["containerd"]["runtimes"]["berth"];
        assert_eq!(rt["runtime_type"].as_str(), Some("io.containerd.berth.v2"));
        let edited: toml::Table = std::fs::read_to_string(&conf).unwrap().parse().unwrap();
        let imports: Vec<&str> = edited["imports"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
        let orig: toml::Table = original.parse().unwrap();
        let mut want: Vec<&str> = orig.get("imports").map(|a| a.as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect()).unwrap_or_default();
        if !want.contains(&"/etc/containerd/conf.d/*.toml") {
            want.push("/etc/containerd/conf.d/berth.toml");
        }
        assert_eq!(imports, want, "{original}");
        let mut rest = edited.clone();
        rest.remove("imports");
        let mut orig_rest = orig.clone();
        orig_rest.remove("imports");
        assert_eq!(rest, orig_rest, "only imports changed");

        let installed = host.tree(true);
        host.install_ok(&["install"]);
        assert_eq!(installed, host.tree(true));
        assert!(host.take_systemctl().is_empty());

        host.install_ok(&["uninstall"]);
        assert_eq!(before, host.tree(false), "{original}");
        assert_eq!(std::fs::read_to_string(&conf).unwrap(), original);
    }
}

#[test]
fn node_mode_installs_binaries_config_and_unit_once_upgrades_in_place_and_uninstalls() {
    let host = Host::new();
    // a config someone left there before: uninstall must put it back
    std::fs::create_dir_all(host.path("/etc/berth")).unwrap();
    std::fs::write(host.path("/etc/berth/config.toml"), "# hand-written\nlog_level = \"warn\"\n").unwrap();
    let config = host.dir.path().join("config.toml");
    std::fs::write(&config, "log_level = \"debug\"\n").unwrap();
    let before = host.tree(true);
    let args = ["install", "--mode", "node", "--config", config.to_str().unwrap()];

    host.install_ok(&args);
    for b in BINARIES {
        let p = host.path(&format!("/usr/local/bin/{b}"));
        assert_eq!(std::fs::read(&p).unwrap(), std::fs::read(host.image_bin().join(b)).unwrap());
        assert_eq!(std::fs::metadata(&p).unwrap().mode() & 0o777, 0o755);
    }
    assert_eq!(std::fs::read_to_string(host.path("/etc/berth/config.toml")).unwrap(), "log_level = \"debug\"\n");
    // the unit is the repository's, with ExecStart where this prefix put berthd
    let unit = std::fs::read_to_string(host.path("/etc/systemd/system/berthd.service")).unwrap();
    let source = std::fs::read_to_string(repo().join("deploy/systemd/berthd.service")).unwrap();
    assert_eq!(unit, source.replace("ExecStart=/usr/bin/berthd", "ExecStart=/usr/local/bin/berthd"));
    assert_ne!(unit, source);
    // systemd accepts it, with berthd where the installer put it (in a copy
    // of the two files: verify_unit adds systemd's targets to its root)
    let copy = tempfile::tempdir().unwrap();
    for f in ["/etc/systemd/system/berthd.service", "/usr/local/bin/berthd"] {
        let to = copy.path().join(&f[1..]);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(host.path(f), to).unwrap();
    }
    verify_unit(copy.path(), "/etc/systemd/system/berthd.service").unwrap();
    assert_eq!(host.take_systemctl(), ["daemon-reload", "enable berthd.service", "restart berthd.service"]);

    let installed = host.tree(true);
    host.install_ok(&args);
    assert_eq!(installed, host.tree(true), "a second run changes nothing");
    assert!(host.take_systemctl().is_empty(), "and restarts nothing");

    // upgrade: new binaries, same unit: replaced by rename, berthd restarted
    // (KillMode=process keeps the shims), no daemon-reload
    let ino = std::fs::metadata(host.path("/usr/local/bin/berthd")).unwrap().ino();
    host.set_binaries("2");
    host.install_ok(&args);
    assert!(std::fs::read_to_string(host.path("/usr/local/bin/berthd")).unwrap().contains("build 2"));
    assert_ne!(std::fs::metadata(host.path("/usr/local/bin/berthd")).unwrap().ino(), ino);
    assert_eq!(host.take_systemctl(), ["enable berthd.service", "restart berthd.service"]);
    let changed = installed.changed(&host.tree(true));
    assert_eq!(
        changed.iter().map(|p| p.to_str().unwrap()).collect::<Vec<_>>(),
        ["/usr/local/bin/berth-runtime", "/usr/local/bin/berth-shim", "/usr/local/bin/berthctl", "/usr/local/bin/berthd"],
        "only the binaries changed"
    );
    assert!(
        std::fs::read_dir(host.path("/usr/local/bin")).unwrap().all(|e| !e.unwrap().file_name().to_string_lossy().starts_with(".berth-install")),
        "no temp file left"
    );

    host.install_ok(&["uninstall", "--mode", "node"]);
    assert_eq!(host.take_systemctl(), ["disable --now berthd.service", "daemon-reload"]);
    for b in BINARIES {
        assert!(!host.path(&format!("/usr/local/bin/{b}")).exists(), "uninstall removes {b}");
    }
    let after = host.tree(true);
    let no_ino = |t: &Tree| t.0.get(Path::new("/etc/berth/config.toml")).map(|e| e.split(" ino ").next().unwrap().to_owned());
    assert_eq!(no_ino(&before), no_ino(&after), "the old config is back, mtime and all (a new inode: restored by rename)");
    assert_eq!(Tree::of(&host.root(), false), Tree(before.0.iter().map(|(p, e)| (p.clone(), e.split(" mtime").next().unwrap().to_owned())).collect()));
}

#[test]
fn node_mode_switches_the_kubelet_only_when_asked() {
    let flags = "KUBELET_KUBEADM_ARGS=\"--container-runtime-endpoint=unix:///var/run/containerd/containerd.sock --pod-infra-container-image=registry.k8s.io/pause:3.10\"\n";
    let host = Host::new();
    std::fs::create_dir_all(host.path("/var/lib/kubelet")).unwrap();
    std::fs::write(host.path("/var/lib/kubelet/kubeadm-flags.env"), flags).unwrap();
    let before = host.tree(false);

    host.install_ok(&["install", "--mode", "node"]);
    assert_eq!(std::fs::read_to_string(host.path("/var/lib/kubelet/kubeadm-flags.env")).unwrap(), flags, "off by default");
    assert!(!host.take_systemctl().iter().any(|c| c.contains("kubelet")));

    host.install_ok(&["install", "--mode", "node", "--switch-kubelet"]);
    assert_eq!(
        std::fs::read_to_string(host.path("/var/lib/kubelet/kubeadm-flags.env")).unwrap(),
        flags.replace("unix:///var/run/containerd/containerd.sock", "unix:///run/berth/berth.sock")
    );
    assert_eq!(host.take_systemctl(), ["restart kubelet.service"]);
    host.install_ok(&["install", "--mode", "node", "--switch-kubelet"]);
    assert!(host.take_systemctl().is_empty());

    host.install_ok(&["uninstall", "--mode", "node"]);
    assert_eq!(
        host.take_systemctl(),
        ["restart kubelet.service", "disable --now berthd.service", "daemon-reload"],
        "the kubelet leaves berthd before berthd stops"
    );
    assert_eq!(before, host.tree(false));

    // a flags file without the flag: refused, nothing changed
    std::fs::write(host.path("/var/lib/kubelet/kubeadm-flags.env"), "KUBELET_KUBEADM_ARGS=\"--v=2\"\n").unwrap();
    let before = host.tree(true);
    let out = host.install(&["install", "--mode", "node", "--switch-kubelet"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("--container-runtime-endpoint"), "{}", text(&out.stderr));
    assert_eq!(before, host.tree(true));
}

fn assert_refused(host: &Host, args: &[&str], says: &str) {
    let before = host.tree(true);
    let out = host.install(args);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "berth-install {args:?} should refuse: {}{err}", text(&out.stdout));
    assert!(err.contains(says) && err.contains("refused"), "berth-install {args:?}: {err}");
    assert_eq!(before, host.tree(true), "a refused install changes nothing");
    assert!(host.take_systemctl().is_empty());
}

#[test]
fn refuses_hosts_it_cannot_handle_and_changes_nothing() {
    let host = Host::new();
    assert_refused(&host, &["install"], "no containerd config at /etc/containerd/config.toml");

    let conf = host.path("/etc/containerd/config.toml");
    std::fs::create_dir_all(conf.parent().unwrap()).unwrap();
    let bad: &[(&str, &str)] = &[
        ("version = 2\n[plugins.\"io.containerd.grpc.v1.cri\"\n", "cannot parse as TOML"),
        ("version = 2\nroot = \"/a\"\nroot = \"/b\"\n", "cannot parse as TOML"),
        ("\u{0}\u{ff}\u{fe}", "cannot parse"),
        ("[plugins.cri]\n  sandbox_image = \"pause\"\n", "version None is not handled"),
        ("version = 4\n", "version 4 is not handled"),
        ("version = 2\ndisabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n", "CRI plugin is disabled"),
        ("disabled_plugins = [\"cri\"]\nversion = 2\n", "CRI plugin is disabled"),
        ("version = 3\nimports = [\n  '/a.toml',\n]\n", "spans several lines"),
        ("version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.berth]\n  runtime_type = \"io.containerd.runc.v2\"\n", "exists already"),
        (
            "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".containerd]\n  runtimes = { runc = { runtime_type = \"io.containerd.runc.v2\" } }\n",
            "would not parse",
        ),
    ];
    for (config, says) in bad {
        std::fs::write(&conf, config).unwrap();
        assert_refused(&host, &["install"], says);
    }

    // a drop-in of the same name that is not ours
    std::fs::write(&conf, "version = 3\n").unwrap();
    std::fs::create_dir_all(host.path("/etc/containerd/conf.d")).unwrap();
    std::fs::write(host.path("/etc/containerd/conf.d/berth.toml"), "# mine\n").unwrap();
    assert_refused(&host, &["install"], "not written by berth-install");

    // node mode beside berth's Debian package
    std::fs::create_dir_all(host.path("/var/lib/dpkg/info")).unwrap();
    std::fs::write(host.path("/var/lib/dpkg/info/berth.list"), "/usr/bin/berthd\n").unwrap();
    assert_refused(&host, &["install", "--mode", "node"], "Debian package");

    // the state dir's parent must exist
    let bare = Host::new();
    std::fs::remove_dir_all(bare.path("/var")).unwrap();
    assert_refused(&bare, &["install", "--mode", "node"], "/var/lib does not exist");
}

#[test]
fn bad_arguments_are_refused() {
    let host = Host::new();
    for (args, says) in [
        (&["install", "--mode", "both"][..], "--mode must be handler or node"),
        (&["remove"][..], "usage"),
        (&["install", "--runtime-name", "Berth"][..], "--runtime-name"),
        (&["install", "--prefix", "usr/local"][..], "absolute"),
    ] {
        let out = host.install(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(text(&out.stderr).contains(says), "{args:?}: {}", text(&out.stderr));
    }
}

#[test]
fn both_modes_on_one_host_are_recorded_and_uninstalled_apart() {
    let host = Host::new();
    let conf = host.path("/etc/containerd/config.toml");
    std::fs::create_dir_all(conf.parent().unwrap()).unwrap();
    std::fs::write(&conf, containerd_default_config()).unwrap();
    let before = host.tree(false);
    host.install_ok(&["install"]);
    let handler_only = host.tree(false);
    host.install_ok(&["install", "--mode", "node"]);
    host.take_systemctl();

    // the wrong mode's uninstall leaves the other alone
    let out = host.install_ok(&["uninstall", "--mode", "node"]);
    assert_eq!(handler_only, host.tree(false), "{out}");
    let out = host.install_ok(&["uninstall", "--mode", "node"]);
    assert!(out.contains("handler mode is"), "{out}");
    host.install_ok(&["uninstall"]);
    assert_eq!(before, host.tree(false));
}

/// Both modes with one prefix share `<prefix>/bin/berth-runtime` (each
/// shim runs the one beside itself): whichever mode is uninstalled first
/// leaves it to the other, and the last uninstall puts back what was there
/// before either (nothing, or a file of the host's own), and removes the
/// directories the first install made.
#[test]
fn both_modes_share_berth_runtime_and_the_last_uninstall_removes_it() {
    for (prefix, original) in [("/usr/local", None), ("/usr/local", Some("#!/bin/sh\necho the host's own\n")), ("/opt/berth", None)] {
        for (first, second) in [("handler", "node"), ("node", "handler")] {
            for upgrade_between in [false, true] {
                let what = format!("prefix {prefix}, host's own berth-runtime {}, {first} then {second}, upgrade {upgrade_between}", original.is_some());
                let host = Host::new();
                let conf = host.path("/etc/containerd/config.toml");
                std::fs::create_dir_all(conf.parent().unwrap()).unwrap();
                std::fs::write(&conf, containerd_default_config()).unwrap();
                let runtime = host.path(&format!("{prefix}/bin/berth-runtime"));
                if let Some(text) = original {
                    std::fs::write(&runtime, text).unwrap();
                }
                let before = host.tree(false);
                let args = |action: &'static str, mode: &'static str| [action, "--prefix", prefix, "--mode", mode];
                let shim_of = |mode: &str| host.path(&format!("{prefix}/bin/{}", if mode == "handler" { "containerd-shim-berth-v2" } else { "berth-shim" }));

                host.install_ok(&args("install", first));
                if upgrade_between {
                    host.set_binaries("2");
                }
                host.install_ok(&args("install", second));
                let tag = if upgrade_between { "build 2" } else { "build 1" };
                assert!(std::fs::read_to_string(&runtime).unwrap().contains(tag), "{what}: the newest berth-runtime is in place");

                // the first mode goes: the second one's shim still finds its berth-runtime
                host.install_ok(&args("uninstall", first));
                assert!(!shim_of(first).exists(), "{what}");
                assert!(shim_of(second).is_file(), "{what}");
                assert!(std::fs::read_to_string(&runtime).unwrap().contains(tag), "{what}: berth-runtime stays for the {second} mode");
                // a second run of the remaining mode finds everything in place
                let kept = host.tree(false);
                host.install_ok(&args("install", second));
                assert_eq!(kept, host.tree(false), "{what}");

                host.install_ok(&args("uninstall", second));
                assert_eq!(before, host.tree(false), "{what}: the last uninstall restores the host");
                assert_eq!(runtime.exists(), original.is_some(), "{what}");
                host.take_systemctl();
            }
        }
    }
}

/// An installer image without berth-runtime is refused in either mode
/// (a shim without it cannot start a container), changing nothing.
#[test]
fn an_image_without_berth_runtime_installs_nothing() {
    let host = Host::new();
    let conf = host.path("/etc/containerd/config.toml");
    std::fs::create_dir_all(conf.parent().unwrap()).unwrap();
    std::fs::write(&conf, containerd_default_config()).unwrap();
    std::fs::remove_file(host.image_bin().join("berth-runtime")).unwrap();
    let before = host.tree(true);
    for mode in ["handler", "node"] {
        let out = host.install(&["install", "--mode", mode]);
        assert_eq!(out.status.code(), Some(2), "{mode}: {}{}", text(&out.stdout), text(&out.stderr));
        assert!(text(&out.stderr).contains("no berth-runtime in"), "{mode}: {}", text(&out.stderr));
        assert_eq!(before, host.tree(true), "{mode}: nothing changed");
        assert!(host.take_systemctl().is_empty());
    }
}

/// containerd 1.6.0-1.6.20 (Debian 12's) and 1.7.0 ignore `runtime_path`
/// and look the shim up on their PATH: the installer says so when its
/// prefix puts the shim elsewhere, and is quiet about the default.
#[test]
fn handler_mode_warns_when_the_shim_is_off_containerds_path() {
    for (prefix, warned) in [(None, false), (Some("/opt/berth"), true)] {
        let host = Host::new();
        let conf = host.path("/etc/containerd/config.toml");
        std::fs::create_dir_all(conf.parent().unwrap()).unwrap();
        std::fs::write(&conf, containerd_default_config()).unwrap();
        let mut args = vec!["install"];
        if let Some(p) = prefix {
            args.extend(["--prefix", p]);
        }
        let out = host.install_ok(&args);
        let dir = prefix.unwrap_or("/usr/local");
        assert!(host.path(&format!("{dir}/bin/containerd-shim-berth-v2")).exists());
        assert_eq!(out.contains(&format!("warning: {dir}/bin is not on containerd's default PATH")), warned, "{out}");
    }
}
