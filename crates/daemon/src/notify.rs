//! Telling systemd how berthd is doing, for `Type=notify` units
//! (deploy/systemd/berthd.service): READY=1 once the CRI socket serves and
//! restart recovery is done, STOPPING=1 on the way out, and WATCHDOG=1 at
//! half the interval when the unit sets `WatchdogSec`. Outside systemd
//! (no `NOTIFY_SOCKET`) every call does nothing.
//!
//! The protocol is one datagram of `KEY=VALUE` lines to `NOTIFY_SOCKET`.
//! It is written here rather than taken from the sd-notify crate because
//! that crate sends blocking: with a manager that stops reading (its queue
//! full), a watchdog ping would block a runtime worker, and berthd's
//! shutdown with it. Here a datagram that cannot be queued is dropped.

use std::{
    os::{
        linux::net::SocketAddrExt,
        unix::net::{SocketAddr, UnixDatagram},
    },
    time::Duration,
};

pub fn ready(status: &str) {
    send(&format!("READY=1\nSTATUS={status}\n"));
}

pub fn stopping() {
    send("STOPPING=1\nSTATUS=shutting down; containers keep running\n");
}

/// Pings systemd's watchdog from a runtime task: a wedged runtime stops
/// the pings, and systemd restarts berthd (containers keep running, see
/// the unit's KillMode).
pub fn spawn_watchdog() {
    let Some(interval) = watchdog_interval() else { return };
    tracing::info!(?interval, "systemd watchdog enabled");
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(interval / 2);
        loop {
            ticks.tick().await;
            send("WATCHDOG=1\n");
        }
    });
}

/// `WATCHDOG_USEC`, when meant for this process (`WATCHDOG_PID` unset or
/// ours), as sd_watchdog_enabled(3) reads it.
fn watchdog_interval() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok().filter(|u| *u > 0)?;
    match std::env::var("WATCHDOG_PID").ok().map(|p| p.parse::<u32>()) {
        Some(Ok(pid)) if pid != std::process::id() => None,
        _ => Some(Duration::from_micros(usec)),
    }
}

fn send(message: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else { return };
    let result = (|| {
        let bytes = path.as_encoded_bytes();
        // `@name` is a socket in the abstract namespace.
        let address = match bytes.strip_prefix(b"@") {
            Some(name) => SocketAddr::from_abstract_name(name)?,
            None => SocketAddr::from_pathname(&path)?,
        };
        let socket = UnixDatagram::unbound()?;
        socket.set_nonblocking(true)?;
        socket.send_to_addr(message.as_bytes(), &address)
    })();
    if let Err(e) = result {
        tracing::warn!(error = %e, message = message.trim_end(), "could not notify systemd");
    }
}
