//! `start` as containerd runs it: bind the shim's socket, record its
//! address in the bundle, hand the socket to a detached `serve`, print the
//! address, exit 0.
//!
//! containerd reads our stdout and stderr together as the address, so
//! nothing may go to stderr unless `start` fails.

use std::{
    fs::OpenOptions,
    io::Read,
    os::unix::{
        fs::{FileTypeExt, OpenOptionsExt, PermissionsExt},
        net::{UnixListener, UnixStream},
    },
    path::{Path, PathBuf},
    process::Stdio,
};

use containerd_shim_protos::{
    protobuf::{well_known_types::any::Any, Message},
    shim::oci::Options as RuncOptions,
};
use sha2::{Digest, Sha256};

use super::{bundle_files, invocation::Invocation};
use crate::{
    args::{Args, ContainerdLink},
    start::spawn_serve,
};

/// Where containerd's shims put their sockets (`defaults.DefaultStateDir` +
/// `/s` in containerd 1.6 and 2.x). containerd dials the address it is
/// given wherever it is, but this directory is the one a containerd in a
/// container shares with the host, and the one its operators look in.
pub const SOCKET_DIR: &str = "/run/containerd/s";

/// The runc options' type URL: the only runtime options berth-shim reads
/// (its `shim_cgroup`); containerd's CRI sends any other runtime's options
/// as `runtimeoptions.v1.Options`, which berth-shim has no use for.
const RUNC_OPTIONS_TYPE: &str = "containerd.runc.v1.Options";

pub fn run(inv: &Invocation) -> Result<(), String> {
    let bundle = inv.bundle_dir()?;
    let shim_cgroup = shim_cgroup_from_options(std::io::stdin().lock())?;
    let socket = socket_path(&inv.address, &inv.namespace, &inv.id);
    let address = format!("unix://{}", socket.display());
    if UnixStream::connect(&socket).is_ok() {
        // containerd retried `start` for a container whose shim serves.
        write_address(&bundle, &address)?;
        println!("{address}");
        return Ok(());
    }
    let listener = bind(&socket)?;
    let spawned = (|| {
        write_address(&bundle, &address)?;
        let link = ContainerdLink { namespace: inv.namespace.clone(), events_address: std::env::var("TTRPC_ADDRESS").unwrap_or_default() };
        let args = Args { id: inv.id.clone(), socket: socket.clone(), bundle: Some(bundle.clone()), cgroup: shim_cgroup, containerd: Some(link) };
        let pid = spawn_serve(&listener, &args, shim_log(&bundle))?;
        bundle_files::write_atomic(&bundle, bundle_files::SHIM_PID, &pid.to_string()).map_err(|e| format!("record shim pid in {}: {e}", bundle.display()))
    })();
    if let Err(e) = spawned {
        let _ = std::fs::remove_file(&socket);
        let _ = std::fs::remove_file(bundle.join(bundle_files::ADDRESS));
        return Err(e);
    }
    println!("{address}");
    Ok(())
}

/// `/run/containerd/s/<sha256(address/namespace/id)>`: the name containerd's
/// own shims use for one container, so a second containerd (another
/// `-address`) or namespace never collides, and `sun_path` stays short.
pub fn socket_path(containerd_address: &str, namespace: &str, id: &str) -> PathBuf {
    let key = format!("{}/{namespace}/{id}", containerd_address.trim_end_matches('/'));
    let digest = Sha256::digest(key.as_bytes());
    Path::new(SOCKET_DIR).join(hex::encode(digest))
}

/// Binds `socket` (only root may connect), replacing a dead one.
fn bind(socket: &Path) -> Result<UnixListener, String> {
    if let Some(dir) = socket.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o711)).map_err(|e| format!("chmod {}: {e}", dir.display()))?;
    }
    // Not connectable (checked by the caller): a shim that died left it.
    let _ = std::fs::remove_file(socket);
    let listener = UnixListener::bind(socket).map_err(|e| format!("listen on {}: {e}", socket.display()))?;
    if let Err(e) = std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o600)) {
        let _ = std::fs::remove_file(socket);
        return Err(format!("chmod {}: {e}", socket.display()));
    }
    Ok(listener)
}

