//! Real parts for tests: Debian's docker-registry on 127.0.0.1 (plain
//! http, or https with certificates made by openssl), images built from
//! busybox-static with umoci and pushed with skopeo, and a real systemd
//! booted in a container ([`systemd`]).

pub mod cgroups;
pub mod one_layer_image;
pub mod systemd;
mod token;

use std::{
    net::{IpAddr, Ipv4Addr, TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command},
    time::{Duration, Instant},
};

/// A registry on a free loopback port, storing in a temp dir, stopped on drop.
pub struct Registry {
    child: Child,
    /// Where it listens: 127.0.0.1, or a [`PeerNamespace`]'s address.
    pub address: IpAddr,
    pub port: u16,
    /// Its certificates, when it serves https.
    pub tls: Option<RegistryTls>,
    token_server: Option<token::TokenServer>,
    _dir: tempfile::TempDir,
}

/// How a test registry is served.
#[derive(Default)]
pub struct RegistryOptions<'a> {
    /// HTTP Basic auth (htpasswd, bcrypt) for every request.
    pub credentials: Option<(&'a str, &'a str)>,
    /// Token auth for every request: a Bearer challenge naming a token
    /// server (in this process) that gives tokens for these credentials.
    pub token_credentials: Option<(&'a str, &'a str)>,
    /// https, with a certificate from a CA of its own.
    pub tls: Option<TlsMode>,
    /// Serve from this namespace, on its non-loopback address.
    pub namespace: Option<&'a PeerNamespace>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    /// Any client may connect.
    ServerOnly,
    /// Only clients presenting a certificate from the client CA.
    RequireClientCert,
}

/// The PEM files of a TLS registry, made with openssl: the CA its
/// certificate (for 127.0.0.1 and localhost) comes from, and a client
/// certificate and key that it accepts when it demands one.
pub struct RegistryTls {
    pub ca_cert: std::path::PathBuf,
    pub client_cert: std::path::PathBuf,
    pub client_key: std::path::PathBuf,
}

/// The subject of the CA a TLS test registry's certificate comes from.
pub const TEST_CA_NAME: &str = "berth test CA";

impl Registry {
    pub fn start() -> Registry {
        Self::start_with(RegistryOptions::default())
    }

    /// With `Some((user, password))`, the registry demands HTTP Basic auth
    /// (htpasswd, bcrypt) for every request.
    pub fn start_with_auth(credentials: Option<(&str, &str)>) -> Registry {
        Self::start_with(RegistryOptions { credentials, ..Default::default() })
    }

