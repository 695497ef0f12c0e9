//! Prints figures, asserts nothing: create/start/wait/delete latency of
//! /bin/true containers through berth-shim, and the memory of idle shims.
//!
//!     cargo bench -p berth-shim --bench shim_lifecycle -- [ITERATIONS] [IDLE_SHIMS]

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::*;

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    let idx = ((samples.len() as f64 - 1.0) * p).round() as usize;
    samples[idx]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// (Rss, Pss) in KiB from smaps_rollup.
fn memory_kib(pid: i32) -> (u64, u64) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    let field = |name: &str| text.lines().find(|l| l.starts_with(name)).and_then(|l| l.split_whitespace().nth(1)).and_then(|v| v.parse().ok()).unwrap_or(0);
    (field("Rss:"), field("Pss:"))
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let iterations: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(100);
    let idle: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(30);
    let steps = ["shim start", "create", "start", "wait", "delete", "create+start"];
    let mut samples: Vec<Vec<Duration>> = vec![Vec::new(); steps.len()];
    for i in 0..iterations {
        let t0 = Instant::now();
        let mut shim = Shim::start(&format!("bench{i}"));
        let t1 = Instant::now();
        let spec = spec(&shim.id, &["/bin/true"]);
        shim.create(&spec).unwrap();
        let t2 = Instant::now();
        shim.start_task("").unwrap();
        let t3 = Instant::now();
        assert_eq!(shim.wait(""), 0);
        let t4 = Instant::now();
        shim.delete().unwrap();
        let t5 = Instant::now();
        for (k, d) in [t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4, t3 - t1].into_iter().enumerate() {
            samples[k].push(d);
        }
    }
    println!("berth-shim lifecycle, {iterations} x /bin/true (one shim per container)");
    println!("{:<14} {:>9} {:>9}", "step", "p50 ms", "p90 ms");
    for (name, s) in steps.iter().zip(samples.iter_mut()) {
        println!("{:<14} {:>9.2} {:>9.2}", name, ms(percentile(s, 0.5)), ms(percentile(s, 0.9)));
    }

    // Memory: many shims, each supervising a sleeping container, at rest.
    let shims: Vec<Shim> = (0..idle)
        .map(|i| {
            let shim = Shim::start(&format!("idle{i}"));
            let mut spec = spec(&shim.id, &["sleep", "1000"]);
            spec.process_mut().as_mut().unwrap().set_args(Some(vec!["sleep".into(), "1000".into()]));
            shim.run(&spec);
            shim
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let mem: Vec<(u64, u64)> = shims.iter().map(|s| memory_kib(s.shim_pid)).collect();
    let rss = mem.iter().map(|m| m.0).sum::<u64>() as f64 / mem.len() as f64;
    let pss = mem.iter().map(|m| m.1).sum::<u64>() as f64 / mem.len() as f64;
    let threads = std::fs::read_dir(format!("/proc/{}/task", shims[0].shim_pid)).map(|d| d.count()).unwrap_or(0);
    println!("idle shim with a running container ({idle} shims): RSS {:.2} MiB, PSS {:.2} MiB, {threads} threads", rss / 1024.0, pss / 1024.0);
    for s in shims {
        let pid = s.state("").pid;
        s.delete_and_assert_clean(pid);
    }
}
