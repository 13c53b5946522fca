//! Durability under failure: the server SIGKILLed mid-stream and restarted, and the
//! database unreachable for 30 s. In both, a sensor that keeps unacknowledged batches and
//! resends them loses nothing and duplicates nothing.

use std::{net::SocketAddr, process::Stdio, sync::Arc, time::Duration};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::{
    common::{Backend, Proxy, T0, TestApp, TestDb, mysql_addr},
    device::{TestDevice, batch, motion},
    mqtt::eventually,
};

const SAMPLES_PER_BATCH: usize = 50;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `velt serve` as a child process.
struct Server {
    child: tokio::process::Child,
}

impl Server {
    async fn start(db: &TestDb, http: SocketAddr, mqtt: SocketAddr) -> Server {
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_velt"))
            .arg("serve")
            .env("VELT_DATABASE_URL", &db.url)
            .env("VELT_DATA_DIR", db.dir())
            .env("VELT_HTTP_LISTEN", http.to_string())
            .env("VELT_MQTT_LISTEN", mqtt.to_string())
            .env("VELT_JWT_SECRET", "recovery-test-secret-0123456789abcdef")
            .env("VELT_AUTH_RATE_LIMIT", "10000")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("velt binary starts");
        let server = Server { child };
        let client = reqwest::Client::new();
        eventually(
            Duration::from_secs(30),
            "the server to answer",
            async || {
                client
                    .get(format!("http://{http}/ready"))
                    .send()
                    .await
                    .is_ok_and(|r| r.status() == StatusCode::OK)
            },
        )
        .await;
        server
    }

    async fn kill(mut self) {
        self.child.kill().await.unwrap(); // SIGKILL
    }
}

async fn api(http: SocketAddr, path: &str, token: Option<&str>, body: Value) -> Value {
    let mut request = reqwest::Client::new()
        .post(format!("http://{http}/api/v1{path}"))
        .json(&body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    assert!(
        response.status().is_success(),
        "{path}: {}",
        response.status()
    );
    response.json().await.unwrap()
}

async fn killed_under_load_and_restarted(backend: Backend) {
    let db = TestDb::create(backend).await;
    let http: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let mqtt: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let server = Server::start(&db, http, mqtt).await;
    let registered = api(
        http,
        "/auth/register",
        None,
        json!({"email": "k@example.com", "password": "s3cret-pass", "username": "k"}),
    )
    .await;
    let token = registered["access_token"].as_str().unwrap();
    let paired = api(
        http,
        "/devices",
        Some(token),
        json!({"hardware_id": "00000000000000aa", "alias": "wrist"}),
    )
    .await;
    let mut device = TestDevice::connect(mqtt, &paired["mqtt"]).await;
    device.connected(Duration::from_secs(10)).await;

    const BATCHES: u64 = 400;
    let payloads: Vec<_> = (1..=BATCHES)
        .map(|seq| {
            batch(
                seq,
                None,
                &motion(T0 + (seq as i64 - 1) * 500_000, SAMPLES_PER_BATCH),
            )
        })
        .collect();
    for seq in 1..=150 {
        device.send(seq, payloads[seq as usize - 1].clone()).await;
    }
    device.acked_up_to(20, Duration::from_secs(20)).await;
    server.kill().await;
    let acked_before = *device.acked.borrow();
    eprintln!(
        "killed with {acked_before} of 150 batches acknowledged, {} unacked",
        device.unacked()
    );
    // Keep publishing into the void: these stay in the outbox.
    for seq in 151..=250 {
        device.send(seq, payloads[seq as usize - 1].clone()).await;
    }

    let server = Server::start(&db, http, mqtt).await;
    let stored = db.scalar("SELECT COUNT(*) FROM telemetry").await;
    assert!(
        stored >= acked_before as i64 * SAMPLES_PER_BATCH as i64,
        "acked {acked_before} batches, found {stored} rows"
    );
    for seq in 251..=BATCHES {
        device.send(seq, payloads[seq as usize - 1].clone()).await;
    }
    device.acked_up_to(BATCHES, Duration::from_secs(60)).await;
    assert_eq!(
        db.scalar("SELECT COUNT(*) FROM telemetry").await,
        (BATCHES as usize * SAMPLES_PER_BATCH) as i64,
        "each sample exactly once"
    );
    server.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_sigkill_under_load_loses_no_acked_sample() {
    killed_under_load_and_restarted(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs MySQL: set VELT_TEST_MYSQL_URL and pass --include-ignored"]
async fn mysql_sigkill_under_load_loses_no_acked_sample() {
    killed_under_load_and_restarted(Backend::MySql).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs MySQL: set VELT_TEST_MYSQL_URL and pass --include-ignored"]
async fn mysql_outage_of_30_s_stalls_acks_then_drains() {
    let proxy = Arc::new(Proxy::start(mysql_addr()).await);
    let app = TestApp::spawn_with(Backend::MySql, |config| {
        let mut url = url::Url::parse(config.database_url.as_ref().unwrap().expose()).unwrap();
        url.set_host(Some("127.0.0.1")).unwrap();
        url.set_port(Some(proxy.addr.port())).unwrap();
        config.database_url = Some(velt::config::Secret::new(url.to_string()));
        // A small queue, so that the outage saturates ingest and the edge pushes back.
        config.writer.queue_rows = 500;
        config.writer.flush_rows = 100;
    })
    .await;
    let user = app.signup().await;
    let paired = crate::mqtt::pair(&app, &user).await;
    let mut device = TestDevice::connect(app.mqtt_addr, &paired["mqtt"]).await;
    device.connected(Duration::from_secs(10)).await;
    device
        .send(1, batch(1, None, &motion(T0, SAMPLES_PER_BATCH)))
        .await;
    device.acked_up_to(1, Duration::from_secs(10)).await;

    proxy.cut();
    for seq in 2..=60 {
        device
            .send(
                seq,
                batch(
                    seq,
                    None,
                    &motion(T0 + seq as i64 * 500_000, SAMPLES_PER_BATCH),
                ),
            )
            .await;
    }
    let outage = tokio::time::Instant::now();
    while outage.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(
            *device.acked.borrow(),
            1,
            "nothing is acknowledged while the database is away"
        );
        let health = app.http.get(app.url("/health")).send().await.unwrap();
        assert_eq!(health.status(), StatusCode::OK, "velt stays up");
    }
    proxy.resume().await;
    device.acked_up_to(60, Duration::from_secs(60)).await;
    assert_eq!(
        app.scalar("SELECT COUNT(*) FROM telemetry").await,
        60 * SAMPLES_PER_BATCH as i64
    );
}
