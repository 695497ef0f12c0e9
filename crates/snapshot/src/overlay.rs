use std::{collections::HashMap, path::PathBuf, sync::Mutex};

use berth_store::{load_record, save_record, Versioned};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Kind {
    Active,
    Committed,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Info {
    pub key: String,
    pub kind: Kind,
    pub parent: Option<String>,
    /// Directory number under the snapshotter root.
    pub id: u64,
    #[serde(default)]
    pub labels: HashMap<String, String>,
}

impl Versioned for Info {
    const VERSION: u32 = 1;
}

/// A mount for the caller to perform, in containerd's shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub typ: String,
    pub source: String,
    pub options: Vec<String>,
}

pub struct Overlay {
    root: PathBuf,
    /// Serialises metadata changes: snapshot operations are rare next to
    /// the file work they guard, and a single lock keeps parent/child
    /// invariants simple.
    lock: Mutex<()>,
}

impl Overlay {
    pub fn new(root: impl Into<PathBuf>) -> Result<Self> {
        let root = root.into();
        std::fs::create_dir_all(root.join("metadata")).map_err(Error::io("create", &root))?;
        Ok(Self { root, lock: Mutex::new(()) })
    }

    fn meta_path(&self, key: &str) -> PathBuf {
        self.root.join("metadata").join(format!("{}.json", sha256_hex(key)))
    }

    fn dir(&self, id: u64) -> PathBuf {
        self.root.join(id.to_string())
    }

    /// The directory holding a snapshot's files.
    pub fn fs_dir(&self, info: &Info) -> PathBuf {
        self.dir(info.id).join("fs")
    }

    pub fn stat(&self, key: &str) -> Result<Info> {
        load_record::<Info>(&self.meta_path(key)).map_err(|e| if e.is_not_found() { Error::NotFound(key.into()) } else { e.into() })
    }

    pub fn exists(&self, key: &str) -> bool {
        self.meta_path(key).exists()
    }

