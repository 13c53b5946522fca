//! A small, honest MQTT sensor for tests: rumqttc (MQTT 3.1.1), credentials from the
//! pairing response, an outbox of unacknowledged batches that it resends (oldest first)
//! after every reconnect, like the firmware velt expects.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use bytes::Bytes;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::Value;
use tokio::sync::watch;
use velt_proto::{ACCEL_SCALE_16G, GYRO_SCALE_2000DPS, Sample, TelemetryBatch};

pub struct TestDevice {
    pub id: i64,
    pub client: AsyncClient,
    telemetry_topic: String,
    status_topic: String,
    outbox: Arc<Mutex<BTreeMap<u64, Bytes>>>,
    /// Highest seq velt acknowledged.
    pub acked: watch::Receiver<u64>,
    /// Number of CONNACKs seen (1 after the first connect).
    pub connects: watch::Receiver<u32>,
    running: Arc<std::sync::atomic::AtomicBool>,
    task: Option<tokio::task::JoinHandle<()>>,
}

/// `n` samples from `t0_us`, 10 ms apart: gravity on z, a little motion.
pub fn motion(t0_us: i64, n: usize) -> Vec<Sample> {
    (0..n)
        .map(|i| {
            let t = i as f32 * 0.01;
            Sample {
                ts_us: t0_us + i as i64 * 10_000,
                accel: [0.5 * (t * 6.0).sin(), 0.2, 9.81 + 0.3 * (t * 12.0).cos()],
                gyro: [0.1, -0.05 * t, 0.02],
            }
        })
        .collect()
}

pub fn batch(seq: u64, session_id: Option<u64>, samples: &[Sample]) -> Bytes {
    let batch = TelemetryBatch::from_samples(
        seq,
        session_id,
        Some(10_000),
        ACCEL_SCALE_16G,
        GYRO_SCALE_2000DPS,
        samples,
    )
    .expect("valid batch");
    Bytes::from(velt_proto::encode_telemetry(&batch))
}

impl TestDevice {
    /// Connects with the `mqtt` credentials of a pairing (or rotation) response.
    pub async fn connect(addr: SocketAddr, mqtt: &Value) -> TestDevice {
        let client_id = mqtt["client_id"].as_str().unwrap();
        let id: i64 = mqtt["username"].as_str().unwrap().parse().unwrap();
        let mut options = MqttOptions::new(client_id, addr.ip().to_string(), addr.port());
        options.set_credentials(
            mqtt["username"].as_str().unwrap(),
            mqtt["password"].as_str().unwrap(),
        );
        options.set_keep_alive(Duration::from_secs(5));
        options.set_max_packet_size(256 * 1024, 256 * 1024);
        let (client, mut events) = AsyncClient::new(options, 1024);
        let ack_topic = mqtt["topics"]["ack"].as_str().unwrap().to_owned();
        let outbox: Arc<Mutex<BTreeMap<u64, Bytes>>> = Arc::default();
        let (acked_tx, acked) = watch::channel(0u64);
        let (connects_tx, connects) = watch::channel(0u32);
        let telemetry_topic = mqtt["topics"]["telemetry"].as_str().unwrap().to_owned();
        let running = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let task = {
            let (client, outbox, topic) = (client.clone(), outbox.clone(), telemetry_topic.clone());
            let running = running.clone();
            tokio::spawn(async move {
                loop {
                    match events.poll().await {
                        Ok(Event::Incoming(Packet::ConnAck(_))) => {
                            // Clean sessions: subscribe again, then resend what is unacked.
                            let client = client.clone();
                            let (outbox, topic, ack_topic) =
                                (outbox.clone(), topic.clone(), ack_topic.clone());
                            tokio::spawn(async move {
                                let _ = client.subscribe(ack_topic, QoS::AtLeastOnce).await;
                                let pending: Vec<Bytes> =
                                    outbox.lock().unwrap().values().cloned().collect();
                                for payload in pending {
                                    let _ = client
                                        .publish(topic.clone(), QoS::AtLeastOnce, false, payload)
                                        .await;
                                }
                            });
                            connects_tx.send_modify(|n| *n += 1);
                        }
                        Ok(Event::Incoming(Packet::Publish(publish)))
                            if publish.topic == ack_topic =>
                        {
                            if let Ok(ack) = velt_proto::decode_ack(&publish.payload) {
                                outbox.lock().unwrap().retain(|&seq, _| seq > ack.seq);
                                acked_tx.send_modify(|acked| *acked = (*acked).max(ack.seq));
                            }
                        }
                        Ok(_) => {}
                        Err(_) if !running.load(std::sync::atomic::Ordering::SeqCst) => break,
                        // Refused or dropped: back off, then rumqttc reconnects.
                        Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
                    }
                }
            })
        };
        let status_topic = mqtt["topics"]["status"].as_str().unwrap().to_owned();
        TestDevice {
            id,
            client,
            telemetry_topic,
            status_topic,
            outbox,
            acked,
            connects,
            running,
            task: Some(task),
        }
    }

    /// Waits for the first CONNACK; panics after `within`.
    pub async fn connected(&mut self, within: Duration) {
        tokio::time::timeout(within, self.connects.wait_for(|n| *n >= 1))
            .await
            .expect("connected in time")
            .unwrap();
    }

    /// Publishes batch `seq` and keeps it until acknowledged.
    pub async fn send(&self, seq: u64, payload: Bytes) {
        self.outbox.lock().unwrap().insert(seq, payload.clone());
        self.client
            .publish(
                self.telemetry_topic.clone(),
                QoS::AtLeastOnce,
                false,
                payload,
            )
            .await
            .unwrap();
    }

    /// Publishes anything on the device's telemetry topic, outside the outbox.
    pub async fn send_raw(&self, payload: impl Into<Bytes>) {
        self.client
            .publish(
                self.telemetry_topic.clone(),
                QoS::AtLeastOnce,
                false,
                payload.into(),
            )
            .await
            .unwrap();
    }

    pub async fn send_status(&self, battery: u8, firmware: &str) {
        let status = velt_proto::DeviceStatus::new(battery, firmware, 60).unwrap();
        let payload = velt_proto::encode_status(&status);
        self.client
            .publish(self.status_topic.clone(), QoS::AtLeastOnce, false, payload)
            .await
            .unwrap();
    }

    /// Waits until every batch up to `seq` is acknowledged.
    pub async fn acked_up_to(&mut self, seq: u64, within: Duration) {
        let waited = tokio::time::timeout(within, self.acked.wait_for(|acked| *acked >= seq))
            .await
            .is_ok();
        assert!(
            waited,
            "batch {seq} not acknowledged within {within:?}; acked {}",
            *self.acked.borrow()
        );
    }

    pub fn unacked(&self) -> usize {
        self.outbox.lock().unwrap().len()
    }

    /// Drops the connection without DISCONNECT (like a battery pulled).
    pub fn pull_the_plug(self) {}

    /// A clean MQTT DISCONNECT; waits until it is sent.
    pub async fn disconnect(mut self) {
        self.running
            .store(false, std::sync::atomic::Ordering::SeqCst);
        self.client.disconnect().await.unwrap();
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
    }
}

impl Drop for TestDevice {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}
