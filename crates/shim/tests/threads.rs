//! The shim is one thread, its event loop, while it supervises a running
//! container, with an exec running and a client attached: the Task API,
//! the reaper, the stdio copies and attach clients are tasks of that loop.
//! Calls that block (Create, Start, Delete...) run on tokio's blocking
//! pool, whose threads exit soon after. (The thread-per-job shim
//! had 11 to 21 here.)

mod common;

use std::{
    fs,
    io::{Read, Write},
    os::unix::net::UnixStream,
    path::Path,
    time::{Duration, Instant},
};

use common::*;
use containerd_shim_protos::{api, ttrpc, TaskClient};

/// The event loop, alone.
const SHIM_THREADS: usize = 1;

fn thread_names(pid: i32) -> Vec<String> {
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else { return vec![] };
    tasks.flatten().map(|t| fs::read_to_string(t.path().join("comm")).unwrap_or_default().trim().to_string()).collect()
}

/// The blocking pool's threads go half a second after their last call.
fn assert_threads_settle_at(shim: &Shim, n: usize, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let names = thread_names(shim.shim_pid);
        if names.len() == n {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: the shim has {} threads, not {n}: {names:?}", names.len());
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A Wait outstanding until the process exits, on the connection the other
/// calls use, as berthd keeps one per running process.
fn wait_in_background(shim: &Shim, exec_id: &str) -> std::thread::JoinHandle<u32> {
    let client: TaskClient = shim.client.clone();
    let req = api::WaitRequest { id: shim.id.clone(), exec_id: exec_id.into(), ..Default::default() };
    std::thread::spawn(move || client.wait(ttrpc::context::with_timeout(0), &req).map(|r| r.exit_status).unwrap_or(u32::MAX))
}

/// Connects an attach client and reads its ACK and one frame of output.
fn attach(shim: &Shim) -> UnixStream {
    let mut client = UnixStream::connect(shim.socket.with_extension("attach")).unwrap();
    client.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    client.write_all(b"{\"stdout\":true,\"stderr\":true,\"stdin\":true,\"ack\":true}\n").unwrap();
    let mut head = [0u8; 5];
    client.read_exact(&mut head).unwrap();
    assert_eq!(head[0], berth_oci::attach::ACK, "first frame is the ACK");
    client.read_exact(&mut head).unwrap();
    assert_eq!(head[0], berth_oci::attach::STDOUT);
    let mut payload = vec![0u8; u32::from_be_bytes(head[1..5].try_into().unwrap()) as usize];
    client.read_exact(&mut payload).unwrap();
    client
}

fn start_exec(shim: &Shim, out: &Path) -> std::thread::JoinHandle<u32> {
    shim.exec("sleeper", &["sleep", "60"], out).unwrap();
    // Wait before Start, as containerd's ExecSync does.
    let waiter = wait_in_background(shim, "sleeper");
    shim.start_task("sleeper").unwrap();
    waiter
}

#[test]
fn one_thread_with_a_running_container_an_exec_and_an_attached_client() {
    let shim = Shim::start("threads");
    let pid = shim.run(&spec(&shim.id, &["sh", "-c", "while :; do echo tick; sleep 0.1; done"]));
    let init_wait = wait_in_background(&shim, "");
    assert_threads_settle_at(&shim, SHIM_THREADS, "running container");
    let exec_wait = start_exec(&shim, &shim.dir.path().join("exec.out"));
    assert_threads_settle_at(&shim, SHIM_THREADS, "with an exec");
    let client = attach(&shim);
    assert_threads_settle_at(&shim, SHIM_THREADS, "with an attached client");
    shim.kill("sleeper", 9, false).unwrap();
    assert_eq!(exec_wait.join().unwrap(), 137);
    drop(client);
    shim.kill("", 9, true).unwrap();
    assert_eq!(init_wait.join().unwrap(), 137);
    shim.delete_and_assert_clean(pid);
}

#[test]
fn one_thread_with_a_terminal() {
    let shim = Shim::start("threads-tty");
    let mut req = shim.terminal_request(&["sh", "-c", "while :; do echo tick; sleep 0.1; done"]);
    req.stdin = berth_oci::attach::ATTACH_STDIN.into();
    let pid = shim.client.create(Shim::ctx(), &req).unwrap().pid;
    shim.start_task("").unwrap();
    let init_wait = wait_in_background(&shim, "");
    let client = attach(&shim);
    assert_threads_settle_at(&shim, SHIM_THREADS, "terminal and an attached client");
    drop(client);
    shim.kill("", 9, true).unwrap();
    assert_eq!(init_wait.join().unwrap(), 137);
    shim.delete_and_assert_clean(pid);
}

fn smaps_rollup(pid: i32) -> (u64, u64) {
    let text = fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap();
    let kib = |key: &str| text.lines().find(|l| l.starts_with(key)).and_then(|l| l.split_whitespace().nth(1)).and_then(|v| v.parse().ok()).unwrap_or(0);
    (kib("Rss:"), kib("Pss:"))
}

fn report(what: &str, shim: &Shim) {
    std::thread::sleep(Duration::from_secs(2));
    let (rss, pss) = smaps_rollup(shim.shim_pid);
    let names = thread_names(shim.shim_pid);
    println!("{what}: threads {} RSS {rss} KiB PSS {pss} KiB {names:?}", names.len());
}

/// Figures for docs/benchmarks.md, not a check:
/// `BERTH_SHIM_BIN=<release berth-shim> cargo nextest run -p berth-shim --test threads --run-ignored only --no-capture`
#[test]
#[ignore]
fn report_memory() {
    let shim = Shim::start("mem");
    let pid = shim.run(&spec(&shim.id, &["sh", "-c", "while :; do echo tick; sleep 1; done"]));
    let init_wait = wait_in_background(&shim, "");
    report("running container", &shim);
    let exec_wait = start_exec(&shim, &shim.dir.path().join("exec.out"));
    report("with an exec", &shim);
    let client = attach(&shim);
    report("with an attached client", &shim);
    // A burst of calls at once on the one connection, as berthd's async
    // client makes them (ContainerStatus, ExecSync, ListContainers...).
    let burst: Vec<_> = (0..8)
        .map(|_| {
            let (client, id) = (shim.client.clone(), shim.id.clone());
            std::thread::spawn(move || {
                for _ in 0..25 {
                    let state = api::StateRequest { id: id.clone(), ..Default::default() };
                    client.state(Shim::ctx(), &state).unwrap();
                    let pids = api::PidsRequest { id: id.clone(), ..Default::default() };
                    client.pids(Shim::ctx(), &pids).unwrap();
                }
            })
        })
        .collect();
    burst.into_iter().for_each(|t| t.join().unwrap());
    report("after 400 calls, 8 at a time", &shim);
    if let Ok(dir) = std::env::var("BERTH_SMAPS_DIR") {
        fs::copy(format!("/proc/{}/smaps", shim.shim_pid), Path::new(&dir).join("smaps-running")).unwrap();
    }
    shim.kill("sleeper", 9, false).unwrap();
    exec_wait.join().unwrap();
    drop(client);
    shim.kill("", 9, true).unwrap();
    init_wait.join().unwrap();
    shim.delete_and_assert_clean(pid);

    let shim = Shim::start("mem-tty");
    let req = shim.terminal_request(&["sh", "-c", "while :; do echo tick; sleep 1; done"]);
    let pid = shim.client.create(Shim::ctx(), &req).unwrap().pid;
    shim.start_task("").unwrap();
    let init_wait = wait_in_background(&shim, "");
    report("terminal container", &shim);
    shim.kill("", 9, true).unwrap();
    init_wait.join().unwrap();
    shim.delete_and_assert_clean(pid);
}

/// Per shim, with `BERTH_IDLE_SHIMS` (30) shims each supervising a running
/// container with a Wait outstanding (none with `BERTH_NO_WAIT`): PSS shares the binary's and libc's
/// pages among them, as on a node.
/// `BERTH_SHIM_BIN=<release berth-shim> cargo nextest run -p berth-shim --test threads --run-ignored only --no-capture report_memory_of_many`
#[test]
#[ignore]
fn report_memory_of_many() {
    let n: usize = std::env::var("BERTH_IDLE_SHIMS").ok().and_then(|v| v.parse().ok()).unwrap_or(30);
    // As session 4's bench did: no call overlaps another.
    let no_wait = std::env::var_os("BERTH_NO_WAIT").is_some();
    let shims: Vec<(Shim, u32, Option<std::thread::JoinHandle<u32>>)> = (0..n)
        .map(|i| {
            let shim = Shim::start(&format!("many{i}"));
            let pid = shim.run(&spec(&shim.id, &["sh", "-c", "while :; do echo tick; sleep 1; done"]));
            let wait = (!no_wait).then(|| wait_in_background(&shim, ""));
            (shim, pid, wait)
        })
        .collect();
    std::thread::sleep(Duration::from_secs(2));
    let (mut rss, mut pss, mut threads) = (0, 0, 0);
    for (shim, _, _) in &shims {
        let (r, p) = smaps_rollup(shim.shim_pid);
        rss += r;
        pss += p;
        threads += thread_names(shim.shim_pid).len();
    }
    let n = shims.len() as u64;
    println!("{n} shims: per shim RSS {} KiB PSS {} KiB threads {:.1}", rss / n, pss / n, threads as f64 / n as f64);
    for (shim, pid, wait) in shims {
        shim.kill("", 9, true).unwrap();
        if let Some(wait) = wait {
            wait.join().unwrap();
        }
        shim.delete_and_assert_clean(pid);
    }
}
