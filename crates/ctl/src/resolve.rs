//! Naming a container on the command line, as with `docker`: its full id,
//! its name, or an id prefix that only one container has. An unknown or
//! ambiguous reference is an error (exit status 1), never passed on to
//! berthd as it stands: the CRI answers "not found" with success for Stop
//! and Remove, which would make `berthctl stop web` claim a stop that never
//! happened.

use k8s_cri::v1::{self, runtime_service_client::RuntimeServiceClient};
use tonic::transport::Channel;

use crate::client::rpc_error;

/// The one container `reference` names.
pub async fn container(rt: &mut RuntimeServiceClient<Channel>, reference: &str) -> anyhow::Result<v1::Container> {
    anyhow::ensure!(!reference.is_empty(), "an empty container name");
    let all = rt.list_containers(v1::ListContainersRequest::default()).await.map_err(rpc_error("list containers"))?.into_inner().containers;
    pick(all, reference)
}

/// An exact id wins, then an exact name, then a unique id prefix.
fn pick(all: Vec<v1::Container>, reference: &str) -> anyhow::Result<v1::Container> {
    if let Some(exact) = all.iter().find(|c| c.id == reference) {
        return Ok(exact.clone());
    }
    let name_of = |c: &v1::Container| c.metadata.as_ref().map(|m| m.name.clone()).unwrap_or_default();
    let named: Vec<&v1::Container> = all.iter().filter(|c| name_of(c) == reference).collect();
    let candidates = if named.is_empty() { all.iter().filter(|c| c.id.starts_with(reference)).collect() } else { named };
    match candidates.as_slice() {
        [one] => Ok((*one).clone()),
        [] => anyhow::bail!("no such container: {reference}"),
        many => {
            let ids: Vec<&str> = many.iter().map(|c| &c.id[..12.min(c.id.len())]).collect();
            anyhow::bail!("{reference:?} names {} containers ({}): give more of the id", many.len(), ids.join(", "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctr(id: &str, name: &str) -> v1::Container {
        v1::Container { id: id.into(), metadata: Some(v1::ContainerMetadata { name: name.into(), attempt: 0 }), ..Default::default() }
    }

    #[test]
    fn ids_then_names_then_unique_prefixes() {
        let all = vec![ctr("abc123", "web"), ctr("abd456", "db"), ctr("web", "other")];
        assert_eq!(pick(all.clone(), "web").unwrap().id, "web", "an exact id beats a name");
        assert_eq!(pick(all.clone(), "db").unwrap().id, "abd456");
        assert_eq!(pick(all.clone(), "abc").unwrap().id, "abc123");
        let e = pick(all.clone(), "ab").unwrap_err().to_string();
        assert!(e.contains("names 2 containers") && e.contains("abc123") && e.contains("abd456"), "{e}");
        assert_eq!(pick(all.clone(), "zzz").unwrap_err().to_string(), "no such container: zzz");
        let twins = vec![ctr("a1", "same"), ctr("b2", "same")];
        assert!(pick(twins, "same").unwrap_err().to_string().contains("names 2 containers"));
    }
}
