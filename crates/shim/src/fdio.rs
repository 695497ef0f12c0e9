//! Reading and writing raw fds (pipes, fifos, a pty master) on the shim's
//! event loop: the fd is made non-blocking and registered with tokio's
//! reactor, so a copy waiting for output costs a registration, not a
//! thread. Regular files cannot be polled (epoll refuses them) and never
//! block for long: those are read and written directly.

use std::{
    io,
    os::fd::{AsRawFd, OwnedFd, RawFd},
};

use tokio::io::{unix::AsyncFd, Interest};

pub enum Fd {
    Polled(AsyncFd<OwnedFd>),
    Plain(OwnedFd),
}

impl Fd {
    /// Takes `fd` over for reading.
    pub fn reader(fd: OwnedFd) -> io::Result<Fd> {
        Fd::new(fd, Interest::READABLE)
    }

    /// Takes `fd` over for writing.
    pub fn writer(fd: OwnedFd) -> io::Result<Fd> {
        Fd::new(fd, Interest::WRITABLE)
    }

    fn new(fd: OwnedFd, interest: Interest) -> io::Result<Fd> {
        set_nonblocking(&fd)?;
        // SAFETY: an OwnedFd is open, and keeps its fd (and the file
        // description behind it) until the AsyncFd that owns it drops it.
        match unsafe { AsyncFd::register_with_interest(fd, interest) } {
            Ok(polled) => Ok(Fd::Polled(polled)),
            Err(e) => {
                let (fd, e) = e.into_parts();
                // A regular file: not pollable, and never blocks for long.
                if e.raw_os_error() == Some(libc::EPERM) {
                    Ok(Fd::Plain(fd))
                } else {
                    Err(e)
                }
            }
        }
    }

    pub async fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Fd::Plain(fd) => retry_eintr(|| sys_read(fd.as_raw_fd(), buf)),
            Fd::Polled(fd) => loop {
                let mut guard = fd.readable().await?;
                match guard.try_io(|fd| retry_eintr(|| sys_read(fd.as_raw_fd(), buf))) {
                    Ok(result) => return result,
                    Err(_would_block) => continue,
                }
            },
        }
    }

    pub async fn write_all(&self, mut buf: &[u8]) -> io::Result<()> {
        while !buf.is_empty() {
            let n = match self {
                Fd::Plain(fd) => retry_eintr(|| sys_write(fd.as_raw_fd(), buf))?,
                Fd::Polled(fd) => {
                    let mut guard = fd.writable().await?;
                    match guard.try_io(|fd| retry_eintr(|| sys_write(fd.as_raw_fd(), buf))) {
                        Ok(result) => result?,
                        Err(_would_block) => continue,
                    }
                }
            };
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            buf = &buf[n..];
        }
        Ok(())
    }

    /// One write that never waits: what fits now (for the ^D that ends a
    /// terminal's input).
    pub fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
        sys_write(self.as_raw_fd(), buf)
    }
}

impl AsRawFd for Fd {
    fn as_raw_fd(&self) -> RawFd {
        match self {
            Fd::Polled(fd) => fd.as_raw_fd(),
            Fd::Plain(fd) => fd.as_raw_fd(),
        }
    }
}

fn set_nonblocking(fd: &OwnedFd) -> io::Result<()> {
    let raw = fd.as_raw_fd();
    // SAFETY: F_GETFL/F_SETFL on an fd we own; no memory is passed.
    let ok = unsafe {
        let flags = libc::fcntl(raw, libc::F_GETFL);
        flags >= 0 && libc::fcntl(raw, libc::F_SETFL, flags | libc::O_NONBLOCK) == 0
    };
    if ok {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn retry_eintr(mut f: impl FnMut() -> io::Result<usize>) -> io::Result<usize> {
    loop {
        match f() {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

fn sys_read(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: read(2) into a buffer we own, at most its length.
    let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

fn sys_write(fd: RawFd, buf: &[u8]) -> io::Result<usize> {
    // SAFETY: write(2) from a buffer we own, at most its length.
    let n = unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}
