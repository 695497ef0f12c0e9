//! CNI: load the node's network config and run its plugins (spec 1.0:
//! ADD in list order, DEL in reverse, each DEL given the cached result).

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use serde::Serialize;
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;

use crate::error::{Error, Result};

/// Where the network config and the plugin binaries are.
#[derive(Debug, Clone)]
pub struct CniConfig {
    pub conf_dir: PathBuf,
    pub bin_dirs: Vec<PathBuf>,
    /// A plugin that runs longer is killed and the operation fails.
    pub plugin_timeout: Duration,
}

impl Default for CniConfig {
    fn default() -> Self {
        Self { conf_dir: "/etc/cni/net.d".into(), bin_dirs: vec!["/opt/cni/bin".into(), "/usr/lib/cni".into()], plugin_timeout: Duration::from_secs(60) }
    }
}

/// A port the pod publishes on the node (CNI `portMappings` capability).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PortMapping {
    pub host_port: i32,
    pub container_port: i32,
    pub protocol: String,
    #[serde(rename = "hostIP", skip_serializing_if = "String::is_empty", default)]
    pub host_ip: String,
}

/// The pod as the plugins need to know it.
#[derive(Debug, Clone)]
pub struct PodNetwork<'a> {
    pub id: &'a str,
    pub netns: &'a Path,
    pub name: &'a str,
    pub namespace: &'a str,
    pub uid: &'a str,
    pub port_mappings: &'a [PortMapping],
}

/// What ADD gave the pod.
#[derive(Debug, Clone, Default)]
pub struct SetupResult {
    pub network: String,
    /// The first IPv4 address (or the first address of any family).
    pub ip: Option<String>,
    pub additional_ips: Vec<String>,
    /// The last plugin's result, handed back to DEL as `prevResult`.
    pub result: Value,
}

/// One network: a `.conflist`, or a single-plugin `.conf`.
#[derive(Debug, Clone)]
struct NetworkList {
    path: PathBuf,
    name: String,
    cni_version: String,
    plugins: Vec<Value>,
}

const IFNAME: &str = "eth0";

pub struct Cni {
    config: CniConfig,
}

impl Cni {
    pub fn new(config: CniConfig) -> Self {
        Self { config }
    }

    pub fn config(&self) -> &CniConfig {
        &self.config
    }

    /// Ok when a pod could be networked now: a config exists and every
    /// plugin it names is installed. The error is the reason to report.
    pub fn status(&self) -> Result<()> {
        let net = self.load()?;
        for plugin in &net.plugins {
            self.find_plugin(plugin_type(plugin, &net.path)?)?;
        }
        Ok(())
    }

    /// Runs ADD of every plugin of the network in order. (The pod's `lo`
    /// is already up: [`crate::PodNamespaces::create`] did it.)
    pub async fn setup(&self, pod: &PodNetwork<'_>) -> Result<SetupResult> {
        let net = self.load()?;
        let mut prev: Option<Value> = None;
        for plugin in &net.plugins {
            let conf = plugin_config(&net, plugin, prev.as_ref(), pod);
            match self.exec(plugin_type(plugin, &net.path)?, "ADD", &conf, pod, IFNAME).await {
                Ok(out) => prev = Some(out),
                Err(e) => {
                    // The spec asks for a DEL after a failed ADD, so the
                    // plugins that did succeed release what they took.
                    if let Err(del) = self.teardown(pod, prev.as_ref()).await {
                        tracing::warn!(pod_id = pod.id, error = %del, "CNI DEL after a failed ADD");
                    }
                    return Err(e);
                }
            }
        }
        let result = prev.unwrap_or(Value::Null);
        let mut ips = addresses(&result);
        ips.sort_by_key(|ip| !ip.contains('.'));
        let ip = (!ips.is_empty()).then(|| ips.remove(0));
        Ok(SetupResult { network: net.name, ip, additional_ips: ips, result })
    }

