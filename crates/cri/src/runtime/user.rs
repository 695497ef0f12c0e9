//! Who a container's process runs as: the security context's uid or
//! username, else the image's `User`, looked up in the image's own
//! /etc/passwd and /etc/group (never the host's).

use std::path::PathBuf;

use berth_oci::container::ResolvedUser;
use berth_snapshot::Mount;
use k8s_cri::v1;

use crate::error::{Error, Result};

/// The layers of a container's rootfs, top first, to read image files
/// without mounting anything.
pub struct ImageFiles {
    layers: Vec<PathBuf>,
}

impl ImageFiles {
    pub fn from_mounts(mounts: &[Mount]) -> Self {
        let mut layers = Vec::new();
        for m in mounts {
            if m.typ == "bind" {
                layers.push(PathBuf::from(&m.source));
            }
            for opt in &m.options {
                if let Some(dir) = opt.strip_prefix("upperdir=") {
                    layers.insert(0, PathBuf::from(dir));
                }
                if let Some(dirs) = opt.strip_prefix("lowerdir=") {
                    layers.extend(dirs.split(':').map(PathBuf::from));
                }
            }
        }
        Self { layers }
    }

    /// The file as the container will see it (a whiteout hides it; the
    /// rare whiteout of /etc/passwd just reads as absent).
    pub fn read(&self, path: &str) -> Option<String> {
        let rel = path.trim_start_matches('/');
        self.layers.iter().find_map(|l| std::fs::read_to_string(l.join(rel)).ok())
    }
}

struct Passwd {
    name: String,
    uid: u32,
    gid: u32,
}

fn passwd(files: &ImageFiles) -> Vec<Passwd> {
    let text = files.read("/etc/passwd").unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            Some(Passwd { name: f.first()?.to_string(), uid: f.get(2)?.parse().ok()?, gid: f.get(3)?.parse().ok()? })
        })
        .collect()
}

/// (name, gid, members) of every group.
fn groups(files: &ImageFiles) -> Vec<(String, u32, Vec<String>)> {
    let text = files.read("/etc/group").unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            let members = f.get(3).map(|m| m.split(',').filter(|s| !s.is_empty()).map(String::from).collect()).unwrap_or_default();
            Some((f.first()?.to_string(), f.get(2)?.parse().ok()?, members))
        })
        .collect()
}

pub fn resolve(files: &ImageFiles, sc: Option<&v1::LinuxContainerSecurityContext>, image_user: &str) -> Result<ResolvedUser> {
    let users = passwd(files);
    // The CRI: run_as_group "should only be specified when run_as_user or
    // run_as_username is specified; otherwise, the runtime MUST error".
    // A group alone would pair with whatever user the image names.
    if let Some(s) = sc.filter(|s| s.run_as_group.is_some() && s.run_as_user.is_none() && s.run_as_username.is_empty()) {
        let g = s.run_as_group.as_ref().map(|g| g.value).unwrap_or_default();
        return Err(Error::InvalidArgument(format!("config.linux.security_context.run_as_group ({g}) is set without run_as_user or run_as_username")));
    }
    let (uid, mut gid, name) = if let Some(uid) = sc.and_then(|s| s.run_as_user.as_ref()) {
        let uid = to_id("config.linux.security_context.run_as_user", uid.value)?;
        let entry = users.iter().find(|u| u.uid == uid);
        (uid, entry.map(|u| u.gid), entry.map(|u| u.name.clone()))
    } else if let Some(name) = sc.map(|s| s.run_as_username.as_str()).filter(|n| !n.is_empty()) {
        let u = users
            .iter()
            .find(|u| u.name == name)
            .ok_or_else(|| Error::InvalidArgument(format!("config.linux.security_context.run_as_username: no user {name:?} in the image's /etc/passwd")))?;
        (u.uid, Some(u.gid), Some(u.name.clone()))
    } else {
        let mut parts = image_user.splitn(2, ':');
        let (user, group) = (parts.next().unwrap_or(""), parts.next());
        let (uid, gid, name) = match user {
            "" => (0, Some(0), Some("root".to_string())),
            u => match u.parse::<u32>() {
                Ok(uid) => {
                    let entry = users.iter().find(|p| p.uid == uid);
                    (uid, entry.map(|p| p.gid), entry.map(|p| p.name.clone()))
                }
                Err(_) => {
                    let p = users
                        .iter()
                        .find(|p| p.name == u)
                        .ok_or_else(|| Error::InvalidArgument(format!("image user {u:?} is not in the image's /etc/passwd")))?;
                    (p.uid, Some(p.gid), Some(p.name.clone()))
                }
            },
        };
        let gid = match group {
            None | Some("") => gid,
            Some(g) => Some(match g.parse::<u32>() {
                Ok(n) => n,
                Err(_) => groups(files)
                    .iter()
                    .find(|(n, _, _)| n == g)
                    .map(|(_, id, _)| *id)
                    .ok_or_else(|| Error::InvalidArgument(format!("image group {g:?} is not in the image's /etc/group")))?,
            }),
        };
        (uid, gid, name)
    };
    if let Some(g) = sc.and_then(|s| s.run_as_group.as_ref()) {
        gid = Some(to_id("config.linux.security_context.run_as_group", g.value)?);
    }
    let gid = gid.unwrap_or(0);
    let policy = sc.map(|s| s.supplemental_groups_policy).unwrap_or_default();
    let strict = match v1::SupplementalGroupsPolicy::try_from(policy) {
        Ok(v1::SupplementalGroupsPolicy::Merge) => false,
        Ok(v1::SupplementalGroupsPolicy::Strict) => true,
        Err(_) => {
            return Err(Error::InvalidArgument(format!("config.linux.security_context.supplemental_groups_policy: unknown value {policy}")));
        }
    };
    // The primary group is in the list, as containerd and CRI-O put it:
    // the process's groups (getgroups(2), `id -G`) and the status's
    // ContainerUser then say the same. Merge adds the groups the image's
    // /etc/group gives the user; Strict only what the pod asked for.
    let mut additional_gids = vec![gid];
    if let (false, Some(n)) = (strict, &name) {
        additional_gids.extend(groups(files).into_iter().filter(|(_, _, m)| m.contains(n)).map(|(_, id, _)| id));
    }
    for g in sc.map(|s| s.supplemental_groups.as_slice()).unwrap_or(&[]) {
        additional_gids.push(to_id("config.linux.security_context.supplemental_groups", *g)?);
    }
    additional_gids.sort_unstable();
    additional_gids.dedup();
    Ok(ResolvedUser { uid, gid, additional_gids })
}