    pub fn start_with(options: RegistryOptions<'_>) -> Registry {
        let dir = tempfile::tempdir().unwrap();
        let auth = match options.credentials {
            Some((user, password)) => {
                let out = Command::new("htpasswd").args(["-Bbn", user, password]).output().expect("htpasswd (hack/setup.sh installs it)");
                let file = dir.path().join("htpasswd");
                std::fs::write(&file, out.stdout).unwrap();
                format!("auth:\n  htpasswd:\n    realm: berth-test\n    path: {}\n", file.display())
            }
            None => String::new(),
        };
        let token_server = options.token_credentials.map(|(user, password)| token::TokenServer::start(&dir.path().join("token"), user, password));
        let auth = match &token_server {
            Some(server) => format!(
                "auth:\n  token:\n    realm: {}\n    service: {}\n    issuer: {}\n    rootcertbundle: {}\n",
                server.realm(),
                token::SERVICE,
                token::ISSUER,
                server.cert.display()
            ),
            None => auth,
        };
        let (tls, tls_config) = match options.tls {
            Some(mode) => {
                let (files, config) = make_tls(&dir.path().join("pki"), mode);
                (Some(files), config)
            }
            None => (None, String::new()),
        };
        let (address, port) = match options.namespace {
            // A namespace of its own: every port is free there.
            Some(ns) => (IpAddr::V4(ns.peer_ip), 5000),
            None => (IpAddr::V4(Ipv4Addr::LOCALHOST), TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()),
        };
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {address}:{port}\n{tls_config}{auth}",
                dir.path().join("data").display()
            ),
        )
        .unwrap();
        // Its log (404s on blob probes are normal) stays out of test output.
        let log = std::fs::File::create(dir.path().join("registry.log")).unwrap();
        let mut command = match options.namespace {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", &ns.name, "docker-registry"]);
                c
            }
            None => Command::new("docker-registry"),
        };
        let child =
            command.arg("serve").arg(&config).stdout(log.try_clone().unwrap()).stderr(log).spawn().expect("docker-registry (hack/setup.sh installs it)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect((address, port)).is_err() {
            assert!(Instant::now() < deadline, "registry did not come up");
            std::thread::sleep(Duration::from_millis(20));
        }
        Registry { child, address, port, tls, token_server, _dir: dir }
    }

    /// skopeo's arguments to push here: plain http, or https trusting the
    /// registry's CA and presenting the client certificate.
    fn dest_tls_args(&self) -> Vec<String> {
        match &self.tls {
            None => vec!["--dest-tls-verify=false".into()],
            Some(tls) => {
                // skopeo reads a Docker-style certs directory.
                let certs = tls.ca_cert.parent().unwrap().join("skopeo");
                if !certs.exists() {
                    std::fs::create_dir(&certs).unwrap();
                    std::fs::copy(&tls.ca_cert, certs.join("ca.crt")).unwrap();
                    std::fs::copy(&tls.client_cert, certs.join("client.cert")).unwrap();
                    std::fs::copy(&tls.client_key, certs.join("client.key")).unwrap();
                }
                vec![format!("--dest-cert-dir={}", certs.display())]
            }
        }
    }

    /// The file holding a blob's bytes in the registry's storage, for
    /// tests that tamper with what the registry serves.
    pub fn blob_file(&self, digest: &str) -> std::path::PathBuf {
        let hex = digest.trim_start_matches("sha256:");
        self._dir.path().join("data/docker/registry/v2/blobs/sha256").join(&hex[..2]).join(hex).join("data")
    }

    /// A token for `scope` (`repository:<name>:pull`), as its token server
    /// gives them; `None` without token auth.
    pub fn token(&self, scope: &str) -> Option<String> {
        self.token_server.as_ref().map(|t| t.token(scope))
    }

    /// `127.0.0.1:<port>` (or the namespace's address)
    pub fn host(&self) -> String {
        format!("{}:{}", self.address, self.port)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A network namespace joined to this one by a veth pair: an address that
/// is not loopback yet reachable from here, and reaches nothing beyond
/// this machine. Deleted (with the pair) on drop.
pub struct PeerNamespace {
    pub name: String,
    /// This side's address; `peer_ip` is the namespace's, in the same /30.
    pub host_ip: Ipv4Addr,
    pub peer_ip: Ipv4Addr,
}

impl PeerNamespace {
    pub fn create() -> PeerNamespace {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let pid = std::process::id();
        // A /30 in 10.251.0.0/16 per process and namespace, so tests running
        // at once do not collide.
        let slot = (pid.wrapping_mul(8).wrapping_add(n)) % (1 << 14);
        let base = u32::from(Ipv4Addr::new(10, 251, 0, 0)) + slot * 4;
        let (host_ip, peer_ip) = (Ipv4Addr::from(base + 1), Ipv4Addr::from(base + 2));
        let name = format!("berth-test-{pid}-{n}");
        let (host_if, peer_if) = (format!("bt{slot}h"), format!("bt{slot}p"));
        run(Command::new("ip").args(["netns", "add", &name]));
        let ns = PeerNamespace { name, host_ip, peer_ip };
        run(Command::new("ip").args(["link", "add", &host_if, "type", "veth", "peer", "name", &peer_if, "netns", &ns.name]));
        run(Command::new("ip").args(["addr", "add", &format!("{host_ip}/30"), "dev", &host_if]));
        run(Command::new("ip").args(["link", "set", &host_if, "up"]));
        let inside = |args: &[&str]| run(Command::new("ip").args(["netns", "exec", &ns.name, "ip"]).args(args));
        inside(&["addr", "add", &format!("{peer_ip}/30"), "dev", &peer_if]);
        inside(&["link", "set", &peer_if, "up"]);
        inside(&["link", "set", "lo", "up"]);
        ns
    }
}

impl Drop for PeerNamespace {
    fn drop(&mut self) {
        // Deleting the namespace deletes its end of the pair, and so both.
        let _ = Command::new("ip").args(["netns", "del", &self.name]).status();
    }
}

/// Makes, in `dir`, a CA and the registry's certificate from it (for
/// 127.0.0.1 and localhost), a second CA for clients and a client
/// certificate from that; returns the files and the registry's `tls:`
/// config (demanding client certificates in `RequireClientCert` mode).
fn make_tls(dir: &Path, mode: TlsMode) -> (RegistryTls, String) {
    std::fs::create_dir_all(dir).unwrap();
    let file = |name: &str| dir.join(name);
    let new_ca = |name: &str, subject: &str| {
        run(Command::new("openssl")
            .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2", "-subj", subject])
            .args(["-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign", "-keyout"])
            .arg(file(&format!("{name}.key")))
            .arg("-out")
            .arg(file(&format!("{name}.crt"))));
    };
    let issue = |name: &str, subject: &str, ca: &str, extensions: &str| {
        let ext = file(&format!("{name}.ext"));
        std::fs::write(&ext, extensions).unwrap();
        let csr = file(&format!("{name}.csr"));
        run(Command::new("openssl")
            .args(["req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj", subject, "-keyout"])
            .arg(file(&format!("{name}.key")))
            .arg("-out")
            .arg(&csr));
        run(Command::new("openssl")
            .args(["x509", "-req", "-days", "2", "-set_serial", "2", "-in"])
            .arg(&csr)
            .arg("-CA")
            .arg(file(&format!("{ca}.crt")))
            .arg("-CAkey")
            .arg(file(&format!("{ca}.key")))
            .arg("-extfile")
            .arg(&ext)
            .arg("-out")
            .arg(file(&format!("{name}.crt"))));
    };
    new_ca("ca", &format!("/O=berth/CN={TEST_CA_NAME}"));
    issue(
        "server",
        "/CN=127.0.0.1",
        "ca",
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n",
    );
    new_ca("client-ca", "/O=berth/CN=berth test client CA");
    issue(
        "client",
        "/CN=berth test client",
        "client-ca",
        "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n",
    );
    let mut config = format!("  tls:\n    certificate: {}\n    key: {}\n", file("server.crt").display(), file("server.key").display());
    if mode == TlsMode::RequireClientCert {
        config.push_str(&format!("    clientcas:\n      - {}\n", file("client-ca.crt").display()));
    }
    (RegistryTls { ca_cert: file("ca.crt"), client_cert: file("client.crt"), client_key: file("client.key") }, config)
}

pub fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// Builds a two-layer image in `work` (busybox with /etc/group; then a
/// layer that deletes /etc/group and adds /etc/motd), with `Cmd /bin/sh`
/// and `User` as given, and pushes it to `registry` as `name` (`repo:tag`).
pub fn build_and_push(registry: &Registry, work: &Path, name: &str, user: Option<&str>) {
    build_and_push_as(registry, work, name, user, None)
}

/// [`build_and_push`] with registry credentials (`user:password`).
pub fn build_and_push_as(registry: &Registry, work: &Path, name: &str, user: Option<&str>, creds: Option<&str>) {
    let image = build_layout(work, user);
    let mut copy = Command::new("skopeo");
    copy.arg("copy").args(registry.dest_tls_args());
    if let Some(c) = creds {
        copy.args(["--dest-creds", c]);
    }
    copy.args([format!("oci:{image}"), format!("docker://{}/{name}", registry.host())]);
    run(&mut copy);
}

/// Builds [`build_and_push`]'s image as an OCI layout in `work/oci`, tagged
/// `img`; returns `<layout>:img`, as skopeo and umoci name it.
pub fn build_layout(work: &Path, user: Option<&str>) -> String {
    let layout = work.join("oci");
    let image = format!("{}:img", layout.display());
    let bundle = work.join("bundle");
    run(Command::new("umoci").args(["init", "--layout"]).arg(&layout));
    run(Command::new("umoci").args(["new", "--image", &image]));
    run(Command::new("umoci").args(["unpack", "--image", &image]).arg(&bundle));
    let rootfs = bundle.join("rootfs");
    for d in ["bin", "etc", "tmp"] {
        std::fs::create_dir_all(rootfs.join(d)).unwrap();
    }
    std::fs::copy("/bin/busybox", rootfs.join("bin/busybox")).unwrap();
    // Every applet as a command in PATH, as in the busybox image.
    let applets = Command::new("/bin/busybox").arg("--list").output().unwrap();
    for applet in String::from_utf8_lossy(&applets.stdout).lines().filter(|a| *a != "busybox") {
        std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet)).unwrap();
    }
    std::fs::write(rootfs.join("etc/group"), "root:x:0:\n").unwrap();
    run(Command::new("umoci").args(["repack", "--image", &image]).arg(&bundle));
    std::fs::remove_dir_all(&bundle).unwrap();
    run(Command::new("umoci").args(["unpack", "--image", &image]).arg(&bundle));
    std::fs::remove_file(bundle.join("rootfs/etc/group")).unwrap();
    std::fs::write(bundle.join("rootfs/etc/motd"), "layer two\n").unwrap();
    run(Command::new("umoci").args(["repack", "--image", &image]).arg(&bundle));
    let mut config = Command::new("umoci");
    config.args(["config", "--image", &image, "--config.cmd", "/bin/sh"]);
    if let Some(u) = user {
        config.args(["--config.user", u]);
    }
    run(&mut config);
    image
}

