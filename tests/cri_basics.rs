//! berthd with built-in defaults (but temp dirs) answers the CRI.

mod common;

use std::process::Command;

use common::{channel, Berthd};
use k8s_cri::v1::{image_service_client::ImageServiceClient, runtime_service_client::RuntimeServiceClient, *};

#[tokio::test]
async fn version_status_and_runtime_config() {
    // A named config file that does not exist is an error...
    let out = Command::new(env!("CARGO_BIN_EXE_berthd")).args(["--config", "/nonexistent-berth-config.toml"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("nonexistent-berth-config.toml"));
    // ...while a file that sets one key keeps every other default.
    let mut berthd = Berthd::start("[cni]\nconf_dir = \"/nonexistent-berth-cni\"");
    let socket = berthd.socket.clone();
    let mut rt = RuntimeServiceClient::new(channel(&socket).await);

    let v = rt.version(VersionRequest::default()).await.unwrap().into_inner();
    assert_eq!((v.runtime_name.as_str(), v.runtime_api_version.as_str()), ("berth", "v1"));

    let s = rt.status(StatusRequest { verbose: true }).await.unwrap().into_inner();
    let conditions = s.status.unwrap().conditions;
    let ready = conditions.iter().find(|c| c.r#type == "RuntimeReady").unwrap();
    assert!(ready.status, "berth-shim is installed beside berthd: {ready:?}");
    let network = conditions.iter().find(|c| c.r#type == "NetworkReady").unwrap();
    assert!(!network.status && network.reason == "NetworkPluginNotReady", "no CNI config in the test's conf_dir: {network:?}");
    assert!(network.message.contains("no CNI network config"), "{}", network.message);
    assert!(s.info["config"].contains("cgroup_driver = \"cgroupfs\""), "{}", s.info["config"]);

    let c = rt.runtime_config(RuntimeConfigRequest::default()).await.unwrap().into_inner();
    assert_eq!(c.linux.unwrap().cgroup_driver, CgroupDriver::Cgroupfs as i32);

    // What is missing says so, by name.
    let err = rt.checkpoint_container(CheckpointContainerRequest::default()).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unimplemented);
    assert!(err.message().contains("CheckpointContainer"), "{}", err.message());
    assert!(rt.list_pod_sandbox(ListPodSandboxRequest::default()).await.unwrap().into_inner().items.is_empty());
    let mut img = ImageServiceClient::new(channel(&socket).await);
    assert!(img.list_images(ListImagesRequest::default()).await.unwrap().into_inner().images.is_empty());

    // SIGTERM: a clean exit that removes the socket, although our
    // connections are still open (as the kubelet's would be).
    nix_kill(berthd.child.id(), 15);
    let status = berthd.child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    assert!(!socket.exists());
}

#[tokio::test]
async fn a_second_berthd_on_a_live_socket_refuses_to_start() {
    let first = Berthd::start("");
    let _ = RuntimeServiceClient::new(channel(&first.socket).await).version(VersionRequest::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("c.toml");
    std::fs::write(&config, format!("socket = \"{}\"\n", first.socket.display())).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_berthd")).arg("--config").arg(&config).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("is in use"), "{}", String::from_utf8_lossy(&out.stderr));
    // The first one still serves.
    let _ = RuntimeServiceClient::new(channel(&first.socket).await).version(VersionRequest::default()).await.unwrap();
}

fn nix_kill(pid: u32, sig: i32) {
    Command::new("kill").arg(format!("-{sig}")).arg(pid.to_string()).status().unwrap();
}