fn to_id(field: &str, value: i64) -> Result<u32> {
    u32::try_from(value).ok().filter(|v| *v != u32::MAX).ok_or_else(|| Error::InvalidArgument(format!("{field}: {value} is not a valid uid/gid")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image() -> (tempfile::TempDir, ImageFiles) {
        let dir = tempfile::tempdir().unwrap();
        let (lower, upper) = (dir.path().join("lower"), dir.path().join("upper"));
        std::fs::create_dir_all(lower.join("etc")).unwrap();
        std::fs::create_dir_all(&upper).unwrap();
        std::fs::write(lower.join("etc/passwd"), "root:x:0:0::/root:/bin/sh\nweb:x:1000:1001::/home/web:/bin/sh\n").unwrap();
        std::fs::write(lower.join("etc/group"), "root:x:0:\nweb:x:1001:\nvideo:x:44:web\n").unwrap();
        let mounts = vec![Mount {
            typ: "overlay".into(),
            source: "overlay".into(),
            options: vec![format!("upperdir={}", upper.display()), format!("lowerdir={}", lower.display())],
        }];
        (dir, ImageFiles::from_mounts(&mounts))
    }

    #[test]
    fn users_come_from_the_image() {
        let (_d, files) = image();
        assert_eq!(resolve(&files, None, "").unwrap(), ResolvedUser { uid: 0, gid: 0, additional_gids: vec![0] });
        assert_eq!(resolve(&files, None, "web").unwrap(), ResolvedUser { uid: 1000, gid: 1001, additional_gids: vec![44, 1001] });
        assert_eq!(resolve(&files, None, "1000:44").unwrap().gid, 44);
        assert_eq!(resolve(&files, None, "4242").unwrap(), ResolvedUser { uid: 4242, gid: 0, additional_gids: vec![0] });
        let sc = v1::LinuxContainerSecurityContext { run_as_username: "web".into(), supplemental_groups: vec![7], ..Default::default() };
        assert_eq!(resolve(&files, Some(&sc), "").unwrap().additional_gids, vec![7, 44, 1001]);
        let strict = v1::LinuxContainerSecurityContext { supplemental_groups_policy: v1::SupplementalGroupsPolicy::Strict as i32, ..sc.clone() };
        assert_eq!(resolve(&files, Some(&strict), "").unwrap().additional_gids, vec![7, 1001], "Strict leaves out the image's groups");
        let group_alone = v1::LinuxContainerSecurityContext { run_as_group: Some(v1::Int64Value { value: 5 }), ..Default::default() };
        assert!(resolve(&files, Some(&group_alone), "web").unwrap_err().to_string().contains("run_as_group"));
        let sc = v1::LinuxContainerSecurityContext {
            run_as_user: Some(v1::Int64Value { value: 1000 }),
            run_as_group: Some(v1::Int64Value { value: 5 }),
            ..Default::default()
        };
        assert_eq!(resolve(&files, Some(&sc), "root").unwrap().gid, 5);
        let sc = v1::LinuxContainerSecurityContext { run_as_username: "ghost".into(), ..Default::default() };
        assert!(resolve(&files, Some(&sc), "").unwrap_err().to_string().contains("run_as_username"));
        assert!(resolve(&files, None, "ghost").is_err());
        let sc = v1::LinuxContainerSecurityContext { run_as_user: Some(v1::Int64Value { value: -1 }), ..Default::default() };
        assert!(resolve(&files, Some(&sc), "").is_err());
    }
}
