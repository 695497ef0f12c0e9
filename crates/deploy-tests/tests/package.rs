//! deploy/systemd/berthd.service, the commented default config, and the
//! Debian package hack/build-deb.sh builds, installed with dpkg into a
//! scratch root.

use std::{collections::BTreeMap, os::unix::fs::PermissionsExt, path::Path, process::Command};

use berth_deploy_tests::*;

fn unit_text() -> String {
    std::fs::read_to_string(repo().join("deploy/systemd/berthd.service")).unwrap()
}

#[test]
fn the_unit_has_what_a_node_runtime_needs_and_systemd_accepts_it() {
    let unit = unit_text();
    let keys: BTreeMap<&str, &str> = unit.lines().filter(|l| !l.starts_with('#')).filter_map(|l| l.split_once('=')).collect();
    for (k, v) in [
        ("Type", "notify"),
        ("ExecStart", "/usr/bin/berthd"),
        ("Delegate", "yes"),
        ("KillMode", "process"),
        ("OOMScoreAdjust", "-999"),
        ("LimitNOFILE", "1048576"),
        ("TasksMax", "infinity"),
        ("Restart", "on-failure"),
        ("WantedBy", "multi-user.target"),
    ] {
        assert_eq!(keys.get(k), Some(&v), "{k}");
    }
    assert!(unit.contains("#WatchdogSec="), "the optional watchdog is documented");

    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(root.path().join("usr/bin")).unwrap();
    std::fs::create_dir_all(root.path().join("lib/systemd/system")).unwrap();
    std::fs::write(root.path().join("lib/systemd/system/berthd.service"), &unit).unwrap();
    // no binary: systemd-analyze says so (the check looks at ExecStart)
    let err = verify_unit(root.path(), "/lib/systemd/system/berthd.service").unwrap_err();
    assert!(err.contains("/usr/bin/berthd"), "{err}");
    let bin = root.path().join("usr/bin/berthd");
    std::fs::copy(built("berthd"), &bin).unwrap();
    verify_unit(root.path(), "/lib/systemd/system/berthd.service").unwrap();
    // and it notices a bad directive
    std::fs::write(root.path().join("lib/systemd/system/berthd.service"), unit.replace("Type=notify", "Type=notfy")).unwrap();
    let err = verify_unit(root.path(), "/lib/systemd/system/berthd.service").unwrap_err();
    assert!(err.contains("notfy"), "{err}");
}

/// The keys of a TOML text with its comment markers removed.
fn uncommented(text: &str) -> toml::Table {
    let body: String = text
        .lines()
        .filter(|l| l.starts_with('#') && (l[1..].starts_with(|c: char| c.is_ascii_lowercase()) || l[1..].starts_with('[')))
        .map(|l| format!("{}\n", &l[1..]))
        .collect();
    body.parse().unwrap_or_else(|e| panic!("{e}\n{body}"))
}

#[test]
fn the_default_config_is_all_comments_and_names_every_key_with_its_default() {
    let text = std::fs::read_to_string(repo().join("deploy/config/config.toml")).unwrap();
    let active: toml::Table = text.parse().unwrap();
    assert!(active.is_empty(), "every key is commented out: {active:?}");
    let all = uncommented(&text);
    // berthd accepts it uncommented...
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("config.toml");
    std::fs::write(&f, toml::to_string(&all).unwrap()).unwrap();
    berthd_accepts(&f).unwrap_or_else(|e| panic!("{e}"));
    // ...and it says what the README says
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let start = readme.find("## Configuration").unwrap();
    let block = &readme[start..];
    let block = &block[block.find("```toml\n").unwrap() + 8..];
    let block = &block[..block.find("```").unwrap()];
    assert_eq!(all, block.parse::<toml::Table>().unwrap(), "deploy/config/config.toml and README's Configuration differ");
}

fn dpkg(root: &Path, args: &[&str]) -> std::process::Output {
    run(Command::new("dpkg").arg(format!("--root={}", root.display())).args(args))
}

