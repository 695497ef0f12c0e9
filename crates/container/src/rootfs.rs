//! Building the container's filesystem view inside its new mount namespace:
//! spec mounts, /dev, pivot_root, then masked and read-only paths.

use std::{
    fs,
    os::unix::fs::{symlink, OpenOptionsExt},
    path::{Path, PathBuf},
};

use nix::{
    fcntl::{open, OFlag},
    mount::{mount, umount2, MntFlags, MsFlags},
    sys::{
        stat::{makedev, mknod, Mode, SFlag},
        statvfs::{statvfs, FsFlags},
    },
    unistd::{chdir, chown, fchdir, pivot_root, Gid, Uid},
};
use oci_spec::runtime::{LinuxDevice, LinuxDeviceType, Mount, Spec};

use crate::{
    error::{Error, Result},
    idmapped_mounts::IdmappedMounts,
    mount_options::{self, MountOptions},
    paths::secure_join,
};

/// The devices every container gets (OCI runtime spec, "Default Devices").
const DEFAULT_DEVICES: [(&str, u64, u64); 6] = [("null", 1, 3), ("zero", 1, 5), ("full", 1, 7), ("random", 1, 8), ("urandom", 1, 9), ("tty", 5, 0)];

const DEV_SYMLINKS: [(&str, &str); 5] =
    [("/proc/self/fd", "fd"), ("/proc/self/fd/0", "stdin"), ("/proc/self/fd/1", "stdout"), ("/proc/self/fd/2", "stderr"), ("pts/ptmx", "ptmx")];

/// Everything up to and including pivot_root. Runs in the new mount
/// namespace, as root, before any privilege is dropped.
pub fn prepare(spec: &Spec, rootfs: &Path, idmapped: &IdmappedMounts) -> Result<()> {
    let linux = spec.linux().as_ref();
    // Nothing we mount may propagate back to the host.
    let root_propagation = linux
        .and_then(|l| l.rootfs_propagation().as_deref())
        .map(|p| mount_options::parse(&[p.to_string()]).propagation)
        .filter(|p| !p.is_empty())
        .unwrap_or(MsFlags::MS_SLAVE | MsFlags::MS_REC);
    // rshared (a Bidirectional volume): the copied mounts stay in their
    // host peer groups, so a bind of a shared host path joins the host's
    // group and mounts travel both ways. Demoted to slaves first, such a
    // bind would only ever receive.
    mount_raw(None, Path::new("/"), None, root_propagation, None)?;
    if root_propagation.contains(MsFlags::MS_SHARED) {
        // The mount holding the rootfs leaves its peer group, so that the
        // rootfs, /proc and the rest mounted under it never reach the host.
        // (A volume whose host path lives on that same mount is then
        // private too.)
        let holder = containing_mount(rootfs)?;
        mount_raw(None, &holder, None, MsFlags::MS_PRIVATE, None)?;
    }
    // pivot_root needs the new root to be a mount point.
    mount_raw(Some(rootfs), rootfs, None, MsFlags::MS_BIND | MsFlags::MS_REC, None)?;

    for (i, m) in spec.mounts().as_deref().unwrap_or_default().iter().enumerate() {
        mount_one(rootfs, i, m, idmapped)?;
    }
    create_devices(rootfs, linux.and_then(|l| l.devices().as_deref()).unwrap_or_default())?;
    pivot_into(rootfs)?;
    if root_propagation.contains(MsFlags::MS_SHARED) {
        mount_raw(None, Path::new("/"), None, root_propagation, None)?;
    }
    Ok(())
}

/// After sysctls are written: hide and freeze what the spec asks for, and
/// make the root read-only last.
pub fn finalize(spec: &Spec) -> Result<()> {
    if let Some(linux) = spec.linux() {
        for p in linux.masked_paths().as_deref().unwrap_or_default() {
            mask_path(Path::new(p))?;
        }
        for p in linux.readonly_paths().as_deref().unwrap_or_default() {
            readonly_path(Path::new(p))?;
        }
    }
    if spec.root().as_ref().and_then(|r| r.readonly()).unwrap_or(false) {
        remount_readonly(Path::new("/"), false)?;
    }
    Ok(())
}

