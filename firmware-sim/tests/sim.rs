//! velt-sim against a real velt server started in-process (SQLite in a temp dir, or a
//! fresh MySQL database when `VELT_TEST_MYSQL_URL` is set): provision over REST, run
//! devices over MQTT, then check the telemetry table row by row.

use std::{net::SocketAddr, path::Path, sync::Arc, time::Duration};

use tokio::{sync::oneshot, task::JoinHandle};
use tokio_util::sync::CancellationToken;
use velt::config::Secret;
use velt_sim::{
    CredsFile, DeviceOptions, Faults, ImuGenerator, LiveStats, Pacing, Profile, ReplaySource,
    Summary, api, device::DeviceReport, recording, run_fleet,
};

#[derive(Debug, Clone, Copy, PartialEq)]
enum Backend {
    Sqlite,
    MySql,
}

struct Server {
    http: SocketAddr,
    mqtt: SocketAddr,
    database_url: String,
    mysql: Option<(String, String)>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
    _dir: tempfile::TempDir,
}

impl Server {
    async fn start(backend: Backend) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let (database_url, mysql) = match backend {
            Backend::Sqlite => (
                format!("sqlite:{}", dir.path().join("v.db").display()),
                None,
            ),
            Backend::MySql => {
                let base = std::env::var("VELT_TEST_MYSQL_URL")
                    .expect("VELT_TEST_MYSQL_URL, e.g. mysql://root@127.0.0.1:3306");
                let base = base.trim_end_matches('/').to_owned();
                let name = format!("velt_sim_test_{:016x}", rand_id());
                (format!("{base}/{name}"), Some((base, name)))
            }
        };
        let mut config = velt::Config::with_data_dir(dir.path());
        config.http_listen = SocketAddr::from(([127, 0, 0, 1], 0));
        config.mqtt_listen = SocketAddr::from(([127, 0, 0, 1], 0));
        config.database_url = Some(Secret::new(database_url.clone()));
        config.jwt_secret = Some(Secret::new("velt-sim-test-secret-0123456789abcdef"));
        config.auth_rate_limit_per_minute = 10_000;
        config.db_max_connections = 4;
        let app = velt::App::build(config).await.expect("velt starts");
        let (http, mqtt) = (app.http_addr(), app.mqtt_addr());
        let (shutdown, signal) = oneshot::channel::<()>();
        let task = tokio::spawn(app.run(async move {
            let _ = signal.await;
        }));
        Server {
            http,
            mqtt,
            database_url,
            mysql,
            shutdown: Some(shutdown),
            task: Some(task),
            _dir: dir,
        }
    }

    fn api(&self) -> String {
        format!("http://{}", self.http)
    }

    /// Shuts the server down and checks that it stopped cleanly.
    async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(30), task)
                .await
                .expect("velt stops within 30 s")
                .expect("velt task")
                .expect("velt shuts down cleanly");
        }
    }

    /// Every stored sample of a device: (ts, ax, ay, az, gx, gy, gz, session_id), by time.
    async fn rows(&self, device_id: u64) -> Vec<Row> {
        let sql = "SELECT ts, ax, ay, az, gx, gy, gz, session_id FROM telemetry \
                   WHERE device_id = ? ORDER BY ts";
        if self.database_url.starts_with("sqlite:") {
            let pool = sqlx::SqlitePool::connect(&self.database_url).await.unwrap();
            let rows = sqlx::query_as(sql)
                .bind(device_id as i64)
                .fetch_all(&pool)
                .await
                .unwrap();
            pool.close().await;
            rows
        } else {
            let pool = sqlx::MySqlPool::connect(&self.database_url).await.unwrap();
            let rows = sqlx::query_as(sql)
                .bind(device_id as i64)
                .fetch_all(&pool)
                .await
                .unwrap();
            pool.close().await;
            rows
        }
    }
}

type Row = (i64, f32, f32, f32, f32, f32, f32, Option<i64>);

impl Drop for Server {
    fn drop(&mut self) {
        let Some((base, name)) = self.mysql.take() else {
            return;
        };
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                use sqlx::Connection;
                let mut conn = sqlx::MySqlConnection::connect(&base).await?;
                sqlx::query(&format!("DROP DATABASE IF EXISTS `{name}`"))
                    .execute(&mut conn)
                    .await?;
                Ok::<_, sqlx::Error>(())
            })
        })
        .join();
    }
}

fn rand_id() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .elapsed()
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish()
}

const PASSWORD: &str = "Sim-test-pass-1!";

