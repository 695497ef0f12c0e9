//! Reserved names: the CRI forbids two live pods (or two containers of a
//! pod) with the same name. A reservation outlives a restart because the
//! index is rebuilt from the records on start.

use std::{collections::HashMap, sync::Mutex};

use crate::error::{Error, Result};

#[derive(Debug, Default)]
pub struct NameIndex {
    names: Mutex<HashMap<String, String>>,
}

impl NameIndex {
    /// Reserves `name` for `id`. Reserving again for the same id is fine
    /// (a retried request); for another id it names the holder.
    pub fn reserve(&self, name: &str, id: &str) -> Result<()> {
        let mut names = self.names.lock().unwrap_or_else(|e| e.into_inner());
        match names.get(name) {
            Some(holder) if holder != id => Err(Error::NameTaken { name: name.into(), holder: holder.clone() }),
            Some(_) => Ok(()),
            None => {
                names.insert(name.into(), id.into());
                Ok(())
            }
        }
    }

    /// Releases `name` if `id` holds it.
    pub fn release(&self, name: &str, id: &str) {
        let mut names = self.names.lock().unwrap_or_else(|e| e.into_inner());
        if names.get(name).is_some_and(|h| h == id) {
            names.remove(name);
        }
    }

    pub fn holder(&self, name: &str) -> Option<String> {
        self.names.lock().unwrap_or_else(|e| e.into_inner()).get(name).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_has_one_holder_until_released() {
        let idx = NameIndex::default();
        idx.reserve("web_default_uid_0", "a").unwrap();
        idx.reserve("web_default_uid_0", "a").unwrap();
        let e = idx.reserve("web_default_uid_0", "b").unwrap_err().to_string();
        assert!(e.contains("reserved by a"), "{e}");
        idx.release("web_default_uid_0", "b");
        assert_eq!(idx.holder("web_default_uid_0").as_deref(), Some("a"));
        idx.release("web_default_uid_0", "a");
        idx.reserve("web_default_uid_0", "b").unwrap();
    }

    #[test]
    fn concurrent_reservations_admit_exactly_one() {
        let idx = NameIndex::default();
        let winners: usize = std::thread::scope(|s| {
            let handles: Vec<_> = (0..16)
                .map(|i| {
                    let idx = &idx;
                    s.spawn(move || idx.reserve("pod", &i.to_string()).is_ok())
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap() as usize).sum()
        });
        assert_eq!(winners, 1);
    }
}
