//! MQTT ingest end to end: real sensors (rumqttc) against the real server, on both
//! backends: credentials, sample → row → ack, idempotent resends, bad payloads,
//! sessions, presence and status, rotation and unpairing.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::{
    common::{T0, TestApp, User, backend_tests},
    device::{TestDevice, batch, motion},
};

const WAIT: Duration = Duration::from_secs(10);

backend_tests!(
    pairing_returns_credentials_that_get_is_never_shown,
    samples_become_rows_once_and_are_acknowledged,
    malformed_and_oversized_payloads_are_skipped_and_nothing_stalls,
    batches_go_to_their_session_or_the_open_one,
    presence_and_status_show_in_the_device_list,
    rotation_and_unpairing_end_the_live_connection,
    users_watch_their_devices_live_over_mqtt,
    a_gap_holds_the_ack_until_the_resend_fills_it,
);

/// Pairs a device and returns its pairing response.
pub async fn pair(app: &TestApp, user: &User) -> Value {
    app.pairing(user).await
}

/// Polls `check` until it holds or `within` passes.
pub async fn eventually<F: AsyncFnMut() -> bool>(within: Duration, what: &str, mut check: F) {
    let deadline = tokio::time::Instant::now() + within;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn pairing_returns_credentials_that_get_is_never_shown(app: TestApp) {
    let user = app.signup().await;
    let paired = pair(&app, &user).await;
    let id = paired["id"].as_i64().unwrap();
    let mqtt = &paired["mqtt"];
    assert_eq!(mqtt["client_id"], format!("dev-{id}"));
    assert_eq!(mqtt["username"], id.to_string());
    assert_eq!(
        mqtt["topics"]["telemetry"],
        format!("velt/devices/{id}/telemetry")
    );
    assert_eq!(mqtt["topics"]["ack"], format!("velt/devices/{id}/ack"));
    assert!(mqtt["password"].as_str().unwrap().len() > 40);
    let shown = app
        .get(&format!("/api/v1/devices/{id}"), &user.access)
        .await;
    assert!(
        shown.body.get("mqtt").is_none()
            && !shown
                .body
                .to_string()
                .contains(mqtt["password"].as_str().unwrap())
    );
    let listed = app.get("/api/v1/devices", &user.access).await;
    assert!(!listed.body.to_string().contains("password"));
}

async fn samples_become_rows_once_and_are_acknowledged(app: TestApp) {
    let user = app.signup().await;
    let paired = pair(&app, &user).await;
    let mut device = TestDevice::connect(app.mqtt_addr, &paired["mqtt"]).await;
    device.connected(WAIT).await;
    let samples = motion(T0, 50);
    device.send(1, batch(1, None, &samples)).await;
    device.acked_up_to(1, WAIT).await;
    let rows = format!(
        "SELECT COUNT(*) FROM telemetry WHERE device_id = {}",
        device.id
    );
    assert_eq!(app.scalar(&rows).await, 50, "acked means committed");

    // The same batch again (a lost ack), then the next one: no duplicate rows.
    device.send(1, batch(1, None, &samples)).await;
    device
        .send(2, batch(2, None, &motion(T0 + 500_000, 50)))
        .await;
    device.acked_up_to(2, WAIT).await;
    assert_eq!(app.scalar(&rows).await, 100);
    assert_eq!(device.unacked(), 0);
    // Values survive the int16 quantization within half a count.
    let az: f64 = app
        .scalar_f64(&format!(
            "SELECT az FROM telemetry WHERE device_id = {} AND ts = {T0}",
            device.id
        ))
        .await;
    assert!(
        (az - f64::from(samples[0].accel[2])).abs()
            <= f64::from(velt_proto::ACCEL_SCALE_16G) / 2.0 + 1e-6
    );
}

async fn malformed_and_oversized_payloads_are_skipped_and_nothing_stalls(app: TestApp) {
    let user = app.signup().await;
    let paired = pair(&app, &user).await;
    let mut device = TestDevice::connect(app.mqtt_addr, &paired["mqtt"]).await;
    device.connected(WAIT).await;
    device.send_raw(&b"definitely not postcard"[..]).await;
    device.send_raw(Vec::new()).await;
    let mut truncated = batch(1, None, &motion(T0, 50)).to_vec();
    truncated.truncate(truncated.len() / 2);
    device.send_raw(truncated).await;
    device.send(1, batch(1, None, &motion(T0, 50))).await;
    device.acked_up_to(1, WAIT).await;
    assert_eq!(app.scalar("SELECT COUNT(*) FROM telemetry").await, 50);

    // Past the broker's payload limit: that connection is closed, the broker goes on.
    let other = pair(&app, &user).await;
    let mut big = TestDevice::connect(app.mqtt_addr, &other["mqtt"]).await;
    big.connected(WAIT).await;
    big.send_raw(vec![0u8; 200 * 1024]).await;
    eventually(WAIT, "the oversized publisher to be dropped", async || {
        *big.connects.borrow() >= 2
    })
    .await;
    device
        .send(2, batch(2, None, &motion(T0 + 500_000, 50)))
        .await;
    device.acked_up_to(2, WAIT).await;
    assert_eq!(app.scalar("SELECT COUNT(*) FROM telemetry").await, 100);
}

async fn batches_go_to_their_session_or_the_open_one(app: TestApp) {
    let (user, eve) = (app.signup().await, app.signup().await);
    let paired = pair(&app, &user).await;
    let id = paired["id"].as_i64().unwrap();
    let named = app
        .post("/api/v1/sessions", &user.access, json!({}))
        .await
        .body["id"]
        .as_u64()
        .unwrap();
    let foreign = app
        .post("/api/v1/sessions", &eve.access, json!({}))
        .await
        .body["id"]
        .as_u64()
        .unwrap();
    let mut device = TestDevice::connect(app.mqtt_addr, &paired["mqtt"]).await;
    device.connected(WAIT).await;

    device.send(1, batch(1, Some(named), &motion(T0, 10))).await;
    device.acked_up_to(1, WAIT).await;
    app.call(
        reqwest::Method::PATCH,
        &format!("/api/v1/sessions/{named}"),
        Some(&user.access),
        None,
    )
    .await;
    let open = app
        .post("/api/v1/sessions", &user.access, json!({"device_id": id}))
        .await
        .body["id"]
        .as_i64()
        .unwrap();
    // Session attribution is cached for a second; let it pass.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    // Naming another user's session falls back to the device's open session.
    device
        .send(2, batch(2, Some(foreign), &motion(T0 + 1_000_000, 10)))
        .await;
    device
        .send(3, batch(3, None, &motion(T0 + 2_000_000, 10)))
        .await;
    device.acked_up_to(3, WAIT).await;
    let count = async |session: i64| {
        app.scalar(&format!(
            "SELECT COUNT(*) FROM telemetry WHERE session_id = {session}"
        ))
        .await
    };
    assert_eq!(count(named as i64).await, 10);
    assert_eq!(count(open).await, 20);
    assert_eq!(count(foreign as i64).await, 0);
}

async fn presence_and_status_show_in_the_device_list(app: TestApp) {
    let user = app.signup().await;
    let paired = pair(&app, &user).await;
    let path = format!("/api/v1/devices/{}", paired["id"]);
    assert_eq!(
        app.get(&path, &user.access).await.body["status"],
        "onboarding"
    );
    let status = async || app.get(&path, &user.access).await.body;

    let mut device = TestDevice::connect(app.mqtt_addr, &paired["mqtt"]).await;
    device.connected(WAIT).await;
    eventually(WAIT, "online", async || {
        status().await["status"] == "online"
    })
    .await;
    device.send_status(87, "1.4.2").await;
    eventually(WAIT, "the status message", async || {
        status().await["battery_level"] == 87
    })
    .await;
    let shown = status().await;
    assert_eq!(shown["version"], "1.4.2");
    assert!(shown["last_seen_at"].is_string());
    device.disconnect().await;
    eventually(WAIT, "offline after DISCONNECT", async || {
        status().await["status"] == "offline"
    })
    .await;

    // Unclean: the socket just goes away.
    let mut device = TestDevice::connect(app.mqtt_addr, &paired["mqtt"]).await;
    device.connected(WAIT).await;
    eventually(WAIT, "online again", async || {
        status().await["status"] == "online"
    })
    .await;
    device.pull_the_plug();
    eventually(WAIT, "offline after a dropped socket", async || {
        status().await["status"] == "offline"
    })
    .await;
}

async fn rotation_and_unpairing_end_the_live_connection(app: TestApp) {
    let user = app.signup().await;
    let paired = pair(&app, &user).await;
    let id = paired["id"].as_i64().unwrap();
    let mut old = TestDevice::connect(app.mqtt_addr, &paired["mqtt"]).await;
    old.connected(WAIT).await;

    let rotated = app
        .post(
            &format!("/api/v1/devices/{id}/token"),
            &user.access,
            json!({}),
        )
        .await;
    assert_eq!(rotated.status, StatusCode::OK, "{rotated:?}");
    let fresh = &rotated.body["mqtt"];
    assert_ne!(fresh["password"], paired["mqtt"]["password"]);
    // The old connection is dropped at once and its reconnects are refused.
    let path = format!("/api/v1/devices/{id}");
    eventually(WAIT, "offline after rotation", async || {
        app.get(&path, &user.access).await.body["status"] == "offline"
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        *old.connects.borrow(),
        1,
        "the old password no longer connects"
    );

    let mut new = TestDevice::connect(app.mqtt_addr, fresh).await;
    new.connected(WAIT).await;
    new.send(1, batch(1, None, &motion(T0, 5))).await;
    new.acked_up_to(1, WAIT).await;

    let eve = app.signup().await;
    assert_eq!(
        app.post(
            &format!("/api/v1/devices/{id}/token"),
            &eve.access,
            json!({})
        )
        .await
        .status,
        StatusCode::NOT_FOUND
    );

    assert_eq!(
        app.delete(&path, &user.access).await.status,
        StatusCode::NO_CONTENT
    );
    let before = *new.connects.borrow();
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(
        *new.connects.borrow(),
        before,
        "a deleted device cannot reconnect"
    );
    new.send_raw(batch(2, None, &motion(T0 + 100_000, 5))).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        app.scalar(&format!(
            "SELECT COUNT(*) FROM telemetry WHERE device_id = {id}"
        ))
        .await,
        0
    );
}

async fn users_watch_their_devices_live_over_mqtt(app: TestApp) {
    use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};

    let user = app.signup().await;
    let paired = pair(&app, &user).await;
    let id = paired["id"].as_i64().unwrap();
    let mut options = MqttOptions::new(
        format!("user-{}-phone", user.id),
        "127.0.0.1",
        app.mqtt_addr.port(),
    );
    options.set_credentials("app", user.access.clone());
    options.set_keep_alive(Duration::from_secs(5));
    let (watcher, mut events) = AsyncClient::new(options, 64);
    watcher
        .subscribe(format!("velt/devices/{id}/telemetry"), QoS::AtLeastOnce)
        .await
        .unwrap();
    let seen = tokio::spawn(async move {
        loop {
            match events.poll().await {
                Ok(Event::Incoming(Packet::Publish(publish))) => return publish.payload,
                Ok(_) => {}
                Err(err) => panic!("watcher connection failed: {err}"),
            }
        }
    });
    // Give the subscription time to reach the router before the device publishes.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut device = TestDevice::connect(app.mqtt_addr, &paired["mqtt"]).await;
    device.connected(WAIT).await;
    let payload = batch(1, None, &motion(T0, 20));
    device.send(1, payload.clone()).await;
    let received = tokio::time::timeout(WAIT, seen)
        .await
        .expect("watcher got the batch")
        .unwrap();
    assert_eq!(received, payload);
}

