//! Where a container or a pod may go from where it is. Every change of
//! state goes through the transitions here, and the operations ask the
//! guards here before they act; an illegal move is FailedPrecondition
//! naming the object, its state and what was asked.
//!
//! A container:
//!
//! ```text
//!   CreateContainer
//!         │
//!         ▼      started              exited
//!      Created ───────────▶ Running ──────────▶ Exited ──▶ RemoveContainer
//!         │                                        ▲
//!         └─────────── start failed ───────────────┘
//!
//!   Unknown: a record no berth writes any more; it can only be removed.
//! ```
//!
//! Removal is allowed from every state (the CRI's RemoveContainer stops a
//! running container first), so it is not a transition: the record goes.
//!
//! A pod sandbox:
//!
//! ```text
//!   RunPodSandbox ──▶ NotReady ── namespaces and network up ──▶ Ready
//!                                                                 │
//!          NotReady ◀── StopPodSandbox, or its namespaces lost ───┘
//! ```
//!
//! A stopped pod is not made Ready again (the kubelet makes a new sandbox
//! instead; only RunPodSandbox marks a pod Ready); StopPodSandbox of a
//! NotReady pod is a no-op.

use super::{ContainerRecord, ContainerState, ExitInfo, SandboxRecord, SandboxState};
use crate::error::{Error, Result};

impl ContainerState {
    /// StartContainer: only a Created container starts.
    pub fn can_start(self) -> bool {
        self == ContainerState::Created
    }

    /// ExecSync, Exec, Attach, ReopenContainerLog: a process to talk to.
    pub fn can_exec(self) -> bool {
        self == ContainerState::Running
    }

    /// UpdateContainerResources: applied now (Running) or at start
    /// (Created); an ended container has no limits to change.
    pub fn can_update_resources(self) -> bool {
        matches!(self, ContainerState::Created | ContainerState::Running)
    }

    /// StopContainer has something to stop.
    pub fn needs_stop(self) -> bool {
        self == ContainerState::Running
    }
}

impl ContainerRecord {
    /// Created -> Running: its shim started the process `pid` at `at`.
    pub fn mark_started(&mut self, pid: u32, at: i64) -> Result<()> {
        self.check(self.state.can_start(), "start")?;
        self.state = ContainerState::Running;
        self.pid = pid;
        self.started_at = at;
        Ok(())
    }

    /// Created -> Exited with reason StartError, as the kubelet expects of
    /// a container that failed to start.
    pub fn mark_start_failed(&mut self, message: String, at: i64) -> Result<()> {
        self.check(self.state.can_start(), "record a failed start of")?;
        self.state = ContainerState::Exited;
        self.exit_code = 128;
        self.finished_at = at;
        self.reason = "StartError".into();
        self.message = message;
        Ok(())
    }

    /// Running -> Exited, as its exit monitor saw the end.
    pub fn mark_exited(&mut self, exit: &ExitInfo) -> Result<()> {
        self.check(self.state == ContainerState::Running, "record the exit of")?;
        self.state = ContainerState::Exited;
        self.exit_code = exit.code;
        self.finished_at = exit.at;
        self.reason = exit.reason.clone();
        self.message = exit.message.clone();
        Ok(())
    }

    fn check(&self, allowed: bool, what: &str) -> Result<()> {
        if allowed {
            Ok(())
        } else {
            Err(Error::FailedPrecondition(format!("cannot {what} container {}: it is {:?}", self.id, self.state)))
        }
    }
}

impl SandboxState {
    /// CreateContainer and StartContainer need a Ready pod.
    pub fn can_run_containers(self) -> bool {
        self == SandboxState::Ready
    }
}

impl SandboxRecord {
    /// NotReady -> Ready at the end of RunPodSandbox, its namespaces and
    /// network up. Only RunPodSandbox calls it, on the record it is
    /// building, under the pod's lock: no Stop can come between.
    pub fn mark_ready(&mut self) -> Result<()> {
        if self.state != SandboxState::NotReady {
            return Err(Error::FailedPrecondition(format!("pod sandbox {} is {:?}: only a pod being created becomes ready", self.id, self.state)));
        }
        self.state = SandboxState::Ready;
        Ok(())
    }

    /// -> NotReady: stopped, or its pinned namespaces are gone (a reboot).
    /// Always allowed: stopping a stopped pod is the CRI's no-op.
    pub fn mark_not_ready(&mut self) {
        self.state = SandboxState::NotReady;
    }
}

