//! A pseudo-terminal allocated from the container's own devpts, so that
//! `tty` inside the container names a device it can see.

use std::os::fd::{AsRawFd, OwnedFd};

use nix::{
    fcntl::{open, OFlag},
    pty::{grantpt, posix_openpt, ptsname_r, unlockpt},
    sys::stat::Mode,
    unistd::dup2_stdin,
};

use crate::error::{Error, Result};

/// Opens a pty pair and makes the slave this process's controlling
/// terminal and stdio, `size` (columns, rows: the spec's `consoleSize`)
/// set before the process runs. Returns the master, for the shim.
pub fn setup_console(size: Option<(u16, u16)>) -> Result<OwnedFd> {
    let master = posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)
        .map_err(|e| Error::Rootfs { path: "/dev/ptmx".into(), reason: format!("terminal requested but no pty could be opened: {e}") })?;
    grantpt(&master).map_err(Error::sys("grantpt"))?;
    unlockpt(&master).map_err(Error::sys("unlockpt"))?;
    let name = ptsname_r(&master).map_err(Error::sys("ptsname"))?;
    let slave = open(name.as_str(), OFlag::O_RDWR | OFlag::O_NOCTTY, Mode::empty()).map_err(Error::sys(format!("open {name}")))?;
    if let Some((cols, rows)) = size.filter(|(c, r)| *c > 0 && *r > 0) {
        let ws = libc::winsize { ws_row: rows, ws_col: cols, ws_xpixel: 0, ws_ypixel: 0 };
        // SAFETY: TIOCSWINSZ on a tty fd we own, with a valid winsize.
        if unsafe { libc::ioctl(slave.as_raw_fd(), libc::TIOCSWINSZ, &ws) } != 0 {
            return Err(Error::sys("ioctl(TIOCSWINSZ)")(nix::Error::last()));
        }
    }
    // SAFETY: TIOCSCTTY on a tty fd we own; we are a session leader.
    if unsafe { libc::ioctl(slave.as_raw_fd(), libc::TIOCSCTTY, 0) } != 0 {
        return Err(Error::sys("ioctl(TIOCSCTTY)")(nix::Error::last()));
    }
    dup2_stdin(&slave).map_err(Error::sys("dup2 stdin"))?;
    nix::unistd::dup2_stdout(&slave).map_err(Error::sys("dup2 stdout"))?;
    nix::unistd::dup2_stderr(&slave).map_err(Error::sys("dup2 stderr"))?;
    Ok(OwnedFd::from(master))
}
