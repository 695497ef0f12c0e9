//! Isolation the spec asks for is really in force inside the container.

mod common;

use std::collections::HashSet;

use common::*;
use oci_spec::runtime::{Capability, LinuxCapabilities, Spec};

/// Runs `script` in a container made from `spec` and returns (exit, log).
fn run_script(name: &str, edit: impl FnOnce(&mut Spec), script: &str) -> (u32, String) {
    let shim = Shim::start(name);
    let mut spec = spec(&shim.id, &["sh", "-c", script]);
    edit(&mut spec);
    let pid = shim.run(&spec);
    let exit = shim.wait("");
    let log = shim.log_text();
    shim.delete_and_assert_clean(pid);
    (exit, log)
}

#[test]
fn readonly_rootfs_refuses_writes() {
    let (exit, log) = run_script(
        "rofs",
        |s| {
            s.root_mut().as_mut().unwrap().set_readonly(Some(true));
        },
        "touch /newfile && echo wrote; echo tmpfs >/dev/shm/ok && echo shm-ok",
    );
    assert_eq!(exit, 0, "{log}");
    assert!(log.contains("Read-only file system") && !log.contains("wrote"), "{log}");
    assert!(log.contains("shm-ok"), "tmpfs mounts stay writable: {log}");
}

#[test]
fn dropped_capability_is_absent_from_capeff() {
    let caps: HashSet<Capability> = [Capability::Chown, Capability::Kill, Capability::Setuid, Capability::Setgid].into_iter().collect();
    let (exit, log) = run_script(
        "caps",
        |s| {
            let mut c = LinuxCapabilities::default();
            c.set_bounding(Some(caps.clone()));
            c.set_effective(Some(caps.clone()));
            c.set_permitted(Some(caps.clone()));
            c.set_inheritable(None);
            c.set_ambient(None);
            s.process_mut().as_mut().unwrap().set_capabilities(Some(c));
        },
        "grep -E '^Cap(Eff|Bnd)' /proc/self/status; chown nobody /tmp && echo chown-ok; ping -c1 127.0.0.1 >/dev/null 2>&1 || echo no-raw",
    );
    assert_eq!(exit, 0, "{log}");
    // CAP_CHOWN=0, CAP_KILL=5, CAP_SETGID=6, CAP_SETUID=7.
    let want = (1u64 << 0) | (1 << 5) | (1 << 6) | (1 << 7);
    for line in log.lines().filter(|l| l.starts_with("Cap")) {
        let mask = u64::from_str_radix(line.split_whitespace().nth(1).unwrap(), 16).unwrap();
        assert_eq!(mask, want, "{line}");
    }
    assert!(log.contains("chown-ok"), "{log}");
    assert!(log.contains("no-raw"), "CAP_NET_RAW was dropped, ping must fail: {log}");
}

#[test]
fn default_seccomp_profile_blocks_unshare_and_unconfined_allows_it() {
    let script = "unshare -U true && echo unshare-ok";
    let (_, confined) = run_script("seccomp", |_| {}, script);
    assert!(confined.contains("Operation not permitted") && !confined.contains("unshare-ok"), "{confined}");
    let (exit, unconfined) = run_script(
        "unconfined",
        |s| {
            s.linux_mut().as_mut().unwrap().set_seccomp(None);
        },
        script,
    );
    assert_eq!((exit, unconfined.as_str()), (0, "unshare-ok"));
}

#[test]
fn user_groups_umask_and_no_new_privs() {
    let (exit, log) = run_script(
        "user",
        |s| {
            let p = s.process_mut().as_mut().unwrap();
            let mut u = p.user().clone();
            u.set_uid(65534);
            u.set_gid(65534);
            u.set_additional_gids(Some(vec![1234]));
            u.set_umask(Some(0o077));
            p.set_user(u);
            p.set_no_new_privileges(Some(true));
        },
        "id -u; id -G; umask; grep NoNewPrivs /proc/self/status",
    );
    assert_eq!(exit, 0, "{log}");
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines[0], "65534");
    assert_eq!(lines[1], "65534 1234");
    assert_eq!(lines[2], "0077");
    assert!(lines[3].ends_with('1'), "{log}");
}

#[test]
fn masked_and_readonly_paths_hostname_and_sysctl() {
    let (exit, log) = run_script(
        "paths",
        |s| {
            let mut sysctl = std::collections::HashMap::new();
            sysctl.insert("net.ipv4.ip_unprivileged_port_start".to_string(), "80".to_string());
            s.linux_mut().as_mut().unwrap().set_sysctl(Some(sysctl));
            s.set_hostname(Some("box1".into()));
        },
        "wc -c < /proc/timer_list; echo 1 > /proc/sys/kernel/panic || echo sys-ro; hostname; \
         cat /proc/sys/net/ipv4/ip_unprivileged_port_start; ls /sys/firmware | wc -l; \
         cat /proc/self/oom_score_adj",
    );
    assert_eq!(exit, 0, "{log}");
    let lines: Vec<&str> = log.lines().filter(|l| !l.starts_with("sh:")).collect();
    assert_eq!(lines, ["0", "sys-ro", "box1", "80", "0", "0"], "{log}");
}

#[test]
fn oom_score_adj_is_raised_and_a_lowering_is_clamped() {
    let (_, log) = run_script(
        "oomadj",
        |s| {
            s.process_mut().as_mut().unwrap().set_oom_score_adj(Some(500));
        },
        "cat /proc/self/oom_score_adj",
    );
    assert_eq!(log, "500");
    // Going below the shim's own score needs CAP_SYS_RESOURCE; when the
    // host withholds it the value is clamped, not an error.
    let shim_adj: i32 = std::fs::read_to_string("/proc/self/oom_score_adj").unwrap().trim().parse().unwrap();
    let (exit, log) = run_script(
        "oomneg",
        |s| {
            s.process_mut().as_mut().unwrap().set_oom_score_adj(Some(-999));
        },
        "cat /proc/self/oom_score_adj",
    );
    assert_eq!(exit, 0);
    let got: i32 = log.trim().parse().unwrap();
    assert!(got == -999 || got == shim_adj, "oom_score_adj {got}");
}
