//! Presence: a device is online while at least one of its connections is (a reconnect
//! with the same client id opens the new connection before rumqttd closes the old one).
//!
//! Events are never dropped and never block the connection that produces them: the edge
//! puts them into a coalescing queue (at most one pending event per device, the newest,
//! with its `seq`), and a forwarder task moves them into the bounded channel that
//! [`Broker::presence`](super::Broker::presence) hands out. A slow consumer therefore
//! sees every device's latest state, in `seq` order per device, and memory stays bounded
//! by the number of devices.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::{Notify, mpsc};

/// A device went online or offline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PresenceEvent {
    pub device_id: i64,
    pub online: bool,
    /// When, in µs since the epoch.
    pub at_us: i64,
    /// Increases with every event of this broker: apply an event only if its `seq` is
    /// higher than the last one applied for the device.
    pub seq: u64,
}

#[derive(Debug, Default)]
struct Pending {
    /// Live connections per device.
    live: HashMap<i64, usize>,
    events: HashMap<i64, PresenceEvent>,
    order: VecDeque<i64>,
    seq: u64,
}

#[derive(Debug, Default)]
pub(crate) struct PresenceQueue {
    pending: Mutex<Pending>,
    notify: Notify,
    /// Events replaced by a newer one for the same device before they were forwarded.
    pub coalesced: AtomicU64,
}

impl PresenceQueue {
    fn lock(&self) -> MutexGuard<'_, Pending> {
        self.pending
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A connection of `device_id` was accepted.
    pub fn connected(&self, device_id: i64) {
        let mut pending = self.lock();
        let live = pending.live.entry(device_id).or_default();
        *live += 1;
        if *live == 1 {
            self.push(&mut pending, device_id, true);
        }
    }

    /// A connection of `device_id` (one that [`connected`](Self::connected)) ended.
    pub fn disconnected(&self, device_id: i64) {
        let mut pending = self.lock();
        let Some(live) = pending.live.get_mut(&device_id) else {
            return;
        };
        *live -= 1;
        if *live == 0 {
            pending.live.remove(&device_id);
            self.push(&mut pending, device_id, false);
        }
    }

    fn push(&self, pending: &mut Pending, device_id: i64, online: bool) {
        pending.seq += 1;
        let event = PresenceEvent {
            device_id,
            online,
            at_us: crate::timestamp::now_us(),
            seq: pending.seq,
        };
        if pending.events.insert(device_id, event).is_some() {
            self.coalesced.fetch_add(1, Ordering::Relaxed);
        } else {
            pending.order.push_back(device_id);
        }
        self.notify.notify_one();
    }

    fn pop(&self) -> Option<PresenceEvent> {
        let mut pending = self.lock();
        let device_id = pending.order.pop_front()?;
        pending.events.remove(&device_id)
    }

    /// Forwards events into `tx` until its receiver is dropped.
    pub async fn forward(self: Arc<Self>, tx: mpsc::Sender<PresenceEvent>) {
        loop {
            match self.pop() {
                Some(event) => {
                    if tx.send(event).await.is_err() {
                        return;
                    }
                }
                None => self.notify.notified().await,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transitions_only_and_newest_wins_while_pending() {
        let queue = PresenceQueue::default();
        queue.connected(1);
        queue.connected(1); // reconnect before the old connection closed
        queue.disconnected(1);
        queue.connected(2);
        let first = queue.pop().unwrap();
        assert_eq!((first.device_id, first.online), (1, true));
        assert_eq!(
            queue.pop().map(|e| (e.device_id, e.online)),
            Some((2, true))
        );
        assert_eq!(queue.pop(), None);
        queue.disconnected(1);
        queue.connected(1);
        let last = queue.pop().unwrap();
        assert_eq!((last.device_id, last.online), (1, true));
        assert!(last.seq > first.seq);
        assert_eq!(queue.coalesced.load(Ordering::Relaxed), 1);
        queue.disconnected(3); // never connected: ignored
        assert_eq!(queue.pop(), None);
    }
}