/// Config digest of the manifest tagged `tag` in an OCI layout.
fn config_digest_of(layout: &Path, tag: &str) -> (String, u64, String) {
    let index: serde_json::Value = serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let entry = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
        .unwrap_or_else(|| panic!("no {tag} in layout"))
        .clone();
    let digest = entry["digest"].as_str().unwrap().to_string();
    let manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(blob(layout, &digest)).unwrap()).unwrap();
    (digest, entry["size"].as_u64().unwrap(), manifest["config"]["digest"].as_str().unwrap().to_string())
}

fn blob(layout: &Path, digest: &str) -> std::path::PathBuf {
    layout.join("blobs/sha256").join(digest.trim_start_matches("sha256:"))
}

/// Pushes a multi-arch image index: the busybox image as linux/amd64 and a
/// copy of it labelled linux/arm64. Returns the config digests
/// (amd64, arm64), so a test can tell which one a pull picked.
pub fn build_and_push_multiarch(registry: &Registry, work: &Path, name: &str) -> (String, String) {
    // The first image, then a second one differing only in its config.
    build_and_push(registry, work, &format!("{name}-single"), None);
    let layout = work.join("oci");
    let image = format!("{}:img", layout.display());
    run(Command::new("umoci").args(["config", "--image", &image, "--architecture", "arm64", "--tag", "img-arm64"]));
    let (amd_manifest, amd_size, amd_config) = config_digest_of(&layout, "img");
    let (arm_manifest, arm_size, arm_config) = config_digest_of(&layout, "img-arm64");
    let entry = |digest: &str, size: u64, arch: &str| {
        serde_json::json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": digest, "size": size,
            "platform": { "architecture": arch, "os": "linux" }
        })
    };
    let nested = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [entry(&arm_manifest, arm_size, "arm64"), entry(&amd_manifest, amd_size, "amd64")]
    });
    let bytes = serde_json::to_vec(&nested).unwrap();
    use sha2::Digest;
    let digest = format!("sha256:{}", hex::encode(sha2::Sha256::digest(&bytes)));
    std::fs::write(blob(&layout, &digest), &bytes).unwrap();
    let mut index: serde_json::Value = serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    index["manifests"].as_array_mut().unwrap().push(serde_json::json!({
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "digest": digest, "size": bytes.len(),
        "annotations": { "org.opencontainers.image.ref.name": "multi" }
    }));
    std::fs::write(layout.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
    run(Command::new("skopeo")
        .args(["copy", "--multi-arch", "all"])
        .args(registry.dest_tls_args())
        .args([format!("oci:{}:multi", layout.display()), format!("docker://{}/{name}", registry.host())]));
    (amd_config, arm_config)
}

