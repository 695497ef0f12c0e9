//! The conversation between berth-shim and the `berth-runtime` it spawned
//! for a container process, over a `SOCK_SEQPACKET` socketpair (message
//! boundaries kept, fds passable). Its own crate so that the resident shim
//! links only this, not the code that builds containers.
//!
//! ```text
//! shim                               init (stage 1)        init (stage 2 = container pid 1)
//!  spawn `berth-runtime init` ────────▶
//!  put pid in cgroup
//!  Bootstrap ─────────────────────────▶ setns/unshare, fork ─▶
//!            ◀──────────────────────── Pid(stage 2), exit
//!            ◀─────────────────────────────────────────────── Console(fd)  (tty only)
//!            ◀─────────────────────────────────────────────── Ready  (or Error)
//!  Start ─────────────────────────────────────────────────────▶ drop privileges, execve
//!  EOF (socket is close-on-exec) ◀───────────────────────────── exec succeeded
//! ```
//! An `Error` can arrive at any step instead; the init then exits. Exec
//! processes follow the same path but stage 2 execs without waiting for Start.
//!
//! A new container's stage 1 starts as `berth-runtime create`, which does
//! the host-side work first and then becomes the init in place (exec, same
//! pid), so the shim that stays resident never runs that code:
//!
//! ```text
//!  spawn `berth-runtime create`
//!  Prepare ───────────────────────────▶ mount rootfs, make the cgroup, join it
//!          ◀──────────────────────────── CgroupJoined
//!          ◀──────────────────────────── Prepared, exec `berth-runtime init`
//!  Bootstrap ─────────────────────────▶ (as above)
//! ```

// Fds cross the socket (SCM_RIGHTS) and the init's end is adopted from a
// number in the environment: raw fd handling, each block with its SAFETY.
#![allow(unsafe_code)]

use std::{
    io::{IoSlice, IoSliceMut},
    os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd},
    path::PathBuf,
};

use nix::sys::socket::{recvmsg, sendmsg, socketpair, AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags, SockFlag, SockType};
use serde::{Deserialize, Serialize};

pub type Result<T> = std::result::Result<T, Error>;

/// A failure of the conversation itself (not of what it was about).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{op}: {source}")]
    Socket { op: &'static str, source: nix::Error },
    #[error("bad message: {0}")]
    Message(#[from] serde_json::Error),
}

impl Error {
    /// The peer did not answer within the socket's receive timeout.
    pub fn is_timeout(&self) -> bool {
        matches!(self, Error::Socket { source: nix::Error::EAGAIN, .. })
    }
}

/// Kind of failure a message reports, so the shim can pick a ttrpc code
/// without parsing text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorKind {
    /// The spec or request asks for something impossible or missing (bad
    /// path, bad uid, command not found): the caller's fault.
    InvalidArgument,
    /// The host failed (a syscall error not caused by the spec).
    Internal,
}

/// Name of the environment variable that carries the init's end of the socket.
pub const SYNC_FD_ENV: &str = "_BERTH_SYNC_FD";

/// Largest message: a spec's process with a long environment fits easily.
const MAX_MESSAGE: usize = 1 << 20;

#[derive(Debug, Serialize, Deserialize)]
pub enum ShimMessage {
    Prepare(Prepare),
    Bootstrap(Bootstrap),
    Start,
}

/// What `berth-runtime create` sets up on the host before the init runs.
#[derive(Debug, Serialize, Deserialize)]
pub struct Prepare {
    pub id: String,
    /// Bundle directory holding `config.json`.
    pub bundle: PathBuf,
    /// Mounted in order on `<bundle>/rootfs` (empty: the bundle has its rootfs).
    pub rootfs: Vec<RootfsMount>,
}

