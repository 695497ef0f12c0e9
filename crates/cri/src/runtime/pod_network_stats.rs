//! A pod's network counters (PodSandboxStats.network): the interfaces of
//! its network namespace, read from `/proc/thread-self/net/dev` by a
//! thread inside it. A host-network pod has none of its own.

use k8s_cri::v1;

use super::{pod_netns::in_pod_netns, Runtime};
use crate::state::{now_nanos, SandboxRecord};

/// The interface CNI plugins create in the pod.
const POD_INTERFACE: &str = "eth0";

impl Runtime {
    pub(super) async fn pod_network_stats(&self, pod: &SandboxRecord) -> Option<v1::NetworkUsage> {
        let netns = pod.netns.clone()?;
        let text = in_pod_netns(Some(netns), || std::fs::read_to_string("/proc/thread-self/net/dev").map_err(|e| e.to_string())).await;
        let text = match text {
            Ok(t) => t,
            Err(e) => {
                tracing::debug!(pod_id = %pod.id, error = %e, "pod network stats");
                return None;
            }
        };
        let interfaces: Vec<v1::NetworkInterfaceUsage> = parse_net_dev(&text).into_iter().filter(|i| i.name != "lo").collect();
        let default_interface = interfaces.iter().find(|i| i.name == POD_INTERFACE).or(interfaces.first()).cloned();
        Some(v1::NetworkUsage { timestamp: now_nanos(), default_interface, interfaces })
    }
}

/// `/proc/net/dev`: two header lines, then `name: rx_bytes rx_packets
/// rx_errs ... (8 receive fields) tx_bytes tx_packets tx_errs ...`.
fn parse_net_dev(text: &str) -> Vec<v1::NetworkInterfaceUsage> {
    text.lines()
        .skip(2)
        .filter_map(|line| {
            let (name, counters) = line.split_once(':')?;
            let n: Vec<u64> = counters.split_whitespace().filter_map(|f| f.parse().ok()).collect();
            if n.len() < 11 {
                return None;
            }
            let value = |v: u64| Some(v1::UInt64Value { value: v });
            Some(v1::NetworkInterfaceUsage {
                name: name.trim().to_string(),
                rx_bytes: value(n[0]),
                rx_errors: value(n[2]),
                tx_bytes: value(n[8]),
                tx_errors: value(n[10]),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn proc_net_dev_parses() {
        let text = "Inter-|   Receive                                                |  Transmit\n face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    lo:     140       2    0    0    0     0          0         0      140       2    0    0    0     0       0          0\n  eth0:    1006      13    1    0    0     0          0         0      656       8    2    0    0     0       0          0\n";
        let stats = super::parse_net_dev(text);
        assert_eq!(stats.len(), 2);
        let eth0 = &stats[1];
        assert_eq!(eth0.name, "eth0");
        assert_eq!((eth0.rx_bytes.as_ref().unwrap().value, eth0.rx_errors.as_ref().unwrap().value), (1006, 1));
        assert_eq!((eth0.tx_bytes.as_ref().unwrap().value, eth0.tx_errors.as_ref().unwrap().value), (656, 2));
    }
}
