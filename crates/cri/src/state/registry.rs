use std::{
    collections::HashMap,
    sync::{Arc, RwLock},
};

use crate::error::{Error, Result};

/// Live objects by id. Lookups accept a unique id prefix, as `crictl` and
/// `docker` users expect.
pub struct Registry<T> {
    kind: &'static str,
    items: RwLock<HashMap<String, Arc<T>>>,
}

impl<T> Registry<T> {
    pub fn new(kind: &'static str) -> Self {
        Self { kind, items: RwLock::new(HashMap::new()) }
    }

    pub fn insert(&self, id: String, item: Arc<T>) {
        self.items.write().unwrap_or_else(|e| e.into_inner()).insert(id, item);
    }

    pub fn remove(&self, id: &str) {
        self.items.write().unwrap_or_else(|e| e.into_inner()).remove(id);
    }

    /// The object with id (or unique id prefix) `id`; NotFound names the
    /// kind and the id, InvalidArgument an empty or ambiguous one.
    pub fn get(&self, id: &str) -> Result<Arc<T>> {
        if id.is_empty() {
            return Err(Error::InvalidArgument(format!("{} id is empty", self.kind)));
        }
        let items = self.items.read().unwrap_or_else(|e| e.into_inner());
        if let Some(item) = items.get(id) {
            return Ok(item.clone());
        }
        let mut matches = items.iter().filter(|(k, _)| k.starts_with(id));
        match (matches.next(), matches.next()) {
            (Some((_, item)), None) => Ok(item.clone()),
            (Some(_), Some(_)) => Err(Error::InvalidArgument(format!("{} id prefix {id:?} is ambiguous", self.kind))),
            _ => Err(Error::NotFound(format!("{} {id:?} not found", self.kind))),
        }
    }

    /// Like [`get`](Self::get), but an unknown id is `None`: for the RPCs
    /// the CRI makes idempotent (Stop and Remove of what is gone succeed).
    pub fn find(&self, id: &str) -> Result<Option<Arc<T>>> {
        match self.get(id) {
            Ok(item) => Ok(Some(item)),
            Err(Error::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub fn list(&self) -> Vec<Arc<T>> {
        self.items.read().unwrap_or_else(|e| e.into_inner()).values().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_resolve_when_unique() {
        let r = Registry::new("container");
        r.insert("abc1".into(), Arc::new(1));
        r.insert("abd2".into(), Arc::new(2));
        assert_eq!(*r.get("abc").unwrap(), 1);
        assert!(matches!(r.get("ab"), Err(Error::InvalidArgument(_))));
        assert!(matches!(r.get("zz"), Err(Error::NotFound(m)) if m.contains("container \"zz\"")));
        assert!(matches!(r.get(""), Err(Error::InvalidArgument(_))));
    }
}