    /// DEL of every plugin in reverse order. Every plugin is asked even
    /// when one fails, so one broken plugin leaks as little as possible;
    /// the first failure is returned.
    pub async fn teardown(&self, pod: &PodNetwork<'_>, prev: Option<&Value>) -> Result<()> {
        let net = self.load()?;
        let mut first_error = None;
        for plugin in net.plugins.iter().rev() {
            let kind = plugin_type(plugin, &net.path)?;
            let conf = plugin_config(&net, plugin, prev, pod);
            if let Err(e) = self.exec(kind, "DEL", &conf, pod, IFNAME).await {
                tracing::warn!(pod_id = pod.id, plugin = kind, error = %e, "CNI DEL failed");
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// The first config file in lexical order, as the kubelet's
    /// documentation (and every runtime) does it.
    fn load(&self) -> Result<NetworkList> {
        let dir = &self.config.conf_dir;
        let no_config = || Error::NoConfig { dir: dir.clone() };
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|_| no_config())?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "conflist" || x == "conf" || x == "json"))
            .collect();
        files.sort();
        let path = files.into_iter().next().ok_or_else(no_config)?;
        let bad = |reason: String| Error::BadConfig { path: path.clone(), reason };
        let text = std::fs::read_to_string(&path).map_err(|e| bad(e.to_string()))?;
        let value: Value = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
        let name = value.get("name").and_then(Value::as_str).ok_or_else(|| bad("no \"name\"".into()))?.to_string();
        let cni_version = value.get("cniVersion").and_then(Value::as_str).unwrap_or("0.4.0").to_string();
        let plugins = match value.get("plugins") {
            Some(Value::Array(list)) if !list.is_empty() => list.clone(),
            Some(_) => return Err(bad("\"plugins\" is not a non-empty list".into())),
            None => vec![value.clone()],
        };
        Ok(NetworkList { path, name, cni_version, plugins })
    }

    fn find_plugin(&self, kind: &str) -> Result<PathBuf> {
        if kind.contains('/') || kind.is_empty() {
            return Err(Error::PluginMissing { plugin: kind.into(), dirs: "(a plugin type is a file name)".into() });
        }
        self.config.bin_dirs.iter().map(|d| d.join(kind)).find(|p| p.is_file()).ok_or_else(|| Error::PluginMissing {
            plugin: kind.into(),
            dirs: self.config.bin_dirs.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(":"),
        })
    }

    async fn exec(&self, kind: &str, command: &'static str, conf: &Value, pod: &PodNetwork<'_>, ifname: &str) -> Result<Value> {
        let binary = self.find_plugin(kind)?;
        let fail = |message: String| Error::Plugin { plugin: kind.into(), command, message };
        let cni_args = format!(
            "IgnoreUnknown=1;K8S_POD_NAMESPACE={};K8S_POD_NAME={};K8S_POD_INFRA_CONTAINER_ID={};K8S_POD_UID={}",
            pod.namespace, pod.name, pod.id, pod.uid
        );
        let path = self.config.bin_dirs.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(":");
        let mut child = tokio::process::Command::new(&binary)
            .env("CNI_COMMAND", command)
            .env("CNI_CONTAINERID", pod.id)
            .env("CNI_NETNS", pod.netns)
            .env("CNI_IFNAME", ifname)
            .env("CNI_ARGS", cni_args)
            .env("CNI_PATH", path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| fail(format!("run {}: {e}", binary.display())))?;
        let input = serde_json::to_vec(conf).map_err(|e| fail(e.to_string()))?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(&input).await.map_err(|e| fail(format!("write config: {e}")))?;
        }
        let out = tokio::time::timeout(self.config.plugin_timeout, child.wait_with_output())
            .await
            .map_err(|_| fail(format!("no answer within {:?}", self.config.plugin_timeout)))?
            .map_err(|e| fail(e.to_string()))?;
        let stdout: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        if !out.status.success() {
            // Plugins report errors as {"code", "msg", "details"} on stdout.
            let msg = stdout.get("msg").and_then(Value::as_str).unwrap_or("");
            let details = stdout.get("details").and_then(Value::as_str).unwrap_or("");
            let stderr = String::from_utf8_lossy(&out.stderr);
            let message = [msg, details, stderr.trim()].iter().filter(|s| !s.is_empty()).copied().collect::<Vec<_>>().join(": ");
            return Err(fail(if message.is_empty() { format!("exited with {}", out.status) } else { message }));
        }
        Ok(stdout)
    }
}

