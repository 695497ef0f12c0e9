//! `berth-runtime update --cgroups-path PATH`: new limits (OCI
//! LinuxResources as JSON on stdin) for a running container's cgroup, and
//! for its systemd scope under the systemd driver.

use std::io::Read;

use oci_spec::runtime::LinuxResources;

use crate::{
    container_cgroup::ContainerCgroup,
    error::{Error, Result},
    flag,
};

pub fn run(args: &[String]) -> Result<()> {
    let path = flag(args, "--cgroups-path").ok_or_else(|| Error::InvalidArgument("update needs --cgroups-path".into()))?;
    let mut json = Vec::new();
    std::io::stdin().read_to_end(&mut json).map_err(|e| Error::Internal(format!("read the resources: {e}")))?;
    let resources: LinuxResources = serde_json::from_slice(&json).map_err(|e| Error::InvalidArgument(format!("resources are not OCI LinuxResources: {e}")))?;
    ContainerCgroup::existing(path)?.update(&resources)
}
