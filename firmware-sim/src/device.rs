//! One simulated sensor on MQTT, behaving like good firmware.
//!
//! Two tasks per device: a poller that owns rumqttc's `EventLoop` (it must be polled all
//! the time) and forwards what matters (connected, subscribed, acks, disconnects), and
//! the device loop here, which builds batches from a [`SampleSource`], keeps every batch
//! in an outbox until an `Ack{seq}` covers it, and resends the outbox oldest first after
//! each reconnect (clean sessions: the broker forgets everything) and after an ack
//! timeout. A refused or lost connection is retried with exponential backoff and jitter.
//!
//! Faults on demand: dropping the TCP connection every so often (no DISCONNECT, like a
//! radio losing signal), publishing some batches twice, and a skewed clock.

use std::{
    collections::VecDeque,
    sync::Arc,
    time::{Duration, Instant},
};

use bytes::Bytes;
use rand::{Rng, SeedableRng, rngs::StdRng};
use rumqttc::{
    AsyncClient, ConnectionError, Event, EventLoop, MqttOptions, NetworkOptions, Outgoing, Packet,
    QoS, SubscribeReasonCode,
};
use serde::Serialize;
use tokio::{
    sync::{Notify, mpsc},
    time::sleep_until,
};
use tokio_util::sync::CancellationToken;
use velt_proto::{
    DeviceStatus, Sample, TelemetryBatch,
    topics::{self, Channel},
};

use crate::{SampleSource, creds::DeviceCreds, now_us, stats::LiveStats};

/// How batches are released.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pacing {
    /// A batch goes out when the wall clock reaches its last sample (`speed` 2.0 plays
    /// twice as fast; timestamps are not scaled).
    RealTime { speed: f64 },
    /// As fast as the outbox window allows (load tests); timestamps run ahead of the clock.
    Unpaced,
}

/// Faults injected on purpose.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Faults {
    /// Drop the TCP connection (no DISCONNECT) this often.
    pub drop_connection_every: Option<Duration>,
    /// Probability (0..=1) that a new batch is published twice.
    pub duplicate_rate: f64,
    /// Added to every sample timestamp (µs; negative: a clock running behind).
    pub clock_skew_us: i64,
}

/// How a device behaves.
#[derive(Debug, Clone)]
pub struct DeviceOptions {
    /// Samples per batch (1..=4096).
    pub batch: usize,
    pub pacing: Pacing,
    /// Stop producing after this long (wall clock); `None`: when the source ends.
    pub duration: Option<Duration>,
    /// Stop producing after this many samples.
    pub max_samples: Option<u64>,
    /// Batches kept unacknowledged at most; production pauses while the outbox is full.
    pub max_unacked: usize,
    /// Resend a batch not acknowledged for this long.
    pub ack_timeout: Duration,
    /// After producing, wait this long at most for the outstanding acks.
    pub drain_timeout: Duration,
    /// Publish a `DeviceStatus` this often.
    pub status_every: Option<Duration>,
    /// Keep the connection open until `duration` passes even when the source is done
    /// (idle-connection tests).
    pub stay_connected: bool,
    pub keep_alive: Duration,
    /// Session id carried in every batch.
    pub session_id: Option<u64>,
    /// Time of the first sample, µs since the epoch; `None`: now (but never before the
    /// end of the device's previous run).
    pub start_us: Option<i64>,
    pub faults: Faults,
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    /// MQTT packets in flight (QoS 1 publishes awaiting PUBACK) at most.
    pub inflight: u16,
    /// QoS of telemetry publishes. 1 by default; 0 is safe too, because velt's own acks
    /// and the outbox make delivery durable, and it saves the PUBACK in front of the ack.
    pub telemetry_qos: QoS,
    pub firmware_version: String,
    pub seed: u64,
}

impl Default for DeviceOptions {
    fn default() -> Self {
        DeviceOptions {
            batch: 50,
            pacing: Pacing::RealTime { speed: 1.0 },
            duration: Some(Duration::from_secs(60)),
            max_samples: None,
            max_unacked: 200,
            ack_timeout: Duration::from_secs(5),
            drain_timeout: Duration::from_secs(10),
            status_every: Some(Duration::from_secs(10)),
            stay_connected: false,
            keep_alive: Duration::from_secs(30),
            session_id: None,
            start_us: None,
            faults: Faults::default(),
            telemetry_qos: QoS::AtLeastOnce,
            backoff_initial: Duration::from_millis(100),
            backoff_max: Duration::from_secs(5),
            inflight: 100,
            firmware_version: concat!("velt-sim ", env!("CARGO_PKG_VERSION")).to_owned(),
            seed: 0,
        }
    }
}

