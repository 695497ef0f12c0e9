//! `berth-runtime create`: the host side of a new container, then its init.
//!
//! Mounts the rootfs, makes the cgroup (or has systemd start the scope)
//! with this process in it, reports `Prepared` and execs `berth-runtime
//! init` in place: the same pid, now single-threaded again (systemd's D-Bus
//! client may have started threads, and the init forks), already in the
//! container's cgroup, reading the shim's Bootstrap from the same socket.

use std::{os::unix::process::CommandExt, process::Command};

use berth_container::sync::{Channel, InitMessage, Prepare, Prepared, ShimMessage, SYNC_FD_ENV};

use crate::{
    container_cgroup::ContainerCgroup,
    error::{Error, Result},
    rootfs_mount::{mount_rootfs, unmount_rootfs, RootIdmap},
};

pub fn run(channel: Channel) -> ! {
    let prepared = match channel.recv::<ShimMessage>() {
        Ok(Some((ShimMessage::Prepare(p), _))) => prepare(&p, &channel),
        Ok(Some((other, _))) => Err(Error::Internal(format!("expected Prepare, got {other:?}"))),
        Ok(None) => Err(Error::Internal("the shim closed the channel before Prepare".into())),
        Err(e) => Err(Error::Internal(e.to_string())),
    };
    let error = match prepared.and_then(|p| channel.send(&InitMessage::Prepared(p)).map_err(Error::from)) {
        // From here the shim undoes what was made if anything fails.
        Ok(()) => Error::Internal(format!("exec berth-runtime init: {}", become_init(&channel))),
        Err(e) => e,
    };
    let _ = channel.send(&error.to_message());
    std::process::exit(1)
}

/// Execs this binary as the init, handing on the channel (whose fd the shim
/// made inheritable); returns only the error of a failed exec.
fn become_init(channel: &Channel) -> std::io::Error {
    Command::new("/proc/self/exe").arg0("berth-runtime").arg("init").env_clear().env(SYNC_FD_ENV, channel.as_raw_fd().to_string()).exec()
}

fn prepare(p: &Prepare, channel: &Channel) -> Result<Prepared> {
    if !p.bundle.is_absolute() {
        return Err(Error::InvalidArgument(format!("bundle {:?} is not an absolute path", p.bundle)));
    }
    let spec = berth_container::init::load_spec(&p.bundle)?;
    let idmap = RootIdmap::from_spec(&spec)?;
    let rootfs_mount = mount_rootfs(&p.bundle, &p.rootfs, idmap.as_ref())?;
    let undo_mount = |e: Error| {
        if let Some(target) = &rootfs_mount {
            let _ = unmount_rootfs(target);
        }
        e
    };
    let (cgroup, cgroups_path) = ContainerCgroup::for_container(&spec, &p.id).map_err(undo_mount)?;
    // The container's first process starts a systemd scope: this one.
    if let Err(e) = cgroup.start_with(std::process::id() as i32) {
        // Nothing runs in it: a directory we made (or a scope systemd
        // started for us) goes again; someone else's scope stays.
        if cgroup.is_ours() {
            let _ = cgroup.remove();
        }
        return Err(undo_mount(e));
    }
    // Ours now, whatever happens to this process: the shim undoes it.
    channel.send(&InitMessage::CgroupJoined { cgroups_path: cgroups_path.clone() })?;
    Ok(Prepared { rootfs_mount, cgroups_path, cgroup_dir: cgroup.cgroup().path().to_path_buf() })
}
