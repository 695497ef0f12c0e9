//! `/etc/berth/config.toml`. Every key has a built-in default, so berthd
//! runs with no file at all; unknown keys are an error (a typo must not be
//! silently ignored on a production node).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub const DEFAULT_CONFIG_PATH: &str = "/etc/berth/config.toml";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// CRI endpoint (unix socket path).
    pub socket: PathBuf,
    /// Persistent state: images, snapshots, container records.
    pub root: PathBuf,
    /// Volatile state: shim sockets, bundles. Lost on reboot by design.
    pub state: PathBuf,
    /// `cgroupfs` or `systemd`; the kubelet must be configured the same.
    pub cgroup_driver: CgroupDriver,
    /// tracing filter, e.g. `info` or `berth_cri=debug,info`.
    pub log_level: String,
    /// berth-shim binary; empty means the one installed beside berthd.
    pub shim_binary: PathBuf,
    /// cgroup parent of containers whose pod names none (crictl without
    /// `linux.cgroup_parent`); the kubelet always names one. Empty: the
    /// driver's default, `/berth` (cgroupfs) or `berth.slice` (systemd).
    pub default_cgroup_parent: String,
    /// RuntimeClass handler names accepted besides the default "".
    pub runtime_handlers: Vec<String>,
    pub registry: RegistryConfig,
    pub cni: CniSection,
    pub streaming: StreamingSection,
    pub metrics: MetricsSection,
    pub cdi: CdiSection,
}

/// CDI (Container Device Interface) spec files, which device plugins and
/// DRA drivers write and containers ask for by device name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CdiSection {
    /// Directories of `*.json`/`*.yaml` spec files, read at each
    /// CreateContainer that asks for a device; on a conflict the later
    /// directory wins.
    pub spec_dirs: Vec<PathBuf>,
}

impl Default for CdiSection {
    fn default() -> Self {
        Self { spec_dirs: berth_cri::cdi::DEFAULT_SPEC_DIRS.iter().map(PathBuf::from).collect() }
    }
}

/// Prometheus metrics (`GET /metrics`), off unless an address is given.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsSection {
    /// `host:port` to serve `/metrics` on, e.g. `127.0.0.1:9338`; empty: off.
    /// The figures are not secret, but they are not for every network:
    /// keep it on loopback or a node-local address.
    pub address: String,
}

/// The server Exec, Attach and PortForward URLs point at (the kubelet
/// proxies to it, or crictl connects directly).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StreamingSection {
    /// Listen address; keep it on loopback unless clients must reach it
    /// from elsewhere (it has no TLS yet).
    pub address: String,
    /// 0 picks a free port at start.
    pub port: u16,
    /// A stream with no data either way for this long is closed.
    pub idle_timeout_secs: u64,
    /// How long a SPDY client has to open its streams after upgrading.
    pub stream_creation_timeout_secs: u64,
    /// How long an Exec/Attach/PortForward URL stays valid (once).
    pub token_ttl_secs: u64,
    /// Serve https with this PEM certificate chain and key (both or none).
    pub tls_cert_file: PathBuf,
    pub tls_key_file: PathBuf,
}

impl Default for StreamingSection {
    fn default() -> Self {
        let d = berth_streaming::Config::default();
        Self {
            address: d.address.ip().to_string(),
            port: d.address.port(),
            idle_timeout_secs: d.idle_timeout.as_secs(),
            stream_creation_timeout_secs: d.stream_creation_timeout.as_secs(),
            token_ttl_secs: d.token_ttl.as_secs(),
            tls_cert_file: PathBuf::new(),
            tls_key_file: PathBuf::new(),
        }
    }
}

