//! The CRI requests that make things, as they come off the socket
//! (protobuf bytes from the kubelet or any client): RunPodSandbox and
//! CreateContainer, through the checks berth makes before it creates
//! anything (`berth_cri::runtime::check_pod_request`,
//! `berth_cri::runtime::check_container_config`) and, for a container
//! that passes them, the CRI-config-to-OCI-spec translation
//! (`berth_oci::container::container_spec`).
//!
//! Checked: no panic; a refusal is InvalidArgument (a client's mistake,
//! never Internal) naming a field; what passes has the properties the
//! checks promise (ports in range, a log path inside the pod's log
//! directory, a spec that serialises).

use berth_cri::error::Error;
use berth_fuzz::Target;
use berth_oci::container::{capabilities, container_spec, ContainerInput, ImageDefaults, Namespace, Namespaces, ResolvedUser};
use k8s_cri::v1;
use prost::Message;

const LOG_DIRECTORY: &str = "/var/log/pods/default_web_0000";

fn pod_request() -> v1::RunPodSandboxRequest {
    let mut sysctls = std::collections::HashMap::new();
    sysctls.insert("net.ipv4.ip_unprivileged_port_start".to_string(), "0".to_string());
    v1::RunPodSandboxRequest {
        config: Some(v1::PodSandboxConfig {
            metadata: Some(v1::PodSandboxMetadata { name: "web".into(), uid: "0000".into(), namespace: "default".into(), attempt: 1 }),
            hostname: "web".into(),
            log_directory: LOG_DIRECTORY.into(),
            port_mappings: vec![v1::PortMapping { protocol: v1::Protocol::Tcp as i32, container_port: 80, host_port: 8080, host_ip: "127.0.0.1".into() }],
            linux: Some(v1::LinuxPodSandboxConfig {
                cgroup_parent: "/kubepods/besteffort/pod0000".into(),
                sysctls,
                security_context: Some(v1::LinuxSandboxSecurityContext {
                    namespace_options: Some(v1::NamespaceOption { pid: v1::NamespaceMode::Pod as i32, ..Default::default() }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        runtime_handler: String::new(),
    }
}

fn container_config() -> v1::ContainerConfig {
    v1::ContainerConfig {
        metadata: Some(v1::ContainerMetadata { name: "app".into(), attempt: 0 }),
        image: Some(v1::ImageSpec { image: "example.com/app:1".into(), ..Default::default() }),
        command: vec!["/bin/sh".into()],
        args: vec!["-c".into(), "sleep 1".into()],
        working_dir: "/srv".into(),
        envs: vec![v1::KeyValue { key: "A".into(), value: "b".into() }],
        mounts: vec![v1::Mount { container_path: "/data".into(), host_path: "/tmp".into(), readonly: true, ..Default::default() }],
        log_path: "app/0.log".into(),
        tty: true,
        linux: Some(v1::LinuxContainerConfig {
            resources: Some(v1::LinuxContainerResources { cpu_shares: 512, memory_limit_in_bytes: 64 << 20, ..Default::default() }),
            security_context: Some(v1::LinuxContainerSecurityContext {
                capabilities: Some(v1::Capability {
                    add_capabilities: vec!["NET_ADMIN".into()],
                    drop_capabilities: vec!["MKNOD".into()],
                    ..Default::default()
                }),
                readonly_rootfs: true,
                ..Default::default()
            }),
        }),
        ..Default::default()
    }
}

fn assert_client_error(e: &Error) {
    assert!(matches!(e, Error::InvalidArgument(_)), "a bad request is InvalidArgument, got {e:?}");
    assert!(!e.to_string().is_empty());
}

#[test]
fn cri_run_pod_sandbox() {
    let handlers = vec!["runc".to_string()];
    let mut with_userns = pod_request();
    let sc = with_userns.config.as_mut().unwrap().linux.as_mut().unwrap().security_context.as_mut().unwrap();
    sc.namespace_options.as_mut().unwrap().userns_options = Some(v1::UserNamespace {
        mode: v1::NamespaceMode::Pod as i32,
        uids: vec![v1::IdMapping { host_id: 100_000, container_id: 0, length: 65536 }],
        gids: vec![v1::IdMapping { host_id: 100_000, container_id: 0, length: 65536 }],
    });
    Target::new("cri_run_pod_sandbox").seed("typical", pod_request().encode_to_vec()).seed("user-namespace", with_userns.encode_to_vec()).run(|input| {
        let Ok(request) = v1::RunPodSandboxRequest::decode(input) else { return };
        for systemd in [false, true] {
            match berth_cri::runtime::check_pod_request(request.clone(), &handlers, systemd, || true) {
                Err(e) => assert_client_error(&e),
                Ok(pod) => {
                    assert!(!pod.meta.name.is_empty() && !pod.meta.namespace.is_empty() && !pod.meta.uid.is_empty());
                    assert!(pod.runtime_handler.is_empty() || handlers.contains(&pod.runtime_handler));
                    for p in &pod.port_mappings {
                        assert!((1..=65535).contains(&p.host_port) && (1..=65535).contains(&p.container_port), "{p:?}");
                    }
                }
            }
        }
    });
}

#[test]
fn cri_create_container() {
    let host_capabilities: Vec<String> =
        ["CAP_CHOWN", "CAP_NET_ADMIN", "CAP_KILL", "CAP_SYS_ADMIN", "CAP_MKNOD", "CAP_SETUID", "CAP_SETGID"].map(String::from).to_vec();
    let sandbox = pod_request().config.unwrap();
    let mut relative_escape = container_config();
    relative_escape.log_path = "../other/0.log".into();
    // Before berth joined it as relative, this was the host's /etc/cron.d/x.
    let mut absolute = container_config();
    absolute.log_path = "/etc/cron.d/x".into();
    Target::new("cri_create_container")
        .seed("typical", container_config().encode_to_vec())
        .seed("log-path-escape", relative_escape.encode_to_vec())
        .seed("regress-absolute-log-path", absolute.encode_to_vec())
        .run(|input| {
            let Ok(config) = v1::ContainerConfig::decode(input) else { return };
            if let Err(e) = berth_cri::runtime::check_container_config(&config, None, LOG_DIRECTORY) {
                return assert_client_error(&e);
            }
            // The log path check passed: the shim will write there.
            if !config.log_path.is_empty() {
                let full = std::path::Path::new(LOG_DIRECTORY).join(config.log_path.trim_start_matches('/'));
                assert!(
                    full.starts_with(LOG_DIRECTORY) && !config.log_path.split('/').any(|c| c == ".."),
                    "log path {:?} leaves the pod's directory",
                    config.log_path
                );
            }
            let sc = config.linux.as_ref().and_then(|l| l.security_context.as_ref());
            let Ok(caps) = capabilities(sc, &host_capabilities) else { return };
            let input = ContainerInput {
                id: "0123456789abcdef",
                config: &config,
                sandbox_id: "fedcba9876543210",
                sandbox: &sandbox,
                image: &ImageDefaults::default(),
                image_name: "example.com/app:1",
                user: ResolvedUser::default(),
                namespaces: Namespaces { net: Namespace::Private, ipc: Namespace::Private, uts: Namespace::Private, pid: Namespace::Private, user: None },
                cgroups_path: "/kubepods/pod0000/0123456789abcdef".into(),
                pod_files: Vec::new(),
                mounts: config.mounts.clone(),
                image_volumes: Vec::new(),
                devices: Vec::new(),
                seccomp: None,
                apparmor_profile: None,
                hostname: "web".into(),
                host_capabilities: caps,
            };
            match container_spec(&input) {
                Err(e) => assert!(!e.field.is_empty(), "a refusal names its field: {e:?}"),
                Ok(spec) => {
                    serde_json::to_vec(&spec).expect("a spec serialises into config.json");
                }
            }
        });
}
