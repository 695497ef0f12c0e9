use super::*;

fn image() -> ImageDefaults {
    ImageDefaults {
        entrypoint: vec!["/entry".into()],
        cmd: vec!["serve".into(), "--port=80".into()],
        env: vec!["PATH=/image/bin".into(), "MODE=image".into()],
        working_dir: "/srv".into(),
    }
}

fn input<'a>(config: &'a v1::ContainerConfig, sandbox: &'a v1::PodSandboxConfig, image: &'a ImageDefaults) -> ContainerInput<'a> {
    ContainerInput {
        id: "c1",
        config,
        sandbox_id: "p1",
        sandbox,
        image,
        image_name: "busybox",
        user: ResolvedUser { uid: 1000, gid: 1000, additional_gids: vec![10] },
        namespaces: Namespaces {
            net: Namespace::Join("/run/berth/sandboxes/p1/ns/net".into()),
            ipc: Namespace::Join("/run/berth/sandboxes/p1/ns/ipc".into()),
            uts: Namespace::Join("/run/berth/sandboxes/p1/ns/uts".into()),
            pid: Namespace::Private,
            user: None,
        },
        cgroups_path: "/kubepods/pod1/c1".into(),
        pod_files: vec![PodFile { destination: "/etc/resolv.conf".into(), source: "/var/lib/berth/sandboxes/p1/resolv.conf".into(), readonly: true }],
        mounts: config.mounts.clone(),
        image_volumes: Vec::new(),
        devices: vec![],
        seccomp: None,
        apparmor_profile: None,
        hostname: "pod".into(),
        host_capabilities: ALL_CAPABILITIES.iter().map(|c| c.to_string()).collect(),
    }
}

fn spec_json(config: &v1::ContainerConfig) -> Value {
    let (sandbox, image) = (v1::PodSandboxConfig::default(), image());
    serde_json::to_value(container_spec(&input(config, &sandbox, &image)).unwrap()).unwrap()
}

#[test]
fn command_and_args_follow_kubernetes_rules() {
    let img = image();
    let mut c = v1::ContainerConfig::default();
    assert_eq!(process_args(&c, &img).unwrap(), ["/entry", "serve", "--port=80"]);
    c.args = vec!["other".into()];
    assert_eq!(process_args(&c, &img).unwrap(), ["/entry", "other"]);
    c.command = vec!["/bin/sh".into()];
    assert_eq!(process_args(&c, &img).unwrap(), ["/bin/sh", "other"]);
    c.args.clear();
    assert_eq!(process_args(&c, &img).unwrap(), ["/bin/sh"], "a command drops the image's cmd");
    let e = process_args(&v1::ContainerConfig::default(), &ImageDefaults::default()).unwrap_err();
    assert_eq!(e.field, "command");
}

#[test]
fn config_env_overrides_image_env() {
    let c = v1::ContainerConfig { envs: vec![v1::KeyValue { key: "MODE".into(), value: "pod".into() }], ..Default::default() };
    let env = environment(&c, &image(), "web");
    assert!(env.contains(&"MODE=pod".to_string()) && !env.contains(&"MODE=image".to_string()), "{env:?}");
    assert!(env.contains(&"PATH=/image/bin".to_string()) && env.contains(&"HOSTNAME=web".to_string()));
    let plain = environment(&c, &ImageDefaults::default(), "");
    assert!(plain[0].starts_with("PATH=/usr/local/sbin"));
}

