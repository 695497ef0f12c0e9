//! A process that holds a new user namespace (and namespaces owned by it)
//! open while the caller pins or uses them.
//!
//! It is made with clone(2), not unshare: a multi-threaded process such as
//! berthd may not unshare a user namespace, and the id maps must be written
//! from outside the namespace by a process privileged on the host.

use std::{
    os::fd::{AsRawFd, OwnedFd},
    path::PathBuf,
};

use nix::{
    errno::Errno,
    fcntl::OFlag,
    sched::CloneFlags,
    sys::wait::waitpid,
    unistd::{pipe2, Pid},
};

use crate::{
    error::{Error, Result},
    id_map::{proc_text, IdMap},
};

/// The child's stack: it only makes three system calls.
const STACK_SIZE: usize = 64 * 1024;

/// A child process in a new user namespace with the given id maps, and in
/// new namespaces of the `also` kinds that the user namespace owns. It
/// waits and does nothing else; dropping the holder ends it.
#[derive(Debug)]
pub struct NamespaceHolder {
    pid: Pid,
    /// The child exits when it reads end-of-file here.
    release: Option<OwnedFd>,
}

impl NamespaceHolder {
    pub fn spawn(map: &IdMap, also: CloneFlags) -> Result<Self> {
        map.validate()?;
        let (wait_end, release) = pipe2(OFlag::O_CLOEXEC).map_err(Error::sys("pipe2"))?;
        let (wait_fd, release_fd) = (wait_end.as_raw_fd(), release.as_raw_fd());
        let mut stack = vec![0u8; STACK_SIZE];
        let child = Box::new(move || -> isize {
            // Only system calls from here: the child is a copy of a
            // possibly multi-threaded parent, whose locks may be held.
            // SAFETY: closing our copy of the write end, reading one byte
            // into a live local and exiting touch no shared state.
            unsafe {
                libc::close(release_fd);
                let mut byte = 0u8;
                while libc::read(wait_fd, (&mut byte as *mut u8).cast(), 1) < 0 && Errno::last() == Errno::EINTR {}
                libc::_exit(0)
            }
        });
        // SAFETY: without CLONE_VM the child runs on its own copy of `stack`
        // and of memory; the callback above makes only system calls.
        let pid = unsafe { nix::sched::clone(child, &mut stack, CloneFlags::CLONE_NEWUSER | also, Some(libc::SIGCHLD)) }
            .map_err(Error::sys(format!("clone {:?}", CloneFlags::CLONE_NEWUSER | also)))?;
        drop(wait_end);
        let holder = NamespaceHolder { pid, release: Some(release) };
        for (file, ranges) in [("uid_map", &map.uids), ("gid_map", &map.gids)] {
            let path = PathBuf::from(format!("/proc/{pid}/{file}"));
            std::fs::write(&path, proc_text(ranges)).map_err(|source| Error::Io { op: "write", path, source })?;
        }
        Ok(holder)
    }

    pub fn pid(&self) -> Pid {
        self.pid
    }

    /// The holder's user namespace, open (for mount_setattr's userns_fd).
    pub fn user_namespace(&self) -> Result<std::fs::File> {
        let path = self.ns_path("user");
        std::fs::File::open(&path).map_err(|source| Error::Io { op: "open", path, source })
    }

    /// `/proc/<pid>/ns/<name>` of the holder: `user`, `net`, `ipc`, `uts`.
    pub fn ns_path(&self, name: &str) -> PathBuf {
        PathBuf::from(format!("/proc/{}/ns/{name}", self.pid))
    }
}

impl Drop for NamespaceHolder {
    fn drop(&mut self) {
        drop(self.release.take());
        // ECHILD: somebody else reaped it; nothing is left either way.
        let _ = waitpid(self.pid, None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::IdMapping;

    fn map() -> IdMap {
        let r = vec![IdMapping { container_id: 0, host_id: 300_000, size: 65_536 }];
        IdMap { uids: r.clone(), gids: r }
    }

    #[test]
    fn the_child_sits_in_a_user_namespace_with_the_maps() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: writing another process's id maps needs root");
            return;
        }
        let holder = NamespaceHolder::spawn(&map(), CloneFlags::CLONE_NEWNET).unwrap();
        let pid = holder.pid();
        let uid_map = std::fs::read_to_string(format!("/proc/{pid}/uid_map")).unwrap();
        assert_eq!(uid_map.split_whitespace().collect::<Vec<_>>(), ["0", "300000", "65536"]);
        let ours = std::fs::read_link("/proc/self/ns/net").unwrap();
        assert_ne!(std::fs::read_link(holder.ns_path("net")).unwrap(), ours, "the holder has a network namespace of its own");
        drop(holder);
        assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists(), "the holder is gone (and reaped) once dropped");
    }

    #[test]
    fn a_bad_map_makes_no_process() {
        let bad = IdMap { uids: vec![], gids: vec![] };
        assert!(NamespaceHolder::spawn(&bad, CloneFlags::empty()).unwrap_err().to_string().contains("uids: no mapping"));
    }
}
