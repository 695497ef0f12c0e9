//! `berth-runtime update [--cgroups-path PATH] [--pid PID --oom-score-adj N]`:
//! new limits (OCI LinuxResources as JSON on stdin, with `--cgroups-path`)
//! for a running container's cgroup, and for its systemd scope under the
//! systemd driver; a new oom_score_adj for its init. A lowering the host
//! refuses is clamped, with a warning on stderr for the shim's log.

use std::{io::Read, path::Path};

use oci_spec::runtime::LinuxResources;

use crate::{
    container_cgroup::ContainerCgroup,
    error::{Error, Result},
    flag,
};

pub fn run(args: &[String]) -> Result<()> {
    let oom_score_adj = match (flag(args, "--pid"), flag(args, "--oom-score-adj")) {
        (None, None) => None,
        (Some(pid), Some(adj)) => {
            let pid = pid.parse::<i32>().ok().filter(|p| *p > 0).ok_or_else(|| Error::InvalidArgument(format!("--pid {pid:?} is not a process id")))?;
            let adj = adj.parse::<i32>().map_err(|_| Error::InvalidArgument(format!("--oom-score-adj {adj:?} is not a number")))?;
            Some((pid, adj))
        }
        _ => return Err(Error::InvalidArgument("--pid and --oom-score-adj go together".into())),
    };
    let cgroups_path = flag(args, "--cgroups-path");
    if cgroups_path.is_none() && oom_score_adj.is_none() {
        return Err(Error::InvalidArgument("update needs --cgroups-path, or --pid and --oom-score-adj".into()));
    }
    if let Some(path) = cgroups_path {
        let mut json = Vec::new();
        std::io::stdin().read_to_end(&mut json).map_err(|e| Error::Internal(format!("read the resources: {e}")))?;
        let resources: LinuxResources =
            serde_json::from_slice(&json).map_err(|e| Error::InvalidArgument(format!("resources are not OCI LinuxResources: {e}")))?;
        ContainerCgroup::existing(path)?.update(&resources)?;
    }
    if let Some((pid, adj)) = oom_score_adj {
        let path = format!("/proc/{pid}/oom_score_adj");
        match berth_container::process::set_oom_score_adj_at(Path::new(&path), adj) {
            Ok(Some(warning)) => eprintln!("{warning}"),
            Ok(None) => {}
            Err(e) => return Err(Error::Internal(format!("set oom_score_adj of pid {pid}: {e}"))),
        }
    }
    Ok(())
}