/// What one device did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DeviceReport {
    pub device_id: u64,
    pub sent_batches: u64,
    pub sent_samples: u64,
    pub acked_batches: u64,
    pub acked_samples: u64,
    pub outstanding_batches: u64,
    pub outstanding_samples: u64,
    pub resent_batches: u64,
    pub duplicate_batches: u64,
    pub reconnects: u64,
    pub connect_failures: u64,
    pub status_messages: u64,
    pub encode_errors: u64,
    pub payload_bytes: u64,
    pub mqtt_bytes: u64,
    /// First and last sample time sent (µs since the epoch, skew included).
    pub first_ts_us: Option<i64>,
    pub last_ts_us: Option<i64>,
    /// The counters to persist for the next run.
    pub next_seq: u64,
    pub next_ts_us: i64,
    #[serde(skip)]
    pub latencies_us: Vec<u32>,
}

/// What the poller tells the device loop.
#[derive(Debug)]
enum Link {
    Connected,
    Subscribed { granted: bool },
    Ack(u64),
    Disconnected { error: String, refused: bool },
}

struct Entry {
    seq: u64,
    samples: u64,
    payload: Bytes,
    /// Publications so far, and the connection of the last one.
    sends: u32,
    sent_on: u64,
    last_sent: Option<Instant>,
}

/// A paired sensor and the broker it talks to.
#[derive(Debug, Clone)]
pub struct Device {
    creds: DeviceCreds,
    host: String,
    port: u16,
}

impl Device {
    /// `mqtt_addr` is `host:port` of velt's MQTT listener.
    pub fn new(creds: DeviceCreds, mqtt_addr: &str) -> anyhow::Result<Device> {
        let (host, port) = mqtt_addr
            .rsplit_once(':')
            .ok_or_else(|| anyhow::anyhow!("{mqtt_addr:?}: expected host:port"))?;
        let port = port
            .parse()
            .map_err(|_| anyhow::anyhow!("{mqtt_addr:?}: bad port"))?;
        Ok(Device {
            creds,
            host: host.trim_matches(['[', ']']).to_owned(),
            port,
        })
    }

    pub fn id(&self) -> u64 {
        self.creds.device_id
    }

    fn mqtt_options(&self, options: &DeviceOptions) -> MqttOptions {
        let mut mqtt = MqttOptions::new(&self.creds.client_id, &self.host, self.port);
        mqtt.set_credentials(&self.creds.username, &self.creds.password)
            .set_keep_alive(options.keep_alive.max(Duration::from_secs(1)))
            .set_clean_session(true)
            .set_inflight(options.inflight.max(1))
            .set_max_packet_size(256 * 1024, 256 * 1024);
        mqtt
    }