fn mount_one(rootfs: &Path, index: usize, m: &Mount, idmapped: &IdmappedMounts) -> Result<()> {
    let typ = m.typ().as_deref().unwrap_or("");
    let opts = mount_options::parse(m.options().as_deref().unwrap_or_default());
    let dest = secure_join(rootfs, m.destination());
    if !m.destination().is_absolute() {
        return Err(Error::InvalidSpec(format!("mount destination {:?} is not absolute", m.destination())));
    }
    if typ == "bind" || opts.is_bind() {
        return bind_mount(m, &dest, &opts, idmapped, index);
    }
    if typ == "cgroup" {
        return mount_cgroup(&dest, &opts);
    }
    mkdir_all(&dest)?;
    let source = m.source().as_deref().map(Path::new).unwrap_or(Path::new(typ));
    let flags = opts.flags & !MsFlags::MS_REMOUNT;
    // Read-only goes on the mount, not the superblock: filesystems such as
    // sysfs share one superblock per namespace, so an `ro` superblock from
    // one container of a pod would make a privileged sibling's /sys
    // read-only too.
    mount_raw(Some(source), &dest, Some(typ), flags & !MsFlags::MS_RDONLY, opts.data().as_deref())?;
    if flags.contains(MsFlags::MS_RDONLY) {
        remount_readonly(&dest, false)?;
    }
    if !opts.propagation.is_empty() {
        mount_raw(None, &dest, None, opts.propagation, None)?;
    }
    Ok(())
}

fn bind_mount(m: &Mount, dest: &Path, opts: &MountOptions, idmapped: &IdmappedMounts, index: usize) -> Result<()> {
    let source = m.source().as_deref().ok_or_else(|| Error::InvalidSpec(format!("bind mount on {:?} has no source", m.destination())))?;
    let meta = fs::metadata(source).map_err(|e| Error::Mount {
        source_path: source.display().to_string(),
        target: m.destination().clone(),
        source: nix::Error::from_raw(e.raw_os_error().unwrap_or(libc::ENOENT)),
    })?;
    if meta.is_dir() {
        mkdir_all(dest)?;
    } else {
        touch(dest)?;
    }
    if !idmapped.attach(index, dest)? {
        let bind_flags = MsFlags::MS_BIND | (opts.flags & MsFlags::MS_REC);
        mount_raw(Some(source), dest, None, bind_flags, None)?;
    }
    // Flags other than bind need a second, remounting call.
    let extra = opts.flags & (MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC);
    if !extra.is_empty() {
        if opts.recursive_readonly {
            set_recursive_readonly(dest)?;
        }
        let locked = locked_flags(dest);
        mount_raw(None, dest, None, MsFlags::MS_BIND | MsFlags::MS_REMOUNT | extra | locked, None)?;
    }
    if !opts.propagation.is_empty() {
        mount_raw(None, dest, None, opts.propagation, None)?;
    }
    Ok(())
}

/// `type: cgroup` means "the container's view of the cgroup tree": cgroup2
/// on a unified host, a tmpfs of per-controller mounts on v1 (plus the
/// cgroup2 mount on a hybrid host). Inside the new
/// cgroup namespace both show the container's own cgroup as root.
fn mount_cgroup(dest: &Path, opts: &MountOptions) -> Result<()> {
    mkdir_all(dest)?;
    let flags = (opts.flags & !MsFlags::MS_REMOUNT) | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    let hierarchy = berth_cgroups::Hierarchy::detect().map_err(|e| Error::Rootfs { path: dest.into(), reason: e.to_string() })?;
    match hierarchy.version() {
        berth_cgroups::Version::V2 => mount_raw(Some(Path::new("cgroup2")), dest, Some("cgroup2"), flags, None),
        berth_cgroups::Version::V1 => {
            mount_raw(Some(Path::new("tmpfs")), dest, Some("tmpfs"), MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC, Some("mode=755"))?;
            for (mount_point, controllers) in hierarchy.v1_mount_groups() {
                let Some(name) = mount_point.file_name() else { continue };
                let target = dest.join(name);
                mkdir_all(&target)?;
                let data = controllers.iter().map(|c| if c.starts_with("name=") { format!("none,{c}") } else { c.clone() }).collect::<Vec<_>>().join(",");
                mount_raw(Some(Path::new("cgroup")), &target, Some("cgroup"), flags, Some(&data))?;
            }
            // A hybrid host's cgroup2 mount, where the container is too.
            if let Some(name) = hierarchy.unified().and_then(Path::file_name) {
                let target = dest.join(name);
                mkdir_all(&target)?;
                mount_raw(Some(Path::new("cgroup2")), &target, Some("cgroup2"), flags, None)?;
            }
            // The tmpfs itself becomes read-only too when asked.
            if flags.contains(MsFlags::MS_RDONLY) {
                mount_raw(None, dest, None, MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY | locked_flags(dest), None)?;
            }
            Ok(())
        }
    }
}

