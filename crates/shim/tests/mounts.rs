//! Bind mounts: read-only at the top (`ro`) or all the way down (`rro`),
//! propagation, and spec devices.

mod common;

use std::path::Path;

use common::*;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use oci_spec::runtime::{LinuxDeviceBuilder, LinuxDeviceType, MountBuilder};

fn mount_tmpfs(target: &Path) {
    std::fs::create_dir_all(target).unwrap();
    mount(Some("tmpfs"), target, Some("tmpfs"), MsFlags::empty(), None::<&str>).unwrap();
}

/// Unmounts everything under `dir` (deepest first) even if a test failed.
struct Unmount(Vec<std::path::PathBuf>);
impl Drop for Unmount {
    fn drop(&mut self) {
        for p in self.0.iter().rev() {
            let _ = umount2(p, MntFlags::MNT_DETACH);
        }
    }
}

#[test]
fn rro_is_readonly_all_the_way_down_ro_only_at_the_top_and_propagation_is_honoured() {
    let shim = Shim::start("binds");
    let src = shim.dir.path().join("src");
    // A shared mount on the host with a submount below it.
    mount_tmpfs(&src);
    let guard = Unmount(vec![src.clone(), src.join("sub"), src.join("late-slave")]);
    mount(None::<&str>, &src, None::<&str>, MsFlags::MS_SHARED, None::<&str>).unwrap();
    mount_tmpfs(&src.join("sub"));
    std::fs::create_dir_all(src.join("late-slave")).unwrap();

    let mut spec = spec(
        &shim.id,
        &[
            "sh",
            "-c",
            "\
        touch /ro/x 2>/dev/null && echo top-writable; \
        touch /ro/sub/x 2>/dev/null && echo sub-writable; \
        touch /top-ro/x 2>/dev/null && echo top-ro-writable; \
        touch /top-ro/sub/z && echo top-ro-sub-writable; \
        touch /rw/sub/y && echo rw-ok; \
        while [ ! -e /slave/late-slave/marker ]; do sleep 0.05; done; echo slave-sees-new-mount; \
        ls /private/late-slave | wc -l; \
        ls -l /dev/fuse | cut -c1; \
    ",
        ],
    );
    let bind = |dest: &str, opts: &[&str]| {
        MountBuilder::default()
            .destination(dest)
            .typ("bind")
            .source(src.clone())
            .options(opts.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .build()
            .unwrap()
    };
    let mounts = spec.mounts_mut().as_mut().unwrap();
    mounts.push(bind("/ro", &["rbind", "ro", "rro"]));
    mounts.push(bind("/top-ro", &["rbind", "ro"]));
    mounts.push(bind("/rw", &["rbind", "rw"]));
    mounts.push(bind("/slave", &["rbind", "rslave"]));
    mounts.push(bind("/private", &["rbind", "rprivate"]));
    let fuse = LinuxDeviceBuilder::default().path("/dev/fuse").typ(LinuxDeviceType::C).major(10).minor(229).file_mode(0o666u32).build().unwrap();
    spec.linux_mut().as_mut().unwrap().set_devices(Some(vec![fuse]));
    let pid = shim.run(&spec);
    wait_until("the container checked its binds", || shim.log_text().contains("rw-ok"));
    // A mount made on the host now reaches a slave bind, not a private one.
    mount_tmpfs(&src.join("late-slave"));
    std::fs::write(src.join("late-slave/marker"), "").unwrap();
    assert_eq!(shim.wait(""), 0, "{}", shim.log_text());
    let log = shim.log_text();
    assert_eq!(log.lines().collect::<Vec<_>>(), ["top-ro-sub-writable", "rw-ok", "slave-sees-new-mount", "0", "c"], "{log}");
    drop(guard);
    shim.delete_and_assert_clean(pid);
}