    /// Every snapshot, in no particular order.
    pub fn list(&self) -> Result<Vec<Info>> {
        let dir = self.root.join("metadata");
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&dir).map_err(Error::io("read", &dir))? {
            let path = entry.map_err(Error::io("read", &dir))?.path();
            if path.extension().is_some_and(|e| e == "json") {
                match load_record::<Info>(&path) {
                    Ok(info) => out.push(info),
                    // Removed between the directory read and this one (list
                    // takes no lock): gone, so not listed.
                    Err(e) if e.is_not_found() => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Ok(out)
    }

    /// Creates a writable snapshot on `parent` (a committed snapshot) and
    /// returns the mounts that show it.
    pub fn prepare(&self, key: &str, parent: Option<&str>) -> Result<Vec<Mount>> {
        let _g = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        if self.exists(key) {
            return Err(Error::AlreadyExists(key.into()));
        }
        if let Some(p) = parent {
            let pinfo = self.stat(p)?;
            if pinfo.kind != Kind::Committed {
                return Err(Error::FailedPrecondition { key: p.into(), reason: "parent must be committed".into() });
            }
        }
        let id = self.next_id()?;
        let dir = self.dir(id);
        for sub in ["fs", "work"] {
            std::fs::create_dir_all(dir.join(sub)).map_err(Error::io("create", dir.join(sub)))?;
        }
        let info = Info { key: key.into(), kind: Kind::Active, parent: parent.map(Into::into), id, labels: HashMap::new() };
        if let Err(e) = save_record(&self.meta_path(key), &info) {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(e.into());
        }
        self.mounts_of(&info)
    }

    /// Turns active `key` into committed `name` (a chain ID), read-only
    /// from then on and usable as a parent.
    pub fn commit(&self, name: &str, key: &str) -> Result<Info> {
        let _g = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let mut info = self.stat(key)?;
        if info.kind != Kind::Active {
            return Err(Error::FailedPrecondition { key: key.into(), reason: "only an active snapshot can be committed".into() });
        }
        if self.exists(name) {
            return Err(Error::AlreadyExists(name.into()));
        }
        info.key = name.into();
        info.kind = Kind::Committed;
        // A committed layer never needs its workdir again.
        let _ = std::fs::remove_dir_all(self.dir(info.id).join("work"));
        save_record(&self.meta_path(name), &info)?;
        std::fs::remove_file(self.meta_path(key)).map_err(Error::io("remove", self.meta_path(key)))?;
        Ok(info)
    }

    /// The mounts that show snapshot `key`: overlay over its parents, or a
    /// bind of its own directory when it has none.
    pub fn mounts(&self, key: &str) -> Result<Vec<Mount>> {
        let info = self.stat(key)?;
        self.mounts_of(&info)
    }

    fn mounts_of(&self, info: &Info) -> Result<Vec<Mount>> {
        let mut lowers = Vec::new();
        let mut next = info.parent.clone();
        while let Some(p) = next {
            let pinfo = self.stat(&p)?;
            lowers.push(self.fs_dir(&pinfo).display().to_string());
            next = pinfo.parent;
        }
        let fs = self.fs_dir(info).display().to_string();
        let readonly = info.kind == Kind::Committed;
        if lowers.is_empty() {
            let rw = if readonly { "ro" } else { "rw" };
            return Ok(vec![Mount { typ: "bind".into(), source: fs, options: vec!["rbind".into(), rw.into()] }]);
        }
        let mut options = Vec::new();
        if readonly {
            // A view of a committed layer: all of it read-only, no upper.
            lowers.insert(0, fs);
        } else {
            options.push(format!("workdir={}", self.dir(info.id).join("work").display()));
            options.push(format!("upperdir={fs}"));
        }
        options.push(format!("lowerdir={}", lowers.join(":")));
        options.push("index=off".into());
        Ok(vec![Mount { typ: "overlay".into(), source: "overlay".into(), options }])
    }

    /// Removes a snapshot nothing is built on. Missing is fine (idempotent).
    pub fn remove(&self, key: &str) -> Result<()> {
        match self.detach(key)? {
            Some(dir) => std::fs::remove_dir_all(&dir).map_err(Error::io("remove", dir)),
            None => Ok(()),
        }
    }

    /// Removes a snapshot's record (nothing may be built on it) and returns
    /// its directory for the caller to delete: a layer's tree can take a
    /// while, and a garbage collection deletes it after letting go of its
    /// locks. Until then the directory keeps its number taken, and if
    /// berthd dies first start-up collection removes it. `None`: no such
    /// snapshot.
    pub fn detach(&self, key: &str) -> Result<Option<PathBuf>> {
        let _g = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let info = match self.stat(key) {
            Ok(i) => i,
            Err(Error::NotFound(_)) => return Ok(None),
            Err(e) => return Err(e),
        };
        if let Some(child) = self.list()?.into_iter().find(|s| s.parent.as_deref() == Some(key)) {
            return Err(Error::FailedPrecondition { key: key.into(), reason: format!("snapshot {:?} is built on it", child.key) });
        }
        // Metadata first: a crash after it leaves an orphan directory that
        // start-up collection removes, never a record pointing at nothing.
        std::fs::remove_file(self.meta_path(key)).map_err(Error::io("remove", self.meta_path(key)))?;
        Ok(Some(self.dir(info.id)))
    }

    /// Directories no record points at (a crash mid-prepare or mid-remove),
    /// and record temp files a crash left half-written.
    pub fn collect_orphans(&self) -> Result<usize> {
        let _g = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        berth_store::remove_stale_temps(&self.root.join("metadata"))?;
        let live: Vec<u64> = self.list()?.iter().map(|i| i.id).collect();
        let mut removed = 0;
        for entry in std::fs::read_dir(&self.root).map_err(Error::io("read", &self.root))? {
            let entry = entry.map_err(Error::io("read", &self.root))?;
            let Some(id) = entry.file_name().to_str().and_then(|n| n.parse::<u64>().ok()) else { continue };
            if !live.contains(&id) {
                std::fs::remove_dir_all(entry.path()).map_err(Error::io("remove", entry.path()))?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    fn next_id(&self) -> Result<u64> {
        let mut max = 0;
        for entry in std::fs::read_dir(&self.root).map_err(Error::io("read", &self.root))? {
            let entry = entry.map_err(Error::io("read", &self.root))?;
            if let Some(id) = entry.file_name().to_str().and_then(|n| n.parse::<u64>().ok()) {
                max = max.max(id);
            }
        }
        Ok(max + 1)
    }
}

/// Keys (chain IDs, container ids) become file names through a hash, so
/// no key can name a path.
fn sha256_hex(s: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(s.as_bytes()))
}

#[cfg(test)]
mod tests {
    use std::{fs, path::Path};

    use nix::mount::{mount, umount, MsFlags};

    use super::*;

    fn mount_all(mounts: &[Mount], target: &Path) {
        for m in mounts {
            let (typ, flags) = if m.typ == "bind" { (None, MsFlags::MS_BIND | MsFlags::MS_REC) } else { (Some(m.typ.as_str()), MsFlags::empty()) };
            let data: Vec<&str> = m.options.iter().map(String::as_str).filter(|o| o.contains('=')).collect();
            mount(Some(m.source.as_str()), target, typ, flags, Some(data.join(",").as_str())).unwrap();
        }
    }

    #[test]
    fn layers_stack_and_the_container_layer_is_thin() {
        let tmp = tempfile::tempdir().unwrap();
        let sn = Overlay::new(tmp.path().join("overlayfs")).unwrap();
        // Layer 1: a file. Layer 2 on it: another.
        sn.prepare("extract-1", None).unwrap();
        let l1 = sn.stat("extract-1").unwrap();
        fs::write(sn.fs_dir(&l1).join("base.txt"), "base").unwrap();
        sn.commit("sha256:chain1", "extract-1").unwrap();
        sn.prepare("extract-2", Some("sha256:chain1")).unwrap();
        let l2 = sn.stat("extract-2").unwrap();
        fs::write(sn.fs_dir(&l2).join("app.txt"), "app").unwrap();
        sn.commit("sha256:chain2", "extract-2").unwrap();
        // Two containers on the same image layers.
        let m = sn.prepare("ctr-a", Some("sha256:chain2")).unwrap();
        sn.prepare("ctr-b", Some("sha256:chain2")).unwrap();
        assert_eq!(m[0].typ, "overlay");
        let lower = m[0].options.iter().find(|o| o.starts_with("lowerdir=")).unwrap();
        let want = format!("lowerdir={}:{}", sn.fs_dir(&l2).display(), sn.fs_dir(&l1).display());
        assert_eq!(lower, &want, "topmost layer first");

        if nix::unistd::geteuid().is_root() {
            let target = tmp.path().join("rootfs");
            fs::create_dir_all(&target).unwrap();
            mount_all(&m, &target);
            let seen = (fs::read_to_string(target.join("base.txt")).unwrap(), fs::read_to_string(target.join("app.txt")).unwrap());
            fs::write(target.join("new.txt"), "mine").unwrap();
            umount(&target).unwrap();
            assert_eq!(seen, ("base".into(), "app".into()));
            let a = sn.stat("ctr-a").unwrap();
            assert_eq!(fs::read_to_string(sn.fs_dir(&a).join("new.txt")).unwrap(), "mine");
            assert!(!sn.fs_dir(&sn.stat("sha256:chain2").unwrap()).join("new.txt").exists(), "image layer untouched");
        }

        // A layer in use cannot go; the containers' can, then it can.
        assert!(matches!(sn.remove("sha256:chain2"), Err(Error::FailedPrecondition { .. })));
        sn.remove("ctr-a").unwrap();
        sn.remove("ctr-b").unwrap();
        sn.remove("ctr-b").unwrap();
        sn.remove("sha256:chain2").unwrap();
        sn.remove("sha256:chain1").unwrap();
        assert!(sn.list().unwrap().is_empty());
    }

    #[test]
    fn misuse_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let sn = Overlay::new(tmp.path()).unwrap();
        sn.prepare("a", None).unwrap();
        assert!(matches!(sn.prepare("a", None), Err(Error::AlreadyExists(_))));
        assert!(matches!(sn.prepare("b", Some("a")), Err(Error::FailedPrecondition { .. })), "active parent");
        assert!(matches!(sn.prepare("c", Some("missing")), Err(Error::NotFound(_))));
        sn.commit("L", "a").unwrap();
        assert!(matches!(sn.commit("L2", "L"), Err(Error::FailedPrecondition { .. })));
        let m = sn.mounts("L").unwrap();
        assert_eq!(m[0].typ, "bind");
        assert!(m[0].options.contains(&"ro".to_string()));
    }

    #[test]
    fn state_survives_a_new_instance_and_orphans_are_collected() {
        let tmp = tempfile::tempdir().unwrap();
        {
            let sn = Overlay::new(tmp.path()).unwrap();
            sn.prepare("a", None).unwrap();
            sn.commit("L", "a").unwrap();
        }
        fs::create_dir_all(tmp.path().join("99/fs")).unwrap();
        let sn = Overlay::new(tmp.path()).unwrap();
        assert_eq!(sn.stat("L").unwrap().kind, Kind::Committed);
        assert_eq!(sn.collect_orphans().unwrap(), 1);
        assert!(!tmp.path().join("99").exists());
        assert!(sn.fs_dir(&sn.stat("L").unwrap()).exists());
    }
}
