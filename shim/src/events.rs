//! Task events to containerd, in order, from one thread so that no RPC waits
//! on containerd. A failed publish reconnects (containerd may have restarted;
//! its ttrpc address stays the same) and retries for a while.

use std::sync::mpsc::{channel, Receiver, Sender};
use std::time::Duration;

use containerd_shim::event::Event;
use containerd_shim::protos::protobuf::MessageDyn;
use containerd_shim::publisher::RemotePublisher;
use containerd_shim::Context;

type Queued = (String, Box<dyn MessageDyn>);

#[derive(Clone)]
pub struct Events {
    tx: Sender<Queued>,
}

impl Events {
    pub fn start(publisher: RemotePublisher, namespace: String) -> Events {
        let (tx, rx) = channel();
        let address = std::env::var("TTRPC_ADDRESS").unwrap_or_default();
        let spawned = std::thread::Builder::new()
            .name("events".into())
            .spawn(move || forward(rx, publisher, &address, &namespace));
        if let Err(e) = spawned {
            log::error!("cannot start the events thread, no task events will be sent: {e}");
        }
        Events { tx }
    }

    pub fn publish(&self, event: impl Event + 'static) {
        if self.tx.send((event.topic(), Box::new(event))).is_err() {
            log::warn!("events thread gone; event dropped");
        }
    }
}

fn forward(rx: Receiver<Queued>, publisher: RemotePublisher, address: &str, namespace: &str) {
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
    }
}