#[test]
fn the_deb_builds_and_installs_the_files_the_unit_expects() {
    let out_dir = tempfile::tempdir().unwrap();
    let bins = built("berthd").parent().unwrap().to_owned();
    let out = run(Command::new(repo().join("hack/build-deb.sh")).arg("--bin-dir").arg(&bins).arg("--out").arg(out_dir.path()).args(["--compression", "none"]));
    assert!(out.status.success(), "build-deb: {}{}", text(&out.stdout), text(&out.stderr));
    let deb = text(&out.stdout).trim().to_owned();
    assert!(deb.ends_with(".deb") && Path::new(&deb).exists(), "{deb}");

    let info = run(Command::new("dpkg-deb").args(["--field", &deb, "Package", "Architecture", "Depends"]));
    assert!(text(&info.stdout).contains("Package: berth"), "{}", text(&info.stdout));

    // a scratch root with an empty dpkg database; dpkg runs the maintainer
    // scripts outside it (there is no shell inside) with DPKG_ROOT set, and
    // they then leave systemd alone
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    for d in ["var/lib/dpkg/info", "var/lib/dpkg/updates", "var/lib/dpkg/triggers"] {
        std::fs::create_dir_all(r.join(d)).unwrap();
    }
    std::fs::write(r.join("var/lib/dpkg/status"), "").unwrap();
    let out = dpkg(r, &["--force-depends", "--force-script-chrootless", "--force-not-root", "-i", &deb]);
    assert!(out.status.success(), "dpkg -i: {}{}", text(&out.stdout), text(&out.stderr));

    for b in BINARIES {
        let p = r.join("usr/bin").join(b);
        assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o755, "{b}");
        assert_eq!(std::fs::read(&p).unwrap(), std::fs::read(bins.join(b)).unwrap(), "{b}");
    }
    let unit = std::fs::read_to_string(r.join("lib/systemd/system/berthd.service")).unwrap();
    assert_eq!(unit, unit_text());
    let exec = unit.lines().find_map(|l| l.strip_prefix("ExecStart=")).unwrap();
    assert!(r.join(exec.trim_start_matches('/')).is_file(), "ExecStart {exec} is installed");
    // berthd finds its shim beside itself (shim_binary = ""), and the shim
    // its berth-runtime beside itself
    assert!(Path::new(&r.join(exec.trim_start_matches('/'))).with_file_name("berth-shim").is_file());
    assert!(Path::new(&r.join(exec.trim_start_matches('/'))).with_file_name("berth-runtime").is_file());
    verify_unit(r, "/lib/systemd/system/berthd.service").unwrap();
    let config = std::fs::read_to_string(r.join("etc/berth/config.toml")).unwrap();
    assert_eq!(config, std::fs::read_to_string(repo().join("deploy/config/config.toml")).unwrap());
    berthd_accepts(&r.join("etc/berth/config.toml")).unwrap();
    // The manuals render without a warning; berthd(8) carries the config keys.
    for (page, must_say) in [("usr/share/man/man8/berthd.8.gz", "max_concurrent_downloads"), ("usr/share/man/man1/berthctl.1.gz", "completion")] {
        let out = Command::new("sh").arg("-c").arg(format!("zcat {} | groff -man -ww -Tutf8", r.join(page).display())).output().unwrap();
        let (shown, warnings) = (text(&out.stdout), text(&out.stderr));
        assert!(shown.contains(must_say) && warnings.is_empty(), "{page}: {warnings}{shown}");
    }
    // bash loads the completion and binds it to berthctl.
    let bash = r.join("usr/share/bash-completion/completions/berthctl");
    let out = Command::new("bash").arg("-c").arg(format!("source {} && complete -p berthctl", bash.display())).output().unwrap();
    assert!(text(&out.stdout).contains("berthctl"), "bash completion: {}{}", text(&out.stdout), text(&out.stderr));
    for file in ["usr/share/zsh/vendor-completions/_berthctl", "usr/share/fish/vendor_completions.d/berthctl.fish"] {
        assert!(std::fs::read_to_string(r.join(file)).unwrap().contains("images"), "{file}");
    }

    let status = text(&dpkg(r, &["--status", "berth"]).stdout);
    assert!(status.contains("Status: install ok installed"), "{status}");
    assert!(status.contains("Conffiles:\n /etc/berth/config.toml "), "the config is a conffile: {status}");

    // remove keeps the (conf)file an operator may have edited; purge drops it
    std::fs::write(r.join("etc/berth/config.toml"), "log_level = \"debug\"\n").unwrap();
    let out = dpkg(r, &["--force-script-chrootless", "--force-not-root", "-r", "berth"]);
    assert!(out.status.success(), "dpkg -r: {}", text(&out.stderr));
    for b in BINARIES {
        assert!(!r.join("usr/bin").join(b).exists(), "dpkg -r removes {b}");
    }
    assert_eq!(std::fs::read_to_string(r.join("etc/berth/config.toml")).unwrap(), "log_level = \"debug\"\n");
    let out = dpkg(r, &["--force-script-chrootless", "--force-not-root", "-P", "berth"]);
    assert!(out.status.success(), "dpkg -P: {}", text(&out.stderr));
    assert!(!r.join("etc/berth/config.toml").exists());
}