impl StreamingSection {
    pub fn server_config(&self) -> anyhow::Result<berth_streaming::Config> {
        let ip: std::net::IpAddr = self.address.parse().map_err(|e| anyhow::anyhow!("streaming.address {:?}: {e}", self.address))?;
        let secs = |n: u64| std::time::Duration::from_secs(n.max(1));
        let tls = match (self.tls_cert_file.as_os_str().is_empty(), self.tls_key_file.as_os_str().is_empty()) {
            (true, true) => None,
            (false, false) => Some(berth_streaming::TlsFiles { cert_chain: self.tls_cert_file.clone(), private_key: self.tls_key_file.clone() }),
            _ => anyhow::bail!("streaming.tls_cert_file and streaming.tls_key_file go together"),
        };
        Ok(berth_streaming::Config {
            tls,
            address: std::net::SocketAddr::new(ip, self.port),
            idle_timeout: secs(self.idle_timeout_secs),
            stream_creation_timeout: secs(self.stream_creation_timeout_secs),
            token_ttl: secs(self.token_ttl_secs),
        })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CniSection {
    /// Network configs; the first `.conflist`/`.conf` in lexical order wins.
    pub conf_dir: PathBuf,
    /// Where plugin binaries are looked up, in order.
    pub bin_dirs: Vec<PathBuf>,
    /// A plugin that runs longer is killed and its operation fails.
    pub plugin_timeout_secs: u64,
}

impl Default for CniSection {
    fn default() -> Self {
        let d = berth_network::CniConfig::default();
        Self { conf_dir: d.conf_dir, bin_dirs: d.bin_dirs, plugin_timeout_secs: d.plugin_timeout.as_secs() }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RegistryConfig {
    /// Registries (`host:port`) reached over plain http only. Loopback
    /// registries need no entry (https is tried, then http).
    pub insecure: Vec<String>,
    /// Per-registry TLS material: `<certs_dir>/<host:port>/ca.crt` (CA
    /// bundle), `client.cert` + `client.key`. A missing directory is fine.
    pub certs_dir: PathBuf,
    /// A pull whose answer brings fewer than `stall_min_bytes` in any
    /// window of this many seconds fails.
    pub stall_timeout_secs: u64,
    /// Bytes every stall window must bring (a trickle is a stall).
    pub stall_min_bytes: u64,
    /// Layers downloaded at once per pull.
    pub max_concurrent_downloads: usize,
    /// Mirrors per registry, tried in order before it:
    /// `mirrors = { "docker.io" = ["mirror.local:5000"] }`.
    pub mirrors: std::collections::HashMap<String, Vec<String>>,
    /// Docker's `config.json` of registry credentials (`berthctl login`,
    /// `docker login`), for pulls and pushes that name none; read at each
    /// one, so a login needs no restart. Empty: none.
    pub auth_file: PathBuf,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        Self {
            insecure: Vec::new(),
            certs_dir: PathBuf::from(berth_image::pull::DEFAULT_CERTS_DIR),
            stall_timeout_secs: 60,
            stall_min_bytes: berth_image::pull::DEFAULT_STALL_MIN_BYTES,
            max_concurrent_downloads: 4,
            mirrors: Default::default(),
            auth_file: PathBuf::from(berth_image::pull::DEFAULT_AUTH_FILE),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CgroupDriver {
    Cgroupfs,
    Systemd,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            socket: PathBuf::from("/run/berth/berth.sock"),
            root: PathBuf::from("/var/lib/berth"),
            state: PathBuf::from("/run/berth"),
            cgroup_driver: CgroupDriver::Cgroupfs,
            log_level: "info".into(),
            shim_binary: PathBuf::new(),
            default_cgroup_parent: String::new(),
            runtime_handlers: Vec::new(),
            registry: RegistryConfig::default(),
            cni: CniSection::default(),
            streaming: StreamingSection::default(),
            metrics: MetricsSection::default(),
            cdi: CdiSection::default(),
        }
    }
}

impl Config {
    /// `default_cgroup_parent`, or the driver's own default; an error when
    /// it does not fit the driver.
    pub fn effective_default_cgroup_parent(&self) -> anyhow::Result<String> {
        let slice = berth_cgroups::systemd::is_slice_name(&self.default_cgroup_parent);
        match (self.cgroup_driver, self.default_cgroup_parent.as_str()) {
            (CgroupDriver::Cgroupfs, "") => Ok("/berth".into()),
            (CgroupDriver::Systemd, "") => Ok("berth.slice".into()),
            (CgroupDriver::Systemd, parent) if !slice => {
                anyhow::bail!("default_cgroup_parent {parent:?} is not a systemd slice (such as berth.slice), which cgroup_driver = \"systemd\" needs")
            }
            (CgroupDriver::Cgroupfs, parent) if slice => {
                anyhow::bail!("default_cgroup_parent {parent:?} is a systemd slice; cgroup_driver = \"cgroupfs\" needs a path such as /berth")
            }
            (_, parent) => Ok(parent.to_string()),
        }
    }

    /// Reads `path`. A missing file at the default path means defaults; a
    /// missing file the operator named explicitly is an error.
    pub fn load(path: &Path, explicit: bool) -> anyhow::Result<Config> {
        match std::fs::read_to_string(path) {
            Ok(text) => toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => Ok(Config::default()),
            Err(e) => Err(anyhow::anyhow!("read {}: {e}", path.display())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_means_defaults_and_keys_override() {
        assert_eq!(toml::from_str::<Config>("").unwrap(), Config::default());
        let c: Config = toml::from_str("socket = \"/tmp/b.sock\"\ncgroup_driver = \"systemd\"\n[registry]\ninsecure = [\"127.0.0.1:5000\"]\n").unwrap();
        assert_eq!(c.registry.insecure, ["127.0.0.1:5000"]);
        assert_eq!(c.registry.max_concurrent_downloads, 4);
        assert_eq!(c.registry.certs_dir, PathBuf::from("/etc/berth/certs.d"));
        assert_eq!(c.registry.auth_file, PathBuf::from("/root/.docker/config.json"));
        assert_eq!(c.socket, PathBuf::from("/tmp/b.sock"));
        assert_eq!(c.cgroup_driver, CgroupDriver::Systemd);
        assert_eq!(c.root, Config::default().root);
        assert_eq!(c.cdi.spec_dirs, [PathBuf::from("/etc/cdi"), PathBuf::from("/var/run/cdi")]);
        let c: Config = toml::from_str("[cdi]\nspec_dirs = [\"/opt/cdi\"]\n").unwrap();
        assert_eq!(c.cdi.spec_dirs, [PathBuf::from("/opt/cdi")]);
    }

    #[test]
    fn typos_and_bad_values_are_errors() {
        let e = toml::from_str::<Config>("sockt = \"/x\"").unwrap_err().to_string();
        assert!(e.contains("sockt"), "{e}");
        assert!(toml::from_str::<Config>("cgroup_driver = \"cgroupv3\"").is_err());
    }

    #[test]
    fn missing_default_file_is_fine_missing_named_file_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("none.toml");
        assert_eq!(Config::load(&missing, false).unwrap(), Config::default());
        assert!(Config::load(&missing, true).is_err());
    }
}

/// The `daemon_config` fuzz target (`crates/fuzz`): whatever an operator
/// (or a broken config-management run) puts in the file. The file is read
/// by `Config::load`, which is `toml::from_str` and a path in its errors.
#[cfg(test)]
mod fuzz {
    use super::*;

    const EXAMPLE: &str = r#"socket = "/run/berth/berth.sock"
root = "/var/lib/berth"
cgroup_driver = "systemd"
default_cgroup_parent = "berth.slice"
log_level = "berth_cri=debug,info"
runtime_handlers = ["runc", "kata"]

[cni]
conf_dir = "/etc/cni/net.d"
bin_dirs = ["/opt/cni/bin", "/usr/lib/cni"]
plugin_timeout_secs = 60

[registry]
insecure = ["10.0.0.1:5000"]
stall_timeout_secs = 60
stall_min_bytes = 32768
max_concurrent_downloads = 4
mirrors = { "docker.io" = ["mirror.local:5000"] }
auth_file = "/etc/berth/auth.json"

[streaming]
address = "127.0.0.1"
port = 10010
idle_timeout_secs = 14400
token_ttl_secs = 60

[metrics]
address = "127.0.0.1:9338"

[cdi]
spec_dirs = ["/etc/cdi", "/var/run/cdi"]
"#;

    #[test]
    fn daemon_config() {
        berth_fuzz::Target::new("daemon_config").seed("example.toml", EXAMPLE).seed("empty.toml", "").run(|input| {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("config.toml");
            std::fs::write(&path, input).unwrap();
            let Ok(config) = Config::load(&path, true) else { return };
            // berthd's startup derives these from an accepted file; each
            // answers (an error is fine), none panics.
            let _ = config.effective_default_cgroup_parent();
            if config.streaming.tls_cert_file.as_os_str().is_empty() {
                let _ = config.streaming.server_config();
            }
            // What berthd would write out (the .deb's example, the chart)
            // must read back as the same config.
            let written = toml::to_string(&config).expect("an accepted config serialises");
            let again: Config = toml::from_str(&written).unwrap_or_else(|e| panic!("berthd refuses the config it wrote: {e}\n{written}"));
            assert_eq!(again, config, "the config changed in a round trip:\n{written}");
        });
    }
}
