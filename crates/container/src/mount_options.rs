//! OCI mount options (`ro`, `rbind`, `nosuid`, `rslave`, `mode=755`...) into
//! mount(2) flags, propagation and data.

use nix::mount::MsFlags;

#[derive(Debug, Clone, PartialEq)]
pub struct MountOptions {
    pub flags: MsFlags,
    /// MS_SHARED / MS_SLAVE / MS_PRIVATE / MS_UNBINDABLE (+MS_REC), applied
    /// by a separate mount(2) call as the kernel requires.
    pub propagation: MsFlags,
    /// Filesystem-specific options passed as the data string.
    pub data: Vec<String>,
    /// `rro`, or `ro` on an `rbind`: read-only all the way down.
    pub recursive_readonly: bool,
}

impl Default for MountOptions {
    fn default() -> Self {
        Self { flags: MsFlags::empty(), propagation: MsFlags::empty(), data: Vec::new(), recursive_readonly: false }
    }
}

impl MountOptions {
    pub fn is_bind(&self) -> bool {
        self.flags.contains(MsFlags::MS_BIND)
    }

    pub fn data(&self) -> Option<String> {
        (!self.data.is_empty()).then(|| self.data.join(","))
    }
}

pub fn parse(options: &[String]) -> MountOptions {
    let mut o = MountOptions::default();
    for opt in options {
        let (set, clear, prop): (MsFlags, MsFlags, MsFlags) = match opt.as_str() {
            // Only the mount itself: submounts of an rbind keep their own
            // flags (the CRI's plain read-only). `rro` is all of them.
            "ro" => (MsFlags::MS_RDONLY, MsFlags::empty(), MsFlags::empty()),
            "rw" => (MsFlags::empty(), MsFlags::MS_RDONLY, MsFlags::empty()),
            "rro" => {
                o.recursive_readonly = true;
                (MsFlags::MS_RDONLY, MsFlags::empty(), MsFlags::empty())
            }
            "rrw" => (MsFlags::empty(), MsFlags::MS_RDONLY, MsFlags::empty()),
            "bind" => (MsFlags::MS_BIND, MsFlags::empty(), MsFlags::empty()),
            "rbind" => (MsFlags::MS_BIND | MsFlags::MS_REC, MsFlags::empty(), MsFlags::empty()),
            "nosuid" => (MsFlags::MS_NOSUID, MsFlags::empty(), MsFlags::empty()),
            "suid" => (MsFlags::empty(), MsFlags::MS_NOSUID, MsFlags::empty()),
            "nodev" => (MsFlags::MS_NODEV, MsFlags::empty(), MsFlags::empty()),
            "dev" => (MsFlags::empty(), MsFlags::MS_NODEV, MsFlags::empty()),
            "noexec" => (MsFlags::MS_NOEXEC, MsFlags::empty(), MsFlags::empty()),
            "exec" => (MsFlags::empty(), MsFlags::MS_NOEXEC, MsFlags::empty()),
            "sync" => (MsFlags::MS_SYNCHRONOUS, MsFlags::empty(), MsFlags::empty()),
            "async" => (MsFlags::empty(), MsFlags::MS_SYNCHRONOUS, MsFlags::empty()),
            "dirsync" => (MsFlags::MS_DIRSYNC, MsFlags::empty(), MsFlags::empty()),
            "remount" => (MsFlags::MS_REMOUNT, MsFlags::empty(), MsFlags::empty()),
            "mand" => (MsFlags::MS_MANDLOCK, MsFlags::empty(), MsFlags::empty()),
            "nomand" => (MsFlags::empty(), MsFlags::MS_MANDLOCK, MsFlags::empty()),
            "atime" => (MsFlags::empty(), MsFlags::MS_NOATIME, MsFlags::empty()),
            "noatime" => (MsFlags::MS_NOATIME, MsFlags::empty(), MsFlags::empty()),
            "diratime" => (MsFlags::empty(), MsFlags::MS_NODIRATIME, MsFlags::empty()),
            "nodiratime" => (MsFlags::MS_NODIRATIME, MsFlags::empty(), MsFlags::empty()),
            "relatime" => (MsFlags::MS_RELATIME, MsFlags::empty(), MsFlags::empty()),
            "norelatime" => (MsFlags::empty(), MsFlags::MS_RELATIME, MsFlags::empty()),
            "strictatime" => (MsFlags::MS_STRICTATIME, MsFlags::empty(), MsFlags::empty()),
            "nostrictatime" => (MsFlags::empty(), MsFlags::MS_STRICTATIME, MsFlags::empty()),
            "private" => (MsFlags::empty(), MsFlags::empty(), MsFlags::MS_PRIVATE),
            "rprivate" => (MsFlags::empty(), MsFlags::empty(), MsFlags::MS_PRIVATE | MsFlags::MS_REC),
            "shared" => (MsFlags::empty(), MsFlags::empty(), MsFlags::MS_SHARED),
            "rshared" => (MsFlags::empty(), MsFlags::empty(), MsFlags::MS_SHARED | MsFlags::MS_REC),
            "slave" => (MsFlags::empty(), MsFlags::empty(), MsFlags::MS_SLAVE),
            "rslave" => (MsFlags::empty(), MsFlags::empty(), MsFlags::MS_SLAVE | MsFlags::MS_REC),
            "unbindable" => (MsFlags::empty(), MsFlags::empty(), MsFlags::MS_UNBINDABLE),
            "runbindable" => (MsFlags::empty(), MsFlags::empty(), MsFlags::MS_UNBINDABLE | MsFlags::MS_REC),
            // Options the runtime handles elsewhere or that carry no flag.
            "defaults" | "idmap" | "ridmap" => (MsFlags::empty(), MsFlags::empty(), MsFlags::empty()),
            other => {
                o.data.push(other.to_string());
                continue;
            }
        };
        o.flags.insert(set);
        o.flags.remove(clear);
        if !prop.is_empty() {
            o.propagation = prop;
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(list: &[&str]) -> MountOptions {
        parse(&list.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn flags_data_and_propagation_are_separated() {
        let o = opts(&["nosuid", "noexec", "nodev", "mode=755", "size=65536k"]);
        assert_eq!(o.flags, MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC | MsFlags::MS_NODEV);
        assert_eq!(o.data().as_deref(), Some("mode=755,size=65536k"));
        let o = opts(&["rbind", "rslave", "ro"]);
        assert!(o.is_bind() && !o.recursive_readonly, "plain ro is the top mount only");
        assert!(opts(&["rbind", "ro", "rro"]).recursive_readonly);
        assert_eq!(o.propagation, MsFlags::MS_SLAVE | MsFlags::MS_REC);
    }

    #[test]
    fn later_options_win() {
        assert!(!opts(&["ro", "rw"]).flags.contains(MsFlags::MS_RDONLY));
        assert!(!opts(&["bind", "ro"]).recursive_readonly);
        assert!(opts(&["bind", "rro"]).recursive_readonly);
    }
}
