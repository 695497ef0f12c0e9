//! `berth-runtime join-cgroup --cgroups-path PATH --pid PID --description
//! TEXT`: puts a process (a shim leaving its starter's cgroup) in a cgroup
//! of its own, made if missing; under the systemd driver a scope systemd
//! starts with the process in it and removes when it exits.

use crate::{
    container_cgroup::ContainerCgroup,
    error::{Error, Result},
    flag,
};

pub fn run(args: &[String]) -> Result<()> {
    let path = flag(args, "--cgroups-path").ok_or_else(|| Error::InvalidArgument("join-cgroup needs --cgroups-path".into()))?;
    let pid = flag(args, "--pid").and_then(|p| p.parse::<i32>().ok()).filter(|p| *p > 0);
    let pid = pid.ok_or_else(|| Error::InvalidArgument("join-cgroup needs --pid with a process id".into()))?;
    let description = flag(args, "--description").unwrap_or_default();
    ContainerCgroup::new(path, None, description.to_string())?.start_with(pid)
}
