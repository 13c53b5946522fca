//! MQTT ingest: velt's in-process subscriber on the embedded broker.
//!
//! - The receiver (link `velt-ingest`, subscribed to every device's `telemetry` and
//!   `status`) decodes each batch, attributes it to a session, and submits its rows to
//!   the [`Writer`]. Waiting for room in the writer's queue is what slows it down when
//!   the database is slow.
//! - The acker (link `velt-acker`) awaits each batch's commit, in arrival order, and
//!   publishes `Ack{seq}` ([`super::acks`]) to the device's `ack` topic.
//! - Presence events of the edge are written to the devices table, and a device that
//!   (re)connects is told its current ack so it can drop what is stored already.
//!
//! A malformed payload or an unknown device is logged with the device id, counted, and
//! skipped; nothing on this path ends the loop but shutdown.

use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use tokio::{sync::mpsc, task::JoinHandle};
use tokio_util::sync::CancellationToken;
use velt_proto::{
    Ack,
    topics::{self, Channel},
};

use super::{
    Receipt, Writer,
    acks::AckState,
    crash,
    live::{Hub, LiveEvent},
    writer::Count,
};
use crate::{
    broker::{Broker, Link, PresenceEvent},
    store::{Store, TelemetryRow},
    timestamp::now_us,
};

/// How long a device's owner and a device's open session are trusted from cache. Open
/// sessions change through the REST API, possibly on another node: keep it short.
const OWNER_TTL: Duration = Duration::from_secs(5);
const OPEN_SESSION_TTL: Duration = Duration::from_secs(1);

/// Counters of the ingest path.
#[derive(Debug, Default)]
pub struct Metrics {
    pub batches: AtomicU64,
    pub samples: AtomicU64,
    pub malformed: AtomicU64,
    pub unknown_devices: AtomicU64,
    pub status_messages: AtomicU64,
    pub acks: AtomicU64,
    pub write_failures: AtomicU64,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// Work for the acker, in arrival order.
enum AckWork {
    Committed {
        device_id: i64,
        seq: u64,
        receipt: Receipt,
    },
    /// The device (re)connected: tell it where it stands.
    Resync { device_id: i64 },
}

/// The running ingest tasks.
pub struct MqttIngest {
    pub metrics: Arc<Metrics>,
    tasks: Vec<JoinHandle<()>>,
}

impl MqttIngest {
    /// Subscribes and starts the receiver, acker and presence tasks. They stop when
    /// `stop` is cancelled; [`MqttIngest::join`] waits until every received batch is
    /// committed and acknowledged.
    pub async fn start(
        broker: &Broker,
        store: Store,
        writer: Writer,
        live: Arc<Hub>,
        stop: CancellationToken,
    ) -> anyhow::Result<Self> {
        let mut inbound = broker.link("velt-ingest").await?;
        inbound.subscribe(topics::TELEMETRY_FILTER).await?;
        inbound.subscribe(topics::STATUS_FILTER).await?;
        let outbound = broker.link("velt-acker").await?;
        let presence = broker
            .presence()
            .ok_or_else(|| anyhow::anyhow!("presence events already taken"))?;

        let metrics = Arc::new(Metrics::default());
        let (ack_tx, ack_rx) = mpsc::channel(4096);
        let receiver = Receiver {
            store: store.clone(),
            writer,
            metrics: metrics.clone(),
            acks: ack_tx.clone(),
            live: live.clone(),
            owners: HashMap::new(),
            open_sessions: HashMap::new(),
            named_sessions: HashMap::new(),
        };
        let tasks = vec![
            tokio::spawn(receiver.run(inbound, stop.clone())),
            tokio::spawn(acker(outbound, ack_rx, store.clone(), metrics.clone())),
            tokio::spawn(apply_presence(presence, store, ack_tx, live, stop)),
        ];
        Ok(MqttIngest { metrics, tasks })
    }

