//! Task events back to containerd: TaskCreate, TaskStart, TaskExit, ...
//!
//! Sent over ttrpc to containerd's `TTRPC_ADDRESS`
//! (`containerd.services.events.ttrpc.v1.Events/Forward`, an Envelope with
//! the event as an Any whose type URL is the message's full name), as
//! containerd's own shims do; containerd 1.6 and 2.x serve it. The other
//! way, `containerd publish` through `-publish-binary`, costs a fork and
//! exec of containerd per event.
//!
//! A Task API call never waits for containerd: `publish` only queues. One
//! thread sends the queue in order, reconnecting and retrying while
//! containerd restarts (about 15 s), then drops the event with an error in
//! the log. The queue is bounded; when it is full an event is dropped
//! rather than blocking the caller.

use std::{
    collections::HashMap,
    sync::{
        mpsc::{sync_channel, Receiver, SyncSender, TrySendError},
        Arc, Condvar, Mutex,
    },
    time::{Duration, Instant, SystemTime},
};

use containerd_shim_protos::{
    api::ForwardRequest,
    protobuf::{well_known_types::any::Any, MessageDyn, MessageField},
    shim::event::Envelope,
    ttrpc::{self, context::Context},
    Client, EventsClient,
};

use crate::task::timestamp;

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
    queue: SyncSender<Envelope>,
    /// Events queued or being sent; `flush` waits for zero.
    in_flight: Arc<(Mutex<usize>, Condvar)>,
}

impl Publisher {
    /// Starts the sending thread. `address` is containerd's ttrpc socket
    /// (`TTRPC_ADDRESS`, a path or `unix://` + path). Nothing is connected
    /// until the first event.
    pub fn start(namespace: String, address: &str) -> std::io::Result<Publisher> {
        let address = if address.contains("://") { address.to_string() } else { format!("unix://{address}") };
        let (queue, pending) = sync_channel(QUEUE_LENGTH);
        let in_flight = Arc::new((Mutex::new(0), Condvar::new()));
        let sender = Sender { address, namespace: namespace.clone(), client: None, in_flight: in_flight.clone() };
        std::thread::Builder::new().name("events".into()).stack_size(256 * 1024).spawn(move || sender.run(pending))?;
        Ok(Publisher { namespace, queue, in_flight })
    }

    /// Queues `event` under `topic` (e.g. `/tasks/exit`). Never blocks.
    pub fn publish(&self, topic: &str, event: &dyn MessageDyn) {
        let value = match event.write_to_bytes_dyn() {
            Ok(v) => v,
            Err(e) => {
                log::error!("encode {topic} event: {e}");
                return;
            }
        };
        let mut any = Any::new();
        any.type_url = event.descriptor_dyn().full_name().to_string();
        any.value = value;
        let mut envelope = Envelope::new();
        envelope.timestamp = MessageField::some(timestamp(SystemTime::now()));
        envelope.namespace = self.namespace.clone();
        envelope.topic = topic.to_string();
        envelope.event = MessageField::some(any);
        *self.in_flight.0.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        let dropped = match self.queue.try_send(envelope) {
            Ok(()) => return,
            Err(TrySendError::Full(_)) => "the queue is full (containerd unreachable)",
            Err(TrySendError::Disconnected(_)) => "the events thread is gone",
        };
        log::error!("dropping {topic} event: {dropped}");
        self.done_with_one();
    }

    /// Waits until every queued event was sent (or given up on), at most
    /// `timeout`: the shim calls it before exiting, so TaskExit and
    /// TaskDelete reach containerd.
    pub fn flush(&self, timeout: Duration) {
        let (lock, cv) = &*self.in_flight;
        let deadline = Instant::now() + timeout;
        let mut n = lock.lock().unwrap_or_else(|e| e.into_inner());
        while *n > 0 {
            let now = Instant::now();
            if now >= deadline {
                log::warn!("{} event(s) not sent to containerd before exit", *n);
                return;
            }
            n = cv.wait_timeout(n, deadline - now).unwrap_or_else(|e| e.into_inner()).0;
        }
    }

    fn done_with_one(&self) {
        finish_one(&self.in_flight);
    }
}

fn finish_one(in_flight: &(Mutex<usize>, Condvar)) {
    let mut n = in_flight.0.lock().unwrap_or_else(|e| e.into_inner());
    *n = n.saturating_sub(1);
    in_flight.1.notify_all();
}

/// The sending thread's state.
struct Sender {
    address: String,
    namespace: String,
    client: Option<EventsClient>,
    in_flight: Arc<(Mutex<usize>, Condvar)>,
}

impl Sender {
    fn run(mut self, pending: Receiver<Envelope>) {
        for envelope in pending {
            self.deliver(envelope);
            finish_one(&self.in_flight);
        }
    }

    fn deliver(&mut self, envelope: Envelope) {
        let topic = envelope.topic.clone();
        let mut request = ForwardRequest::new();
        request.envelope = MessageField::some(envelope);
        let mut pauses = RETRY_PAUSES.iter();
        loop {
            match self.forward(&request) {
                Ok(()) => {
                    log::debug!("published {topic}");
                    return;
                }
                Err(e) => match pauses.next() {
                    Some(pause) => {
                        log::warn!("publish {topic} to {}: {e}; retrying", self.address);
                        std::thread::sleep(*pause);
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
    fn forward(&mut self, request: &ForwardRequest) -> Result<(), ttrpc::Error> {
        let client = match self.client.take() {
            Some(client) => client,
            None => EventsClient::new(Client::connect(&self.address)?),
        };
        let mut ctx: Context = ttrpc::context::with_duration(FORWARD_TIMEOUT);
        ctx.metadata = HashMap::from([(NAMESPACE_HEADER.to_string(), vec![self.namespace.clone()])]);
        client.forward(ctx, request)?;
        self.client = Some(client);
        Ok(())
    }
}