/// Pushes an image of `layers` layers, each one file of `layer_bytes`
/// pseudo-random (incompressible) bytes, for pull benchmarks.
pub fn build_and_push_layers(registry: &Registry, work: &Path, name: &str, layers: usize, layer_bytes: usize) {
    let layout = work.join("oci");
    let image = format!("{}:img", layout.display());
    let bundle = work.join("bundle");
    run(Command::new("umoci").args(["init", "--layout"]).arg(&layout));
    run(Command::new("umoci").args(["new", "--image", &image]));
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    for i in 0..layers {
        let _ = std::fs::remove_dir_all(&bundle);
        run(Command::new("umoci").args(["unpack", "--image", &image]).arg(&bundle));
        let mut data = vec![0u8; layer_bytes];
        for chunk in data.chunks_mut(8) {
            // xorshift64: fast, and gzip cannot shrink it.
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            chunk.copy_from_slice(&seed.to_le_bytes()[..chunk.len()]);
        }
        std::fs::write(bundle.join("rootfs").join(format!("layer{i}.bin")), data).unwrap();
        run(Command::new("umoci").args(["repack", "--image", &image]).arg(&bundle));
    }
    run(Command::new("skopeo").arg("copy").args(registry.dest_tls_args()).args([format!("oci:{image}"), format!("docker://{}/{name}", registry.host())]));
}