#[cfg(test)]
mod tests {
    use k8s_cri::v1;

    use super::*;

    fn container(state: ContainerState) -> ContainerRecord {
        ContainerRecord {
            id: "c1".into(),
            sandbox_id: "p1".into(),
            name: "c_p_ns_uid_0".into(),
            config: v1::ContainerConfig::default(),
            image_name: String::new(),
            image_id: String::new(),
            image_ref: String::new(),
            state,
            created_at: 1,
            started_at: 0,
            finished_at: 0,
            exit_code: 0,
            reason: String::new(),
            message: String::new(),
            pid: 0,
            log_path: String::new(),
            cgroups_path: String::new(),
            stop_signal: 15,
            uid: 0,
            gid: 0,
            additional_gids: Vec::new(),
            resources: v1::LinuxContainerResources::default(),
        }
    }

    const ALL: [ContainerState; 4] = [ContainerState::Created, ContainerState::Running, ContainerState::Exited, ContainerState::Unknown];

    fn exit() -> ExitInfo {
        ExitInfo { code: 3, at: 9, reason: "Error".into(), message: String::new() }
    }

    fn refused(result: Result<()>) -> String {
        match result {
            Err(Error::FailedPrecondition(message)) => message,
            other => panic!("expected FailedPrecondition, got {other:?}"),
        }
    }

    #[test]
    fn the_legal_container_moves_set_their_fields() {
        let mut c = container(ContainerState::Created);
        c.mark_started(42, 7).unwrap();
        assert_eq!((c.state, c.pid, c.started_at), (ContainerState::Running, 42, 7));
        c.mark_exited(&exit()).unwrap();
        assert_eq!((c.state, c.exit_code, c.finished_at, c.reason.as_str()), (ContainerState::Exited, 3, 9, "Error"));

        let mut c = container(ContainerState::Created);
        c.mark_start_failed("no such file".into(), 5).unwrap();
        assert_eq!((c.state, c.exit_code, c.reason.as_str(), c.message.as_str()), (ContainerState::Exited, 128, "StartError", "no such file"));
    }

    #[test]
    fn every_illegal_container_move_is_refused_and_changes_nothing() {
        for state in ALL {
            if state != ContainerState::Created {
                let mut c = container(state);
                let message = refused(c.mark_started(1, 1));
                assert!(message.contains("c1") && message.contains(&format!("{state:?}")), "{message}");
                let message = refused(c.mark_start_failed("x".into(), 1));
                assert!(message.contains(&format!("{state:?}")), "{message}");
                assert_eq!((c.state, c.pid, c.exit_code), (state, 0, 0), "a refused move leaves the record as it was");
            }
            if state != ContainerState::Running {
                let mut c = container(state);
                refused(c.mark_exited(&exit()));
                assert_eq!((c.state, c.exit_code), (state, 0));
            }
        }
    }

    #[test]
    fn container_guards_follow_the_diagram() {
        let allowed = |guard: fn(ContainerState) -> bool| ALL.into_iter().filter(|s| guard(*s)).collect::<Vec<_>>();
        assert_eq!(allowed(ContainerState::can_start), [ContainerState::Created]);
        assert_eq!(allowed(ContainerState::can_exec), [ContainerState::Running]);
        assert_eq!(allowed(ContainerState::can_update_resources), [ContainerState::Created, ContainerState::Running]);
        assert_eq!(allowed(ContainerState::needs_stop), [ContainerState::Running]);
    }

    fn sandbox(state: SandboxState) -> SandboxRecord {
        SandboxRecord {
            id: "p1".into(),
            name: "p_ns_uid_0".into(),
            config: v1::PodSandboxConfig::default(),
            runtime_handler: String::new(),
            state,
            created_at: 1,
            netns: None,
            ipcns: None,
            utsns: None,
            ip: None,
            additional_ips: Vec::new(),
            cni_result: None,
            shm: None,
            pause_pid: None,
            userns: None,
        }
    }

    #[test]
    fn a_pod_becomes_ready_once_and_stops_any_number_of_times() {
        let mut p = sandbox(SandboxState::NotReady);
        p.mark_ready().unwrap();
        assert!(p.state.can_run_containers());
        let message = refused(p.mark_ready());
        assert!(message.contains("p1") && message.contains("Ready"), "Ready twice: {message}");
        p.mark_not_ready();
        assert!(!p.state.can_run_containers());
        p.mark_not_ready();
        assert_eq!(p.state, SandboxState::NotReady, "stopping a stopped pod is a no-op");
    }
}
