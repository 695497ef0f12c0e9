use k8s_cri::v1::{CgroupDriver, LinuxRuntimeConfiguration, RuntimeConfigRequest, RuntimeConfigResponse};

use super::RuntimeInfo;

/// The cgroup driver the kubelet must match.
pub fn runtime_config(info: &RuntimeInfo, _req: RuntimeConfigRequest) -> RuntimeConfigResponse {
    let driver = if info.systemd_cgroup { CgroupDriver::Systemd } else { CgroupDriver::Cgroupfs };
    RuntimeConfigResponse { linux: Some(LinuxRuntimeConfiguration { cgroup_driver: driver as i32 }) }
}
