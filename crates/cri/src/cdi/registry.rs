//! The CDI spec files of the spec directories, read afresh for each
//! container that asks for a device: a device plugin that drops a spec
//! file is seen at once, with no restart and no cache to go stale.
//!
//! A later directory wins over an earlier one (the CDI specification's
//! order, `/etc/cdi` then `/var/run/cdi`: what a driver generates at run
//! time replaces the static files). Two files of the same directory that
//! define the same device are a conflict, reported when that device is
//! asked for. A file that does not parse is logged; it fails only the
//! containers that ask for a device it may hold.

use std::path::{Path, PathBuf};

use super::{
    names::{self, QualifiedName},
    spec::{self, DeviceSpec, SpecFile},
};

/// One parsed spec file and the directory (its index) it came from.
#[derive(Debug)]
pub struct LoadedSpec {
    pub path: PathBuf,
    pub dir: usize,
    pub spec: SpecFile,
}

#[derive(Debug, Default)]
pub struct Registry {
    pub dirs: Vec<PathBuf>,
    pub specs: Vec<LoadedSpec>,
    /// Files that failed to read or parse, with why.
    pub broken: Vec<(PathBuf, String)>,
}

/// Where a requested device was found.
pub struct Found<'a> {
    pub spec: &'a LoadedSpec,
    pub device: &'a DeviceSpec,
}

impl Registry {
    /// Reads every `*.json`, `*.yaml` and `*.yml` file of `dirs`, in
    /// lexical order per directory. A missing directory holds nothing.
    pub fn load(dirs: &[PathBuf]) -> Registry {
        let mut registry = Registry { dirs: dirs.to_vec(), ..Default::default() };
        for (index, dir) in dirs.iter().enumerate() {
            let entries = match std::fs::read_dir(dir) {
                Ok(entries) => entries,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => {
                    tracing::warn!(dir = %dir.display(), error = %e, "CDI spec directory unreadable");
                    continue;
                }
            };
            let mut files: Vec<PathBuf> = entries.flatten().map(|e| e.path()).filter(|p| is_spec_file(p)).collect();
            files.sort();
            for path in files {
                match std::fs::read_to_string(&path).map_err(|e| e.to_string()).and_then(|text| spec::parse(&path, &text)) {
                    Ok(spec) => registry.specs.push(LoadedSpec { path, dir: index, spec }),
                    Err(e) => {
                        tracing::warn!(path = %path.display(), error = %e, "CDI spec file skipped");
                        registry.broken.push((path, e));
                    }
                }
            }
        }
        registry
    }

    /// The definition of `name`: from the last directory that has one.
    /// `Err` when that directory defines it twice.
    pub fn find(&self, name: &QualifiedName) -> Result<Option<Found<'_>>, String> {
        let kind = name.kind();
        let defs: Vec<Found<'_>> = self
            .specs
            .iter()
            .filter(|s| s.spec.kind == kind)
            .flat_map(|s| s.spec.devices.iter().filter(|d| d.name == name.name).map(move |device| Found { spec: s, device }))
            .collect();
        let Some(last_dir) = defs.iter().map(|f| f.spec.dir).max() else { return Ok(None) };
        let mut winners = defs.into_iter().filter(|f| f.spec.dir == last_dir);
        let first = winners.next().expect("a definition in the last directory");
        if let Some(second) = winners.next() {
            return Err(format!("CDI device \"{name}\" is defined by both {} and {}", first.spec.path.display(), second.spec.path.display()));
        }
        Ok(Some(first))
    }

    /// Why a device was not found, for messages: the directories searched
    /// and the files that failed to parse (one of which may define it).
    pub fn searched(&self) -> String {
        let dirs = self.dirs.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(", ");
        if self.broken.is_empty() {
            return format!("searched {dirs}");
        }
        let broken: Vec<String> = self.broken.iter().map(|(p, e)| format!("{}: {e}", p.display())).collect();
        format!("searched {dirs}; spec files that fail to parse, which may define it: {}", broken.join("; "))
    }
}

fn is_spec_file(path: &Path) -> bool {
    matches!(path.extension().and_then(|e| e.to_str()), Some("json" | "yaml" | "yml")) && path.is_file()
}

/// Parses a request's name; kept here so callers need not know `names`.
pub fn parse_name(text: &str) -> Result<QualifiedName, String> {
    names::parse_qualified(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(kind: &str, device: &str, env: &str) -> String {
        format!("cdiVersion: \"0.6.0\"\nkind: {kind}\ndevices:\n  - name: \"{device}\"\n    containerEdits:\n      env: [\"{env}\"]\n")
    }

    #[test]
    fn the_later_directory_wins_and_a_same_directory_duplicate_is_a_conflict() {
        let tmp = tempfile::tempdir().unwrap();
        let (etc, run) = (tmp.path().join("etc"), tmp.path().join("run"));
        std::fs::create_dir_all(&etc).unwrap();
        std::fs::create_dir_all(&run).unwrap();
        std::fs::write(etc.join("a.yaml"), spec("v.example/gpu", "0", "FROM=etc")).unwrap();
        std::fs::write(run.join("a.json"), r#"{"cdiVersion":"0.5.0","kind":"v.example/gpu","devices":[{"name":"0","containerEdits":{"env":["FROM=run"]}}]}"#)
            .unwrap();
        std::fs::write(etc.join("b.yml"), spec("v.example/gpu", "1", "X=1")).unwrap();
        std::fs::write(etc.join("c.yml"), spec("v.example/gpu", "1", "X=2")).unwrap();
        std::fs::write(etc.join("ignored.txt"), "not a spec").unwrap();
        let r = Registry::load(&[etc.clone(), run, tmp.path().join("missing")]);
        assert!(r.broken.is_empty(), "{:?}", r.broken);
        let found = r.find(&parse_name("v.example/gpu=0").unwrap()).unwrap().unwrap();
        assert_eq!(found.device.container_edits.env, ["FROM=run"]);
        let e = r.find(&parse_name("v.example/gpu=1").unwrap()).err().unwrap();
        assert!(e.contains("b.yml") && e.contains("c.yml"), "{e}");
        assert!(r.find(&parse_name("v.example/gpu=2").unwrap()).unwrap().is_none());
        assert!(r.find(&parse_name("other.example/gpu=0").unwrap()).unwrap().is_none());
        assert!(r.searched().starts_with("searched ") && r.searched().ends_with("/missing"));
    }

    #[test]
    fn a_broken_file_is_named_when_an_unknown_device_is_asked_for() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("good.yaml"), spec("v.example/gpu", "0", "A=1")).unwrap();
        std::fs::write(tmp.path().join("bad.yaml"), "cdiVersion: [").unwrap();
        let r = Registry::load(&[tmp.path().to_path_buf()]);
        assert_eq!(r.broken.len(), 1);
        assert!(r.find(&parse_name("v.example/gpu=0").unwrap()).unwrap().is_some(), "the good file still serves");
        assert!(r.find(&parse_name("v.example/gpu=9").unwrap()).unwrap().is_none());
        let why = r.searched();
        assert!(why.contains("bad.yaml: ") && why.contains("fail to parse"), "{why}");
    }
}
