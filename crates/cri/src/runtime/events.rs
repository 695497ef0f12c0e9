//! GetContainerEvents: every lifecycle change, as it happens, to every
//! subscriber (the kubelet's evented PLEG, `crictl events`).

use k8s_cri::v1;
use tokio_stream::{
    wrappers::{errors::BroadcastStreamRecvError, BroadcastStream},
    StreamExt,
};

use super::{pod_sandbox_status::to_cri_status, EventStream, Runtime};
use crate::state::{now_nanos, Container};

impl Runtime {
    pub(crate) fn emit(&self, kind: v1::ContainerEventType, container: &Container) {
        if self.events.receiver_count() == 0 {
            return;
        }
        let record = container.snapshot();
        let pod = self.sandboxes.get(&record.sandbox_id).ok().map(|s| to_cri_status(&s.snapshot()));
        let others = self.containers_of(&record.sandbox_id).iter().filter(|c| c.id != record.id).map(|c| self.status_of(&c.snapshot())).collect::<Vec<_>>();
        let mut statuses = vec![self.status_of(&record)];
        statuses.extend(others);
        let event = v1::ContainerEventResponse {
            container_id: record.id.clone(),
            container_event_type: kind as i32,
            created_at: now_nanos(),
            pod_sandbox_status: pod,
            containers_statuses: statuses,
        };
        let _ = self.events.send(std::sync::Arc::new(event));
    }

    pub(crate) fn subscribe_events(&self) -> EventStream {
        let stream = BroadcastStream::new(self.events.subscribe()).filter_map(|item| match item {
            Ok(event) => Some(Ok(std::sync::Arc::unwrap_or_clone(event))),
            Err(BroadcastStreamRecvError::Lagged(n)) => {
                tracing::warn!(missed = n, "an event subscriber fell behind; events were dropped");
                None
            }
        });
        Box::pin(stream)
    }
}