fn plugin_type<'a>(plugin: &'a Value, path: &Path) -> Result<&'a str> {
    plugin.get("type").and_then(Value::as_str).ok_or_else(|| Error::BadConfig { path: path.into(), reason: "a plugin has no \"type\"".into() })
}

/// A plugin's stdin: its own config plus the network's name and version,
/// the previous result, and the runtime config for the capabilities it
/// declares.
fn plugin_config(net: &NetworkList, plugin: &Value, prev: Option<&Value>, pod: &PodNetwork<'_>) -> Value {
    let mut conf = plugin.clone();
    let Some(obj) = conf.as_object_mut() else { return conf };
    obj.insert("name".into(), json!(net.name));
    obj.insert("cniVersion".into(), json!(net.cni_version));
    if let Some(prev) = prev.filter(|p| !p.is_null()) {
        obj.insert("prevResult".into(), prev.clone());
    }
    let wants_ports = plugin.pointer("/capabilities/portMappings").and_then(Value::as_bool).unwrap_or(false);
    if wants_ports && !pod.port_mappings.is_empty() {
        obj.insert("runtimeConfig".into(), json!({ "portMappings": pod.port_mappings }));
    }
    conf
}

/// Addresses in a result of any CNI version, without prefix length.
fn addresses(result: &Value) -> Vec<String> {
    let strip = |a: &str| a.split('/').next().unwrap_or(a).to_string();
    if let Some(ips) = result.get("ips").and_then(Value::as_array) {
        return ips.iter().filter_map(|ip| ip.get("address").and_then(Value::as_str)).map(strip).collect();
    }
    ["ip4", "ip6"].iter().filter_map(|k| result.pointer(&format!("/{k}/ip")).and_then(Value::as_str)).map(strip).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_from_old_and_new_results() {
        let new = json!({"ips": [{"address": "fd00::2/64"}, {"address": "10.88.0.5/16"}]});
        assert_eq!(addresses(&new), ["fd00::2", "10.88.0.5"]);
        let old = json!({"ip4": {"ip": "10.1.0.3/24"}});
        assert_eq!(addresses(&old), ["10.1.0.3"]);
        assert!(addresses(&Value::Null).is_empty());
    }

    #[test]
    fn first_config_wins_and_a_single_conf_becomes_a_list() {
        let dir = tempfile::tempdir().unwrap();
        let cni = Cni::new(CniConfig { conf_dir: dir.path().into(), bin_dirs: vec![dir.path().into()], ..Default::default() });
        assert!(matches!(cni.status(), Err(Error::NoConfig { .. })));
        std::fs::write(dir.path().join("20-b.conf"), r#"{"cniVersion":"1.0.0","name":"b","type":"bridge"}"#).unwrap();
        std::fs::write(
            dir.path().join("10-a.conflist"),
            r#"{"cniVersion":"1.0.0","name":"a","plugins":[{"type":"bridge"},{"type":"portmap","capabilities":{"portMappings":true}}]}"#,
        )
        .unwrap();
        let net = cni.load().unwrap();
        assert_eq!((net.name.as_str(), net.plugins.len()), ("a", 2));
        let e = cni.status().unwrap_err().to_string();
        assert!(e.contains("\"bridge\" not found"), "{e}");
        let ports = [PortMapping { host_port: 8080, container_port: 80, protocol: "tcp".into(), host_ip: String::new() }];
        let pod = PodNetwork { id: "p", netns: Path::new("/x"), name: "n", namespace: "ns", uid: "u", port_mappings: &ports };
        let conf = plugin_config(&net, &net.plugins[1], Some(&json!({"ips": []})), &pod);
        assert_eq!(conf["runtimeConfig"]["portMappings"][0]["hostPort"], 8080);
        assert_eq!(conf["name"], "a");
        assert!(plugin_config(&net, &net.plugins[0], None, &pod).get("runtimeConfig").is_none());
        std::fs::remove_file(dir.path().join("10-a.conflist")).unwrap();
        assert_eq!(cni.load().unwrap().plugins.len(), 1);
    }
}
