//! A `play kube` pod's `restartPolicy`. `play kube` returns once the pod
//! runs, so restarting is the business of a detached supervisor: berthctl
//! itself, run as the hidden `__supervise-pod` subcommand in a session of
//! its own, its output in a log file. It follows the pod through the CRI
//! (GetContainerEvents wakes it at once; it looks again every second
//! anyway, and only polls after a stream error) and, when a container
//! exits and the policy says so, removes it and creates and starts a new
//! one from the same config with `metadata.attempt` + 1, as the kubelet
//! does, after a back-off of 1 s doubling to 30 s (the kubelet's is 10 s
//! doubling to 5 minutes), reset once a container ran for a minute. It ends
//! when the pod is gone or stopped. Its state (the configs, its pid, its
//! log) is `<berthd root>/berthctl/kube/<pod id>/`; `down` sends SIGTERM to
//! that pid (after checking that the process is this pod's supervisor)
//! before it removes the pod.

use std::{
    path::{Path, PathBuf},
    time::{Duration, SystemTime},
};

use k8s_cri::v1::{self, runtime_service_client::RuntimeServiceClient};
use serde::{Deserialize, Serialize};
use tonic::transport::Channel;

use crate::client::{connect, rpc_error};

/// The hidden subcommand.
pub const SUBCOMMAND: &str = "__supervise-pod";
const BACKOFF_BASE: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// A container that ran this long restarts with the base back-off again.
const BACKOFF_RESET: Duration = Duration::from_secs(60);
/// Looks (a second apart) at a pod berthd does not answer about before
/// the supervisor gives up.
const UNREACHABLE_LOOKS: u32 = 60;

#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub enum Policy {
    Always,
    OnFailure,
    Never,
}

impl Policy {
    /// The manifest's policy (checked already); Always when it has none.
    pub fn of(policy: Option<&str>) -> Policy {
        match policy {
            Some("OnFailure") => Policy::OnFailure,
            Some("Never") => Policy::Never,
            _ => Policy::Always,
        }
    }

    /// Whether a container that exited with `code` is started again.
    pub fn restarts(self, code: i32) -> bool {
        match self {
            Policy::Always => true,
            Policy::OnFailure => code != 0,
            Policy::Never => false,
        }
    }
}

/// The wait before restart number `step` + 1 (from 0): 1 s, 2 s, 4 s...
/// up to 30 s.
pub fn backoff(step: u32) -> Duration {
    BACKOFF_BASE.saturating_mul(1 << step.min(16)).min(BACKOFF_MAX)
}

/// What the supervisor needs to make a container again.
#[derive(Serialize, Deserialize)]
struct Plan {
    policy: Policy,
    pod_config: v1::PodSandboxConfig,
    containers: Vec<v1::ContainerConfig>,
}

/// The supervisor's directory for `pod`, under berthd's root (the parent
/// of its volumes directory).
pub fn state_dir(volume_dir: &Path, pod: &str) -> PathBuf {
    volume_dir.parent().unwrap_or(Path::new("/var/lib/berth")).join("berthctl/kube").join(pod)
}

/// The log path of `name`'s attempt `attempt`: `name.log` for the first,
/// `name.N.log` after.
pub fn log_path(name: &str, attempt: u32) -> String {
    if attempt == 0 {
        format!("{name}.log")
    } else {
        format!("{name}.{attempt}.log")
    }
}

/// Starts the supervisor of `pod` (detached) and records its pid.
pub fn spawn(
    socket: &Path,
    dir: &Path,
    pod: &str,
    policy: Policy,
    pod_config: &v1::PodSandboxConfig,
    containers: Vec<v1::ContainerConfig>,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    let plan = Plan { policy, pod_config: pod_config.clone(), containers };
    std::fs::write(dir.join("plan.json"), serde_json::to_vec(&plan)?)?;
    let log = std::fs::OpenOptions::new().create(true).append(true).open(dir.join("supervisor.log"))?;
    let child = std::process::Command::new(std::env::current_exe()?)
        .arg("--socket")
        .arg(socket)
        .arg(SUBCOMMAND)
        .arg("--state")
        .arg(dir)
        .arg(pod)
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .map_err(|e| anyhow::anyhow!("start the pod's supervisor: {e}"))?;
    // The supervisor calls setsid itself (it is no group leader, so it
    // can), so this pid stays its own.
    let pid = child.id();
    std::fs::write(dir.join("supervisor.pid"), format!("{pid}\n"))?;
    wait_until_running(child, pod, &dir.join("supervisor.log"))
}