/// After [`build_and_push`] into `work`: adds one more layer on top of that
/// image and pushes the result as `name`, so the two images share their
/// first layers.
pub fn push_derived(registry: &Registry, work: &Path, name: &str) {
    let layout = work.join("oci");
    let image = format!("{}:img", layout.display());
    let bundle = work.join("bundle");
    let _ = std::fs::remove_dir_all(&bundle);
    run(Command::new("umoci").args(["unpack", "--image", &image]).arg(&bundle));
    std::fs::write(bundle.join("rootfs/etc/derived"), "third layer\n").unwrap();
    run(Command::new("umoci").args(["repack", "--image", &image]).arg(&bundle));
    run(Command::new("skopeo").arg("copy").args(registry.dest_tls_args()).args([format!("oci:{image}"), format!("docker://{}/{name}", registry.host())]));
}

/// Pushes a one-layer image whose layer holds `entry_name` (e.g.
/// `../evil.txt`), written by hand into an OCI layout since no well-behaved
/// tool produces such a layer.
pub fn push_hostile_layer(registry: &Registry, work: &Path, name: &str, entry_name: &str) {
    use sha2::Digest;
    let sha = |b: &[u8]| format!("sha256:{}", hex::encode(sha2::Sha256::digest(b)));
    // A ustar header whose name field holds the raw path, then 1 data block.
    let body = b"evil";
    let mut header = [0u8; 512];
    header[..entry_name.len()].copy_from_slice(entry_name.as_bytes());
    header[100..108].copy_from_slice(b"0000644\0");
    header[108..116].copy_from_slice(b"0000000\0");
    header[116..124].copy_from_slice(b"0000000\0");
    header[124..136].copy_from_slice(format!("{:011o}\0", body.len()).as_bytes());
    header[136..148].copy_from_slice(b"00000000000\0");
    header[156] = b'0';
    header[257..263].copy_from_slice(b"ustar\0");
    header[263..265].copy_from_slice(b"00");
    header[148..156].copy_from_slice(b"        ");
    let sum: u32 = header.iter().map(|b| *b as u32).sum();
    header[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    let mut tar = header.to_vec();
    let mut data = [0u8; 512];
    data[..body.len()].copy_from_slice(body);
    tar.extend_from_slice(&data);
    tar.extend_from_slice(&[0u8; 1024]);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &tar).unwrap();
    let layer = gz.finish().unwrap();
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": if cfg!(target_arch = "aarch64") { "arm64" } else { "amd64" },
        "os": "linux",
        "config": {},
        "rootfs": { "type": "layers", "diff_ids": [sha(&tar)] }
    }))
    .unwrap();
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": { "mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha(&config), "size": config.len() },
        "layers": [{ "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": sha(&layer), "size": layer.len() }]
    }))
    .unwrap();
    let layout = work.join("hostile");
    let blobs = layout.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    for b in [&layer, &config, &manifest] {
        std::fs::write(blobs.join(sha(b).trim_start_matches("sha256:")), b).unwrap();
    }
    std::fs::write(layout.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": sha(&manifest), "size": manifest.len(),
            "annotations": { "org.opencontainers.image.ref.name": "hostile" }
        }]
    });
    std::fs::write(layout.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
    run(Command::new("skopeo")
        .arg("copy")
        .args(registry.dest_tls_args())
        .args([format!("oci:{}:hostile", layout.display()), format!("docker://{}/{name}", registry.host())]));
}

