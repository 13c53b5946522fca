//! The MQTT edge end to end: a real `Broker` on a free port, a real SQLite `Store`, real
//! rumqttc clients (MQTT 3.1.1 and 5).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use rumqttc::{
    AsyncClient, ConnectReturnCode, ConnectionError, Event, EventLoop, LastWill, MqttOptions,
    Packet, QoS, SubscribeFilter, SubscribeReasonCode,
};
use tokio::sync::mpsc;
use tokio::time::timeout;
use velt::auth::Tokens;
use velt::broker::{Broker, BrokerSettings, Error, PresenceEvent, load_config};
use velt::store::Store;

const SECRET: &[u8] = b"broker-test-secret-broker-test-secret";
const WAIT: Duration = Duration::from_secs(5);

struct Harness {
    _dir: tempfile::TempDir,
    store: Store,
    tokens: Arc<Tokens>,
    broker: Broker,
    presence: mpsc::Receiver<PresenceEvent>,
}

fn now() -> i64 {
    velt::timestamp::now_us()
}

fn tokens() -> Tokens {
    Tokens::new(SECRET, Duration::from_secs(900), Duration::from_secs(3600)).unwrap()
}

impl Harness {
    async fn start() -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite:{}", dir.path().join("velt.db").display());
        let store = Store::connect(Some(&url), dir.path(), 4).await.unwrap();
        store.migrate().await.unwrap();
        let tokens = Arc::new(tokens());
        let settings = BrokerSettings {
            listen: "127.0.0.1:0".parse().unwrap(),
            config: load_config(None).unwrap(),
        };
        let broker = Broker::start(settings, tokens.clone(), Arc::new(store.clone()))
            .await
            .unwrap();
        assert_ne!(broker.local_addr().port(), 0);
        assert_ne!(broker.local_addr().port(), 1883);
        let presence = broker.presence().unwrap();
        assert!(broker.presence().is_none(), "taken once");
        Harness {
            _dir: dir,
            store,
            tokens,
            broker,
            presence,
        }
    }

    fn port(&self) -> u16 {
        self.broker.local_addr().port()
    }

    async fn user(&self, email: &str) -> i64 {
        self.store
            .insert_user(email, "x", "name", now())
            .await
            .unwrap()
            .id
    }

    /// A device of `user` and its MQTT password.
    async fn device(&self, user: i64, hardware_id: &str) -> (i64, String) {
        let device = self
            .store
            .insert_device(user, hardware_id, "alias", now())
            .await
            .unwrap();
        let token = self
            .tokens
            .issue_device(device.id, user, device.token_version)
            .unwrap()
            .token;
        (device.id, token)
    }

    async fn next_presence(&mut self) -> PresenceEvent {
        timeout(WAIT, self.presence.recv())
            .await
            .expect("presence event in time")
            .expect("presence channel open")
    }
}

fn opts(client_id: &str, port: u16, password: &str) -> MqttOptions {
    let mut options = MqttOptions::new(client_id, "127.0.0.1", port);
    options.set_keep_alive(Duration::from_secs(30));
    options.set_credentials("user", password);
    options
}

/// Polls until CONNACK or the first error; never reconnects (a refused client would
/// otherwise reconnect in a tight loop).
async fn connect(options: MqttOptions) -> Result<(AsyncClient, EventLoop), ConnectionError> {
    let (client, mut events) = AsyncClient::new(options, 100);
    timeout(WAIT, async {
        loop {
            if let Event::Incoming(Packet::ConnAck(_)) = events.poll().await? {
                return Ok::<_, ConnectionError>(());
            }
        }
    })
    .await
    .expect("CONNACK or error in time")?;
    Ok((client, events))
}

async fn refused(options: MqttOptions) -> ConnectionError {
    match connect(options).await {
        Ok(_) => panic!("connection was accepted"),
        Err(err) => err,
    }
}

/// The next incoming packet matching `pick`.
async fn next<T>(events: &mut EventLoop, mut pick: impl FnMut(Packet) -> Option<T>) -> T {
    timeout(WAIT, async {
        loop {
            match events.poll().await {
                Ok(Event::Incoming(packet)) => {
                    if let Some(found) = pick(packet) {
                        return found;
                    }
                }
                Ok(_) => {}
                Err(err) => panic!("connection failed: {err}"),
            }
        }
    })
    .await
    .expect("packet in time")
}