    /// Runs the device until its source or duration is over and the outbox is drained
    /// (or `drain_timeout` passed), or until `stop`.
    pub async fn run(
        self,
        mut source: impl SampleSource,
        options: &DeviceOptions,
        live: Arc<LiveStats>,
        stop: CancellationToken,
    ) -> DeviceReport {
        let batch_len = options.batch.clamp(1, velt_proto::MAX_SAMPLES_PER_BATCH);
        let (client, mut eventloop) = AsyncClient::new(self.mqtt_options(options), 64);
        let mut network = NetworkOptions::new();
        network.set_connection_timeout(5);
        // Small packets both ways: no Nagle delay on the device side.
        network.set_tcp_nodelay(true);
        eventloop.set_network_options(network);
        let (events_tx, mut events) = mpsc::unbounded_channel();
        let drop_now = Arc::new(Notify::new());
        let poller_stop = CancellationToken::new();
        let ack_topic = topics::topic(self.creds.device_id, Channel::Ack);
        let poller = tokio::spawn(poll(
            eventloop,
            events_tx,
            drop_now.clone(),
            poller_stop.clone(),
            ack_topic.clone(),
            (options.backoff_initial, options.backoff_max),
            options.seed,
        ));
        let telemetry_topic = topics::topic(self.creds.device_id, Channel::Telemetry);
        let status_topic = topics::topic(self.creds.device_id, Channel::Status);
        let publish_overhead = 2 + telemetry_topic.len() + 2;

        let mut rng = StdRng::seed_from_u64(options.seed ^ self.creds.device_id);
        let start = Instant::now();
        let base_us = options
            .start_us
            .unwrap_or_else(|| now_us().max(self.creds.next_ts_us));
        let deadline = options.duration.map(|d| start + d);
        let mut report = DeviceReport {
            device_id: self.creds.device_id,
            next_seq: self.creds.next_seq.max(1),
            next_ts_us: self.creds.next_ts_us,
            ..DeviceReport::default()
        };
        let mut outbox: VecDeque<Entry> = VecDeque::new();
        let mut next: Option<(Vec<Sample>, Instant)> = None;
        let mut source_done = false;
        let mut produced: u64 = 0;
        let mut connection: u64 = 0;
        let mut ready = false;
        let mut drain_deadline: Option<Instant> = None;
        let mut next_status = options.status_every.map(|every| start + every);
        let mut next_drop = options
            .faults
            .drop_connection_every
            .map(|every| start + every);
        let far = start + Duration::from_secs(365 * 24 * 3600);

        loop {
            let now = Instant::now();
            let producing = !source_done && deadline.is_none_or(|d| now < d);
            if producing && next.is_none() {
                let room = options.max_samples.map_or(batch_len, |max| {
                    (max - produced).min(batch_len as u64) as usize
                });
                let samples = if room == 0 {
                    Vec::new()
                } else {
                    source.next_batch(room)
                };
                match samples.last() {
                    None => source_done = true,
                    Some(last) => {
                        let release = match options.pacing {
                            Pacing::Unpaced => now,
                            Pacing::RealTime { speed } => {
                                start
                                    + Duration::from_secs_f64(
                                        last.ts_us.max(0) as f64 / 1e6 / speed.max(1e-6),
                                    )
                            }
                        };
                        produced += samples.len() as u64;
                        next = Some((samples, release));
                    }
                }
                continue;
            }
            let holding = options.stay_connected && deadline.is_some_and(|d| now < d);
            if !producing && !holding {
                let until = *drain_deadline.get_or_insert(now + options.drain_timeout);
                if outbox.is_empty() || now >= until {
                    break;
                }
            }
            let can_emit = producing && outbox.len() < options.max_unacked.max(1);
            let release_at = next.as_ref().map_or(far, |(_, at)| *at);

            // The earliest timer: end of production, status, planned drop, ack timeout, drain.
            let mut wake = far;
            let deadline_ahead = deadline.filter(|d| now < *d);
            for at in [deadline_ahead, next_status, next_drop, drain_deadline]
                .into_iter()
                .flatten()
            {
                wake = wake.min(at);
            }
            if ready && let Some(sent) = outbox.front().and_then(|e| e.last_sent) {
                wake = wake.min(sent + options.ack_timeout);
            }

            tokio::select! {
                biased;
                _ = stop.cancelled() => break,
                event = events.recv() => {
                    let Some(event) = event else { break };
                    match event {
                        Link::Connected => {
                            connection += 1;
                            if connection > 1 {
                                report.reconnects += 1;
                                LiveStats::add(&live.reconnects, 1);
                            }
                            // Clean session: subscribe again after every CONNACK.
                            let _ = client.subscribe(ack_topic.clone(), QoS::AtLeastOnce).await;
                        }
                        Link::Subscribed { granted } => {
                            if !granted {
                                tracing::warn!(device = self.creds.device_id, "ack subscription refused");
                            }
                            ready = true;
                            LiveStats::add(&live.connected, 1);
                            // Oldest first: whatever was not acked on earlier connections.
                            for entry in outbox.iter_mut().filter(|e| e.sent_on != connection) {
                                send(&client, &telemetry_topic, options.telemetry_qos, entry, connection, publish_overhead, &mut report, &live).await;
                            }
                        }
                        Link::Ack(acked) => {
                            let now = Instant::now();
                            while outbox.front().is_some_and(|e| e.seq <= acked) {
                                let Some(entry) = outbox.pop_front() else { break };
                                report.acked_batches += 1;
                                report.acked_samples += entry.samples;
                                LiveStats::add(&live.acked_batches, 1);
                                LiveStats::add(&live.acked_samples, entry.samples);
                                if let Some(sent) = entry.last_sent {
                                    let latency = now - sent;
                                    report.latencies_us.push(latency.as_micros().min(u32::MAX as u128) as u32);
                                    live.record_latency(latency);
                                }
                            }
                        }
                        Link::Disconnected { error, refused } => {
                            if ready {
                                tracing::debug!(device = self.creds.device_id, %error, "disconnected");
                                live.connected.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
                            } else {
                                tracing::warn!(device = self.creds.device_id, %error, refused, "cannot connect");
                                report.connect_failures += 1;
                            }
                            ready = false;
                        }
                    }
                }
                _ = sleep_until(release_at.into()), if can_emit => {
                    let Some((samples, _)) = next.take() else { continue };
                    let skew = options.faults.clock_skew_us;
                    let samples: Vec<Sample> = samples
                        .into_iter()
                        .map(|s| Sample { ts_us: base_us + s.ts_us + skew, ..s })
                        .collect();
                    let seq = report.next_seq;
                    let batch = match TelemetryBatch::from_samples(
                        seq,
                        options.session_id,
                        source.period_us(),
                        velt_proto::ACCEL_SCALE_16G,
                        velt_proto::GYRO_SCALE_2000DPS,
                        &samples,
                    ) {
                        Ok(batch) => batch,
                        Err(err) => {
                            report.encode_errors += 1;
                            tracing::warn!(device = self.creds.device_id, error = %err, "batch not encodable; skipped");
                            continue;
                        }
                    };
                    report.next_seq += 1;
                    let last = batch.last_ts_us();
                    report.first_ts_us.get_or_insert(batch.t0_us());
                    report.last_ts_us = Some(last);
                    report.next_ts_us = report.next_ts_us.max(last + 1);
                    outbox.push_back(Entry {
                        seq,
                        samples: batch.len() as u64,
                        payload: Bytes::from(velt_proto::encode_telemetry(&batch)),
                        sends: 0,
                        sent_on: 0,
                        last_sent: None,
                    });
                    if ready && let Some(entry) = outbox.back_mut() {
                        send(&client, &telemetry_topic, options.telemetry_qos, entry, connection, publish_overhead, &mut report, &live).await;
                        if options.faults.duplicate_rate > 0.0 && rng.random::<f64>() < options.faults.duplicate_rate {
                            let _ = client.publish_bytes(telemetry_topic.clone(), QoS::AtLeastOnce, false, entry.payload.clone()).await;
                            report.duplicate_batches += 1;
                        }
                    }
                }
                _ = sleep_until(wake.into()) => {
                    let now = Instant::now();
                    if let Some(at) = next_status && now >= at {
                        next_status = options.status_every.map(|every| at + every);
                        if ready {
                            let elapsed = start.elapsed().as_secs();
                            // Drains 1 % every 30 s of running.
                            let battery = 100u64.saturating_sub(elapsed / 30).max(1) as u8;
                            if let Ok(status) = DeviceStatus::new(battery, options.firmware_version.clone(), 3600 + elapsed as u32) {
                                let payload = Bytes::from(velt_proto::encode_status(&status));
                                if client.publish_bytes(status_topic.clone(), QoS::AtLeastOnce, false, payload).await.is_ok() {
                                    report.status_messages += 1;
                                }
                            }
                        }
                    }
                    if let Some(at) = next_drop && now >= at {
                        next_drop = options.faults.drop_connection_every.map(|every| now + every);
                        if ready {
                            drop_now.notify_one();
                        }
                    }
                    if ready {
                        for entry in outbox.iter_mut() {
                            if entry.last_sent.is_some_and(|sent| now >= sent + options.ack_timeout) {
                                send(&client, &telemetry_topic, options.telemetry_qos, entry, connection, publish_overhead, &mut report, &live).await;
                            }
                        }
                    }
                }
            }
        }

        if ready {
            live.connected
                .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        }
        report.outstanding_batches = outbox.len() as u64;
        report.outstanding_samples = outbox.iter().map(|e| e.samples).sum();
        // A graceful goodbye, then stop the poller whatever happened to it.
        let _ = client.try_disconnect();
        let mut poller = poller;
        if tokio::time::timeout(Duration::from_secs(1), &mut poller)
            .await
            .is_err()
        {
            poller_stop.cancel();
            let _ = poller.await;
        }
        report
    }
}