async fn a_gap_holds_the_ack_until_the_resend_fills_it(app: TestApp) {
    let user = app.signup().await;
    let paired = pair(&app, &user).await;
    let mut device = TestDevice::connect(app.mqtt_addr, &paired["mqtt"]).await;
    device.connected(WAIT).await;
    device.send(1, batch(1, None, &motion(T0, 10))).await;
    device.acked_up_to(1, WAIT).await;
    // Batch 2 "lost on the way": 3 is stored, but the ack may not pass 2.
    let lost = batch(2, None, &motion(T0 + 1_000_000, 10));
    device
        .send(3, batch(3, None, &motion(T0 + 2_000_000, 10)))
        .await;
    eventually(WAIT, "batch 3 stored", async || {
        app.scalar("SELECT COUNT(*) FROM telemetry").await == 20
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(*device.acked.borrow(), 1);
    device.send(2, lost).await;
    device.acked_up_to(3, WAIT).await;
    assert_eq!(app.scalar("SELECT COUNT(*) FROM telemetry").await, 30);
}

mod edge {
    //! Authentication and ACL at the real server's MQTT port, on both backends (the
    //! broker-level suite in tests/broker.rs covers every rule in detail).

    use std::time::Duration;

    use rumqttc::{
        AsyncClient, ConnectReturnCode, ConnectionError, Event, EventLoop, MqttOptions, Packet,
        QoS, SubscribeReasonCode,
    };

    use super::{WAIT, pair};
    use crate::common::{TestApp, backend_tests};

    backend_tests!(
        bad_credentials_are_refused_and_the_acl_holds_both_ways,
        service_tokens_from_velt_token_follow_their_acl,
    );

    fn options(app: &TestApp, client_id: &str, password: &str) -> MqttOptions {
        let mut options = MqttOptions::new(client_id, "127.0.0.1", app.mqtt_addr.port());
        options.set_credentials("x", password);
        options.set_keep_alive(Duration::from_secs(10));
        options
    }

    /// Polls until CONNACK or the first error, never reconnecting.
    async fn connect(options: MqttOptions) -> Result<(AsyncClient, EventLoop), ConnectionError> {
        let (client, mut events) = AsyncClient::new(options, 16);
        tokio::time::timeout(WAIT, async {
            loop {
                if let Event::Incoming(Packet::ConnAck(_)) = events.poll().await? {
                    return Ok::<_, ConnectionError>(());
                }
            }
        })
        .await
        .expect("an answer in time")?;
        Ok((client, events))
    }

    /// Whether the next SUBACK grants the (single) filter.
    async fn granted(events: &mut EventLoop) -> bool {
        tokio::time::timeout(WAIT, async {
            loop {
                if let Event::Incoming(Packet::SubAck(ack)) =
                    events.poll().await.expect("connected")
                {
                    return matches!(ack.return_codes[0], SubscribeReasonCode::Success(_));
                }
            }
        })
        .await
        .expect("a SUBACK in time")
    }

    async fn bad_credentials_are_refused_and_the_acl_holds_both_ways(app: TestApp) {
        let (ada, eve) = (app.signup().await, app.signup().await);
        let mine = pair(&app, &ada).await;
        let theirs = pair(&app, &eve).await;
        let (id, password) = (
            mine["id"].as_i64().unwrap(),
            mine["mqtt"]["password"].as_str().unwrap(),
        );
        let client_id = format!("dev-{id}");

        // Forged signature, a refresh token, another device's token, a foreign client id.
        let mut forged = password.to_owned();
        forged.pop();
        forged.push(if password.ends_with('A') { 'B' } else { 'A' });
        let refused = [
            options(&app, &client_id, &forged),
            options(&app, &client_id, &ada.refresh),
            options(
                &app,
                &client_id,
                theirs["mqtt"]["password"].as_str().unwrap(),
            ),
            options(&app, &format!("dev-{}", theirs["id"]), password),
            options(&app, "velt-ingest", password),
        ];
        for options in refused {
            let id = options.client_id();
            match connect(options).await {
                Err(ConnectionError::ConnectionRefused(
                    ConnectReturnCode::BadUserNamePassword | ConnectReturnCode::NotAuthorized,
                )) => {}
                other => panic!("{id}: expected a refusal, got {:?}", other.map(|_| ())),
            }
        }

        let (device, mut events) = connect(options(&app, &client_id, password))
            .await
            .expect("own token accepted");
        for (filter, allowed) in [
            (format!("velt/devices/{id}/ack"), true),
            ("#".to_owned(), false),
            ("+/devices/+/telemetry".to_owned(), false),
            ("$SYS/#".to_owned(), false),
            (format!("velt/devices/{}/ack", theirs["id"]), false),
        ] {
            device.subscribe(&filter, QoS::AtLeastOnce).await.unwrap();
            assert_eq!(granted(&mut events).await, allowed, "{filter}");
        }
        // Publishing on another device's topic ends the connection; nothing is stored.
        device
            .publish(
                format!("velt/devices/{}/telemetry", theirs["id"]),
                QoS::AtLeastOnce,
                false,
                vec![1, 2, 3],
            )
            .await
            .unwrap();
        let closed =
            tokio::time::timeout(WAIT, async { while events.poll().await.is_ok() {} }).await;
        assert!(closed.is_ok(), "a foreign publish disconnects");

        // A non-ASCII topic is refused before the router, which keeps serving others.
        let (device, mut events) = connect(options(&app, &client_id, password)).await.unwrap();
        device
            .publish("ü/x", QoS::AtMostOnce, false, vec![1])
            .await
            .unwrap();
        assert!(
            tokio::time::timeout(WAIT, async { while events.poll().await.is_ok() {} })
                .await
                .is_ok()
        );
        let (user, mut user_events) =
            connect(options(&app, &format!("user-{}", ada.id), &ada.access))
                .await
                .expect("user admitted");
        user.subscribe(format!("velt/devices/{id}/telemetry"), QoS::AtLeastOnce)
            .await
            .unwrap();
        assert!(granted(&mut user_events).await);
        user.subscribe(
            format!("velt/devices/{}/telemetry", theirs["id"]),
            QoS::AtLeastOnce,
        )
        .await
        .unwrap();
        assert!(!granted(&mut user_events).await, "not eve's device");

        // Every refusal was counted.
        let metrics = app
            .http
            .get(app.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let counter = |name: &str| -> u64 {
            let line = metrics
                .lines()
                .find(|l| l.starts_with(name))
                .unwrap_or_else(|| panic!("{name} in {metrics}"));
            line.rsplit(' ').next().unwrap().parse().unwrap()
        };
        assert!(counter("velt_mqtt_connections_refused_total") >= 5);
        assert!(counter("velt_mqtt_subscriptions_refused_total") >= 5);
        assert!(counter("velt_mqtt_publishes_refused_total") >= 2);
    }

    async fn service_tokens_from_velt_token_follow_their_acl(app: TestApp) {
        // The CLI signs with the same secret the test server uses.
        let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_velt"))
            .args([
                "token",
                "--name",
                "etl",
                "--acl",
                "sub:velt/devices/+/telemetry",
                "--ttl",
                "5m",
            ])
            .env(
                "VELT_JWT_SECRET",
                "integration-test-secret-0123456789abcdef",
            )
            .env("VELT_DATA_DIR", app.db.dir())
            .output()
            .await
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let token = String::from_utf8(output.stdout).unwrap().trim().to_owned();

        let (service, mut events) = connect(options(&app, "svc-etl-1", &token))
            .await
            .expect("service admitted");
        service
            .subscribe("velt/devices/+/telemetry", QoS::AtLeastOnce)
            .await
            .unwrap();
        assert!(granted(&mut events).await);
        service
            .subscribe("velt/devices/+/status", QoS::AtLeastOnce)
            .await
            .unwrap();
        assert!(!granted(&mut events).await, "not in its ACL");
        // Bound to its name: the token does not work under another client id.
        match connect(options(&app, "svc-other", &token)).await {
            Err(ConnectionError::ConnectionRefused(_)) => {}
            other => panic!("expected a refusal, got {:?}", other.map(|_| ())),
        }
    }
}