fn create_devices(rootfs: &Path, devices: &[LinuxDevice]) -> Result<()> {
    let dev = secure_join(rootfs, Path::new("/dev"));
    mkdir_all(&dev)?;
    for (name, major, minor) in DEFAULT_DEVICES {
        let path = dev.join(name);
        if devices.iter().any(|d| *d.path() == Path::new("/dev").join(name)) {
            continue;
        }
        make_device(&path, SFlag::S_IFCHR, major, minor, 0o666, None, None)?;
    }
    for d in devices {
        let path = secure_join(rootfs, d.path());
        let kind = match d.typ() {
            LinuxDeviceType::C | LinuxDeviceType::U => SFlag::S_IFCHR,
            LinuxDeviceType::B => SFlag::S_IFBLK,
            LinuxDeviceType::P => SFlag::S_IFIFO,
            LinuxDeviceType::A => return Err(Error::InvalidSpec(format!("device {:?} has type 'a'", d.path()))),
        };
        if let Some(parent) = path.parent() {
            mkdir_all(parent)?;
        }
        make_device(&path, kind, d.major() as u64, d.minor() as u64, d.file_mode().unwrap_or(0o666), d.uid(), d.gid())?;
    }
    for (target, name) in DEV_SYMLINKS {
        let link = dev.join(name);
        if fs::symlink_metadata(&link).is_err() {
            symlink(target, &link).map_err(|e| Error::Rootfs { path: link.clone(), reason: e.to_string() })?;
        }
    }
    for dir in ["pts", "shm"] {
        mkdir_all(&dev.join(dir))?;
    }
    Ok(())
}

fn make_device(path: &Path, kind: SFlag, major: u64, minor: u64, mode: u32, uid: Option<u32>, gid: Option<u32>) -> Result<()> {
    let _ = fs::remove_file(path);
    let perm = Mode::from_bits_truncate(mode & 0o7777);
    match mknod(path, kind, perm, makedev(major, minor)) {
        Ok(()) => {}
        // Without CAP_MKNOD (e.g. in a user namespace) bind the host's node.
        Err(nix::Error::EPERM) if kind != SFlag::S_IFIFO => {
            touch(path)?;
            let host = PathBuf::from("/dev").join(path.file_name().unwrap_or_default());
            mount_raw(Some(&host), path, None, MsFlags::MS_BIND, None)?;
            return Ok(());
        }
        Err(source) => return Err(Error::Mount { source_path: "mknod".into(), target: path.into(), source }),
    }
    // mknod honours the umask; set the mode the spec asked for exactly.
    fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(mode & 0o7777))
        .map_err(|e| Error::Rootfs { path: path.into(), reason: e.to_string() })?;
    if uid.is_some() || gid.is_some() {
        chown(path, uid.map(Uid::from_raw), gid.map(Gid::from_raw)).map_err(Error::sys(format!("chown {}", path.display())))?;
    }
    Ok(())
}

/// pivot_root(".", ".") stacks the old root on top of the new one; detaching
/// it leaves only the container's tree, with no directory needed for it.
fn pivot_into(rootfs: &Path) -> Result<()> {
    let old_root = open("/", OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty()).map_err(Error::sys("open /"))?;
    chdir(rootfs).map_err(Error::sys(format!("chdir {}", rootfs.display())))?;
    pivot_root(".", ".").map_err(Error::sys("pivot_root"))?;
    fchdir(&old_root).map_err(Error::sys("fchdir old root"))?;
    // Keep the unmount of the old root from reaching the host.
    mount_raw(None, Path::new("."), None, MsFlags::MS_SLAVE | MsFlags::MS_REC, None)?;
    umount2(".", MntFlags::MNT_DETACH).map_err(Error::sys("detach old root"))?;
    chdir("/").map_err(Error::sys("chdir /"))?;
    Ok(())
}