/// Publishes one outbox entry and does the bookkeeping.
#[allow(clippy::too_many_arguments)]
async fn send(
    client: &AsyncClient,
    topic: &str,
    qos: QoS,
    entry: &mut Entry,
    connection: u64,
    overhead: usize,
    report: &mut DeviceReport,
    live: &LiveStats,
) {
    if client
        .publish_bytes(topic.to_owned(), qos, false, entry.payload.clone())
        .await
        .is_err()
    {
        return;
    }
    entry.sends += 1;
    entry.sent_on = connection;
    entry.last_sent = Some(Instant::now());
    if entry.sends == 1 {
        report.sent_batches += 1;
        report.sent_samples += entry.samples;
        report.payload_bytes += entry.payload.len() as u64;
        report.mqtt_bytes += publish_packet_len(overhead + entry.payload.len()) as u64;
        LiveStats::add(&live.sent_batches, 1);
        LiveStats::add(&live.sent_samples, entry.samples);
    } else {
        report.resent_batches += 1;
        LiveStats::add(&live.resent_batches, 1);
    }
}

/// Size of an MQTT PUBLISH packet with this remaining length (fixed header included).
fn publish_packet_len(remaining: usize) -> usize {
    let mut header = 2;
    let mut rest = remaining >> 7;
    while rest > 0 {
        header += 1;
        rest >>= 7;
    }
    header + remaining
}