#[test]
fn capabilities_add_drop_and_all() {
    let sc = |add: &[&str], drop: &[&str], privileged: bool| v1::LinuxContainerSecurityContext {
        privileged,
        capabilities: Some(v1::Capability {
            add_capabilities: add.iter().map(|s| s.to_string()).collect(),
            drop_capabilities: drop.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }),
        ..Default::default()
    };
    // A host without CAP_SYS_RESOURCE (bit 24), like a restricted node.
    let host = capabilities_in_mask(0x1fffeffffff);
    assert_eq!(host.len(), ALL_CAPABILITIES.len() - 1);
    let caps = capabilities(Some(&sc(&["NET_ADMIN"], &["CHOWN"], false)), &host).unwrap();
    assert!(caps.contains(&"CAP_NET_ADMIN".into()) && !caps.contains(&"CAP_CHOWN".into()));
    assert_eq!(capabilities(Some(&sc(&["NET_BIND_SERVICE"], &["ALL"], false)), &host).unwrap(), ["CAP_NET_BIND_SERVICE"]);
    assert_eq!(capabilities(Some(&sc(&["ALL"], &[], false)), &host).unwrap(), host);
    assert_eq!(capabilities(Some(&sc(&[], &[], true)), &host).unwrap(), host);
    let e = capabilities(Some(&sc(&["FLY"], &[], false)), &host).unwrap_err();
    assert!(e.field.ends_with("add_capabilities") && e.reason.contains("FLY"), "{e}");
    let e = capabilities(Some(&sc(&["SYS_RESOURCE"], &[], false)), &host).unwrap_err();
    assert!(e.reason.contains("not available"), "{e}");
}

#[test]
fn absurd_resources_name_their_field() {
    let cases = [
        v1::LinuxContainerResources { memory_limit_in_bytes: -5, ..Default::default() },
        v1::LinuxContainerResources { cpu_quota: 10, ..Default::default() },
        v1::LinuxContainerResources { cpu_shares: 1 << 40, ..Default::default() },
        v1::LinuxContainerResources { cpuset_cpus: "0-x".into(), ..Default::default() },
        v1::LinuxContainerResources { oom_score_adj: 5000, ..Default::default() },
        v1::LinuxContainerResources { memory_swap_limit_in_bytes: 1 << 30, ..Default::default() },
    ];
    let fields = ["memory_limit_in_bytes", "cpu_quota", "cpu_shares", "cpuset_cpus", "oom_score_adj", "memory_swap_limit_in_bytes"];
    for (r, f) in cases.iter().zip(fields) {
        let e = validate_resources(r).unwrap_err();
        assert_eq!(e.field, format!("linux.resources.{f}"));
    }
    let ok = v1::LinuxContainerResources {
        cpu_quota: 50_000,
        cpu_period: 100_000,
        memory_limit_in_bytes: 64 << 20,
        cpuset_cpus: "0-1,3".into(),
        ..Default::default()
    };
    validate_resources(&ok).unwrap();
    let r = resources(&ok);
    assert_eq!((r["cpu"]["quota"].as_i64(), r["memory"]["limit"].as_i64()), (Some(50_000), Some(64 << 20)));
}

#[test]
fn the_pids_limit_annotation_sets_the_pids_limit() {
    let mut config = v1::ContainerConfig { command: vec!["sh".into()], ..Default::default() };
    assert!(spec_json(&config)["linux"]["resources"].get("pids").is_none());
    config.annotations.insert(crate::spec::PIDS_LIMIT_ANNOTATION.into(), "42".into());
    assert_eq!(spec_json(&config)["linux"]["resources"]["pids"]["limit"], 42);
    let (sandbox, image) = (v1::PodSandboxConfig::default(), image());
    for bad in ["0", "-1", "many"] {
        config.annotations.insert(crate::spec::PIDS_LIMIT_ANNOTATION.into(), bad.into());
        let e = container_spec(&input(&config, &sandbox, &image)).unwrap_err();
        assert_eq!(e.field, "annotations[io.berth.pids-limit]", "{bad}");
    }
}

#[test]
fn the_spec_joins_the_pod_and_keeps_its_mounts() {
    let c = v1::ContainerConfig {
        working_dir: "/work".into(),
        mounts: vec![v1::Mount {
            container_path: "/data/".into(),
            host_path: "/srv/data".into(),
            readonly: true,
            propagation: v1::MountPropagation::PropagationHostToContainer as i32,
            ..Default::default()
        }],
        ..Default::default()
    };
    let spec = spec_json(&c);
    assert_eq!(spec["process"]["cwd"], "/work");
    assert_eq!(spec["process"]["user"]["uid"], 1000);
    let ns = spec["linux"]["namespaces"].as_array().unwrap();
    assert!(ns.contains(&json!({ "type": "network", "path": "/run/berth/sandboxes/p1/ns/net" })));
    assert!(ns.contains(&json!({ "type": "pid" })));
    let mounts = spec["mounts"].as_array().unwrap();
    let data = mounts.iter().find(|m| m["destination"] == "/data").unwrap();
    assert_eq!(data["options"], json!(["rbind", "rslave", "ro"]));
    assert!(mounts.iter().any(|m| m["destination"] == "/etc/resolv.conf"));
    assert_eq!(spec["linux"]["rootfsPropagation"], "rslave");
    assert_eq!(spec["linux"]["cgroupsPath"], "/kubepods/pod1/c1");
    assert!(!spec["linux"]["maskedPaths"].as_array().unwrap().is_empty());
}

