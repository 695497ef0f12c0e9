use std::path::{Path, PathBuf};

use berth_container::sync::Bootstrap;
use containerd_shim_protos::{
    api::{CreateTaskRequest, CreateTaskResponse},
    events::task::{TaskCreate, TaskIO},
    protobuf::MessageField,
    topics,
};
use oci_spec::runtime::Spec;

use super::TaskService;
use crate::{
    container_cgroup::ContainerCgroup,
    error::{Result, ShimError},
    io::{ProcessIo, StdioConfig},
    rootfs_mount::{mount_rootfs, unmount_rootfs, RootIdmap},
    spawn::spawn_init,
    state::{Container, Proc, ProcState},
};

impl TaskService {
    /// Create: mount the rootfs, make the cgroup, spawn the init and wait
    /// until the container is ready to Start. Anything made on the way is
    /// undone if a later step fails.
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
        let mut guard = self.lock();
        if let Some(existing) = guard.as_ref() {
            return Err(ShimError::AlreadyExists(format!("container {:?} already exists", existing.id)));
        }
        let bundle = PathBuf::from(&req.bundle);
        let spec = load_spec(&bundle)?;
        let mut undo = Undo::default();
        let result = (|| -> Result<Container> {
            let idmap = RootIdmap::from_spec(&spec)?;
            undo.rootfs = mount_rootfs(&bundle, &req.rootfs, idmap.as_ref())?;
            let cgroup = ContainerCgroup::for_container(&spec, &req.id)?;
            undo.cgroup = Some(cgroup.clone());
            let stdio = StdioConfig {
                stdin: req.stdin.clone(),
                stdout: req.stdout.clone(),
                stderr: req.stderr.clone(),
                terminal: req.terminal,
                attachable: self.attach_socket.is_some(),
                log_drops: Some(bundle.join(berth_oci::log_drops::FILE_NAME)),
            };
            let (io, child_stdio) = ProcessIo::prepare(&stdio)?;
            let bootstrap = Bootstrap { bundle: bundle.clone(), terminal: req.terminal, exec: None };
            let spawned = spawn_init(bootstrap, child_stdio, &io, Some(&cgroup), &self.reaper)?;
            let pid = spawned.pid;
            let init = Proc::new(io, ProcState { pid, pending_start: Some(spawned), ..Default::default() });
            if let Some(path) = &self.attach_socket {
                init.io.attachments.listen(path, std::sync::Arc::downgrade(&init)).map_err(ShimError::internal("attach socket"))?;
            }
            Ok(Container {
                id: req.id.clone(),
                bundle: bundle.clone(),
                rootfs_mount: undo.rootfs.take(),
                cgroup: undo.cgroup.take(),
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
                undo.run();
                Err(e)
            }
        }
    }
}

/// What Create made so far, removed again when a later step fails.
#[derive(Default)]
struct Undo {
    rootfs: Option<PathBuf>,
    cgroup: Option<ContainerCgroup>,
}

impl Undo {
    fn run(self) {
        if let Some(cg) = self.cgroup.filter(ContainerCgroup::is_ours) {
            let _ = cg.cgroup().kill_all();
            if let Err(e) = cg.remove() {
                log::warn!("cleanup cgroup {}: {e}", cg.cgroup().path().display());
            }
        }
        if let Some(target) = self.rootfs {
            if let Err(e) = unmount_rootfs(&target) {
                log::warn!("cleanup rootfs: {e}");
            }
        }
    }
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

fn load_spec(bundle: &Path) -> Result<Spec> {
    if !bundle.is_absolute() {
        return Err(ShimError::InvalidArgument(format!("bundle {bundle:?} is not an absolute path")));
    }
    let path = bundle.join("config.json");
    let text = std::fs::read_to_string(&path).map_err(|e| ShimError::InvalidArgument(format!("read {}: {e}", path.display())))?;
    serde_json::from_str(&text).map_err(|e| ShimError::InvalidArgument(format!("parse {}: {e}", path.display())))
}