/// One mount of `CreateTaskRequest.rootfs`, as containerd describes it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RootfsMount {
    pub kind: String,
    pub source: String,
    pub options: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Bootstrap {
    /// Bundle directory holding `config.json`; `root.path` is relative to it.
    pub bundle: PathBuf,
    /// Allocate a pty inside the container and send its master back.
    pub terminal: bool,
    /// Set for an exec into a running container: join the namespaces of
    /// `pid` and run `process` instead of the spec's.
    pub exec: Option<ExecTarget>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ExecTarget {
    pub pid: i32,
    /// The OCI process as JSON, parsed by the init alone: the resident
    /// shim passes it on unread.
    pub process: String,
}

#[derive(Debug, Serialize, Deserialize)]
pub enum InitMessage {
    /// `berth-runtime create` has this process in the container's cgroup
    /// (for systemd: the scope it started, so it is ours to stop): sent
    /// before the rest, so that a create that dies half way can be undone.
    CgroupJoined {
        cgroups_path: String,
    },
    /// `berth-runtime create` is done with the host: the rootfs is mounted
    /// (where, if it mounted one) and the cgroup made, with this process in
    /// it. From here the shim owns undoing both (`berth-runtime delete`).
    Prepared(Prepared),
    /// Host pid of the process that will exec the user's command.
    Pid(i32),
    /// The pty master travels as SCM_RIGHTS alongside this message.
    Console,
    /// Namespaces and rootfs are ready; waiting for Start.
    Ready,
    Error {
        kind: ErrorKind,
        message: String,
    },
    /// Non-fatal things the shim should log (e.g. a clamped oom_score_adj).
    Warning(String),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Prepared {
    pub rootfs_mount: Option<PathBuf>,
    /// `linux.cgroupsPath` as the helpers take it (berth's default filled in).
    pub cgroups_path: String,
    /// The cgroup's directory below each hierarchy's root.
    pub cgroup_dir: PathBuf,
}

/// One end of the socketpair.
#[derive(Debug)]
pub struct Channel {
    fd: OwnedFd,
}

impl AsFd for Channel {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl Channel {
    /// Returns (shim end, init end). Both are close-on-exec; the shim clears
    /// the flag on the init end in the child just before exec.
    pub fn pair() -> Result<(Channel, Channel)> {
        let (a, b) =
            socketpair(AddressFamily::Unix, SockType::SeqPacket, None, SockFlag::SOCK_CLOEXEC).map_err(|source| Error::Socket { op: "socketpair", source })?;
        Ok((Channel { fd: a }, Channel { fd: b }))
    }

    /// # Safety
    /// `fd` must be an open socket this process owns and nobody else closes.
    pub unsafe fn from_raw_fd(fd: RawFd) -> Channel {
        Channel { fd: OwnedFd::from_raw_fd(fd) }
    }

    pub fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    pub fn into_fd(self) -> OwnedFd {
        self.fd
    }

    pub fn send<T: Serialize>(&self, msg: &T) -> Result<()> {
        self.send_with_fd(msg, None)
    }

    pub fn send_with_fd<T: Serialize>(&self, msg: &T, fd: Option<BorrowedFd<'_>>) -> Result<()> {
        let bytes = serde_json::to_vec(msg)?;
        let iov = [IoSlice::new(&bytes)];
        let fds;
        let cmsgs: Vec<ControlMessage> = match fd {
            Some(fd) => {
                fds = [fd.as_raw_fd()];
                vec![ControlMessage::ScmRights(&fds)]
            }
            None => Vec::new(),
        };
        sendmsg::<()>(self.fd.as_raw_fd(), &iov, &cmsgs, MsgFlags::empty(), None).map_err(|source| Error::Socket { op: "send to peer", source })?;
        Ok(())
    }

    /// Receives one message; `Ok(None)` on EOF (peer closed or exec'd).
    pub fn recv<T: for<'de> Deserialize<'de>>(&self) -> Result<Option<(T, Option<OwnedFd>)>> {
        let mut buf = vec![0u8; MAX_MESSAGE];
        let mut cmsg = nix::cmsg_space!([RawFd; 1]);
        let (len, fd) = loop {
            let mut iov = [IoSliceMut::new(&mut buf)];
            match recvmsg::<()>(self.fd.as_raw_fd(), &mut iov, Some(&mut cmsg), MsgFlags::MSG_CMSG_CLOEXEC) {
                Ok(msg) => {
                    let mut fd = None;
                    for c in msg.cmsgs().map_err(|source| Error::Socket { op: "read control message", source })? {
                        if let ControlMessageOwned::ScmRights(fds) = c {
                            // SAFETY: the kernel just installed these fds in our table.
                            fd = fds.first().map(|f| unsafe { OwnedFd::from_raw_fd(*f) });
                        }
                    }
                    break (msg.bytes, fd);
                }
                Err(nix::Error::EINTR) => continue,
                Err(source) => return Err(Error::Socket { op: "receive from peer", source }),
            }
        };
        if len == 0 {
            return Ok(None);
        }
        let msg = serde_json::from_slice(&buf[..len])?;
        Ok(Some((msg, fd)))
    }
}
