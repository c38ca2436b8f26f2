//! Task events to containerd, in order, from one thread so that no RPC waits
//! on containerd. A failed publish reconnects (containerd may have restarted;
//! its ttrpc address stays the same) and retries for a while.

use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use containerd_shim::event::Event;
use containerd_shim::protos::protobuf::MessageDyn;
use containerd_shim::publisher::RemotePublisher;
use containerd_shim::Context;

type Queued = (String, Box<dyn MessageDyn>);

#[derive(Clone)]
pub struct Events {
    tx: Sender<Queued>,
    in_flight: Arc<InFlight>,
}

/// Events queued but not yet sent (or given up on): the shim must not exit
/// before they are out, or containerd misses e.g. the last /tasks/delete.
#[derive(Default)]
struct InFlight {
    count: Mutex<usize>,
    drained: Condvar,
}

impl InFlight {
    fn add(&self) {
        *self.count.lock().unwrap_or_else(|p| p.into_inner()) += 1;
    }

    fn done(&self) {
        let mut n = self.count.lock().unwrap_or_else(|p| p.into_inner());
        *n = n.saturating_sub(1);
        if *n == 0 {
            self.drained.notify_all();
        }
    }
}

impl Events {
    pub fn start(publisher: RemotePublisher, namespace: String) -> Events {
        let (tx, rx) = channel();
        let address = std::env::var("TTRPC_ADDRESS").unwrap_or_default();
        let in_flight = Arc::new(InFlight::default());
        let sent = in_flight.clone();
        let spawned = std::thread::Builder::new()
            .name("events".into())
            .spawn(move || forward(rx, publisher, &address, &namespace, &sent));
        if let Err(e) = spawned {
            log::error!("cannot start the events thread, no task events will be sent: {e}");
        }
        Events { tx, in_flight }
    }

    pub fn publish(&self, event: impl Event + 'static) {
        self.in_flight.add();
        if self.tx.send((event.topic(), Box::new(event))).is_err() {
            self.in_flight.done();
            log::warn!("events thread gone; event dropped");
        }
    }

    /// Waits until every queued event has been sent, at most `limit`.
    pub fn flush(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        let mut n = self
            .in_flight
            .count
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        while *n > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                log::warn!("shutting down with {} task events unsent", *n);
                return;
            }
            n = match self.in_flight.drained.wait_timeout(n, left) {
                Ok((guard, _)) => guard,
                Err(p) => p.into_inner().0,
            };
        }
    }
}

fn forward(
    rx: Receiver<Queued>,
    publisher: RemotePublisher,
    address: &str,
    namespace: &str,
    in_flight: &InFlight,
) {
    let mut publisher = Some(publisher);
    for (topic, event) in rx {
        let mut sent = false;
        // containerd restarting takes a few seconds; keep the event meanwhile.
        for attempt in 0..60 {
            if publisher.is_none() {
                publisher = RemotePublisher::new(address).ok();
            }
            if let Some(p) = &publisher {
                match p.publish(Context::default(), &topic, namespace, event.clone_box()) {
                    Ok(()) => {
                        sent = true;
                        break;
                    }
                    Err(e) => {
                        log::warn!("publish {topic} (attempt {attempt}): {e}");
                        publisher = None;
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        if !sent {
            log::error!("event {topic} dropped: containerd at {address} unreachable");
        }
        in_flight.done();
    }
}
