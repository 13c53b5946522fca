//! Live fan-out: decoded samples and presence changes of each device, as they arrive,
//! to whoever watches that device (the REST API's WebSocket). Per-device broadcast
//! channels of bounded depth: a slow watcher misses frames (and learns how many), it
//! never holds memory or slows ingest.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use tokio::sync::broadcast;

use crate::store::TelemetryRow;

/// Frames buffered per device for its slowest watcher.
const DEPTH: usize = 64;

/// What a watcher of one device receives.
#[derive(Debug, Clone)]
pub enum LiveEvent {
    /// One incoming batch, decoded.
    Samples(Arc<Vec<TelemetryRow>>),
    /// The device connected (`online`) or disconnected, at `at` (µs).
    Presence { online: bool, at: i64 },
    /// The device was unpaired: watchers stop watching.
    Unpaired,
}

/// The registry of per-device channels; cheap to share.
#[derive(Debug, Default)]
pub struct Hub {
    channels: Mutex<HashMap<i64, broadcast::Sender<LiveEvent>>>,
}

impl Hub {
    /// Starts watching `device_id`.
    pub fn watch(&self, device_id: i64) -> broadcast::Receiver<LiveEvent> {
        let mut channels = self
            .channels
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        channels
            .entry(device_id)
            .or_insert_with(|| broadcast::channel(DEPTH).0)
            .subscribe()
    }

    /// Hands the event to the device's watchers; `event` is only built if there are any.
    pub fn publish(&self, device_id: i64, event: impl FnOnce() -> LiveEvent) {
        let mut channels = self
            .channels
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(sender) = channels.get(&device_id) {
            if sender.send(event()).is_err() {
                // Nobody watches any more: forget the channel.
                channels.remove(&device_id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watchers_get_events_and_slow_ones_lag_instead_of_growing() {
        let hub = Hub::default();
        hub.publish(1, || LiveEvent::Presence {
            online: true,
            at: 0,
        });
        let mut watcher = hub.watch(1);
        for at in 0..(DEPTH as i64 + 10) {
            hub.publish(1, || LiveEvent::Presence { online: true, at });
        }
        assert!(matches!(
            watcher.try_recv(),
            Err(broadcast::error::TryRecvError::Lagged(10))
        ));
        assert!(matches!(
            watcher.try_recv(),
            Ok(LiveEvent::Presence { at: 10, .. })
        ));
        drop(watcher);
        hub.publish(1, || LiveEvent::Presence {
            online: false,
            at: 0,
        });
        assert!(hub.channels.lock().unwrap().is_empty());
    }
}
