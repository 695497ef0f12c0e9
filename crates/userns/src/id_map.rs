//! The id maps of a user namespace, as `/proc/<pid>/uid_map` takes them.

use crate::error::{Error, Result};

/// `size` ids from `container_id` inside the namespace are `host_id`... on
/// the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdMapping {
    pub container_id: u32,
    pub host_id: u32,
    pub size: u32,
}

/// The uid and gid maps of one user namespace.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IdMap {
    pub uids: Vec<IdMapping>,
    pub gids: Vec<IdMapping>,
}

/// The kernel takes at most this many lines per map (Linux 4.15+).
const MAX_RANGES: usize = 340;

impl IdMap {
    /// Checks what the kernel would refuse, naming the map: empty maps,
    /// empty ranges, ranges that wrap past u32, overlapping ranges.
    pub fn validate(&self) -> Result<()> {
        for (name, ranges) in [("uids", &self.uids), ("gids", &self.gids)] {
            if ranges.is_empty() {
                return Err(Error::IdMap(format!("{name}: no mapping")));
            }
            if ranges.len() > MAX_RANGES {
                return Err(Error::IdMap(format!("{name}: {} mappings, the kernel takes at most {MAX_RANGES}", ranges.len())));
            }
            for (i, r) in ranges.iter().enumerate() {
                if r.size == 0 {
                    return Err(Error::IdMap(format!("{name}[{i}]: length is 0")));
                }
                if r.container_id.checked_add(r.size - 1).is_none() || r.host_id.checked_add(r.size - 1).is_none() {
                    return Err(Error::IdMap(format!("{name}[{i}]: {} ids from {} (host {}) run past 2^32", r.size, r.container_id, r.host_id)));
                }
                for (j, other) in ranges.iter().enumerate().take(i) {
                    let overlaps = |a: u32, b: u32| a < b.saturating_add(other.size) && b < a.saturating_add(r.size);
                    if overlaps(r.container_id, other.container_id) || overlaps(r.host_id, other.host_id) {
                        return Err(Error::IdMap(format!("{name}[{i}] overlaps {name}[{j}]")));
                    }
                }
            }
        }
        Ok(())
    }

    /// The host uid that `uid` in the namespace is, if it is mapped.
    pub fn host_uid(&self, uid: u32) -> Option<u32> {
        to_host(&self.uids, uid)
    }

    /// The host gid that `gid` in the namespace is, if it is mapped.
    pub fn host_gid(&self, gid: u32) -> Option<u32> {
        to_host(&self.gids, gid)
    }
}

fn to_host(ranges: &[IdMapping], id: u32) -> Option<u32> {
    ranges.iter().find(|r| id >= r.container_id && id - r.container_id < r.size).map(|r| r.host_id + (id - r.container_id))
}

/// The text written to `/proc/<pid>/{uid,gid}_map`: one range a line.
pub(crate) fn proc_text(ranges: &[IdMapping]) -> String {
    ranges.iter().map(|r| format!("{} {} {}\n", r.container_id, r.host_id, r.size)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(uids: &[(u32, u32, u32)]) -> IdMap {
        let ranges: Vec<IdMapping> = uids.iter().map(|&(c, h, s)| IdMapping { container_id: c, host_id: h, size: s }).collect();
        IdMap { uids: ranges.clone(), gids: ranges }
    }

    #[test]
    fn maps_ids_inside_the_ranges_only() {
        let m = map(&[(0, 200_000, 65_536)]);
        assert_eq!(m.host_uid(0), Some(200_000));
        assert_eq!(m.host_gid(65_535), Some(265_535));
        assert_eq!(m.host_uid(65_536), None);
        assert_eq!(proc_text(&m.uids), "0 200000 65536\n");
    }

    #[test]
    fn refuses_what_the_kernel_would() {
        assert!(map(&[(0, 200_000, 65_536)]).validate().is_ok());
        let cases = [
            (map(&[]), "uids: no mapping"),
            (map(&[(0, 1000, 0)]), "uids[0]: length is 0"),
            (map(&[(0, u32::MAX, 2)]), "run past 2^32"),
            (map(&[(0, 1000, 10), (5, 5000, 10)]), "uids[1] overlaps uids[0]"),
            (map(&[(0, 1000, 10), (10, 1005, 10)]), "uids[1] overlaps uids[0]"),
        ];
        for (m, want) in cases {
            let e = m.validate().unwrap_err().to_string();
            assert!(e.contains(want), "{e:?} lacks {want:?}");
        }
        assert!(map(&[(0, 1000, 10), (10, 1010, 10)]).validate().is_ok());
    }
}