async fn provision(server: &Server, devices: usize) -> CredsFile {
    api::provision(
        &server.api(),
        "sim@example.com",
        PASSWORD,
        devices,
        "test",
        4,
    )
    .await
    .expect("provisioning")
}

fn quick_options(period_us: u32) -> DeviceOptions {
    let _ = period_us;
    DeviceOptions {
        batch: 20,
        duration: Some(Duration::from_secs(3)),
        ack_timeout: Duration::from_secs(2),
        drain_timeout: Duration::from_secs(20),
        status_every: Some(Duration::from_secs(1)),
        ..DeviceOptions::default()
    }
}

async fn run(
    server: &Server,
    file: &CredsFile,
    options: &DeviceOptions,
    period_us: u32,
) -> (Summary, Vec<DeviceReport>) {
    run_fleet(
        &file.devices,
        &server.mqtt.to_string(),
        options,
        |index, _| ImuGenerator::new(Profile::Mixed, period_us, index as u64),
        Arc::new(LiveStats::default()),
        CancellationToken::new(),
        Duration::ZERO,
    )
    .await
    .expect("fleet runs")
}

/// Each device's samples are stored exactly once: as many rows as samples sent, on the
/// device's time grid from its first to its last sample, with no gap and no extra.
async fn assert_exactly_once(server: &Server, reports: &[DeviceReport], period_us: i64) {
    for report in reports {
        let rows = server.rows(report.device_id).await;
        assert_eq!(
            rows.len() as u64,
            report.sent_samples,
            "device {}: rows vs samples sent",
            report.device_id
        );
        let first = report.first_ts_us.expect("something was sent");
        for (i, row) in rows.iter().enumerate() {
            assert_eq!(
                row.0,
                first + i as i64 * period_us,
                "device {} row {i}",
                report.device_id
            );
        }
        assert_eq!(rows.last().map(|r| r.0), report.last_ts_us);
    }
}

async fn provision_run_everything_acked_and_stored_once(backend: Backend) {
    let server = Server::start(backend).await;
    let file = provision(&server, 3).await;
    assert_eq!(file.devices.len(), 3);
    let (summary, reports) = run(&server, &file, &quick_options(5_000), 5_000).await;
    assert!(summary.all_acked(), "{summary:?}");
    assert!(summary.sent_samples >= 3 * 500, "{summary:?}");
    assert_eq!(summary.acked_samples, summary.sent_samples);
    assert_eq!(summary.resent_batches, 0, "{summary:?}");
    assert!(summary.status_messages >= 3, "{summary:?}");
    assert!(summary.ack_latency.count >= summary.acked_batches);
    assert_exactly_once(&server, &reports, 5_000).await;
    server.stop().await;
}

