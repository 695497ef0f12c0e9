//! Task events back to containerd: TaskCreate, TaskStart, TaskExit, ...
//!
//! Sent over ttrpc to containerd's `TTRPC_ADDRESS`
//! (`containerd.services.events.ttrpc.v1.Events/Forward`, an Envelope with
//! the event as an Any whose type URL is the message's full name), as
//! containerd's own shims do; containerd 1.6 and 2.x serve it. The other
//! way, `containerd publish` through `-publish-binary`, costs a fork and
//! exec of containerd per event.
//!
//! A Task API call never waits for containerd: `publish` only queues. A
//! task on the shim's event loop sends the queue in order over ttrpc's
//! asynchronous client, reconnecting and retrying while containerd
//! restarts (about 15 s), then drops the event with an error in the log:
//! no thread of its own, and none waits while containerd is away. The
//! queue is bounded; when it is full an event is dropped rather than
//! blocking the caller.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, SystemTime},
};

use containerd_shim_protos::{
    api::ForwardRequest,
    events::task::{TaskCreate, TaskDelete, TaskExecAdded, TaskExecStarted, TaskExit, TaskOOM, TaskStart},
    protobuf::{well_known_types::any::Any, Message, MessageField},
    shim::event::Envelope,
    shim_async::{Client, EventsClient},
    ttrpc::{self, asynchronous::transport::Socket, context::Context},
};
use tokio::sync::{
    mpsc::{channel, error::TrySendError, Receiver, Sender as Queue},
    Notify,
};

use crate::task::timestamp;

/// A task event and the type URL containerd decodes it by: the message's
/// full protobuf name. Written out here rather than read from the message's
/// descriptor, which would link protobuf's reflection (about 300 KiB of
/// code and tables) into every shim for seven constant strings.
pub trait TaskEvent: Message {
    const TYPE_URL: &'static str;
}

macro_rules! task_events {
    ($($event:ident),*) => {
        $(impl TaskEvent for $event {
            const TYPE_URL: &'static str = concat!("containerd.events.", stringify!($event));
        })*
    };
}

task_events!(TaskCreate, TaskStart, TaskExit, TaskDelete, TaskExecAdded, TaskExecStarted, TaskOOM);

/// Events waiting to be sent; a shim makes a handful per process, so this
/// is only reached when containerd has been unreachable for long.
const QUEUE_LENGTH: usize = 256;
/// Per attempt, as containerd's own publisher.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(5);
/// Pauses between attempts at one event: about 15 s in all, long enough for
/// containerd to restart.
const RETRY_PAUSES: [Duration; 6] =
    [Duration::from_millis(100), Duration::from_millis(500), Duration::from_secs(1), Duration::from_secs(2), Duration::from_secs(4), Duration::from_secs(8)];
/// The ttrpc metadata key containerd reads the namespace from.
const NAMESPACE_HEADER: &str = "containerd-namespace-ttrpc";

pub struct Publisher {
    namespace: String,
    queue: Queue<Envelope>,
    in_flight: Arc<InFlight>,
}

/// Events queued or being sent; `flush` waits for none.
#[derive(Default)]
struct InFlight {
    count: AtomicUsize,
    none_left: Notify,
}

impl InFlight {
    fn add_one(&self) {
        self.count.fetch_add(1, Ordering::SeqCst);
    }

    fn done_with_one(&self) {
        if self.count.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.none_left.notify_waiters();
        }
    }
}

impl Publisher {
    /// Starts the sending task on the shim's event loop (call it within
    /// the runtime). `address` is containerd's ttrpc socket
    /// (`TTRPC_ADDRESS`, a path or `unix://` + path). Nothing is connected
    /// until the first event.
    pub fn start(namespace: String, address: &str) -> Publisher {
        let address = if address.contains("://") { address.to_string() } else { format!("unix://{address}") };
        let (queue, pending) = channel(QUEUE_LENGTH);
        let in_flight = Arc::new(InFlight::default());
        let sender = Sender { address, namespace: namespace.clone(), client: None, in_flight: in_flight.clone() };
        tokio::spawn(sender.run(pending));
        Publisher { namespace, queue, in_flight }
    }

    /// Queues `event` under `topic` (e.g. `/tasks/exit`). Never blocks; any
    /// thread may call it.
    pub fn publish<E: TaskEvent>(&self, topic: &str, event: &E) {
        let value = match event.write_to_bytes() {
            Ok(v) => v,
            Err(e) => {
                log::error!("encode {topic} event: {e}");
                return;
            }
        };
        let mut any = Any::new();
        any.type_url = E::TYPE_URL.to_string();
        any.value = value;
        let mut envelope = Envelope::new();
        envelope.timestamp = MessageField::some(timestamp(SystemTime::now()));
        envelope.namespace = self.namespace.clone();
        envelope.topic = topic.to_string();
        envelope.event = MessageField::some(any);
        self.in_flight.add_one();
        let dropped = match self.queue.try_send(envelope) {
            Ok(()) => return,
            Err(TrySendError::Full(_)) => "the queue is full (containerd unreachable)",
            Err(TrySendError::Closed(_)) => "the events task is gone",
        };
        log::error!("dropping {topic} event: {dropped}");
        self.in_flight.done_with_one();
    }

