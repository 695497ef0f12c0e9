//! Exec and PortForward through berthd's streaming server, over WebSocket
//! and SPDY/3.1, spoken as kubectl, crictl and the kubelet speak them.

mod common;

use std::time::Duration;

use common::{node::Node, stream_client::*};
use k8s_cri::v1;

const T: Duration = Duration::from_secs(20);

fn exec_request(id: &str, cmd: &[&str], tty: bool, stdin: bool) -> v1::ExecRequest {
    v1::ExecRequest { container_id: id.into(), cmd: cmd.iter().map(|s| s.to_string()).collect(), tty, stdin, stdout: true, stderr: !tty }
}

async fn exec_url(node: &mut Node, req: v1::ExecRequest) -> String {
    node.rt.exec(req).await.unwrap().into_inner().url
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_over_websocket_with_exit_codes_stdin_tty_and_resize() {
    let mut node = Node::start().await;
    let pod = node.run_pod("ws").await;
    let id = node.run(&pod, "box", &["sleep", "3600"]).await;

    // Output on the right channels; a non-zero exit code in the status.
    let url = exec_url(&mut node, exec_request(&id, &["sh", "-c", "echo out; echo err >&2; exit 3"], false, false)).await;
    let (mut ws, chosen) = websocket(&url, "v5.channel.k8s.io,v4.channel.k8s.io").await.unwrap();
    assert_eq!(chosen, "v5.channel.k8s.io");
    let got = collect_ws(&mut ws, None, T).await;
    assert_eq!((got.stdout(), String::from_utf8_lossy(&got.stderr).as_ref()), ("out\n".to_string(), "err\n"));
    assert_eq!(got.exit_code(), Some(3), "{:?}", got.status);
    assert_eq!(got.status.as_ref().unwrap()["reason"], "NonZeroExitCode");

    // The URL was single-use; a made-up one is unknown too.
    assert_eq!(websocket(&url, "v4.channel.k8s.io").await.err().map(|e| e.0), Some(404));
    let (code, body) = websocket(&url.replace("/exec/", "/exec/0000"), "v4.channel.k8s.io").await.err().unwrap();
    assert!(code == 404 && body.contains("unknown or expired"), "{code} {body}");

    // stdin without a terminal; v5's close signal is the EOF.
    let url = exec_url(&mut node, exec_request(&id, &["cat"], false, true)).await;
    let (mut ws, _) = websocket(&url, "v5.channel.k8s.io").await.unwrap();
    send(&mut ws, 0, b"through cat\n").await;
    send(&mut ws, 255, &[0]).await;
    let got = collect_ws(&mut ws, None, T).await;
    assert_eq!((got.stdout(), got.exit_code()), ("through cat\n".to_string(), Some(0)));

    // An interactive shell on a terminal, resized, over v4.
    let url = exec_url(&mut node, exec_request(&id, &["sh"], true, true)).await;
    let (mut ws, chosen) = websocket(&url, "v4.channel.k8s.io").await.unwrap();
    assert_eq!(chosen, "v4.channel.k8s.io");
    send(&mut ws, 4, br#"{"Width":100,"Height":40}"#).await;
    send(&mut ws, 0, b"tty; echo size $(stty size) TERM=$TERM; exit 7\n").await;
    let got = collect_ws(&mut ws, None, T).await;
    let out = got.stdout();
    assert!(out.contains("/dev/pts/") && out.contains("size 40 100 TERM=xterm"), "{out:?}");
    assert_eq!(got.exit_code(), Some(7));

    // A command that asks for the size at once gets the client's first
    // one: it becomes the terminal's size before the command runs.
    let url = exec_url(&mut node, exec_request(&id, &["stty", "size"], true, false)).await;
    let (mut ws, _) = websocket(&url, "v5.channel.k8s.io").await.unwrap();
    send(&mut ws, 4, br#"{"Width":123,"Height":45}"#).await;
    let got = collect_ws(&mut ws, None, T).await;
    assert_eq!((got.stdout().trim(), got.exit_code()), ("45 123", Some(0)));

    // Bad input.
    let err = node.rt.exec(exec_request(&id, &[], false, false)).await.unwrap_err();
    assert!(err.code() == tonic::Code::InvalidArgument && err.message().contains("cmd"), "{err:?}");
    let mut both = exec_request(&id, &["sh"], true, true);
    both.stderr = true;
    assert_eq!(node.rt.exec(both).await.unwrap_err().code(), tonic::Code::InvalidArgument);
    assert_eq!(node.rt.exec(exec_request("nope", &["sh"], false, false)).await.unwrap_err().code(), tonic::Code::NotFound);
    let url = exec_url(&mut node, exec_request(&id, &["sh"], false, false)).await;
    let (code, body) = websocket(&url, "base64.channel.k8s.io").await.err().unwrap();
    assert!(code == 400 && body.contains("subprotocol"), "{code} {body}");
    node.rt.stop_container(v1::StopContainerRequest { container_id: id.clone(), timeout: 0 }).await.unwrap();
    let err = node.rt.exec(exec_request(&id, &["sh"], false, false)).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err:?}");
    node.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_over_spdy_and_a_client_that_vanishes_leaves_no_process() {
    let mut node = Node::start().await;
    let pod = node.run_pod("spdy").await;
    let id = node.run(&pod, "box", &["sleep", "3600"]).await;

    // The remotecommand streams, opened in kubectl's order.
    let url = exec_url(&mut node, exec_request(&id, &["sh", "-c", "read line; echo got $line; echo bad >&2; exit 5"], false, true)).await;
    let (conn, _session) = spdy(&url, "v4.channel.k8s.io").await.unwrap();
    let mut error = conn.open(headers(&[("streamtype", "error")])).await.unwrap();
    let stdin = conn.open(headers(&[("streamtype", "stdin")])).await.unwrap();
    let mut stdout = conn.open(headers(&[("streamtype", "stdout")])).await.unwrap();
    let mut stderr = conn.open(headers(&[("streamtype", "stderr")])).await.unwrap();
    stdin.writer.send(b"spdy\n").await;
    stdin.writer.finish().await;
    assert_eq!(read_all(&mut stdout, T).await, b"got spdy\n");
    assert_eq!(read_all(&mut stderr, T).await, b"bad\n");
    let status: serde_json::Value = serde_json::from_slice(&read_all(&mut error, T).await).unwrap();
    assert_eq!(status["details"]["causes"][0]["message"], "5", "{status}");

    // A terminal over SPDY, resized through its resize stream.
    let url = exec_url(&mut node, exec_request(&id, &["sh"], true, true)).await;
    let (conn, _session) = spdy(&url, "v4.channel.k8s.io").await.unwrap();
    let mut error = conn.open(headers(&[("streamtype", "error")])).await.unwrap();
    let stdin = conn.open(headers(&[("streamtype", "stdin")])).await.unwrap();
    let mut stdout = conn.open(headers(&[("streamtype", "stdout")])).await.unwrap();
    let resize = conn.open(headers(&[("streamtype", "resize")])).await.unwrap();
    resize.writer.send(br#"{"Width":132,"Height":50}"#).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    stdin.writer.send(b"stty size; exit\n").await;
    let out = String::from_utf8(read_all(&mut stdout, T).await).unwrap();
    assert!(out.contains("50 132"), "{out:?}");
    let status: serde_json::Value = serde_json::from_slice(&read_all(&mut error, T).await).unwrap();
    assert_eq!(status["status"], "Success");

    // A protocol berthd does not speak is refused before the upgrade.
    let url = exec_url(&mut node, exec_request(&id, &["true"], false, false)).await;
    let (code, body) = spdy(&url, "channel.k8s.io").await.err().unwrap();
    assert!(code == 403 && body.contains("v4.channel.k8s.io"), "{code} {body}");

    // A client that leaves mid-command takes its command with it, and
    // berthd's fds for it.
    let berthd_fds = |pid: u32| std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap().count();
    let fds_before = berthd_fds(node.berthd.child.id());
    let url = exec_url(&mut node, exec_request(&id, &["sleep", "600"], false, false)).await;
    let (conn, session) = spdy(&url, "v4.channel.k8s.io").await.unwrap();
    let _error = conn.open(headers(&[("streamtype", "error")])).await.unwrap();
    let _stdout = conn.open(headers(&[("streamtype", "stdout")])).await.unwrap();
    let _stderr = conn.open(headers(&[("streamtype", "stderr")])).await.unwrap();
    let sleeping = |ps: &str| ps.lines().any(|l| l.contains("sleep 600"));
    let deadline = tokio::time::Instant::now() + T;
    while !sleeping(&String::from_utf8_lossy(&node.exec(&id, &["ps"], 5).await.unwrap().stdout)) {
        assert!(tokio::time::Instant::now() < deadline, "the exec started");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    session.abort();
    drop(conn);
    drop(_error);
    drop(_stdout);
    drop(_stderr);
    let deadline = tokio::time::Instant::now() + T;
    while sleeping(&String::from_utf8_lossy(&node.exec(&id, &["ps"], 5).await.unwrap().stdout)) {
        assert!(tokio::time::Instant::now() < deadline, "the exec outlived its client");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let deadline = tokio::time::Instant::now() + T;
    while berthd_fds(node.berthd.child.id()) > fds_before {
        assert!(tokio::time::Instant::now() < deadline, "berthd holds {} fds, {fds_before} before the exec", berthd_fds(node.berthd.child.id()));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let bundle = node.berthd.dir.path().join("state/containers").join(&id);
    let leftovers: Vec<_> =
        std::fs::read_dir(&bundle).into_iter().flatten().flatten().filter(|e| e.file_name().to_string_lossy().starts_with("exec-")).collect();
    assert!(leftovers.is_empty(), "exec fifos left in the bundle: {leftovers:?}");

    // Malformed frames (SPDY version 2) close that connection; berthd
    // keeps serving.
    let url = exec_url(&mut node, exec_request(&id, &["true"], false, false)).await;
    let (host, path) = url.strip_prefix("http://").unwrap().split_once('/').unwrap();
    let mut raw = tokio::net::TcpStream::connect(host).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    raw.write_all(
        format!("POST /{path} HTTP/1.1\r\nHost: {host}\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: v4.channel.k8s.io\r\n\r\n")
            .as_bytes(),
    )
    .await
    .unwrap();
    raw.write_all(&[0x80, 2, 0, 1, 0, 0, 0, 4, 1, 2, 3, 4, 0xff, 0xff]).await.unwrap();
    let mut sink = Vec::new();
    let closed = tokio::time::timeout(T, raw.read_to_end(&mut sink)).await;
    assert!(closed.is_ok(), "berthd closed the malformed connection");
    let got = {
        let url = exec_url(&mut node, exec_request(&id, &["echo", "still here"], false, false)).await;
        let (mut ws, _) = websocket(&url, "v4.channel.k8s.io").await.unwrap();
        collect_ws(&mut ws, None, T).await
    };
    assert_eq!(got.stdout(), "still here\n");
    node.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn port_forward_reaches_a_server_inside_the_pod() {
    let mut node = Node::start().await;
    let pod = node.run_pod("web").await;
    let script = "mkdir -p /www && echo hello-from-pod > /www/index.html && exec httpd -f -p 127.0.0.1:8080 -h /www";
    node.run(&pod, "httpd", &["sh", "-c", script]).await;
    let forward_url = |node: &mut Node| {
        let mut rt = node.rt.clone();
        let pod_id = pod.0.clone();
        async move { rt.port_forward(v1::PortForwardRequest { pod_sandbox_id: pod_id, port: vec![8080] }).await.unwrap().into_inner().url }
    };
    // httpd listens on the pod's own loopback: only a connection made
    // inside the pod's network namespace reaches it.
    let deadline = tokio::time::Instant::now() + T;
    let page = loop {
        let url = forward_url(&mut node).await;
        let (conn, _session) = spdy(&url, "portforward.k8s.io").await.unwrap();
        let mut error = conn.open(headers(&[("streamtype", "error"), ("port", "8080"), ("requestid", "0")])).await.unwrap();
        let mut data = conn.open(headers(&[("streamtype", "data"), ("port", "8080"), ("requestid", "0")])).await.unwrap();
        // A second connection at once, to a port nothing listens on.
        let mut error2 = conn.open(headers(&[("streamtype", "error"), ("port", "9"), ("requestid", "1")])).await.unwrap();
        let _data2 = conn.open(headers(&[("streamtype", "data"), ("port", "9"), ("requestid", "1")])).await.unwrap();
        let refused = String::from_utf8(read_all(&mut error2, T).await).unwrap();
        assert!(refused.contains("localhost:9") && refused.contains("refused"), "{refused}");
        data.writer.send(b"GET / HTTP/1.0\r\n\r\n").await;
        let page = String::from_utf8_lossy(&read_all(&mut data, T).await).into_owned();
        let errors = read_all(&mut error, T).await;
        if page.contains("hello-from-pod") || tokio::time::Instant::now() > deadline {
            assert!(errors.is_empty(), "{}", String::from_utf8_lossy(&errors));
            break page;
        }
        tokio::time::sleep(Duration::from_millis(100)).await; // httpd not up yet
    };
    assert!(page.starts_with("HTTP/1.") && page.contains("hello-from-pod"), "{page}");

    // The same over WebSocket: two channels per port, each first carrying
    // the port number.
    let url = forward_url(&mut node).await;
    let (mut ws, _) = websocket(&format!("{url}?port=8080"), "v4.channel.k8s.io").await.unwrap();
    use futures_util::StreamExt;
    let mut prefixes = Vec::new();
    while prefixes.len() < 2 {
        if let Some(Ok(tokio_tungstenite::tungstenite::Message::Binary(b))) = ws.next().await {
            prefixes.push(b.to_vec());
        }
    }
    assert_eq!(prefixes, [vec![0, 0x90, 0x1f], vec![1, 0x90, 0x1f]], "port 8080, little-endian, on channels 0 and 1");
    send(&mut ws, 0, b"GET /index.html HTTP/1.0\r\n\r\n").await;
    let mut page = Vec::new();
    while !String::from_utf8_lossy(&page).contains("hello-from-pod") {
        match tokio::time::timeout(T, ws.next()).await.expect("the page came") {
            Some(Ok(tokio_tungstenite::tungstenite::Message::Binary(b))) if b.first() == Some(&0) => page.extend_from_slice(&b[1..]),
            Some(Ok(_)) => {}
            other => panic!("websocket ended before the page: {other:?}"),
        }
    }

    // SPDY tunnelled in WebSocket messages (kubectl and crictl 1.30+).
    let url = forward_url(&mut node).await;
    let (ws, chosen) = websocket(&url, "SPDY/3.1+portforward.k8s.io").await.unwrap();
    assert_eq!(chosen, "SPDY/3.1+portforward.k8s.io");
    let (conn, _incoming, _session) = berth_streaming::spdy::start(berth_streaming::websocket_tunnel(ws), false);
    let _error = conn.open(headers(&[("streamtype", "error"), ("port", "8080"), ("requestid", "0")])).await.unwrap();
    let mut data = conn.open(headers(&[("streamtype", "data"), ("port", "8080"), ("requestid", "0")])).await.unwrap();
    data.writer.send(b"GET / HTTP/1.0\r\n\r\n").await;
    let page = String::from_utf8_lossy(&read_all(&mut data, T).await).into_owned();
    assert!(page.contains("hello-from-pod"), "{page}");

    // Bad input.
    let err = node.rt.port_forward(v1::PortForwardRequest { pod_sandbox_id: "nope".into(), port: vec![] }).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);
    let err = node.rt.port_forward(v1::PortForwardRequest { pod_sandbox_id: pod.0.clone(), port: vec![70000] }).await.unwrap_err();
    assert!(err.code() == tonic::Code::InvalidArgument && err.message().contains("70000"), "{err:?}");
    node.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attach_two_clients_at_once_and_a_terminal() {
    let mut node = Node::start().await;
    let pod = node.run_pod("attach").await;
    let mut config = node.container_config("reader", &["sh", "-c", "while read line; do echo \"got $line\"; echo \"err $line\" >&2; done; exit 9"]);
    (config.stdin, config.stdin_once) = (true, true);
    let id = node.create(&pod, config).await.unwrap();
    node.rt.start_container(v1::StartContainerRequest { container_id: id.clone() }).await.unwrap();
    let attach_url = |node: &mut Node, stdin: bool, stderr: bool| {
        let mut rt = node.rt.clone();
        let id = id.clone();
        async move { rt.attach(v1::AttachRequest { container_id: id, tty: false, stdin, stdout: true, stderr }).await.unwrap().into_inner().url }
    };

    // Client A over WebSocket writes; client B over SPDY only watches.
    let url_a = attach_url(&mut node, true, true).await;
    let (mut a, _) = websocket(&url_a, "v5.channel.k8s.io").await.unwrap();
    let url_b = attach_url(&mut node, false, false).await;
    let (conn_b, _session_b) = spdy(&url_b, "v4.channel.k8s.io").await.unwrap();
    let mut error_b = conn_b.open(headers(&[("streamtype", "error")])).await.unwrap();
    let mut stdout_b = conn_b.open(headers(&[("streamtype", "stdout")])).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await; // both attached
    send(&mut a, 0, b"one\n").await;
    let got_a = collect_ws(&mut a, Some("got one"), T).await;
    assert!(got_a.stdout().contains("got one"), "{got_a:?}");
    let mut seen_b = Vec::new();
    while !String::from_utf8_lossy(&seen_b).contains("got one") {
        seen_b.extend(tokio::time::timeout(T, stdout_b.data.recv()).await.unwrap().expect("B sees the output"));
    }
    // stdin_once: A's end of input is the container's; it exits 9, and
    // both clients hear it.
    send(&mut a, 255, &[0]).await;
    let rest_a = collect_ws(&mut a, None, T).await;
    assert!(String::from_utf8_lossy(&[got_a.stderr.clone(), rest_a.stderr.clone()].concat()).contains("err one"));
    assert_eq!(rest_a.exit_code(), Some(9), "{:?}", rest_a.status);
    read_all(&mut stdout_b, T).await;
    let status: serde_json::Value = serde_json::from_slice(&read_all(&mut error_b, T).await).unwrap();
    assert_eq!(status["details"]["causes"][0]["message"], "9", "{status}");
    assert!(node.log_lines("attach", "reader").contains(&"got one".to_string()), "attach does not take output from the log");

    // A terminal: the shell's prompt and echo come back, resized.
    let mut config = node.container_config("shell", &["sh"]);
    (config.stdin, config.tty) = (true, true);
    let id = node.create(&pod, config).await.unwrap();
    node.rt.start_container(v1::StartContainerRequest { container_id: id.clone() }).await.unwrap();
    let url =
        node.rt.attach(v1::AttachRequest { container_id: id.clone(), tty: true, stdin: true, stdout: true, stderr: false }).await.unwrap().into_inner().url;
    let (mut ws, _) = websocket(&url, "v4.channel.k8s.io").await.unwrap();
    send(&mut ws, 4, br#"{"Width":90,"Height":30}"#).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    send(&mut ws, 0, b"stty size; exit 3\n").await;
    let got = collect_ws(&mut ws, None, T).await;
    assert!(got.stdout().contains("30 90"), "{:?}", got.stdout());
    assert_eq!(got.exit_code(), Some(3));

    // Bad input: stdin to a container made without it; a stopped one.
    let plain = node.run(&pod, "plain", &["sleep", "3600"]).await;
    let err = node.rt.attach(v1::AttachRequest { container_id: plain.clone(), stdin: true, stdout: true, ..Default::default() }).await.unwrap_err();
    assert!(err.code() == tonic::Code::InvalidArgument && err.message().contains("stdin"), "{err:?}");
    let err = node.rt.attach(v1::AttachRequest { container_id: id.clone(), stdout: true, ..Default::default() }).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err:?}");
    node.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_stream_is_closed_and_its_command_ends() {
    let mut node = Node::start_with("streaming.idle_timeout_secs = 1", "").await;
    let pod = node.run_pod("idle").await;
    let id = node.run(&pod, "box", &["sleep", "3600"]).await;
    let url = exec_url(&mut node, exec_request(&id, &["sleep", "600"], false, false)).await;
    let started = std::time::Instant::now();
    let (mut ws, _) = websocket(&url, "v5.channel.k8s.io").await.unwrap();
    let got = collect_ws(&mut ws, None, T).await;
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(900) && took < Duration::from_secs(10), "closed after {took:?}");
    assert_eq!(got.exit_code(), Some(137), "killed: {:?}", got.status);
    let ps = String::from_utf8_lossy(&node.exec(&id, &["ps"], 5).await.unwrap().stdout).into_owned();
    assert!(!ps.contains("sleep 600"), "{ps}");
    node.teardown().await;
}

/// With a certificate configured, URLs are https and the streams run over
/// TLS (a WebSocket exec, through a client that trusts only that cert).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_over_tls() {
    let certs = tempfile::tempdir().unwrap();
    let (cert, key) = (certs.path().join("cert.pem"), certs.path().join("key.pem"));
    berth_testkit::run(
        std::process::Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-days",
                "1",
                "-subj",
                "/CN=berth-test",
                "-addext",
                "subjectAltName=IP:127.0.0.1",
                "-addext",
                "basicConstraints=critical,CA:FALSE",
                "-keyout",
            ])
            .arg(&key)
            .arg("-out")
            .arg(&cert),
    );
    let mut node = Node::start_with(&format!("streaming.tls_cert_file = \"{}\"\nstreaming.tls_key_file = \"{}\"", cert.display(), key.display()), "").await;
    let pod = node.run_pod("tls").await;
    let id = node.run(&pod, "box", &["sleep", "3600"]).await;
    let url = exec_url(&mut node, exec_request(&id, &["echo", "over tls"], false, false)).await;
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");

    use rustls_pki_types::{pem::PemObject, CertificateDer, ServerName};
    let mut roots = tokio_rustls::rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_file(&cert).unwrap()).unwrap();
    let client = tokio_rustls::rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth();
    let host = url.strip_prefix("https://").unwrap().split('/').next().unwrap();
    let tcp = tokio::net::TcpStream::connect(host).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(client)).connect(ServerName::try_from("127.0.0.1").unwrap(), tcp).await.unwrap();
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut req = url.replace("https://", "wss://").into_client_request().unwrap();
    req.headers_mut().insert("Sec-WebSocket-Protocol", "v4.channel.k8s.io".parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::client_async(req, tls).await.unwrap();
    let mut out = Vec::new();
    use futures_util::StreamExt;
    while let Some(Ok(m)) = tokio::time::timeout(T, ws.next()).await.unwrap() {
        if let tokio_tungstenite::tungstenite::Message::Binary(b) = m {
            if b.first() == Some(&1) {
                out.extend_from_slice(&b[1..]);
            }
        }
    }
    assert_eq!(out, b"over tls\n");
    node.teardown().await;
}

/// berthd killed (-9) while a client streams an exec: the next berthd
/// finds that exec by its fifos, kills it and removes them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn execs_left_by_a_killed_berthd_are_ended_at_restart() {
    let mut node = Node::start().await;
    let pod = node.run_pod("orphans").await;
    let id = node.run(&pod, "box", &["sleep", "3600"]).await;
    let url = exec_url(&mut node, exec_request(&id, &["sleep", "700"], false, true)).await;
    let (_ws, _) = websocket(&url, "v5.channel.k8s.io").await.unwrap();
    let sleeping = |ps: &str| ps.lines().any(|l| l.contains("sleep 700"));
    let deadline = tokio::time::Instant::now() + T;
    while !sleeping(&String::from_utf8_lossy(&node.exec(&id, &["ps"], 5).await.unwrap().stdout)) {
        assert!(tokio::time::Instant::now() < deadline, "the exec started");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    node.berthd.restart();
    node.rt = k8s_cri::v1::runtime_service_client::RuntimeServiceClient::new(common::channel(&node.berthd.socket).await);
    let ps = String::from_utf8_lossy(&node.exec(&id, &["ps"], 5).await.unwrap().stdout).into_owned();
    assert!(!sleeping(&ps), "the orphaned exec was ended during recovery: {ps}");
    let bundle = node.berthd.dir.path().join("state/containers").join(&id);
    let leftovers: Vec<_> = std::fs::read_dir(&bundle).unwrap().flatten().map(|e| e.file_name()).filter(|n| n.to_string_lossy().starts_with("exec-")).collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    node.teardown().await;
}

/// critest's attach, and `crictl attach` to a container made without a
/// log path: a shell reading the attach stream's stdin (no terminal,
/// stdin_once) answers on the attach stream's stdout, although its output
/// goes to no log; closing stdin ends it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attach_with_stdin_and_no_log_delivers_the_output() {
    let mut node = Node::start().await;
    let pod = node.run_pod("nolog").await;
    let mut config = node.container_config("sh", &["/bin/sh"]);
    (config.stdin, config.stdin_once, config.log_path) = (true, true, String::new());
    let id = node.create(&pod, config).await.unwrap();
    node.rt.start_container(v1::StartContainerRequest { container_id: id.clone() }).await.unwrap();

    let url =
        node.rt.attach(v1::AttachRequest { container_id: id.clone(), tty: false, stdin: true, stdout: true, stderr: true }).await.unwrap().into_inner().url;
    let (conn, _session) = spdy(&url, "v4.channel.k8s.io").await.unwrap();
    let mut error = conn.open(headers(&[("streamtype", "error")])).await.unwrap();
    let stdin = conn.open(headers(&[("streamtype", "stdin")])).await.unwrap();
    let mut stdout = conn.open(headers(&[("streamtype", "stdout")])).await.unwrap();
    let mut stderr = conn.open(headers(&[("streamtype", "stderr")])).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await; // attached
    stdin.writer.send(b"echo hello\n").await;
    let mut seen = Vec::new();
    while !seen.ends_with(b"hello\n") {
        let chunk = tokio::time::timeout(T, stdout.data.recv()).await.expect("the shell's answer arrives").expect("stdout open");
        seen.extend(chunk);
    }
    assert_eq!(seen, b"hello\n");
    stdin.writer.finish().await;
    assert_eq!(read_all(&mut stdout, T).await, b"", "nothing more after stdin closed");
    assert_eq!(read_all(&mut stderr, T).await, b"");
    let status: serde_json::Value = serde_json::from_slice(&read_all(&mut error, T).await).unwrap();
    assert_eq!(status["status"], "Success", "{status}");
    assert_eq!(node.wait_exited(&id, T).await.exit_code, 0, "the end of stdin ended the shell");
    node.teardown().await;
}

/// Attach before Start (`berthctl run -it`): an Attach to a Created
/// container is served, its client connected before StartContainer sees
/// the output from the first byte and the exit code; a URL asked for and
/// never used delays the start (a bounded wait), it does not break it; a
/// Created container removed under a waiting client ends its stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attach_before_start_sees_the_first_byte() {
    let mut node = Node::start().await;
    let pod = node.run_pod("early").await;
    for round in 0..5 {
        let name = format!("first-{round}");
        let id = node.create(&pod, node.container_config(&name, &["sh", "-c", "echo first-line; echo to-stderr >&2; exit 7"])).await.unwrap();
        let url =
            node.rt.attach(v1::AttachRequest { container_id: id.clone(), stdout: true, stderr: true, ..Default::default() }).await.unwrap().into_inner().url;
        let (mut ws, _) = websocket(&url, "v5.channel.k8s.io").await.unwrap();
        node.rt.start_container(v1::StartContainerRequest { container_id: id.clone() }).await.unwrap();
        let got = collect_ws(&mut ws, None, T).await;
        assert_eq!(got.stdout(), "first-line\n", "round {round}: {got:?}");
        assert_eq!(String::from_utf8_lossy(&got.stderr), "to-stderr\n", "round {round}");
        assert_eq!(got.exit_code(), Some(7), "round {round}: {:?}", got.status);
        assert_eq!(node.wait_exited(&id, T).await.exit_code, 7);
    }

    // StartContainer waits for every client given a URL: one that
    // connects a second after the start was asked for still sees the
    // first byte (without the wait, the container would be gone by then).
    let id = node.create(&pod, node.container_config("late", &["sh", "-c", "echo first-line; exit 7"])).await.unwrap();
    let mut urls = Vec::new();
    for _ in 0..2 {
        urls.push(node.rt.attach(v1::AttachRequest { container_id: id.clone(), stdout: true, ..Default::default() }).await.unwrap().into_inner().url);
    }
    let (mut early, _) = websocket(&urls[0], "v5.channel.k8s.io").await.unwrap();
    let mut rt = node.rt.clone();
    let start_id = id.clone();
    let start = tokio::spawn(async move { rt.start_container(v1::StartContainerRequest { container_id: start_id }).await });
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!start.is_finished(), "StartContainer waits for the second client");
    let (mut late, _) = websocket(&urls[1], "v5.channel.k8s.io").await.unwrap();
    start.await.unwrap().unwrap();
    for (which, ws) in [("early", &mut early), ("late", &mut late)] {
        let got = collect_ws(ws, None, T).await;
        assert_eq!((got.stdout().as_str(), got.exit_code()), ("first-line\n", Some(7)), "{which}: {got:?}");
    }

    // A terminal with stdin, attached before start: the shell's first
    // prompt arrives without any input, then it takes commands.
    let mut config = node.container_config("tty", &["sh"]);
    (config.stdin, config.stdin_once, config.tty) = (true, true, true);
    config.envs.push(v1::KeyValue { key: "PS1".into(), value: "prompt> ".into() });
    let id = node.create(&pod, config).await.unwrap();
    let url = node
        .rt
        .attach(v1::AttachRequest { container_id: id.clone(), stdin: true, tty: true, stdout: true, ..Default::default() })
        .await
        .unwrap()
        .into_inner()
        .url;
    let (mut ws, _) = websocket(&url, "v5.channel.k8s.io").await.unwrap();
    node.rt.start_container(v1::StartContainerRequest { container_id: id.clone() }).await.unwrap();
    let first = collect_ws(&mut ws, Some("prompt> "), T).await;
    assert!(first.stdout().contains("prompt> "), "{first:?}");
    send(&mut ws, 0, b"exit 4\n").await;
    assert_eq!(collect_ws(&mut ws, None, T).await.exit_code(), Some(4));

    // A URL never used: StartContainer waits a bounded time, then starts.
    let id = node.create(&pod, node.container_config("unused", &["sleep", "3600"])).await.unwrap();
    node.rt.attach(v1::AttachRequest { container_id: id.clone(), stdout: true, ..Default::default() }).await.unwrap();
    let started = std::time::Instant::now();
    node.rt.start_container(v1::StartContainerRequest { container_id: id.clone() }).await.unwrap();
    let waited = started.elapsed();
    assert!(waited >= Duration::from_secs(4) && waited < Duration::from_secs(10), "about 5 s: {waited:?}");
    assert_eq!(node.status(&id).await.state, v1::ContainerState::ContainerRunning as i32);
    let out = node.exec(&id, &["echo", "alive"], 10).await.unwrap();
    assert_eq!(out.stdout, b"alive\n");

    // A client waiting on a Created container that is removed instead.
    let id = node.create(&pod, node.container_config("never", &["true"])).await.unwrap();
    let url = node.rt.attach(v1::AttachRequest { container_id: id.clone(), stdout: true, ..Default::default() }).await.unwrap().into_inner().url;
    let (mut ws, _) = websocket(&url, "v5.channel.k8s.io").await.unwrap();
    node.rt.remove_container(v1::RemoveContainerRequest { container_id: id.clone() }).await.unwrap();
    let got = collect_ws(&mut ws, None, T).await;
    assert!(got.stdout.is_empty() && got.exit_code() != Some(0), "{got:?}");
    node.teardown().await;
}