fn write_address(bundle: &Path, address: &str) -> Result<(), String> {
    bundle_files::write_atomic(bundle, bundle_files::ADDRESS, address).map_err(|e| format!("write {}/{}: {e}", bundle.display(), bundle_files::ADDRESS))
}

/// The shim's stderr: containerd's `log` fifo in the bundle (containerd
/// copies it to its own log; it opened the fifo before running us), else
/// `shim.log` in the bundle. The fifo is non-blocking: a containerd that
/// stops reading costs log lines, never a stuck Task API call.
fn shim_log(bundle: &Path) -> Stdio {
    let fifo = bundle.join(bundle_files::LOG_FIFO);
    if std::fs::metadata(&fifo).is_ok_and(|m| m.file_type().is_fifo()) {
        // Fails (ENXIO) when nobody reads it: then the file below.
        if let Ok(f) = OpenOptions::new().write(true).custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC).open(&fifo) {
            return Stdio::from(f);
        }
    }
    match OpenOptions::new().create(true).append(true).open(bundle.join(bundle_files::LOG_FILE)) {
        Ok(f) => Stdio::from(f),
        Err(_) => Stdio::null(),
    }
}

/// The runtime options containerd writes on stdin (a protobuf Any, or
/// nothing): the runc options' `shim_cgroup` when they are runc's, else
/// "" (the shim stays in containerd's cgroup, as containerd's runc shim
/// does).
fn shim_cgroup_from_options(mut stdin: impl Read) -> Result<String, String> {
    let mut data = Vec::new();
    stdin.read_to_end(&mut data).map_err(|e| format!("read runtime options from stdin: {e}"))?;
    if data.is_empty() {
        return Ok(String::new());
    }
    let any = Any::parse_from_bytes(&data).map_err(|e| format!("runtime options on stdin are not a protobuf Any: {e}"))?;
    if any.type_url.trim_start_matches("type.googleapis.com/") != RUNC_OPTIONS_TYPE {
        return Ok(String::new());
    }
    let options = RuncOptions::parse_from_bytes(&any.value).map_err(|e| format!("runtime options ({RUNC_OPTIONS_TYPE}): {e}"))?;
    Ok(options.shim_cgroup)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_names_are_per_containerd_namespace_and_id() {
        let a = socket_path("/run/containerd/containerd.sock", "k8s.io", "abc");
        assert!(a.starts_with(SOCKET_DIR));
        assert_eq!(a.file_name().unwrap().len(), 64);
        // What containerd's Go shims compute: sha256 of filepath.Join(address, ns, id).
        let expected = hex::encode(Sha256::digest(b"/run/containerd/containerd.sock/k8s.io/abc"));
        assert_eq!(a, Path::new(SOCKET_DIR).join(expected));
        assert_ne!(a, socket_path("/other/containerd.sock", "k8s.io", "abc"));
        assert_ne!(a, socket_path("/run/containerd/containerd.sock", "default", "abc"));
        assert!(a.as_os_str().len() < 108);
    }

    #[test]
    fn runtime_options() {
        assert_eq!(shim_cgroup_from_options(&b""[..]).unwrap(), "");
        let mut runc = RuncOptions::new();
        runc.shim_cgroup = "/shims".into();
        let mut any = Any::new();
        any.type_url = RUNC_OPTIONS_TYPE.into();
        any.value = runc.write_to_bytes().unwrap();
        assert_eq!(shim_cgroup_from_options(&any.write_to_bytes().unwrap()[..]).unwrap(), "/shims");
        any.type_url = "runtimeoptions.v1.Options".into();
        any.value = vec![0x0a, 0x01, b'x'];
        assert_eq!(shim_cgroup_from_options(&any.write_to_bytes().unwrap()[..]).unwrap(), "");
        assert!(shim_cgroup_from_options(&[0xff, 0xff][..]).unwrap_err().contains("not a protobuf Any"));
    }
}