/// Owns the event loop: polls it without pause, forwards what the device needs, backs
/// off after failures, and drops the connection when told to.
async fn poll(
    mut eventloop: EventLoop,
    events: mpsc::UnboundedSender<Link>,
    drop_now: Arc<Notify>,
    stop: CancellationToken,
    ack_topic: String,
    (initial, max): (Duration, Duration),
    seed: u64,
) {
    let mut rng = StdRng::seed_from_u64(seed.wrapping_add(0x9e37_79b9));
    let mut backoff = initial;
    loop {
        let event = tokio::select! {
            biased;
            _ = stop.cancelled() => return,
            _ = drop_now.notified() => {
                // Close the socket without DISCONNECT; nothing of it is replayed (clean session).
                eventloop.clean();
                eventloop.pending.clear();
                let _ = events.send(Link::Disconnected { error: "dropped on purpose".into(), refused: false });
                continue;
            }
            event = eventloop.poll() => event,
        };
        let forward = match event {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                backoff = initial;
                Some(Link::Connected)
            }
            Ok(Event::Incoming(Packet::SubAck(suback))) => Some(Link::Subscribed {
                granted: suback
                    .return_codes
                    .iter()
                    .all(|code| matches!(code, SubscribeReasonCode::Success(_))),
            }),
            Ok(Event::Incoming(Packet::Publish(publish))) if publish.topic == ack_topic => {
                match velt_proto::decode_ack(&publish.payload) {
                    Ok(ack) => Some(Link::Ack(ack.seq)),
                    Err(err) => {
                        tracing::warn!(error = %err, "malformed ack ignored");
                        None
                    }
                }
            }
            Ok(Event::Outgoing(Outgoing::Disconnect)) => return,
            Ok(_) => None,
            Err(err) => {
                let refused = matches!(
                    err,
                    ConnectionError::ConnectionRefused(_) | ConnectionError::MqttState(_)
                );
                let _ = events.send(Link::Disconnected {
                    error: err.to_string(),
                    refused,
                });
                // Full jitter keeps a fleet from reconnecting in lockstep.
                let wait = backoff.mul_f64(0.5 + rng.random::<f64>() / 2.0);
                backoff = (backoff * 2).min(max);
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(wait) => {}
                }
                None
            }
        };
        if let Some(link) = forward
            && events.send(link).is_err()
        {
            return;
        }
    }
}
