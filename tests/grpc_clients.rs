//! Clients that are not grpc-go reach berthd: grpcio (grpc-core) with its
//! default options, and raw HTTP/2 requests carrying the socket path, or no
//! authority at all. Malformed requests are still refused by h2.
//!
//! The clients are Python (grpcio, h2) from the venv hack/setup.sh makes;
//! tests/grpc_clients.py is the driver. Messages are encoded and decoded
//! here with the CRI types, so the Python side needs no stubs.

mod common;

use std::{
    io::Write,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use common::{channel, node::Node, Berthd};
use k8s_cri::v1::{self, runtime_service_client::RuntimeServiceClient};
use prost::Message;
use serde_json::{json, Value};

const VERSION: &str = "/runtime.v1.RuntimeService/Version";

fn python() -> PathBuf {
    let python = std::env::var_os("BERTH_TEST_PYTHON").map(PathBuf::from).unwrap_or_else(|| "/var/cache/berth/python/bin/python3".into());
    assert!(python.exists(), "{} is missing: run hack/setup.sh (it makes the venv with grpcio and h2)", python.display());
    python
}

/// Runs the driver in `mode` against `target` and returns one result per call.
fn drive(mode: &str, target: &str, calls: Value) -> Vec<Value> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/grpc_clients.py");
    let mut child =
        Command::new(python()).arg(script).args([mode, target]).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(calls.to_string().as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "driver failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice::<Vec<Value>>(&out.stdout).unwrap()
}

fn hex_of(message: &impl Message) -> String {
    hex::encode(message.encode_to_vec())
}

fn decode<M: Message + Default>(result: &Value) -> M {
    let hex = result["response"].as_str().unwrap_or_else(|| panic!("no response: {result}"));
    M::decode(hex::decode(hex).unwrap().as_slice()).unwrap()
}

#[tokio::test]
async fn grpcio_with_default_options_runs_a_pod() {
    let mut node = Node::start().await;
    let socket = node.berthd.socket.display().to_string();
    let pod_config = node.pod_config("py");
    let calls = json!([
        { "method": VERSION, "request": hex_of(&v1::VersionRequest::default()) },
        { "method": "/runtime.v1.RuntimeService/RunPodSandbox",
          "request": hex_of(&v1::RunPodSandboxRequest { config: Some(pod_config), runtime_handler: String::new() }) },
        { "method": "/runtime.v1.RuntimeService/ListContainers", "request": hex_of(&v1::ListContainersRequest::default()) },
    ]);
    // grpc-core sends the target's path percent-encoded as :authority.
    let results = drive("grpc", &format!("unix://{socket}"), calls);
    let version: v1::VersionResponse = decode(&results[0]);
    assert_eq!((version.runtime_name.as_str(), version.runtime_api_version.as_str()), ("berth", "v1"));
    let pod: v1::RunPodSandboxResponse = decode(&results[1]);
    let listed = node.rt.list_pod_sandbox(v1::ListPodSandboxRequest::default()).await.unwrap().into_inner().items;
    assert_eq!(listed.iter().map(|p| p.id.as_str()).collect::<Vec<_>>(), [pod.pod_sandbox_id.as_str()]);
    assert_eq!(listed[0].state, v1::PodSandboxState::SandboxReady as i32);
    let containers: v1::ListContainersResponse = decode(&results[2]);
    assert!(containers.containers.is_empty());

    // The `unix:` form (no slashes) is another target spelling grpcio takes.
    let results = drive("grpc", &format!("unix:{socket}"), json!([{ "method": VERSION, "request": "" }]));
    assert_eq!(decode::<v1::VersionResponse>(&results[0]).runtime_name, "berth");

    // Errors come back as gRPC statuses, not as broken streams.
    let results = drive(
        "grpc",
        &format!("unix://{socket}"),
        json!([{
        "method": "/runtime.v1.RuntimeService/PodSandboxStatus",
        "request": hex_of(&v1::PodSandboxStatusRequest { pod_sandbox_id: "nonexistent".into(), verbose: false }) }]),
    );
    assert_eq!(results[0]["code"], "NOT_FOUND", "{}", results[0]);
    node.teardown().await;
}

#[tokio::test]
async fn raw_http2_with_a_path_or_no_authority_is_answered() {
    let berthd = Berthd::start("[cni]\nconf_dir = \"/nonexistent-berth-cni\"");
    let _ = channel(&berthd.socket).await; // up
    let socket = berthd.socket.display().to_string();
    let encoded = socket.replace('/', "%2F");
    let calls = json!([
        { "method": VERSION, "request": "", "authority": socket },        // grpc-java, crictl <= 1.29
        { "method": VERSION, "request": "", "authority": encoded },       // grpc-core
        { "method": VERSION, "request": "", "authority": null },          // none at all
        { "method": VERSION, "request": "", "authority": "localhost" },   // grpc-go
    ]);
    let results = drive("raw", &socket, calls);
    assert_eq!(results.len(), 4);
    for r in &results {
        assert_eq!(r["headers"]["grpc-status"], "0", "{r}");
        assert_eq!(decode::<v1::VersionResponse>(r).runtime_name, "berth");
    }
}

#[tokio::test]
async fn malformed_http2_is_still_refused() {
    let berthd = Berthd::start("[cni]\nconf_dir = \"/nonexistent-berth-cni\"");
    let mut rt = RuntimeServiceClient::new(channel(&berthd.socket).await);
    let socket = berthd.socket.display().to_string();
    let cases = [
        ("an authority that is not a socket path", json!({ "method": VERSION, "request": "", "authority": "bad host" })),
        ("an upper-case header name", json!({ "method": VERSION, "request": "", "authority": "localhost", "extra_headers": [["X-Upper", "1"]] })),
        ("a connection-specific header", json!({ "method": VERSION, "request": "", "authority": "localhost", "extra_headers": [["connection", "close"]] })),
    ];
    for (what, call) in cases {
        let r = &drive("raw", &socket, json!([call]))[0];
        let refused = r["reset"] == "PROTOCOL_ERROR" || r["closed"].as_str().is_some_and(|c| c.contains("PROTOCOL_ERROR"));
        assert!(refused, "{what}: {r}");
        assert!(r["response"].is_null(), "{what}: no answer expected: {r}");
    }
    // And the server is none the worse for it.
    assert_eq!(rt.version(v1::VersionRequest::default()).await.unwrap().into_inner().runtime_name, "berth");
}