/// Polls until the connection fails; returns how long that took.
async fn closed(events: &mut EventLoop) -> Duration {
    let start = Instant::now();
    timeout(WAIT, async { while events.poll().await.is_ok() {} })
        .await
        .expect("connection closed in time");
    start.elapsed()
}

async fn suback(events: &mut EventLoop) -> Vec<SubscribeReasonCode> {
    next(events, |packet| match packet {
        Packet::SubAck(ack) => Some(ack.return_codes),
        _ => None,
    })
    .await
}

async fn publish(events: &mut EventLoop) -> (String, Bytes) {
    next(events, |packet| match packet {
        Packet::Publish(publish) => Some((publish.topic, publish.payload)),
        _ => None,
    })
    .await
}

/// Keeps an event loop polled in the background, backing off after errors.
fn drive(mut events: EventLoop) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            if events.poll().await.is_err() {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    })
}

fn telemetry(id: i64) -> String {
    format!("velt/devices/{id}/telemetry")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_are_admitted_only_with_a_current_token_for_their_client_id() {
    let h = Harness::start().await;
    let user = h.user("a@example.com").await;
    let (id, token) = h.device(user, "hw-1").await;
    let port = h.port();

    let (client, mut events) = connect(opts(&format!("dev-{id}"), port, &token))
        .await
        .unwrap();
    client.disconnect().await.unwrap();
    closed(&mut events).await;

    let bad = |err: ConnectionError, code: ConnectReturnCode| {
        assert!(
            matches!(&err, ConnectionError::ConnectionRefused(c) if *c == code),
            "{err:?}, expected {code:?}"
        );
    };
    // Bad signature.
    let foreign = Tokens::new(
        b"another-secret",
        Duration::from_secs(60),
        Duration::from_secs(60),
    )
    .unwrap()
    .issue_device(id, user, 1)
    .unwrap()
    .token;
    bad(
        refused(opts(&format!("dev-{id}"), port, &foreign)).await,
        ConnectReturnCode::BadUserNamePassword,
    );
    // Wrong kinds: access and refresh tokens are no device tokens.
    let access = h.tokens.issue_access(user).unwrap().token;
    bad(
        refused(opts(&format!("dev-{id}"), port, &access)).await,
        ConnectReturnCode::BadUserNamePassword,
    );
    let refresh = h.tokens.issue_refresh(user, "fam").unwrap().token;
    bad(
        refused(opts(&format!("user-{user}"), port, &refresh)).await,
        ConnectReturnCode::BadUserNamePassword,
    );
    // Client id bound to the token.
    let (other, _) = h.device(user, "hw-2").await;
    bad(
        refused(opts(&format!("dev-{other}"), port, &token)).await,
        ConnectReturnCode::NotAuthorized,
    );
    bad(
        refused(opts(&format!("user-{}", user + 1), port, &access)).await,
        ConnectReturnCode::NotAuthorized,
    );
    bad(
        refused(opts("velt-ingest", port, &token)).await,
        ConnectReturnCode::NotAuthorized,
    );
    bad(
        refused(opts("anything", port, &token)).await,
        ConnectReturnCode::NotAuthorized,
    );
    let mut no_password = MqttOptions::new(format!("dev-{id}"), "127.0.0.1", port);
    no_password.set_keep_alive(Duration::from_secs(30));
    bad(refused(no_password).await, ConnectReturnCode::NotAuthorized);
    // Expired.
    let short = tokens().with_device_ttl(Duration::ZERO);
    let expired = short.issue_device(id, user, 1).unwrap().token;
    tokio::time::sleep(Duration::from_millis(1100)).await; // expiry has 1 s resolution
    bad(
        refused(opts(&format!("dev-{id}"), port, &expired)).await,
        ConnectReturnCode::BadUserNamePassword,
    );

    // Rotated: the database check refuses (rumqttd closes without a CONNACK).
    assert_eq!(h.store.bump_token_version(user, id).await.unwrap(), Some(2));
    let err = refused(opts(&format!("dev-{id}"), port, &token)).await;
    assert!(
        !matches!(err, ConnectionError::ConnectionRefused(_)),
        "{err:?}"
    );
    let fresh = h.tokens.issue_device(id, user, 2).unwrap().token;
    connect(opts(&format!("dev-{id}"), port, &fresh))
        .await
        .unwrap();
    // Deleted.
    assert!(h.store.delete_device(user, id).await.unwrap());
    refused(opts(&format!("dev-{id}"), port, &fresh)).await;

    let metrics = h.broker.metrics();
    assert_eq!(metrics.connections_refused, 11, "{metrics:?}");
    assert_eq!(metrics.connections_accepted, 2, "{metrics:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_watch_their_own_devices_only() {
    let h = Harness::start().await;
    let alice = h.user("alice@example.com").await;
    let bob = h.user("bob@example.com").await;
    let (mine, token) = h.device(alice, "hw-a").await;
    let (theirs, _) = h.device(bob, "hw-b").await;
    let access = h.tokens.issue_access(alice).unwrap().token;

    let (app, mut app_events) = connect(opts(&format!("user-{alice}-phone"), h.port(), &access))
        .await
        .unwrap();
    app.subscribe_many([
        SubscribeFilter::new(telemetry(mine), QoS::AtLeastOnce),
        SubscribeFilter::new(telemetry(theirs), QoS::AtLeastOnce),
        SubscribeFilter::new(format!("velt/devices/{mine}/ack"), QoS::AtLeastOnce),
        SubscribeFilter::new(format!("velt/devices/{mine}/status"), QoS::AtMostOnce),
    ])
    .await
    .unwrap();
    assert_eq!(
        suback(&mut app_events).await,
        [
            SubscribeReasonCode::Success(QoS::AtLeastOnce),
            SubscribeReasonCode::Failure,
            SubscribeReasonCode::Failure,
            SubscribeReasonCode::Success(QoS::AtMostOnce),
        ]
    );

    let (device, device_events) = connect(opts(&format!("dev-{mine}"), h.port(), &token))
        .await
        .unwrap();
    let _drive = drive(device_events);
    device
        .publish(telemetry(mine), QoS::AtLeastOnce, false, "batch-1")
        .await
        .unwrap();
    let (topic, payload) = publish(&mut app_events).await;
    assert_eq!(
        (topic.as_str(), &payload[..]),
        (telemetry(mine).as_str(), &b"batch-1"[..])
    );

    // A user never publishes: the connection is closed.
    app.publish(telemetry(mine), QoS::AtLeastOnce, false, "fake")
        .await
        .unwrap();
    closed(&mut app_events).await;
    assert!(h.broker.metrics().publishes_refused >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_acl_both_ways() {
    let h = Harness::start().await;
    let user = h.user("a@example.com").await;
    let (id, token) = h.device(user, "hw-1").await;
    let (other, _) = h.device(user, "hw-2").await;
    let client_id = format!("dev-{id}");

    let (client, mut events) = connect(opts(&client_id, h.port(), &token)).await.unwrap();
    client
        .subscribe_many(
            [
                format!("velt/devices/{id}/ack"),
                "#".into(),
                "+/x".into(),
                "$SYS/#".into(),
                format!("velt/devices/{other}/ack"),
                format!("velt/devices/{id}/cmd"),
                "velt/devices/+/ack".into(),
            ]
            .into_iter()
            .map(|filter| SubscribeFilter::new(filter, QoS::AtLeastOnce)),
        )
        .await
        .unwrap();
    let ok = SubscribeReasonCode::Success(QoS::AtLeastOnce);
    let no = SubscribeReasonCode::Failure;
    assert_eq!(suback(&mut events).await, [ok, no, no, no, no, ok, no]);

    // UNSUBSCRIBE: only refused filters (the router has none of them), then a mix; each
    // gets exactly one UNSUBACK.
    client.unsubscribe("#").await.unwrap();
    next(&mut events, |p| {
        matches!(p, Packet::UnsubAck(_)).then_some(())
    })
    .await;
    client
        .unsubscribe(format!("velt/devices/{id}/ack"))
        .await
        .unwrap();
    next(&mut events, |p| {
        matches!(p, Packet::UnsubAck(_)).then_some(())
    })
    .await;
    client
        .unsubscribe(format!("velt/devices/{id}/cmd"))
        .await
        .unwrap();
    next(&mut events, |p| {
        matches!(p, Packet::UnsubAck(_)).then_some(())
    })
    .await;
    // Still alive and pinging.
    client
        .subscribe(format!("velt/devices/{id}/ack"), QoS::AtMostOnce)
        .await
        .unwrap();
    assert_eq!(
        suback(&mut events).await,
        [SubscribeReasonCode::Success(QoS::AtMostOnce)]
    );
    assert!(h.broker.metrics().unsubacks_synthesized >= 1);

    // Own telemetry is acknowledged, foreign telemetry closes the connection.
    client
        .publish(telemetry(id), QoS::AtLeastOnce, false, "ok")
        .await
        .unwrap();
    next(&mut events, |p| {
        matches!(p, Packet::PubAck(_)).then_some(())
    })
    .await;
    client
        .publish(telemetry(other), QoS::AtLeastOnce, false, "not mine")
        .await
        .unwrap();
    closed(&mut events).await;

    let (client, mut events) = connect(opts(&client_id, h.port(), &token)).await.unwrap();
    client
        .publish(
            format!("velt/devices/{id}/ack"),
            QoS::AtLeastOnce,
            false,
            "fake ack",
        )
        .await
        .unwrap();
    closed(&mut events).await;

    // A will on a foreign topic is refused at CONNECT; on its own status it is fine.
    let mut with_will = opts(&client_id, h.port(), &token);
    with_will.set_last_will(LastWill::new(
        telemetry(other),
        "bye",
        QoS::AtMostOnce,
        false,
    ));
    assert!(matches!(
        refused(with_will).await,
        ConnectionError::ConnectionRefused(ConnectReturnCode::NotAuthorized)
    ));
    let mut with_will = opts(&client_id, h.port(), &token);
    with_will.set_last_will(LastWill::new(
        format!("velt/devices/{id}/status"),
        "bye",
        QoS::AtMostOnce,
        false,
    ));
    connect(with_will).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_ascii_topic_is_refused_before_the_router_and_others_are_still_served() {
    let h = Harness::start().await;
    let user = h.user("a@example.com").await;
    let (id, token) = h.device(user, "hw-1").await;
    let (id2, token2) = h.device(user, "hw-2").await;
    // A `#` subscriber is what makes rumqttd's router panic on such a topic.
    let mut link = h.broker.link("velt-all").await.unwrap();
    link.subscribe("#").await.unwrap();

    let (client, mut events) = connect(opts(&format!("dev-{id}"), h.port(), &token))
        .await
        .unwrap();
    client
        .publish("ü/x", QoS::AtLeastOnce, false, "x")
        .await
        .unwrap();
    closed(&mut events).await;

    let (client, events) = connect(opts(&format!("dev-{id2}"), h.port(), &token2))
        .await
        .unwrap();
    let _drive = drive(events);
    client
        .publish(telemetry(id2), QoS::AtLeastOnce, false, "still here")
        .await
        .unwrap();
    let (topic, payload) = timeout(WAIT, link.next()).await.unwrap().unwrap();
    assert_eq!(topic, telemetry(id2));
    assert_eq!(&payload[..], b"still here");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_follows_clean_and_abrupt_disconnects_and_kicks() {
    let mut h = Harness::start().await;
    let user = h.user("a@example.com").await;
    let (id, token) = h.device(user, "hw-1").await;
    let client_id = format!("dev-{id}");

    // Clean DISCONNECT.
    let (client, mut events) = connect(opts(&client_id, h.port(), &token)).await.unwrap();
    let online = h.next_presence().await;
    assert_eq!((online.device_id, online.online), (id, true));
    client.disconnect().await.unwrap();
    closed(&mut events).await;
    let offline = h.next_presence().await;
    assert_eq!((offline.device_id, offline.online), (id, false));
    assert!(offline.seq > online.seq && offline.at_us >= online.at_us);

    // Abrupt: the socket is dropped without DISCONNECT.
    let (client, events) = connect(opts(&client_id, h.port(), &token)).await.unwrap();
    assert!(h.next_presence().await.online);
    drop((client, events));
    assert!(!h.next_presence().await.online);

    // Users produce no presence; a kick closes an idle device at once.
    let access = h.tokens.issue_access(user).unwrap().token;
    let (_app, mut app_events) = connect(opts(&format!("user-{user}"), h.port(), &access))
        .await
        .unwrap();
    let (_client, mut events) = connect(opts(&client_id, h.port(), &token)).await.unwrap();
    let online = h.next_presence().await;
    assert_eq!((online.device_id, online.online), (id, true));
    let start = Instant::now();
    // The device and the app watching it.
    assert_eq!(h.broker.disconnect_device(id).await, 2);
    closed(&mut events).await;
    closed(&mut app_events).await;
    let kicked_after = start.elapsed();
    assert!(kicked_after < Duration::from_secs(1), "{kicked_after:?}");
    assert!(!h.next_presence().await.online);
    // It may come back (with a token that is still valid).
    let _back = connect(opts(&client_id, h.port(), &token)).await.unwrap();
    assert!(h.next_presence().await.online);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keepalive_lapse_closes_after_one_and_a_half_keepalives() {
    use rumqttd::protocol::{Connect, Login, Packet as RawPacket, Protocol, v4::V4};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let mut h = Harness::start().await;
    let user = h.user("a@example.com").await;
    let (id, token) = h.device(user, "hw-1").await;
    let mut socket = tokio::net::TcpStream::connect(h.broker.local_addr())
        .await
        .unwrap();
    let mut buf = BytesMut::new();
    V4.write(
        RawPacket::Connect(
            Connect {
                keep_alive: 1,
                client_id: format!("dev-{id}"),
                clean_session: true,
            },
            None,
            None,
            None,
            Some(Login {
                username: "x".into(),
                password: token,
            }),
        ),
        &mut buf,
    )
    .unwrap();
    socket.write_all(&buf).await.unwrap();
    let mut connack = [0u8; 4];
    socket.read_exact(&mut connack).await.unwrap();
    assert_eq!(connack, [0x20, 0x02, 0x00, 0x00]);
    assert!(h.next_presence().await.online);
    let start = Instant::now();
    // Silent from now on: rumqttd closes after 1.5 x keep-alive.
    let mut rest = Vec::new();
    let read = timeout(WAIT, socket.read_to_end(&mut rest)).await.unwrap();
    let lapsed = start.elapsed();
    assert!(read.is_ok() || read.is_err()); // closed either way
    assert!(
        lapsed >= Duration::from_millis(1400) && lapsed < Duration::from_millis(2500),
        "{lapsed:?}"
    );
    assert!(!h.next_presence().await.online);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keepalive_zero_is_accepted() {
    let h = Harness::start().await;
    let user = h.user("a@example.com").await;
    let (id, token) = h.device(user, "hw-1").await;
    let mut options = opts(&format!("dev-{id}"), h.port(), &token);
    options.set_keep_alive(Duration::ZERO);
    connect(options).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_process_links_receive_device_publishes_and_reach_devices() {
    let h = Harness::start().await;
    let user = h.user("a@example.com").await;
    let (id, token) = h.device(user, "hw-1").await;
    assert!(matches!(
        h.broker.link("dev-1").await,
        Err(Error::InvalidLinkId(_))
    ));
    let mut link = h.broker.link("velt-ingest").await.unwrap();
    link.subscribe(velt_proto::topics::TELEMETRY_FILTER)
        .await
        .unwrap();

    let (client, mut events) = connect(opts(&format!("dev-{id}"), h.port(), &token))
        .await
        .unwrap();
    client
        .subscribe(format!("velt/devices/{id}/ack"), QoS::AtLeastOnce)
        .await
        .unwrap();
    suback(&mut events).await;
    client
        .publish(telemetry(id), QoS::AtLeastOnce, false, "batch-7")
        .await
        .unwrap();
    next(&mut events, |p| {
        matches!(p, Packet::PubAck(_)).then_some(())
    })
    .await;
    let (topic, payload) = timeout(WAIT, link.next()).await.unwrap().unwrap();
    assert_eq!((topic, &payload[..]), (telemetry(id), &b"batch-7"[..]));

    link.publish(
        format!("velt/devices/{id}/ack"),
        Bytes::from_static(b"ack-7"),
    )
    .await
    .unwrap();
    let (topic, payload) = publish(&mut events).await;
    assert_eq!(
        (topic, &payload[..]),
        (format!("velt/devices/{id}/ack"), &b"ack-7"[..])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_tokens_follow_their_acl() {
    let h = Harness::start().await;
    let user = h.user("a@example.com").await;
    let (id, token) = h.device(user, "hw-1").await;
    let acl = vec!["sub:velt/devices/+/telemetry".parse().unwrap()];
    let service = h
        .tokens
        .issue_service("dashboard", acl, Duration::from_secs(60))
        .unwrap()
        .token;
    let (svc, mut svc_events) = connect(opts("svc-dashboard-1", h.port(), &service))
        .await
        .unwrap();
    svc.subscribe_many([
        SubscribeFilter::new(velt_proto::topics::TELEMETRY_FILTER.into(), QoS::AtMostOnce),
        SubscribeFilter::new(velt_proto::topics::STATUS_FILTER.into(), QoS::AtMostOnce),
    ])
    .await
    .unwrap();
    assert_eq!(
        suback(&mut svc_events).await,
        [
            SubscribeReasonCode::Success(QoS::AtMostOnce),
            SubscribeReasonCode::Failure
        ]
    );
    let (device, events) = connect(opts(&format!("dev-{id}"), h.port(), &token))
        .await
        .unwrap();
    let _drive = drive(events);
    device
        .publish(telemetry(id), QoS::AtLeastOnce, false, "t")
        .await
        .unwrap();
    assert_eq!(publish(&mut svc_events).await.0, telemetry(id));
    assert!(matches!(
        refused(opts("svc-other", h.port(), &service)).await,
        ConnectionError::ConnectionRefused(ConnectReturnCode::NotAuthorized)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt5_clients_share_the_port() {
    use rumqttc::v5::mqttbytes::QoS as Q5;
    use rumqttc::v5::mqttbytes::v5::{
        ConnectReturnCode as Code5, Filter, Packet as P5, SubscribeReasonCode as R5,
    };
    use rumqttc::v5::{
        AsyncClient as Client5, ConnectionError as Error5, Event as E5, MqttOptions as Opts5,
    };

    let mut h = Harness::start().await;
    let user = h.user("a@example.com").await;
    let (id, token) = h.device(user, "hw-1").await;
    let opts5 = |password: &str| {
        let mut options = Opts5::new(format!("dev-{id}"), "127.0.0.1", h.port());
        options.set_keep_alive(Duration::from_secs(30));
        options.set_credentials("user", password);
        options
    };
    let connect5 = |options: Opts5| async move {
        let (client, mut events) = Client5::new(options, 100);
        let result = timeout(WAIT, async {
            loop {
                if let E5::Incoming(P5::ConnAck(_)) = events.poll().await? {
                    return Ok::<_, Error5>(());
                }
            }
        })
        .await
        .unwrap();
        result.map(|()| (client, events))
    };
    match connect5(opts5("not a token")).await {
        Err(Error5::ConnectionRefused(code)) => assert_eq!(code, Code5::BadUserNamePassword),
        other => panic!("{:?}", other.err()),
    }
    let (client, mut events) = connect5(opts5(&token)).await.unwrap();
    assert!(h.next_presence().await.online);
    client
        .subscribe_many([
            Filter::new(format!("velt/devices/{id}/ack"), Q5::AtLeastOnce),
            Filter::new("velt/devices/+/ack", Q5::AtLeastOnce),
        ])
        .await
        .unwrap();
    let codes = timeout(WAIT, async {
        loop {
            if let Ok(E5::Incoming(P5::SubAck(ack))) = events.poll().await {
                return ack.return_codes;
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(codes, [R5::Success(Q5::AtLeastOnce), R5::NotAuthorized]);
    let start = Instant::now();
    h.broker.disconnect_device(id).await;
    timeout(WAIT, async { while events.poll().await.is_ok() {} })
        .await
        .unwrap();
    assert!(start.elapsed() < Duration::from_secs(1));
    assert!(!h.next_presence().await.online);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_taken_port_is_a_clear_error() {
    let h = Harness::start().await;
    let taken: SocketAddr = h.broker.local_addr();
    let settings = BrokerSettings {
        listen: taken,
        config: load_config(None).unwrap(),
    };
    let err = Broker::start(settings, h.tokens.clone(), Arc::new(h.store.clone()))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::AddrInUse(addr) if addr == taken),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        format!("MQTT port {taken} is already in use")
    );
}
