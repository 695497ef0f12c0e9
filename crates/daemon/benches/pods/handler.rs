//! `hack/bench-pods.sh PODS --handler`: berth's handler mode against
//! containerd's own. The same workload as the main comparison (pods in
//! sequence, 4 at a time, ExecSync, exec over WebSocket, memory with the
//! pods running) through two containerd 1.6 instances that differ only in
//! the runtime their pods get: runc's shim (`containerd-shim-runc-v2`, one
//! per pod) or berth-shim (`containerd-shim-berth-v2`, one per container:
//! the pod's pause and its container each get one).
//!
//! Both containerds run one after the other, each on its own CNI bridge,
//! so neither competes with the other for the machine's two cores.

use std::path::Path;

use super::{measure, p, print_figures, ratio, start_containerd};

pub async fn compare(pods: usize, registry: &str, image: &str, work: &Path) {
    let shim = crate::common::shim_binary();

    let Some(runc) = start_containerd(work, registry, 202, None) else {
        println!("containerd: not installed (apt-get install containerd runc): nothing to compare");
        return;
    };
    let r = measure(&runc, image, pods).await;
    drop(runc);
    print_figures("containerd 1.6 + runc (containerd-shim-runc-v2)", &r, pods);

    let berth = start_containerd(work, registry, 205, Some(&shim)).expect("containerd ran a moment ago");
    let b = measure(&berth, image, pods).await;
    drop(berth);
    print_figures("containerd 1.6 + berth-shim (handler mode)", &b, pods);

    let mib = |kib: u64| kib as f64 / 1024.0;
    println!("\ncontainerd + berth-shim vs containerd + runc (same machine, same workload; < 1 is better for latency and memory):");
    println!("  pod-ready p50, in sequence : {:.2}x", ratio(p(&b.ready_seq, 50), p(&r.ready_seq, 50)));
    println!("  pods/s, 4 at a time        : {:.2}x (higher is better)", r.par_wall.as_secs_f64() / b.par_wall.as_secs_f64().max(1e-9));
    println!("  ExecSync p50               : {:.2}x", ratio(p(&b.exec, 50), p(&r.exec, 50)));
    if !b.stream_exec.is_empty() && !r.stream_exec.is_empty() {
        println!("  Exec over WebSocket p50    : {:.2}x", ratio(p(&b.stream_exec, 50), p(&r.stream_exec, 50)));
    }
    println!(
        "  shims per pod              : RSS {:.2} vs {:.2} MiB ({:.2}x), PSS {:.2} vs {:.2} MiB ({:.2}x); {} vs {} shim processes",
        mib(b.shims_rss_kib),
        mib(r.shims_rss_kib),
        b.shims_rss_kib as f64 / r.shims_rss_kib.max(1) as f64,
        mib(b.shims_pss_kib),
        mib(r.shims_pss_kib),
        b.shims_pss_kib as f64 / r.shims_pss_kib.max(1) as f64,
        b.shims,
        r.shims
    );
    println!(
        "  containerd + shims + pause per pod: RSS {:.2}x, PSS {:.2}x",
        b.running_rss_kib as f64 / r.running_rss_kib.max(1) as f64,
        b.running_pss_kib as f64 / r.running_pss_kib.max(1) as f64
    );
}