    /// Waits for the tasks to finish (after `stop`).
    pub async fn join(self) {
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

struct Receiver {
    store: Store,
    writer: Writer,
    metrics: Arc<Metrics>,
    acks: mpsc::Sender<AckWork>,
    live: Arc<Hub>,
    /// device id → (owner, fetched at); `None` owner = no such device.
    owners: HashMap<i64, (Option<i64>, Instant)>,
    /// device id → (open session, fetched at).
    open_sessions: HashMap<i64, (Option<i64>, Instant)>,
    /// (owner, session id) → (is the owner's, fetched at).
    named_sessions: HashMap<(i64, i64), (bool, Instant)>,
}

impl Receiver {
    async fn run(mut self, mut link: Link, stop: CancellationToken) {
        loop {
            let message = tokio::select! {
                message = link.next() => message,
                _ = stop.cancelled() => break,
            };
            let Some((topic, payload)) = message else {
                tracing::error!("the broker closed velt's ingest link");
                break;
            };
            match topics::parse_topic(&topic) {
                Some((device, Channel::Telemetry)) => self.telemetry(device as i64, payload).await,
                Some((device, Channel::Status)) => self.status(device as i64, payload).await,
                _ => tracing::warn!(%topic, "ingest link got a message on an unexpected topic"),
            }
        }
        tracing::debug!("MQTT receiver stopped");
    }

    async fn telemetry(&mut self, device_id: i64, payload: Bytes) {
        let batch = match velt_proto::decode_telemetry(&payload) {
            Ok(batch) => batch,
            Err(err) => {
                bump(&self.metrics.malformed);
                tracing::warn!(device_id, error = %err, bytes = payload.len(), "malformed telemetry payload skipped");
                return;
            }
        };
        let Some(owner) = self.owner(device_id).await else {
            bump(&self.metrics.unknown_devices);
            tracing::warn!(device_id, "telemetry of an unknown device skipped");
            return;
        };
        let session_id = self.session_for(owner, device_id, batch.session_id()).await;
        let rows: Vec<TelemetryRow> = batch
            .samples()
            .map(|sample| TelemetryRow {
                device_id,
                ts: sample.ts_us,
                session_id,
                accel: sample.accel,
                gyro: sample.gyro,
            })
            .collect();
        let crashes = crash::detect(&rows, now_us());
        self.live
            .publish(device_id, || LiveEvent::Samples(Arc::new(rows.clone())));
        bump(&self.metrics.batches);
        self.metrics
            .samples
            .fetch_add(rows.len() as u64, Ordering::Relaxed);
        match self.writer.submit(rows, crashes, Count::Unneeded).await {
            Ok(receipt) => {
                let _ = self
                    .acks
                    .send(AckWork::Committed {
                        device_id,
                        seq: batch.seq(),
                        receipt,
                    })
                    .await;
            }
            Err(err) => {
                bump(&self.metrics.write_failures);
                tracing::error!(device_id, seq = batch.seq(), error = %err, "telemetry batch not queued; the device will resend it");
            }
        }
    }

    async fn status(&mut self, device_id: i64, payload: Bytes) {
        let status = match velt_proto::decode_status(&payload) {
            Ok(status) => status,
            Err(err) => {
                bump(&self.metrics.malformed);
                tracing::warn!(device_id, error = %err, "malformed status payload skipped");
                return;
            }
        };
        bump(&self.metrics.status_messages);
        let stored = self
            .store
            .record_device_status(
                device_id,
                status.battery_pct(),
                status.firmware_version(),
                now_us(),
            )
            .await;
        if let Err(err) = stored {
            tracing::warn!(device_id, error = %err, "device status not stored");
        }
    }

    /// The owner of `device_id`, `None` if it does not exist.
    async fn owner(&mut self, device_id: i64) -> Option<i64> {
        if let Some((owner, at)) = self.owners.get(&device_id)
            && at.elapsed() < OWNER_TTL
        {
            return *owner;
        }
        match self.store.device_by_id(device_id).await {
            Ok(device) => {
                let owner = device.map(|d| d.user_id);
                self.owners.insert(device_id, (owner, Instant::now()));
                owner
            }
            // The writer would fail too: skip, the device resends unacked batches.
            Err(err) => {
                tracing::warn!(device_id, error = %err, "device lookup failed");
                None
            }
        }
    }

    /// Whether `session_id` is a session of `owner` (cached: a device names the same
    /// session in every batch).
    async fn named_session(&mut self, owner: i64, session_id: i64) -> bool {
        if let Some((valid, at)) = self.named_sessions.get(&(owner, session_id))
            && at.elapsed() < OWNER_TTL
        {
            return *valid;
        }
        match self.store.session_of(owner, session_id).await {
            Ok(session) => {
                // Stale entries of ended sessions would pile up: start over now and then.
                if self.named_sessions.len() > 100_000 {
                    self.named_sessions.clear();
                }
                self.named_sessions
                    .insert((owner, session_id), (session.is_some(), Instant::now()));
                session.is_some()
            }
            Err(err) => {
                tracing::warn!(session_id, error = %err, "session lookup failed");
                false
            }
        }
    }

    /// The batch's own session if it is one of the owner's, else the device's open one.
    async fn session_for(&mut self, owner: i64, device_id: i64, named: Option<u64>) -> Option<i64> {
        if let Some(named) = named.and_then(|id| i64::try_from(id).ok()) {
            if self.named_session(owner, named).await {
                return Some(named);
            }
            tracing::debug!(
                device_id,
                session_id = named,
                "batch names a foreign or unknown session"
            );
        }
        if let Some((session, at)) = self.open_sessions.get(&device_id)
            && at.elapsed() < OPEN_SESSION_TTL
        {
            return *session;
        }
        let open = match self.store.open_sessions(owner, &[device_id]).await {
            Ok(open) => open.get(&device_id).copied(),
            Err(err) => {
                tracing::warn!(device_id, error = %err, "open session lookup failed");
                None
            }
        };
        self.open_sessions.insert(device_id, (open, Instant::now()));
        open
    }
}

/// Awaits commits in arrival order and acknowledges them. Work is taken in rounds: the
/// new ack positions of a round are persisted in one statement before any of its acks
/// is published, so an ack is never sent that a restart could take back.
async fn acker(
    mut link: Link,
    mut work: mpsc::Receiver<AckWork>,
    store: Store,
    metrics: Arc<Metrics>,
) {
    let mut states: HashMap<i64, AckState> = HashMap::new();
    let mut round = Vec::new();
    while work.recv_many(&mut round, 1024).await > 0 {
        let mut to_send: Vec<(i64, u64)> = Vec::new();
        for item in round.drain(..) {
            let (device_id, committed) = match item {
                AckWork::Committed {
                    device_id,
                    seq,
                    receipt,
                } => match receipt.committed().await {
                    Ok(_) => (device_id, Some(seq)),
                    Err(err) => {
                        bump(&metrics.write_failures);
                        tracing::warn!(device_id, seq, error = %err, "batch not committed; no ack, the device resends");
                        continue;
                    }
                },
                AckWork::Resync { device_id } => (device_id, None),
            };
            let state = match states.entry(device_id) {
                std::collections::hash_map::Entry::Occupied(entry) => entry.into_mut(),
                std::collections::hash_map::Entry::Vacant(entry) => {
                    match store.acked_seq(device_id).await {
                        Ok(Some(acked)) => entry.insert(AckState::starting_at(acked.max(0) as u64)),
                        Ok(None) => continue,
                        Err(err) => {
                            tracing::warn!(device_id, error = %err, "ack position not loaded; no ack, the device resends");
                            continue;
                        }
                    }
                }
            };
            let ack = match committed {
                Some(seq) => state.committed(seq),
                None => state.acked(),
            };
            to_send.push((device_id, ack));
        }
        // Persist the positions that moved (each device once, at its latest).
        let mut positions: HashMap<i64, i64> = HashMap::new();
        for (device_id, _) in &to_send {
            if let Some(state) = states.get(device_id) {
                positions.insert(*device_id, state.acked() as i64);
            }
        }
        let positions: Vec<(i64, i64)> = positions.into_iter().collect();
        if let Err(err) = store.save_acked_seqs(&positions).await {
            // Unpersisted acks are not sent; forget the positions so the next round
            // reloads what is stored (the device resends what it still holds).
            tracing::warn!(error = %err, devices = positions.len(), "ack positions not stored; acks held back");
            for (device_id, _) in positions {
                states.remove(&device_id);
            }
            continue;
        }
        for (device_id, seq) in to_send {
            let topic = topics::topic(device_id as u64, Channel::Ack);
            let payload = Bytes::from(velt_proto::encode_ack(&Ack { seq }));
            match link.publish(topic, payload).await {
                Ok(()) => bump(&metrics.acks),
                Err(err) => tracing::error!(device_id, seq, error = %err, "ack not published"),
            }
        }
    }
    tracing::debug!("MQTT acker stopped");
}

async fn apply_presence(
    mut events: mpsc::Receiver<PresenceEvent>,
    store: Store,
    acks: mpsc::Sender<AckWork>,
    live: Arc<Hub>,
    stop: CancellationToken,
) {
    loop {
        let event = tokio::select! {
            event = events.recv() => event,
            _ = stop.cancelled() => break,
        };
        let Some(event) = event else { break };
        // The event time orders a device's events, across restarts too.
        match store
            .apply_presence(event.device_id, event.online, event.at_us, event.at_us)
            .await
        {
            Ok(applied) => tracing::debug!(
                device_id = event.device_id,
                online = event.online,
                applied,
                "presence"
            ),
            Err(err) => {
                tracing::warn!(device_id = event.device_id, error = %err, "presence not stored")
            }
        }
        live.publish(event.device_id, || LiveEvent::Presence {
            online: event.online,
            at: event.at_us,
        });
        if event.online {
            let _ = acks
                .send(AckWork::Resync {
                    device_id: event.device_id,
                })
                .await;
        }
    }
}