/// [`build_and_push`]'s image plus a layer holding `files` (path in the
/// image, contents), e.g. an /etc/passwd and /etc/group of its own,
/// pushed as `name`.
pub fn build_and_push_with_files(registry: &Registry, work: &Path, name: &str, files: &[(&str, &str)]) {
    let image = build_layout(work, None);
    let layout = work.join("oci");
    let derived = format!("{}:files", layout.display());
    let bundle = work.join("bundle-files");
    run(Command::new("umoci").args(["unpack", "--image", &image]).arg(&bundle));
    for (path, text) in files {
        let target = bundle.join("rootfs").join(path.trim_start_matches('/'));
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::write(target, text).unwrap();
    }
    run(Command::new("umoci").args(["repack", "--image", &derived]).arg(&bundle));
    std::fs::remove_dir_all(&bundle).unwrap();
    run(Command::new("skopeo").arg("copy").args(registry.dest_tls_args()).arg(format!("oci:{derived}")).arg(format!("docker://{}/{name}", registry.host())));
}

/// After [`build_and_push`] in `work`: the same image with `Cmd` set to
/// `cmd` (e.g. a pause image for a runtime that needs one), pushed as
/// `name`.
pub fn push_variant_with_cmd(registry: &Registry, work: &Path, name: &str, cmd: &[&str]) {
    let layout = work.join("oci");
    let mut config = Command::new("umoci");
    config.args(["config", "--image", &format!("{}:img", layout.display()), "--tag", "variant", "--clear=config.cmd"]);
    for arg in cmd {
        config.args(["--config.cmd", arg]);
    }
    run(&mut config);
    run(Command::new("skopeo")
        .arg("copy")
        .args(registry.dest_tls_args())
        .arg(format!("oci:{}:variant", layout.display()))
        .arg(format!("docker://{}/{name}", registry.host())));
}