fn mask_path(path: &Path) -> Result<()> {
    let meta = match fs::metadata(path) {
        Ok(m) => m,
        Err(_) => return Ok(()),
    };
    if meta.is_dir() {
        mount_raw(Some(Path::new("tmpfs")), path, Some("tmpfs"), MsFlags::MS_RDONLY, None)
    } else {
        mount_raw(Some(Path::new("/dev/null")), path, None, MsFlags::MS_BIND, None)
    }
}

fn readonly_path(path: &Path) -> Result<()> {
    if fs::symlink_metadata(path).is_err() {
        return Ok(());
    }
    mount_raw(Some(path), path, None, MsFlags::MS_BIND | MsFlags::MS_REC, None)?;
    remount_readonly(path, true)
}

fn remount_readonly(path: &Path, recursive: bool) -> Result<()> {
    let rec = if recursive { MsFlags::MS_REC } else { MsFlags::empty() };
    let flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | rec | locked_flags(path);
    mount_raw(None, path, None, flags, None)
}

/// A bind remount must repeat nosuid/nodev/noexec the mount already has, or
/// the kernel refuses to clear them (EPERM).
fn locked_flags(path: &Path) -> MsFlags {
    let Ok(st) = statvfs(path) else { return MsFlags::empty() };
    let f = st.flags();
    let mut out = MsFlags::empty();
    for (fs_flag, ms_flag) in [
        (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
        (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
        (FsFlags::ST_RDONLY, MsFlags::MS_RDONLY),
    ] {
        if f.contains(fs_flag) {
            out |= ms_flag;
        }
    }
    out
}

/// Read-only for every submount too. There is no fallback: berthd
/// advertises and accepts recursive read-only mounts only where
/// mount_setattr(2) exists.
fn set_recursive_readonly(path: &Path) -> Result<()> {
    berth_userns::set_recursive_readonly(path).map_err(|e| Error::Mount {
        source_path: "mount_setattr(rro)".into(),
        target: path.into(),
        source: e.errno().unwrap_or(nix::Error::EINVAL),
    })
}

/// The mount point of the mount `path` is on (the longest mount point in
/// /proc/self/mountinfo that holds it).
fn containing_mount(path: &Path) -> Result<PathBuf> {
    let path = fs::canonicalize(path).map_err(|e| Error::Rootfs { path: path.into(), reason: format!("resolve: {e}") })?;
    let info = fs::read_to_string("/proc/self/mountinfo").map_err(|e| Error::Rootfs { path: "/proc/self/mountinfo".into(), reason: e.to_string() })?;
    info.lines()
        .filter_map(|line| line.split(' ').nth(4).map(unescape_mountinfo))
        .filter(|point| path.starts_with(point))
        .max_by_key(|point| point.as_os_str().len())
        .ok_or_else(|| Error::Rootfs { path: path.clone(), reason: "on no mount in /proc/self/mountinfo".into() })
}

/// mountinfo writes space, tab, newline and backslash as `\ooo`.
fn unescape_mountinfo(field: &str) -> PathBuf {
    use std::os::unix::ffi::OsStringExt;
    let (bytes, mut out, mut i) = (field.as_bytes(), Vec::with_capacity(field.len()), 0);
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).filter(|d| bytes[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match octal {
            Some(d) => {
                out.push(d.iter().fold(0u8, |n, c| n.wrapping_mul(8) + (c - b'0')));
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    PathBuf::from(std::ffi::OsString::from_vec(out))
}

pub fn mount_raw(source: Option<&Path>, target: &Path, fstype: Option<&str>, flags: MsFlags, data: Option<&str>) -> Result<()> {
    mount(source, target, fstype, flags, data).map_err(|e| Error::Mount {
        source_path: source.map(|s| s.display().to_string()).or_else(|| fstype.map(str::to_string)).unwrap_or_else(|| "(remount)".into()),
        target: target.into(),
        source: e,
    })
}

fn mkdir_all(path: &Path) -> Result<()> {
    fs::create_dir_all(path).map_err(|e| Error::Rootfs { path: path.into(), reason: format!("create directory: {e}") })
}

fn touch(path: &Path) -> Result<()> {
    if let Some(parent) = path.parent() {
        mkdir_all(parent)?;
    }
    if fs::symlink_metadata(path).is_ok() {
        return Ok(());
    }
    fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o644)
        .open(path)
        .map(drop)
        .map_err(|e| Error::Rootfs { path: path.into(), reason: format!("create file: {e}") })
}
