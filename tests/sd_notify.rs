//! berthd speaks systemd's notify protocol (deploy/systemd/berthd.service is
//! `Type=notify`): READY=1 only once the CRI socket answers, WATCHDOG=1 at
//! half the interval systemd asks for, STOPPING=1 on SIGTERM. The test is
//! the service manager: it listens on the NOTIFY_SOCKET it hands berthd.

mod common;

use std::{
    os::unix::net::UnixDatagram,
    process::Command,
    time::{Duration, Instant},
};

use k8s_cri::v1::{runtime_service_client::RuntimeServiceClient, VersionRequest};

fn next_message(socket: &UnixDatagram, within: Duration) -> String {
    socket.set_read_timeout(Some(within)).unwrap();
    let mut buf = [0u8; 4096];
    let n = socket.recv(&mut buf).unwrap_or_else(|e| panic!("no notify message within {within:?}: {e}"));
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[tokio::test]
async fn ready_watchdog_and_stopping_reach_the_service_manager() {
    let dir = tempfile::tempdir().unwrap();
    let notify_path = dir.path().join("notify");
    let manager = UnixDatagram::bind(&notify_path).unwrap();
    let socket = dir.path().join("b.sock");
    let config = dir.path().join("c.toml");
    std::fs::write(
        &config,
        format!("socket = \"{0}/b.sock\"\nroot = \"{0}/root\"\nstate = \"{0}/state\"\n[cni]\nconf_dir = \"/nonexistent-berth-cni\"\n", dir.path().display()),
    )
    .unwrap();
    let mut berthd = Command::new(env!("CARGO_BIN_EXE_berthd"))
        .arg("--config")
        .arg(&config)
        .env("NOTIFY_SOCKET", &notify_path)
        .env("WATCHDOG_USEC", "200000")
        .spawn()
        .unwrap();
    let pid = berthd.id();

    let ready = next_message(&manager, Duration::from_secs(20));
    assert!(ready.lines().any(|l| l == "READY=1"), "first message is READY=1: {ready:?}");
    assert!(ready.contains(&format!("STATUS=serving CRI v1 on {}", socket.display())), "{ready:?}");
    // READY means serving: a call made right now is answered.
    let mut rt = RuntimeServiceClient::new(common::channel(&socket).await);
    assert_eq!(rt.version(VersionRequest::default()).await.unwrap().into_inner().runtime_name, "berth");

    // WATCHDOG_USEC=200ms: pings about every 100 ms.
    let started = Instant::now();
    for _ in 0..3 {
        assert_eq!(next_message(&manager, Duration::from_secs(2)).trim(), "WATCHDOG=1");
    }
    assert!(started.elapsed() < Duration::from_secs(1), "three pings took {:?}", started.elapsed());

    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGTERM).unwrap();
    let stopping = loop {
        let message = next_message(&manager, Duration::from_secs(5));
        if message.trim() != "WATCHDOG=1" {
            break message;
        }
    };
    assert!(stopping.lines().any(|l| l == "STOPPING=1"), "{stopping:?}");
    assert!(berthd.wait().unwrap().success());
}