/// After [`build_and_push`] in `work`: the same image plus a third layer
/// that makes /etc opaque (`etc/.wh..wh..opq`) with one new file
/// `etc/fresh`, and whites out `bin/true`, pushed as `name`. The container
/// view must show /etc holding `fresh` only, and no /bin/true.
pub fn push_with_opaque_layer(registry: &Registry, work: &Path, name: &str) {
    use sha2::Digest;
    let sha = |b: &[u8]| format!("sha256:{}", hex::encode(sha2::Sha256::digest(b)));
    let layout = work.join("oci");
    let (manifest_digest, _, config_digest) = config_digest_of(&layout, "img");
    let mut manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(blob(&layout, &manifest_digest)).unwrap()).unwrap();
    let mut config: serde_json::Value = serde_json::from_slice(&std::fs::read(blob(&layout, &config_digest)).unwrap()).unwrap();

    let mut tar = tar::Builder::new(Vec::new());
    let mut add = |path: &str, kind: tar::EntryType, mode: u32, body: &[u8]| {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(body.len() as u64);
        h.set_mtime(1_700_000_000);
        h.set_uid(0);
        h.set_gid(0);
        tar.append_data(&mut h, path, body).unwrap();
    };
    add("etc/", tar::EntryType::Directory, 0o755, b"");
    add("etc/.wh..wh..opq", tar::EntryType::Regular, 0o644, b"");
    add("etc/fresh", tar::EntryType::Regular, 0o644, b"fresh\n");
    add("bin/.wh.true", tar::EntryType::Regular, 0o644, b"");
    let tar = tar.into_inner().unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &tar).unwrap();
    let layer = gz.finish().unwrap();

    config["rootfs"]["diff_ids"].as_array_mut().unwrap().push(serde_json::json!(sha(&tar)));
    if let Some(history) = config["history"].as_array_mut() {
        history.push(serde_json::json!({ "created_by": "berth test: opaque /etc" }));
    }
    let config = serde_json::to_vec(&config).unwrap();
    manifest["config"]["digest"] = serde_json::json!(sha(&config));
    manifest["config"]["size"] = serde_json::json!(config.len());
    manifest["layers"].as_array_mut().unwrap().push(serde_json::json!({
        "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": sha(&layer), "size": layer.len()
    }));
    let manifest = serde_json::to_vec(&manifest).unwrap();
    for b in [&layer, &config, &manifest] {
        std::fs::write(blob(&layout, &sha(b)), b).unwrap();
    }
    let index_path = layout.join("index.json");
    let mut index: serde_json::Value = serde_json::from_slice(&std::fs::read(&index_path).unwrap()).unwrap();
    index["manifests"].as_array_mut().unwrap().push(serde_json::json!({
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": sha(&manifest), "size": manifest.len(),
        "annotations": { "org.opencontainers.image.ref.name": "opaque" }
    }));
    std::fs::write(&index_path, serde_json::to_vec(&index).unwrap()).unwrap();
    run(Command::new("skopeo")
        .arg("copy")
        .args(registry.dest_tls_args())
        .arg(format!("oci:{}:opaque", layout.display()))
        .arg(format!("docker://{}/{name}", registry.host())));
}

/// SIGKILLs every process in the cgroup `relative` and below it, in every
/// hierarchy, waits (up to 2 s) until they are gone, and removes the
/// cgroups: the cleanup of a test that failed with its container running.
pub fn end_cgroup_everywhere(relative: &str) {
    let dirs: Vec<PathBuf> = cgroup_hierarchies().into_iter().map(|h| h.join(relative.trim_start_matches('/'))).filter(|d| d.is_dir()).collect();
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let pids: Vec<u32> = dirs.iter().flat_map(|d| cgroups::pids_below(d)).collect();
        if pids.is_empty() || Instant::now() > deadline {
            break;
        }
        for pid in pids {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGKILL);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    remove_cgroup_everywhere(relative);
}

/// `/sys/fs/cgroup` and every hierarchy mounted below it.
fn cgroup_hierarchies() -> Vec<PathBuf> {
    let root = Path::new("/sys/fs/cgroup");
    let mut hierarchies = vec![root.to_path_buf()];
    hierarchies.extend(std::fs::read_dir(root).into_iter().flatten().flatten().filter(|e| e.file_type().is_ok_and(|t| t.is_dir())).map(|e| e.path()));
    hierarchies
}

/// Removes the (empty) cgroup `relative` (e.g. `/berth-test-1-2`) and
/// everything below it, in every hierarchy this host mounts: v1
/// controllers, named hierarchies such as `name=systemd`, and cgroup2.
/// Busy cgroups stay (rmdir refuses them); call after the processes ended.
pub fn remove_cgroup_everywhere(relative: &str) {
    fn remove_tree(dir: &Path) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                remove_tree(&e.path());
            }
        }
        let _ = std::fs::remove_dir(dir);
    }
    let relative = relative.trim_start_matches('/');
    for h in cgroup_hierarchies() {
        let dir = h.join(relative);
        if dir.is_dir() {
            remove_tree(&dir);
        }
    }
}