/// Returns once the supervisor shows as one (`down` right after `play`
/// finds it). spawn returns as soon as the exec is past its point of no
/// return, before the kernel has set up the new program's arguments:
/// until then /proc/<pid>/cmdline is empty (seen under load in CI).
fn wait_until_running(mut child: std::process::Child, pod: &str, log: &Path) -> anyhow::Result<()> {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !is_supervisor(child.id() as i32, pod) {
        if let Some(status) = child.try_wait()? {
            anyhow::bail!("the pod's supervisor exited at once ({status}); see {}", log.display());
        }
        if std::time::Instant::now() > deadline {
            // Slow, not failed: it is running, and `down` finds it later.
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(())
}

/// Whether `pid` is the supervisor of `pod` (and not a reused pid or a
/// zombie).
fn is_supervisor(pid: i32, pod: &str) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else { return false };
    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    args.contains(&SUBCOMMAND.as_bytes()) && args.contains(&pod.as_bytes())
}

/// Ends `pod`'s supervisor, if it runs: SIGTERM by its recorded pid, then
/// SIGKILL after 5 s; waits until it is gone.
pub fn stop(dir: &Path, pod: &str) {
    let Some(pid) = std::fs::read_to_string(dir.join("supervisor.pid")).ok().and_then(|s| s.trim().parse::<i32>().ok()) else { return };
    let target = nix::unistd::Pid::from_raw(pid);
    if !is_supervisor(pid, pod) {
        return;
    }
    let _ = nix::sys::signal::kill(target, nix::sys::signal::Signal::SIGTERM);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while is_supervisor(pid, pod) {
        if std::time::Instant::now() > deadline {
            let _ = nix::sys::signal::kill(target, nix::sys::signal::Signal::SIGKILL);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One regular container the supervisor follows.
struct Followed {
    config: v1::ContainerConfig,
    id: String,
    attempt: u32,
    /// Restarts since the back-off was last reset.
    step: u32,
    /// Its StartContainer failed: it stays Created, and counts as exited.
    start_failed: bool,
}

fn now_nanos() -> i64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_nanos() as i64).unwrap_or(0)
}

/// The `__supervise-pod` subcommand: runs until the pod is gone or stopped.
pub async fn run(socket: &Path, dir: &Path, pod: &str) -> anyhow::Result<()> {
    // A session of its own: no terminal, no signal meant for the shell
    // that ran `play kube`.
    let _ = nix::unistd::setsid();
    let plan: Plan = serde_json::from_slice(&std::fs::read(dir.join("plan.json"))?)?;
    let mut rt = RuntimeServiceClient::new(connect(socket).await?);
    let filter = v1::ContainerFilter { pod_sandbox_id: pod.into(), ..Default::default() };
    let listed = rt.list_containers(v1::ListContainersRequest { filter: Some(filter) }).await.map_err(rpc_error("list containers"))?.into_inner().containers;
    let mut followed: Vec<Followed> = plan
        .containers
        .iter()
        .filter_map(|config| {
            let name = config.metadata.as_ref()?.name.clone();
            let ctr = listed.iter().filter(|c| c.metadata.as_ref().is_some_and(|m| m.name == name)).max_by_key(|c| c.created_at)?;
            let attempt = ctr.metadata.as_ref().map_or(0, |m| m.attempt);
            Some(Followed { config: config.clone(), id: ctr.id.clone(), attempt, step: 0, start_failed: false })
        })
        .collect();
    eprintln!("supervising pod {pod} ({:?}): {} containers", plan.policy, followed.len());
    let mut events = rt.get_container_events(v1::GetEventsRequest {}).await.ok().map(|r| r.into_inner());
    let mut unreachable_looks = 0;
    loop {
        match rt.pod_sandbox_status(v1::PodSandboxStatusRequest { pod_sandbox_id: pod.into(), verbose: false }).await {
            Err(s) if s.code() == tonic::Code::NotFound => {
                eprintln!("pod {pod} is gone");
                let _ = std::fs::remove_dir_all(dir);
                return Ok(());
            }
            Err(s) => {
                // berthd away for good (its socket gone, say) must not
                // leave a supervisor looking forever.
                unreachable_looks += 1;
                eprintln!("pod status: {} ({unreachable_looks} failed looks)", s.message());
                if unreachable_looks >= UNREACHABLE_LOOKS {
                    eprintln!("berthd does not answer; giving up");
                    return Ok(());
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            Ok(r) => {
                unreachable_looks = 0;
                if r.into_inner().status.is_none_or(|s| s.state != v1::PodSandboxState::SandboxReady as i32) {
                    eprintln!("pod {pod} is stopped");
                    let _ = std::fs::remove_file(dir.join("supervisor.pid"));
                    return Ok(());
                }
            }
        }
        let mut wait = Duration::from_secs(1);
        let mut i = 0;
        while i < followed.len() {
            match step(&mut rt, pod, &plan, &mut followed[i]).await {
                Step::Gone => {
                    eprintln!("{} was removed; no longer followed", followed[i].config.metadata.as_ref().map_or("", |m| m.name.as_str()));
                    followed.remove(i);
                    continue;
                }
                Step::Wait(d) => wait = wait.min(d),
                Step::Fine => {}
            }
            i += 1;
        }
        if followed.is_empty() {
            eprintln!("no container left to follow");
            let _ = std::fs::remove_file(dir.join("supervisor.pid"));
            return Ok(());
        }
        match &mut events {
            Some(stream) => match tokio::time::timeout(wait, stream.message()).await {
                Ok(Ok(Some(_))) | Err(_) => {}
                Ok(Ok(None)) | Ok(Err(_)) => {
                    eprintln!("the event stream ended; polling every second");
                    events = None;
                }
            },
            None => tokio::time::sleep(wait).await,
        }
    }
}

enum Step {
    /// Running, or exited for good under the policy.
    Fine,
    /// Look again within this.
    Wait(Duration),
    /// Removed by someone else.
    Gone,
}

async fn step(rt: &mut RuntimeServiceClient<Channel>, pod: &str, plan: &Plan, f: &mut Followed) -> Step {
    let st = match rt.container_status(v1::ContainerStatusRequest { container_id: f.id.clone(), verbose: false }).await {
        Ok(r) => r.into_inner().status.unwrap_or_default(),
        Err(s) if s.code() == tonic::Code::NotFound => return Step::Gone,
        Err(s) => {
            eprintln!("container status: {}", s.message());
            return Step::Wait(Duration::from_secs(1));
        }
    };
    // A failed start is a failure (128, as a shell says of a command it
    // could not run), timed from the container's creation.
    let failed_start = f.start_failed && st.state == v1::ContainerState::ContainerCreated as i32;
    let (code, ended) = if failed_start { (128, st.created_at) } else { (st.exit_code, st.finished_at) };
    if !(failed_start || st.state == v1::ContainerState::ContainerExited as i32) || !plan.policy.restarts(code) {
        return Step::Fine;
    }
    if !failed_start && Duration::from_nanos((st.finished_at - st.started_at).max(0) as u64) >= BACKOFF_RESET {
        f.step = 0;
    }
    let due = ended.saturating_add(backoff(f.step).as_nanos() as i64);
    let now = now_nanos();
    if now < due {
        return Step::Wait(Duration::from_nanos((due - now) as u64));
    }
    let name = f.config.metadata.as_ref().map(|m| m.name.clone()).unwrap_or_default();
    let attempt = f.attempt + 1;
    eprintln!("{name} exited with {code}; restart, attempt {attempt}");
    // The old attempt goes, so names stay unique for `berthctl logs NAME`
    // (its log file stays).
    if let Err(s) = rt.remove_container(v1::RemoveContainerRequest { container_id: f.id.clone() }).await {
        eprintln!("remove {name}: {}", s.message());
    }
    let mut config = f.config.clone();
    config.metadata = Some(v1::ContainerMetadata { name: name.clone(), attempt });
    config.log_path = log_path(&name, attempt);
    let req = v1::CreateContainerRequest { pod_sandbox_id: pod.into(), config: Some(config), sandbox_config: Some(plan.pod_config.clone()) };
    f.attempt = attempt;
    f.step = f.step.saturating_add(1);
    match rt.create_container(req).await {
        Ok(r) => {
            f.id = r.into_inner().container_id;
            f.start_failed = false;
            if let Err(s) = rt.start_container(v1::StartContainerRequest { container_id: f.id.clone() }).await {
                // The next look restarts it again after its back-off.
                eprintln!("start {name}: {}", s.message());
                f.start_failed = true;
            }
            Step::Fine
        }
        Err(s) => {
            // The old one is gone: nothing left to follow.
            eprintln!("create {name}: {}", s.message());
            Step::Gone
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_and_backoff() {
        assert!(Policy::Always.restarts(0) && Policy::Always.restarts(3));
        assert!(!Policy::OnFailure.restarts(0) && Policy::OnFailure.restarts(3));
        assert!(!Policy::Never.restarts(0) && !Policy::Never.restarts(3));
        assert_eq!(Policy::of(None), Policy::Always);
        assert_eq!(Policy::of(Some("OnFailure")), Policy::OnFailure);
        assert_eq!((backoff(0), backoff(1), backoff(3)), (Duration::from_secs(1), Duration::from_secs(2), Duration::from_secs(8)));
        assert_eq!((backoff(5), backoff(40)), (BACKOFF_MAX, BACKOFF_MAX));
        assert_eq!((log_path("a", 0), log_path("a", 2)), ("a.log".to_string(), "a.2.log".to_string()));
    }
}