#[test]
fn bad_paths_are_refused_with_the_field() {
    let c =
        v1::ContainerConfig { mounts: vec![v1::Mount { container_path: "data".into(), host_path: "/x".into(), ..Default::default() }], ..Default::default() };
    let (sandbox, image) = (v1::PodSandboxConfig::default(), image());
    let e = container_spec(&input(&c, &sandbox, &image)).unwrap_err();
    assert_eq!(e.field, "mounts[0].container_path");
    let c = v1::ContainerConfig { working_dir: "rel".into(), ..Default::default() };
    assert_eq!(container_spec(&input(&c, &sandbox, &image)).unwrap_err().field, "working_dir");
}

#[test]
fn privileged_gets_everything_and_no_masks() {
    let c = v1::ContainerConfig {
        linux: Some(v1::LinuxContainerConfig {
            security_context: Some(v1::LinuxContainerSecurityContext { privileged: true, ..Default::default() }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let spec = spec_json(&c);
    assert!(spec["linux"]["maskedPaths"].as_array().is_none_or(|m| m.is_empty()));
    assert_eq!(spec["linux"]["resources"]["devices"], json!([{ "allow": true, "access": "rwm" }]));
    let sys = spec["mounts"].as_array().unwrap().iter().find(|m| m["destination"] == "/sys").unwrap().clone();
    assert!(sys["options"].as_array().unwrap().contains(&json!("rw")));
}

/// A pod's user namespace is joined by path and its maps written into the
/// spec; a volume the kubelet marks idmapped carries its maps, a plain one
/// none.
#[test]
fn user_namespace_and_idmapped_volumes_reach_the_spec() {
    let map = vec![v1::IdMapping { container_id: 0, host_id: 65536, length: 65536 }];
    let mount = |path: &str, idmapped: bool| v1::Mount {
        container_path: path.into(),
        host_path: format!("/host{path}"),
        uid_mappings: if idmapped { map.clone() } else { vec![] },
        gid_mappings: if idmapped { map.clone() } else { vec![] },
        ..Default::default()
    };
    let config = v1::ContainerConfig { mounts: vec![mount("/data", true), mount("/plain", false)], ..Default::default() };
    let (sandbox, image) = (v1::PodSandboxConfig::default(), image());
    let mut input = input(&config, &sandbox, &image);
    input.namespaces.user = Some(UserNamespace { path: "/run/berth/p1/ns/user".into(), uids: map.clone(), gids: map.clone() });
    let spec = serde_json::to_value(container_spec(&input).unwrap()).unwrap();
    let namespaces = spec["linux"]["namespaces"].as_array().unwrap();
    assert!(namespaces.contains(&json!({ "type": "user", "path": "/run/berth/p1/ns/user" })), "{namespaces:?}");
    let want = json!([{ "containerID": 0, "hostID": 65536, "size": 65536 }]);
    assert_eq!(spec["linux"]["uidMappings"], want);
    assert_eq!(spec["linux"]["gidMappings"], want);
    let mounts = spec["mounts"].as_array().unwrap();
    let find = |dest: &str| mounts.iter().find(|m| m["destination"] == dest).unwrap().clone();
    assert_eq!(find("/data")["uidMappings"], want);
    assert_eq!(find("/data")["gidMappings"], want);
    assert!(find("/plain").get("uidMappings").is_none());
}

#[test]
fn the_chosen_apparmor_profile_is_the_process_profile() {
    let (config, sandbox, image) = (v1::ContainerConfig::default(), v1::PodSandboxConfig::default(), image());
    let spec = serde_json::to_value(container_spec(&input(&config, &sandbox, &image)).unwrap()).unwrap();
    assert!(spec["process"].get("apparmorProfile").is_none(), "unconfined: no field");
    let confined = ContainerInput { apparmor_profile: Some("berth-default".into()), ..input(&config, &sandbox, &image) };
    let spec = serde_json::to_value(container_spec(&confined).unwrap()).unwrap();
    assert_eq!(spec["process"]["apparmorProfile"], "berth-default");
}

#[test]
fn an_update_replaces_the_limits_it_sets_and_keeps_the_rest() {
    let mut config = v1::ContainerConfig::default();
    config.annotations.insert(crate::spec::PIDS_LIMIT_ANNOTATION.into(), "64".into());
    config.linux = Some(v1::LinuxContainerConfig {
        resources: Some(v1::LinuxContainerResources {
            cpu_shares: 256,
            cpu_quota: 50_000,
            cpu_period: 100_000,
            memory_limit_in_bytes: 64 << 20,
            ..Default::default()
        }),
        ..Default::default()
    });
    let mut spec = spec_json(&config);
    let devices = spec["linux"]["resources"]["devices"].clone();
    assert!(devices.is_array());

    update_resources(
        spec.as_object_mut().unwrap(),
        &v1::LinuxContainerResources { cpu_shares: 512, memory_limit_in_bytes: 128 << 20, cpuset_cpus: "0".into(), ..Default::default() },
    );
    let r = &spec["linux"]["resources"];
    assert_eq!(r["cpu"], json!({ "shares": 512, "quota": 50_000, "period": 100_000, "cpus": "0" }));
    assert_eq!(r["memory"], json!({ "limit": 128 << 20 }));
    assert_eq!(r["pids"], json!({ "limit": 64 }));
    assert_eq!(r["devices"], devices);

    // A spec with no resources at all gets them.
    let mut bare = json!({ "linux": {} });
    update_resources(bare.as_object_mut().unwrap(), &v1::LinuxContainerResources { memory_limit_in_bytes: 1 << 30, ..Default::default() });
    assert_eq!(bare["linux"]["resources"], json!({ "memory": { "limit": 1 << 30 } }));
}

#[test]
fn the_recorded_limits_after_an_update_are_the_ones_that_apply() {
    let old = v1::LinuxContainerResources {
        cpu_shares: 256,
        memory_limit_in_bytes: 64 << 20,
        oom_score_adj: 500,
        unified: [("memory.high".to_string(), "50M".to_string())].into(),
        ..Default::default()
    };
    let new = v1::LinuxContainerResources {
        cpu_quota: 20_000,
        oom_score_adj: -10,
        unified: [("pids.max".to_string(), "9".to_string())].into(),
        ..Default::default()
    };
    let merged = merged_resources(&old, &new);
    assert_eq!((merged.cpu_shares, merged.cpu_quota, merged.memory_limit_in_bytes), (256, 20_000, 64 << 20));
    assert_eq!(merged.oom_score_adj, -10);
    assert_eq!(merged.unified.len(), 2);
    // The spec gets the same: what the update leaves at zero stays.
    let mut spec = serde_json::json!({ "process": { "oomScoreAdj": 500 }, "linux": { "resources": resources(&old) } });
    update_resources(spec.as_object_mut().unwrap(), &new);
    assert_eq!(spec["linux"]["resources"], resources(&merged));
    assert_eq!(spec["process"]["oomScoreAdj"], -10);
}

#[test]
fn an_update_with_quota_minus_one_lifts_the_quota() {
    let old = v1::LinuxContainerResources { cpu_quota: 50_000, cpu_period: 100_000, ..Default::default() };
    let lift = v1::LinuxContainerResources { cpu_quota: -1, ..Default::default() };
    assert_eq!(merged_resources(&old, &lift).cpu_quota, -1);
    let mut spec = serde_json::json!({ "linux": { "resources": resources(&old) } });
    update_resources(spec.as_object_mut().unwrap(), &lift);
    assert_eq!(spec["linux"]["resources"]["cpu"], json!({ "quota": -1, "period": 100_000 }));
    // Left at 0 it stays.
    assert_eq!(merged_resources(&old, &v1::LinuxContainerResources::default()).cpu_quota, 50_000);
}