async fn faults_still_store_each_sample_exactly_once(backend: Backend) {
    let server = Server::start(backend).await;
    let file = provision(&server, 3).await;
    let options = DeviceOptions {
        faults: Faults {
            drop_connection_every: Some(Duration::from_millis(600)),
            duplicate_rate: 0.3,
            clock_skew_us: -1_500_000,
        },
        ..quick_options(10_000)
    };
    let (summary, reports) = run(&server, &file, &options, 10_000).await;
    assert!(summary.all_acked(), "{summary:?}");
    assert!(
        summary.reconnects >= 3,
        "connections were dropped: {summary:?}"
    );
    assert!(summary.duplicate_batches > 0, "{summary:?}");
    assert_exactly_once(&server, &reports, 10_000).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_qos0_telemetry_with_dropped_connections_is_still_stored_exactly_once() {
    // At QoS 0 the broker acknowledges nothing: velt's acks and the outbox alone make it
    // durable, also across dropped connections.
    let server = Server::start(Backend::Sqlite).await;
    let file = provision(&server, 2).await;
    let options = DeviceOptions {
        telemetry_qos: rumqttc::QoS::AtMostOnce,
        faults: Faults {
            drop_connection_every: Some(Duration::from_millis(700)),
            ..Faults::default()
        },
        ..quick_options(10_000)
    };
    let (summary, reports) = run(&server, &file, &options, 10_000).await;
    assert!(summary.all_acked(), "{summary:?}");
    assert!(summary.reconnects >= 2, "{summary:?}");
    assert_exactly_once(&server, &reports, 10_000).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_provision_run_everything_acked_and_stored_once() {
    provision_run_everything_acked_and_stored_once(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_faults_still_store_each_sample_exactly_once() {
    faults_still_store_each_sample_exactly_once(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs MySQL: set VELT_TEST_MYSQL_URL and pass --include-ignored"]
async fn mysql_provision_run_everything_acked_and_stored_once() {
    provision_run_everything_acked_and_stored_once(Backend::MySql).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs MySQL: set VELT_TEST_MYSQL_URL and pass --include-ignored"]
async fn mysql_faults_still_store_each_sample_exactly_once() {
    faults_still_store_each_sample_exactly_once(Backend::MySql).await;
}

fn example_recording() -> Vec<velt_proto::Sample> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/walk.csv");
    recording::read_csv(&path).expect("examples/walk.csv")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_stores_rows_equal_to_the_file() {
    let server = Server::start(Backend::Sqlite).await;
    let file = provision(&server, 1).await;
    let samples = example_recording();
    let start_us = 1_700_000_000_000_000;
    let options = DeviceOptions {
        batch: 32,
        pacing: Pacing::RealTime { speed: 4.0 },
        duration: None,
        start_us: Some(start_us),
        ..quick_options(10_000)
    };
    let (summary, reports) = run_fleet(
        &file.devices,
        &server.mqtt.to_string(),
        &options,
        |_, _| ReplaySource::new(samples.clone(), false),
        Arc::new(LiveStats::default()),
        CancellationToken::new(),
        Duration::ZERO,
    )
    .await
    .unwrap();
    assert!(summary.all_acked(), "{summary:?}");
    assert_eq!(summary.sent_samples, samples.len() as u64);
    let rows = server.rows(reports[0].device_id).await;
    assert_eq!(rows.len(), samples.len());
    let t0 = samples[0].ts_us;
    for (row, sample) in rows.iter().zip(&samples) {
        assert_eq!(row.0, start_us + sample.ts_us - t0);
        let stored = [row.1, row.2, row.3, row.4, row.5, row.6];
        let expected = sample.accel.iter().chain(&sample.gyro);
        // The example was written by `velt-sim record`: values are on the wire's grid.
        for (got, want) in stored.iter().zip(expected) {
            assert!(
                (got - want).abs() <= 1e-6 * want.abs().max(1.0),
                "{row:?} vs {sample:?}"
            );
        }
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_at_produces_a_crash_and_a_session_holds_the_samples() {
    let server = Server::start(Backend::Sqlite).await;
    let file = provision(&server, 1).await;
    let mut client = api::Api::new(&server.api());
    client
        .register_or_login("sim@example.com", PASSWORD, "sim")
        .await
        .unwrap();
    let device = &file.devices[0];
    let session = client.start_session(device.device_id).await.unwrap();
    let options = DeviceOptions {
        duration: Some(Duration::from_secs(2)),
        session_id: Some(session),
        ..quick_options(10_000)
    };
    let (summary, reports) = run_fleet(
        &file.devices,
        &server.mqtt.to_string(),
        &options,
        |_, _| ImuGenerator::new(Profile::Walk, 10_000, 5).with_impact(Some(1_000_000)),
        Arc::new(LiveStats::default()),
        CancellationToken::new(),
        Duration::ZERO,
    )
    .await
    .unwrap();
    client.stop_session(session).await.unwrap();
    assert!(summary.all_acked(), "{summary:?}");
    let rows = server.rows(device.device_id).await;
    assert_eq!(rows.len() as u64, reports[0].sent_samples);
    assert!(rows.iter().all(|r| r.7 == Some(session as i64)));
    let crashes = client
        .call(reqwest::Method::GET, "/crashes", None)
        .await
        .unwrap();
    let crashes = crashes
        .as_array()
        .or_else(|| crashes["items"].as_array())
        .cloned()
        .unwrap_or_default();
    assert_eq!(crashes.len(), 1, "{crashes:?}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_credentials_back_off_and_report_failure() {
    let server = Server::start(Backend::Sqlite).await;
    let mut file = provision(&server, 1).await;
    file.devices[0].password.push('x');
    let options = DeviceOptions {
        duration: Some(Duration::from_secs(2)),
        drain_timeout: Duration::from_millis(500),
        ..quick_options(10_000)
    };
    let (summary, _) = run(&server, &file, &options, 10_000).await;
    assert_eq!(summary.sent_batches, 0);
    assert!(!summary.all_acked());
    // Backoff from 100 ms doubling: a handful of attempts in 2.5 s, not a tight loop.
    assert!((2..=12).contains(&summary.connect_failures), "{summary:?}");
    server.stop().await;
}
