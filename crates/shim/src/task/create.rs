use std::path::PathBuf;

use berth_cgroups::{Cgroup, Hierarchy};
use berth_shim_protocol::{Bootstrap, Prepare, Prepared, RootfsMount};
use containerd_shim_protos::{
    api::{CreateTaskRequest, CreateTaskResponse},
    events::task::{TaskCreate, TaskIO},
    protobuf::MessageField,
    topics,
};

use super::TaskService;
use crate::{
    error::{Result, ShimError},
    io::{ProcessIo, StdioConfig},
    reaper::Reaper,
    runtime,
    spawn::{Role, Stage1},
    state::{Container, Proc, ProcState},
};

impl TaskService {
    /// Create: `berth-runtime create` mounts the rootfs, makes the cgroup
    /// and becomes the init, which waits until Start. Anything made on the
    /// way is undone if a later step fails.
    pub(super) fn create_task(&self, req: CreateTaskRequest) -> Result<CreateTaskResponse> {
        if req.id.is_empty() {
            return Err(ShimError::InvalidArgument("id is empty".into()));
        }
        if !self.id.is_empty() && req.id != self.id {
            return Err(ShimError::InvalidArgument(format!("this shim serves container {:?}, not {:?}", self.id, req.id)));
        }
        if !req.checkpoint.is_empty() {
            return Err(ShimError::InvalidArgument("checkpoint/restore is not supported".into()));
        }
        let bundle = PathBuf::from(&req.bundle);
        if !bundle.is_absolute() {
            return Err(ShimError::InvalidArgument(format!("bundle {bundle:?} is not an absolute path")));
        }
        let mut guard = self.lock();
        if let Some(existing) = guard.as_ref() {
            return Err(ShimError::AlreadyExists(format!("container {:?} already exists", existing.id)));
        }
        let mut prepared = None;
        let result = (|| -> Result<Container> {
            let stdio = StdioConfig {
                stdin: req.stdin.clone(),
                stdout: req.stdout.clone(),
                stderr: req.stderr.clone(),
                terminal: req.terminal,
                attachable: self.attach_socket.is_some(),
                log_drops: Some(bundle.join(berth_oci::log_drops::FILE_NAME)),
            };
            let (io, child_stdio) = ProcessIo::prepare(&stdio)?;
            let stage1 = Stage1::spawn(Role::Create, child_stdio, &self.reaper)?;
            let rootfs = req.rootfs.iter().map(|m| RootfsMount { kind: m.type_.clone(), source: m.source.clone(), options: m.options.clone() }).collect();
            let host = prepared.insert(stage1.prepare(Prepare { id: req.id.clone(), bundle: bundle.clone(), rootfs }, &self.reaper)?);
            let cgroup = Cgroup::new(Hierarchy::detect()?, &host.cgroup_dir)?;
            let bootstrap = Bootstrap { bundle: bundle.clone(), terminal: req.terminal, exec: None };
            let spawned = stage1.bootstrap(bootstrap, &io, &self.reaper)?;
            let pid = spawned.pid;
            let init = Proc::new(io, ProcState { pid, pending_start: Some(spawned), ..Default::default() });
            if let Some(path) = &self.attach_socket {
                init.io.attachments.listen(path, std::sync::Arc::downgrade(&init)).map_err(ShimError::internal("attach socket"))?;
            }
            Ok(Container {
                id: req.id.clone(),
                bundle: bundle.clone(),
                host: host.clone(),
                cgroup: Some(cgroup),
                init,
                execs: Default::default(),
                pending_execs: Default::default(),
            })
        })();
        match result {
            Ok(container) => {
                let pid = container.init.state().pid;
                log::info!("created container {} pid={pid}", container.id);
                *guard = Some(container);
                drop(guard);
                if let Some(mode) = &self.containerd {
                    mode.record_init_pid(pid);
                    mode.publish(topics::TASK_CREATE_EVENT_TOPIC, &create_event(&req, pid));
                }
                let mut resp = CreateTaskResponse::new();
                resp.pid = pid as u32;
                Ok(resp)
            }
            Err(e) => {
                if let Some(host) = &prepared {
                    if let Err(undo) = remove_from_host(host, &self.reaper) {
                        log::warn!("undo create of {}: {undo}", req.id);
                    }
                }
                Err(e)
            }
        }
    }
}

/// `berth-runtime delete` for what `berth-runtime create` made: every
/// process left in the cgroup is killed (the init too), the cgroup removed,
/// the rootfs unmounted.
pub(super) fn remove_from_host(host: &Prepared, reaper: &Reaper) -> Result<()> {
    runtime::delete(Some(&host.cgroups_path), host.rootfs_mount.as_deref(), Some(reaper))
}

fn create_event(req: &CreateTaskRequest, pid: i32) -> TaskCreate {
    let mut io = TaskIO::new();
    io.stdin = req.stdin.clone();
    io.stdout = req.stdout.clone();
    io.stderr = req.stderr.clone();
    io.terminal = req.terminal;
    let mut event = TaskCreate::new();
    event.container_id = req.id.clone();
    event.bundle = req.bundle.clone();
    event.rootfs = req.rootfs.clone();
    event.io = MessageField::some(io);
    event.checkpoint = req.checkpoint.clone();
    event.pid = pid as u32;
    event
}