    /// Waits until every queued event was sent (or given up on), at most
    /// `timeout`: the shim calls it before exiting, so TaskExit and
    /// TaskDelete reach containerd.
    pub async fn flush(&self, timeout: Duration) {
        let all_sent = async {
            loop {
                let none_left = self.in_flight.none_left.notified();
                tokio::pin!(none_left);
                // Registered before the look: the last one going in between wakes us.
                none_left.as_mut().enable();
                if self.in_flight.count.load(Ordering::SeqCst) == 0 {
                    return;
                }
                none_left.await;
            }
        };
        if tokio::time::timeout(timeout, all_sent).await.is_err() {
            log::warn!("{} event(s) not sent to containerd before exit", self.in_flight.count.load(Ordering::SeqCst));
        }
    }
}

/// The sending task's state.
struct Sender {
    address: String,
    namespace: String,
    client: Option<EventsClient>,
    in_flight: Arc<InFlight>,
}

impl Sender {
    async fn run(mut self, mut pending: Receiver<Envelope>) {
        while let Some(envelope) = pending.recv().await {
            self.deliver(envelope).await;
            self.in_flight.done_with_one();
        }
    }

    async fn deliver(&mut self, envelope: Envelope) {
        let topic = envelope.topic.clone();
        let mut request = ForwardRequest::new();
        request.envelope = MessageField::some(envelope);
        let mut pauses = RETRY_PAUSES.iter();
        loop {
            match self.forward(&request).await {
                Ok(()) => {
                    log::debug!("published {topic}");
                    return;
                }
                Err(e) => match pauses.next() {
                    Some(pause) => {
                        log::warn!("publish {topic} to {}: {e}; retrying", self.address);
                        tokio::time::sleep(*pause).await;
                    }
                    None => {
                        log::error!("publish {topic} to {}: {e}; giving up on this event", self.address);
                        return;
                    }
                },
            }
        }
    }

    /// One attempt. The connection is kept only while it works: after a
    /// failure the next attempt dials again (containerd may have restarted).
    async fn forward(&mut self, request: &ForwardRequest) -> Result<(), ttrpc::Error> {
        let client = match self.client.take() {
            Some(client) => client,
            None => EventsClient::new(Client::new(Socket::new(self.connect().await?))),
        };
        let mut ctx: Context = ttrpc::context::with_duration(FORWARD_TIMEOUT);
        ctx.metadata = HashMap::from([(NAMESPACE_HEADER.to_string(), vec![self.namespace.clone()])]);
        client.forward(ctx, request).await?;
        self.client = Some(client);
        Ok(())
    }

    /// Dials containerd without ever blocking the loop: ttrpc's own
    /// `Client::connect` makes a blocking connect(2), which waits with no
    /// limit while containerd's listen backlog is full (containerd hung or
    /// stopped), and this loop is the whole shim. A non-blocking connect
    /// fails at once then (EAGAIN) and the event is retried.
    async fn connect(&self) -> Result<tokio::net::UnixStream, ttrpc::Error> {
        let path = self.address.strip_prefix("unix://").unwrap_or(&self.address);
        match tokio::time::timeout(FORWARD_TIMEOUT, tokio::net::UnixStream::connect(path)).await {
            Ok(Ok(stream)) => Ok(stream),
            Ok(Err(e)) => Err(ttrpc::Error::Others(format!("connect {path}: {e}"))),
            Err(_) => Err(ttrpc::Error::Others(format!("connect {path}: no answer in {FORWARD_TIMEOUT:?}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use containerd_shim_protos::protobuf::MessageFull;

    use super::*;

    fn full_name<E: MessageFull>() -> String {
        E::descriptor().full_name().to_string()
    }

    #[test]
    fn type_urls_are_the_messages_full_names() {
        assert_eq!(TaskCreate::TYPE_URL, full_name::<TaskCreate>());
        assert_eq!(TaskStart::TYPE_URL, full_name::<TaskStart>());
        assert_eq!(TaskExit::TYPE_URL, full_name::<TaskExit>());
        assert_eq!(TaskDelete::TYPE_URL, full_name::<TaskDelete>());
        assert_eq!(TaskExecAdded::TYPE_URL, full_name::<TaskExecAdded>());
        assert_eq!(TaskExecStarted::TYPE_URL, full_name::<TaskExecStarted>());
        assert_eq!(TaskOOM::TYPE_URL, full_name::<TaskOOM>());
    }
}
