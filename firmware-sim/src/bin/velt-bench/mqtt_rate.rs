//! (d) MQTT messages per second through a broker: the same publishers (rumqttc, QoS 1,
//! inflight 100, one telemetry-sized payload) against velt's edge, a plain rumqttd
//! listener and Mosquitto; a message counts when its PUBACK arrives.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use rumqttc::{AsyncClient, Event, MqttOptions, NetworkOptions, Packet, QoS};

/// One publisher: client id, optional (username, password), topic.
pub struct Publisher {
    pub client_id: String,
    pub login: Option<(String, String)>,
    pub topic: String,
}

/// Publishes for `duration` and returns PUBACKed messages per second.
pub async fn rate(
    addr: &str,
    publishers: Vec<Publisher>,
    payload: Bytes,
    duration: Duration,
) -> anyhow::Result<f64> {
    let (host, port) = addr
        .rsplit_once(':')
        .ok_or_else(|| anyhow::anyhow!("bad address"))?;
    let port: u16 = port.parse()?;
    let acked = Arc::new(AtomicU64::new(0));
    let counting = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut tasks = Vec::new();
    let mut clients = Vec::new();
    for p in publishers {
        let mut options = MqttOptions::new(p.client_id, host, port);
        options
            .set_keep_alive(Duration::from_secs(30))
            .set_clean_session(true)
            .set_inflight(100)
            .set_max_packet_size(256 * 1024, 256 * 1024);
        if let Some((user, pass)) = p.login {
            options.set_credentials(user, pass);
        }
        let (client, mut eventloop) = AsyncClient::new(options, 100);
        let mut network = NetworkOptions::new();
        network.set_tcp_nodelay(true);
        eventloop.set_network_options(network);
        let (acked, counting) = (acked.clone(), counting.clone());
        let (connected_tx, connected_rx) = tokio::sync::oneshot::channel();
        tasks.push(tokio::spawn(async move {
            let mut connected = Some(connected_tx);
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        if let Some(tx) = connected.take() {
                            let _ = tx.send(());
                        }
                    }
                    Ok(Event::Incoming(Packet::PubAck(_))) => {
                        if counting.load(Ordering::Relaxed) {
                            acked.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) => return,
                    Ok(_) => {}
                    Err(_) => return,
                }
            }
        }));
        tokio::time::timeout(Duration::from_secs(10), connected_rx)
            .await
            .map_err(|_| anyhow::anyhow!("{addr}: no CONNACK within 10 s"))?
            .map_err(|_| anyhow::anyhow!("{addr}: connection refused"))?;
        clients.push((client, p.topic));
    }
    let start = Instant::now();
    let deadline = start + duration;
    counting.store(true, Ordering::Relaxed);
    let mut publishers = Vec::new();
    for (client, topic) in clients {
        let payload = payload.clone();
        publishers.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                if client
                    .publish_bytes(topic.clone(), QoS::AtLeastOnce, false, payload.clone())
                    .await
                    .is_err()
                {
                    break;
                }
            }
            client
        }));
    }
    let mut clients = Vec::new();
    for p in publishers {
        clients.push(p.await?);
    }
    counting.store(false, Ordering::Relaxed);
    let elapsed = start.elapsed().as_secs_f64();
    let total = acked.load(Ordering::Relaxed);
    for client in clients {
        let _ = client.try_disconnect();
    }
    for task in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(2), task).await;
    }
    Ok(total as f64 / elapsed)
}

/// A plain rumqttd (router + one v4 listener, no auth, no ACL) on velt's router limits,
/// in this process. rumqttd has no shutdown: it lives until the bench exits.
pub async fn start_plain_rumqttd() -> anyhow::Result<String> {
    use rumqttd::{ConnectionSettings, LinkType, Router, RouterConfig, Server, ServerSettings};
    let router = Router::new(
        0,
        RouterConfig {
            max_connections: 10_010,
            max_outgoing_packet_count: 200,
            max_segment_size: 4 * 1024 * 1024,
            max_segment_count: 3,
            ..RouterConfig::default()
        },
    );
    let router_tx = router.spawn();
    let addr = super::server::free_port()?;
    let settings = ServerSettings {
        name: "plain".into(),
        listen: addr,
        tls: None,
        next_connection_delay_ms: 0,
        connections: ConnectionSettings {
            connection_timeout_ms: 5000,
            max_payload_size: 131_072,
            max_inflight_count: 100,
            auth: None,
            external_auth: None,
            dynamic_filters: true,
        },
    };
    let mut server = Server::new(settings, router_tx, rumqttd::protocol::v4::V4);
    tokio::spawn(async move {
        if let Err(err) = server.start(LinkType::Remote).await {
            eprintln!("plain rumqttd stopped: {err}");
        }
    });
    // Wait until it accepts.
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return Ok(addr.to_string());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    anyhow::bail!("plain rumqttd did not start on {addr}")
}
