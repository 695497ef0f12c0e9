//! The shim's two halves: `berth-shim` stays resident beside the container,
//! `berth-runtime` (beside it) is exec'd for each step that builds or
//! removes the container. What must hold for the split to be worth it, and
//! what a node without the second binary sees.

mod common;

use std::{path::Path, process::Command};

use common::*;

/// Every symbol of the executable at `path`, demangled.
fn symbols(path: &Path) -> String {
    let out = Command::new("nm").args(["--demangle", "--defined-only"]).arg(path).output().expect("run nm (binutils)");
    assert!(out.status.success(), "nm {}: {}", path.display(), String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The code that builds a container (the OCI spec, the init, seccomp, the
/// systemd D-Bus client, idmapped layers) is linked into `berth-runtime`
/// only: every resident shim would map it again otherwise.
#[test]
fn the_resident_shim_links_none_of_the_container_building_code() {
    let shim = shim_binary();
    let runtime = shim.with_file_name("berth-runtime");
    let building = ["berth_container::init::", "berth_container::seccomp::", "oci_spec::runtime::", "zbus::", "berth_userns::", "libseccomp::"];
    let runtime_symbols = symbols(&runtime);
    // The check below can see these names: the runtime has every one.
    for name in building {
        assert!(runtime_symbols.contains(name), "berth-runtime has no symbol with {name:?}: the check is blind");
    }
    let shim_symbols = symbols(&shim);
    let linked: Vec<&str> = shim_symbols.lines().filter(|l| building.iter().any(|b| l.contains(b))).take(10).collect();
    assert!(linked.is_empty(), "berth-shim links container-building code:\n{}", linked.join("\n"));
    // Nor, as it ships (hack/build-dist.sh, which the test command's second
    // pass gives as BERTH_SHIM_BIN), protobuf's reflection (hundreds of
    // KiB): events name their types. A debug build keeps it for the
    // messages' Debug impls, which the release link drops.
    if std::env::var_os(SHIM_BIN_ENV).is_some() {
        assert!(!shim_symbols.contains("protobuf::reflect::"), "berth-shim links protobuf reflection");
    }
}

/// A shim installed without `berth-runtime` beside it refuses Create with
/// the path it looked at, and leaves nothing behind.
#[test]
fn create_without_berth_runtime_names_the_missing_binary() {
    let alone = tempfile::Builder::new().prefix("berth-shim-alone").tempdir().unwrap();
    let binary = alone.path().join("berth-shim");
    std::fs::copy(shim_binary(), &binary).unwrap();
    let shim = Shim::start_binary("alone", &binary);
    let (c, msg) = code(&shim.create(&spec(&shim.id, &["true"])).unwrap_err());
    assert_eq!(c, ttrpc::Code::INTERNAL, "{msg}");
    let expected = alone.path().join("berth-runtime");
    assert!(msg.contains(&format!("{} not found", expected.display())), "{msg}");
    assert!(shim.cgroup().existing_dirs().is_empty());
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(&shim.dir.path().display().to_string()));
}

/// A shim beside a copy of itself and `runtime` (the bytes of a
/// berth-runtime, real or not), in a directory of its own.
fn shim_beside(name: &str, runtime: &[u8], mode: u32) -> (tempfile::TempDir, Shim) {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::Builder::new().prefix("berth-shim-beside").tempdir().unwrap();
    let binary = dir.path().join("berth-shim");
    std::fs::copy(shim_binary(), &binary).unwrap();
    let path = dir.path().join("berth-runtime");
    std::fs::write(&path, runtime).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    let shim = Shim::start_binary(name, &binary);
    (dir, shim)
}

/// A berth-runtime that cannot be run is refused with its path; one whose
/// exec fails (its interpreter is missing) fails the Create and leaves the
/// shim serving. (std waits itself for a child whose exec failed and aborts
/// if another `waitpid` took it first, so the shim holds its reaper off
/// meanwhile; that race is too narrow for this test to provoke at will.)
#[test]
fn a_berth_runtime_that_cannot_run_fails_create_and_the_shim_lives() {
    let (dir, shim) = shim_beside("noexec", b"#!/bin/sh\n", 0o644);
    let (c, msg) = code(&shim.create(&spec(&shim.id, &["true"])).unwrap_err());
    assert_eq!(c, ttrpc::Code::INTERNAL, "{msg}");
    assert!(msg.contains(&format!("{} is not an executable file", dir.path().join("berth-runtime").display())), "{msg}");
    drop(shim);

    let (_dir, shim) = shim_beside("badexec", b"#!/nonexistent/interpreter\n", 0o755);
    for _ in 0..20 {
        let (c, msg) = code(&shim.create(&spec(&shim.id, &["true"])).unwrap_err());
        assert_eq!(c, ttrpc::Code::INTERNAL, "{msg}");
        assert!(msg.contains("spawn"), "{msg}");
        shim.connect();
    }
    assert!(shim.cgroup().existing_dirs().is_empty());
}

/// A shim goes on running the berth-runtime it started with when the file
/// beside it is replaced (an upgrade renames a new one over it): the two
/// halves of one build talk a protocol private to that build.
#[test]
fn a_shim_keeps_its_own_berth_runtime_when_the_file_is_replaced() {
    let runtime = std::fs::read(shim_binary().with_file_name("berth-runtime")).unwrap();
    let (dir, shim) = shim_beside("pinned", &runtime, 0o755);
    let replacement = dir.path().join("berth-runtime.new");
    std::fs::write(&replacement, b"#!/bin/sh\nexit 42\n").unwrap();
    std::fs::set_permissions(&replacement, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    std::fs::rename(&replacement, dir.path().join("berth-runtime")).unwrap();
    let pid = shim.run(&spec(&shim.id, &["echo", "still the old one"]));
    assert_eq!(shim.wait(""), 0);
    assert_eq!(shim.log_text(), "still the old one");
    shim.delete_and_assert_clean(pid);
}

/// `top` and `ps -o comm` name the shim and the runtime (a container's
/// init before it execs, a pod's pause), not the "exe" or "4" of the
/// /proc paths they are exec'd by.
#[test]
fn the_shim_and_the_runtime_have_their_names_in_ps() {
    let shim = Shim::start("names");
    let comm = |pid: u32| std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap().trim().to_string();
    assert_eq!(comm(shim.shim_pid as u32), "berth-shim");
    // Created, not started: the container's process is still the init.
    let pid = shim.create(&spec(&shim.id, &["true"])).unwrap();
    assert_eq!(comm(pid), "berth-runtime");
    shim.start_task("").unwrap();
    assert_eq!(shim.wait(""), 0);
    shim.delete_and_assert_clean(pid);
}
