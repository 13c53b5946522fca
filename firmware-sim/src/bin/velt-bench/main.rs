//! `velt-bench`: velt against the raw database ceiling, on one machine, in one run.
//!
//! (a) a standalone multi-row INSERT loader into the same `telemetry` schema; (b) simulated
//! devices → velt's MQTT edge → writer → MariaDB → ack, at max load and at half of it;
//! (c) REST JSON ingest; (d) MQTT messages/s through velt's edge vs a plain rumqttd vs
//! Mosquitto; bytes per sample; server CPU and peak RSS; and, separately, many idle
//! device connections. Writes `<out>/report-<time>.{json,md}` and `<out>/latest.{json,md}`.
//! See BENCHMARKS.md; run through `bench/run.sh`.

mod mqtt_rate;
mod raw;
mod rest;
mod server;

use std::{
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::Context;
use clap::Parser;
use serde::Serialize;
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use velt_sim::{
    DeviceOptions, ImuGenerator, LiveStats, Pacing, Profile, SampleSource, Summary, api, run_fleet,
};

use crate::{
    raw::Row,
    server::{Usage, VeltServer, usage},
};

#[derive(Debug, Parser)]
#[command(
    name = "velt-bench",
    about = "velt benchmark harness (see BENCHMARKS.md)"
)]
struct Args {
    /// Seconds-long smoke run: small sizes; checks only that the report is well-formed.
    #[arg(long)]
    quick: bool,
    /// MariaDB/MySQL server (without a database; the bench creates and drops its own).
    #[arg(
        long,
        env = "VELT_BENCH_MYSQL_URL",
        default_value = "mysql://root@127.0.0.1:3306"
    )]
    mysql_url: String,
    /// The velt binary to run (build it with `cargo build --release -p velt`).
    #[arg(long, default_value = "target/release/velt")]
    velt: PathBuf,
    /// Mosquitto to compare with (skipped if it does not answer).
    #[arg(long, default_value = "127.0.0.1:1883")]
    mosquitto: String,
    #[arg(long, default_value = "bench/out")]
    out: PathBuf,
    /// Simulated devices for (b); default 50 (quick: 4).
    #[arg(long)]
    devices: Option<usize>,
    /// Seconds per load phase; default 20 (quick: 2).
    #[arg(long)]
    duration: Option<u64>,
    /// Samples per MQTT batch.
    #[arg(long, default_value_t = 50)]
    batch: usize,
    /// Unacknowledged batches per device at max load.
    #[arg(long, default_value_t = 20)]
    window: usize,
    /// Idle device connections for the separate scenario; default 10 000 (quick: 50).
    #[arg(long)]
    idle: Option<usize>,
}

struct Plan {
    devices: usize,
    duration: Duration,
    raw_rows: usize,
    rest_rows: usize,
    broker_seconds: Duration,
    publishers: usize,
    idle: usize,
}

#[derive(Debug, Serialize)]
struct Phase {
    summary: Summary,
    server: Usage,
}

#[derive(Debug, Serialize)]
struct Target {
    name: &'static str,
    target: String,
    actual: String,
    met: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(
            "warn,rumqttd=off,sqlx=off",
        ))
        .with_writer(std::io::stderr)
        .init();
    let plan = if args.quick {
        Plan {
            devices: args.devices.unwrap_or(4),
            duration: Duration::from_secs(args.duration.unwrap_or(2)),
            raw_rows: 40_000,
            rest_rows: 40_000,
            broker_seconds: Duration::from_secs(1),
            publishers: 2,
            idle: args.idle.unwrap_or(50),
        }
    } else {
        Plan {
            devices: args.devices.unwrap_or(50),
            duration: Duration::from_secs(args.duration.unwrap_or(20)),
            raw_rows: 2_000_000,
            rest_rows: 1_000_000,
            broker_seconds: Duration::from_secs(8),
            publishers: 4,
            idle: args.idle.unwrap_or(10_000),
        }
    };
    std::fs::create_dir_all(&args.out)?;
    let started_at = velt_sim::now_us();
    let tag = format!("{}", started_at / 1_000_000);
    let base = args.mysql_url.trim_end_matches('/').to_owned();
    let velt_db = format!("velt_bench_{tag}");
    let raw_db = format!("velt_bench_raw_{tag}");

    let result = run(&args, &plan, &base, &velt_db, &raw_db, started_at).await;
    // Whatever happened, leave no database behind.
    for db in [&velt_db, &raw_db] {
        if let Err(err) = raw::drop_database(&base, db).await {
            eprintln!("warning: could not drop {db}: {err}");
        }
    }
    let report = result?;
    let json = serde_json::to_string_pretty(&report)?;
    let md = markdown(&report);
    for name in [format!("report-{tag}"), "latest".to_owned()] {
        std::fs::write(args.out.join(format!("{name}.json")), &json)?;
        std::fs::write(args.out.join(format!("{name}.md")), &md)?;
    }
    check_well_formed(&json)?;
    println!("{md}");
    eprintln!(
        "report: {}",
        args.out.join(format!("report-{tag}.{{json,md}}")).display()
    );
    Ok(())
}

/// Same rows as the simulator sends: `devices` devices, walk profile, 100 Hz grid,
/// interleaved batch by batch the way they arrive at the server.
fn rows_like_the_fleet(devices: usize, total: usize, batch: usize, t0: i64) -> Vec<Row> {
    let per_device = total.div_ceil(devices);
    let mut imus: Vec<ImuGenerator> = (0..devices)
        .map(|i| ImuGenerator::new(Profile::Walk, 10_000, i as u64))
        .collect();
    let mut rows = Vec::with_capacity(total);
    let mut done = 0;
    while done < per_device {
        let n = batch.min(per_device - done);
        for (device, imu) in imus.iter_mut().enumerate() {
            for s in imu.next_batch(n) {
                rows.push(Row {
                    device_id: device as i64 + 1,
                    ts: t0 + s.ts_us,
                    values: [
                        s.accel[0], s.accel[1], s.accel[2], s.gyro[0], s.gyro[1], s.gyro[2],
                    ],
                });
            }
        }
        done += n;
    }
    rows.truncate(total);
    rows
}

async fn fleet_phase(
    server: &VeltServer,
    devices: &[velt_sim::DeviceCreds],
    options: &DeviceOptions,
    period_us: u32,
) -> anyhow::Result<Phase> {
    server.reset_peak();
    let before = server.sample();
    let (summary, _) = run_fleet(
        devices,
        &server.mqtt.to_string(),
        options,
        |i, _| ImuGenerator::new(Profile::Walk, period_us, i as u64),
        Arc::new(LiveStats::default()),
        CancellationToken::new(),
        Duration::ZERO,
    )
    .await?;
    let after = server.sample();
    Ok(Phase {
        summary,
        server: usage(before, after),
    })
}

async fn run(
    args: &Args,
    plan: &Plan,
    base: &str,
    velt_db: &str,
    raw_db: &str,
    started_at: i64,
) -> anyhow::Result<Value> {
    let log = args.out.join("velt.log");
    eprintln!(
        "[1/6] raw database ceiling (a): {} rows per variant",
        plan.raw_rows
    );
    let rows = rows_like_the_fleet(
        plan.devices,
        plan.raw_rows,
        args.batch,
        1_700_000_000_000_000,
    );
    let raw = raw::ceiling(base, raw_db, &rows)
        .await
        .context("raw loader")?;
    let raw_best = raw[0].rows_per_s;
    drop(rows);

    eprintln!(
        "starting velt ({}) on database {velt_db}",
        args.velt.display()
    );
    let server = VeltServer::start(&args.velt, &format!("{base}/{velt_db}"), &log).await?;
    let idle_rss = server.sample();
    let password = "Bench-pass-123!";
    let fleet = api::provision(
        &server.api(),
        "bench@example.com",
        password,
        plan.devices,
        "bench",
        16,
    )
    .await
    .context("provisioning")?;

    eprintln!(
        "[2/6] velt end-to-end at max load (b): {} devices, window {}",
        plan.devices, args.window
    );
    let max_options = DeviceOptions {
        batch: args.batch,
        pacing: Pacing::Unpaced,
        duration: Some(plan.duration),
        max_unacked: args.window,
        ack_timeout: Duration::from_secs(30),
        drain_timeout: Duration::from_secs(60),
        status_every: None,
        ..DeviceOptions::default()
    };
    let max = fleet_phase(&server, &fleet.devices, &max_options, 10_000).await?;
    let max_rate = max.summary.acked_samples_per_s;

    eprintln!(
        "[3/6] velt end-to-end at half load: {:.0} samples/s",
        max_rate / 2.0
    );
    let per_device = (max_rate / 2.0 / plan.devices as f64).max(1.0);
    let period_us = (1e6 / per_device).round().clamp(1.0, 1e6) as u32;
    let half_options = DeviceOptions {
        pacing: Pacing::RealTime { speed: 1.0 },
        max_unacked: 1000,
        // Later than the max-load run's timestamps, which ran ahead of the clock.
        start_us: Some(velt_sim::now_us() + 3_600_000_000),
        ..max_options.clone()
    };
    let half = fleet_phase(&server, &fleet.devices, &half_options, period_us).await?;
    eprintln!("[3/6] the same half load, telemetry at QoS 0 (no PUBACK in front of the ack)");
    let half_qos0_options = DeviceOptions {
        telemetry_qos: rumqttc::QoS::AtMostOnce,
        start_us: Some(velt_sim::now_us() + 2 * 3_600_000_000),
        ..half_options.clone()
    };
    let half_qos0 = fleet_phase(&server, &fleet.devices, &half_qos0_options, period_us).await?;
    let stored = count_rows(&format!("{base}/{velt_db}")).await?;
    let acked_total =
        max.summary.acked_samples + half.summary.acked_samples + half_qos0.summary.acked_samples;

    eprintln!(
        "[4/6] REST JSON ingest (c): {} samples in bodies of 10 000",
        plan.rest_rows
    );
    let mut rest_api = api::Api::new(&server.api());
    rest_api
        .register_or_login("bench@example.com", password, "bench")
        .await?;
    let rest_devices =
        api::provision(&server.api(), "bench@example.com", password, 4, "rest", 4).await?;
    let ids: Vec<i64> = rest_devices
        .devices
        .iter()
        .map(|d| d.device_id as i64)
        .collect();
    let mut rest_rows =
        rows_like_the_fleet(ids.len(), plan.rest_rows, 10_000, 1_700_000_000_000_000);
    for r in &mut rest_rows {
        r.device_id = ids[(r.device_id - 1) as usize];
    }
    let bodies: Vec<(String, usize)> = rest_rows
        .chunks(10_000)
        .map(|c| (rest::body(c), c.len()))
        .collect();
    drop(rest_rows);
    server.reset_peak();
    let before = server.sample();
    let rest_result = rest::ingest(
        &server.api(),
        rest_api.token().unwrap_or_default(),
        bodies,
        2,
    )
    .await?;
    let rest_usage = usage(before, server.sample());
    let rest_rate = rest_result.samples as f64 / rest_result.seconds;

    eprintln!("[5/6] MQTT messages/s (d): velt edge, plain rumqttd, Mosquitto");
    let payload = {
        let mut imu = ImuGenerator::new(Profile::Walk, 10_000, 9);
        let batch = velt_proto::TelemetryBatch::from_samples(
            1,
            None,
            Some(10_000),
            velt_proto::ACCEL_SCALE_16G,
            velt_proto::GYRO_SCALE_2000DPS,
            &imu.next_batch(args.batch),
        )?;
        bytes::Bytes::from(velt_proto::encode_telemetry(&batch))
    };
    let token = server.service_token("bench", &["pub:velt/bench/#"]).await?;
    let velt_pubs = (0..plan.publishers)
        .map(|i| mqtt_rate::Publisher {
            client_id: format!("svc-bench-{i}"),
            login: Some(("bench".into(), token.clone())),
            topic: format!("velt/bench/{i}"),
        })
        .collect();
    let velt_edge = mqtt_rate::rate(
        &server.mqtt.to_string(),
        velt_pubs,
        payload.clone(),
        plan.broker_seconds,
    )
    .await?;
    let plain_addr = mqtt_rate::start_plain_rumqttd().await?;
    let plain_pubs = |prefix: &str| {
        (0..plan.publishers)
            .map(|i| mqtt_rate::Publisher {
                client_id: format!("{prefix}-{i}-{started_at}"),
                login: None,
                topic: format!("velt/bench/{i}"),
            })
            .collect::<Vec<_>>()
    };
    let plain = mqtt_rate::rate(
        &plain_addr,
        plain_pubs("plain"),
        payload.clone(),
        plan.broker_seconds,
    )
    .await?;
    let mosquitto = match mqtt_rate::rate(
        &args.mosquitto,
        plain_pubs("velt-bench"),
        payload.clone(),
        plan.broker_seconds,
    )
    .await
    {
        Ok(rate) => Some(rate),
        Err(err) => {
            eprintln!("Mosquitto at {} skipped: {err}", args.mosquitto);
            None
        }
    };

    eprintln!("[6/6] idle connections: {}", plan.idle);
    let idle = idle_phase(&server, plan.idle, password).await?;
    let final_sample = server.sample();
    server.stop().await?;

    let b = max_rate;
    let wire_rest = rest_result.body_bytes as f64 / rest_result.samples.max(1) as f64;
    let half_p99 = half.summary.ack_latency.p99_ms;
    let mut targets = vec![
        Target {
            name: "(b) velt end-to-end ≥ 70 % of (a)",
            target: format!("≥ {:.0} samples/s", 0.7 * raw_best),
            actual: format!("{b:.0} samples/s ({:.0} %)", 100.0 * b / raw_best),
            met: b >= 0.7 * raw_best,
        },
        Target {
            name: "(c) REST ingest",
            target: "≥ 100 000 samples/s".into(),
            actual: format!("{rest_rate:.0} samples/s"),
            met: rest_rate >= 100_000.0,
        },
        Target {
            name: "p99 ack latency at half load",
            target: "≤ 50 ms".into(),
            actual: format!("{half_p99:.1} ms"),
            met: half_p99 <= 50.0,
        },
        Target {
            name: "bytes per sample on the wire (MQTT)",
            target: "≤ 12".into(),
            actual: format!(
                "{:.2} (payload {:.2})",
                max.summary.mqtt_bytes_per_sample, max.summary.payload_bytes_per_sample
            ),
            met: max.summary.mqtt_bytes_per_sample <= 12.0,
        },
        Target {
            name: "idle connections, server RSS",
            target: format!("{} connections, ≤ 1024 MiB", idle["target"]),
            actual: format!(
                "{} connected, {:.0} MiB",
                idle["connected"],
                idle["rss_mib"].as_f64().unwrap_or(0.0)
            ),
            met: idle["connected"] == idle["target"]
                && idle["rss_mib"].as_f64().unwrap_or(f64::MAX) <= 1024.0,
        },
    ];
    if let Some(m) = mosquitto {
        targets.push(Target {
            name: "(d) velt edge ≥ Mosquitto",
            target: format!("≥ {m:.0} msg/s"),
            actual: format!("{velt_edge:.0} msg/s"),
            met: velt_edge >= m,
        });
    }
    Ok(serde_json::json!({
        "mode": if args.quick { "quick" } else { "full" },
        "started_at_us": started_at,
        "machine": {
            "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
            "kernel": std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim(),
        },
        "setup": {
            "devices": plan.devices, "batch": args.batch, "window": args.window,
            "phase_seconds": plan.duration.as_secs(), "velt": args.velt.display().to_string(),
        },
        "a_raw_ceiling": { "best_rows_per_s": raw_best, "variants": raw },
        "b_velt_max": max,
        "b_velt_half": { "target_samples_per_s": max_rate / 2.0, "per_device_period_us": period_us, "phase": half },
        "b_velt_half_qos0": { "target_samples_per_s": max_rate / 2.0, "per_device_period_us": period_us, "phase": half_qos0 },
        "b_db_check": { "rows_stored": stored, "samples_acked": acked_total, "exactly_once": stored == acked_total },
        "c_rest": {
            "samples": rest_result.samples, "seconds": rest_result.seconds,
            "samples_per_s": rest_rate, "json_bytes_per_sample": wire_rest, "server": rest_usage,
            "parallel_requests": 2,
        },
        "d_mqtt_msgs_per_s": {
            "payload_bytes": payload.len(), "publishers": plan.publishers,
            "velt_edge": velt_edge, "plain_rumqttd": plain, "mosquitto": mosquitto,
        },
        "bytes_per_sample": {
            "b_mqtt_payload": max.summary.payload_bytes_per_sample,
            "b_mqtt_packet": max.summary.mqtt_bytes_per_sample,
            "c_rest_json_body": wire_rest,
        },
        "idle_connections": idle,
        "server_idle_rss_mib": idle_rss.rss_kib as f64 / 1024.0,
        "server_lifetime_peak_rss_mib": final_sample.hwm_kib as f64 / 1024.0,
        "ratios": {
            "b_over_a": b / raw_best,
            "b_over_c": b / rest_rate,
            "d_velt_over_plain": velt_edge / plain,
            "d_velt_over_mosquitto": mosquitto.map(|m| velt_edge / m),
        },
        "targets": targets,
    }))
}

async fn count_rows(url: &str) -> anyhow::Result<u64> {
    use sqlx::Connection;
    let mut conn = sqlx::MySqlConnection::connect(url).await?;
    let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM telemetry")
        .fetch_one(&mut conn)
        .await?;
    Ok(n as u64)
}

/// Pairs `count` devices, connects them all (idle, keepalive 60 s), holds, measures RSS.
async fn idle_phase(server: &VeltServer, count: usize, password: &str) -> anyhow::Result<Value> {
    let started = Instant::now();
    let file = api::provision(
        &server.api(),
        "idle@example.com",
        password,
        count,
        "idle",
        32,
    )
    .await?;
    let provision_s = started.elapsed().as_secs_f64();
    server.reset_peak();
    let before = server.sample();
    let live = Arc::new(LiveStats::default());
    let stop = CancellationToken::new();
    let hold = Duration::from_secs(if count > 1000 { 180 } else { 20 });
    let options = DeviceOptions {
        duration: Some(hold),
        stay_connected: true,
        status_every: None,
        keep_alive: Duration::from_secs(60),
        backoff_initial: Duration::from_millis(500),
        backoff_max: Duration::from_secs(10),
        ..DeviceOptions::default()
    };
    let connect_start = Instant::now();
    let fleet = {
        let (file, live, stop, mqtt) = (
            file.devices.clone(),
            live.clone(),
            stop.clone(),
            server.mqtt.to_string(),
        );
        tokio::spawn(async move {
            run_fleet(
                &file,
                &mqtt,
                &options,
                |_, _| Empty,
                live,
                stop,
                Duration::from_micros(200),
            )
            .await
        })
    };
    let deadline = connect_start + hold - Duration::from_secs(5);
    while LiveStats::get(&live.connected) < count as u64 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let connect_s = connect_start.elapsed().as_secs_f64();
    // Let the server settle (presence writes, buffers) before reading RSS.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let connected = LiveStats::get(&live.connected);
    let after = server.sample();
    stop.cancel();
    let _ = fleet.await?;
    let used = usage(before, after);
    Ok(serde_json::json!({
        "target": count,
        "connected": connected,
        "seconds_to_connect": connect_s,
        "provision_seconds": provision_s,
        "rss_mib": used.rss_mib,
        "peak_rss_mib": used.peak_rss_mib,
        "rss_growth_kib_per_connection": (after.rss_kib.saturating_sub(before.rss_kib)) as f64 / connected.max(1) as f64,
    }))
}

/// A source with nothing to send (idle devices).
struct Empty;

impl SampleSource for Empty {
    fn next_batch(&mut self, _max: usize) -> Vec<velt_proto::Sample> {
        Vec::new()
    }
    fn period_us(&self) -> Option<u32> {
        Some(10_000)
    }
}

fn num(v: &Value) -> String {
    match v.as_f64() {
        Some(x) if x.abs() >= 100.0 => format!("{x:.0}"),
        Some(x) => format!("{x:.2}"),
        None => "–".into(),
    }
}

fn markdown(r: &Value) -> String {
    let mut md = String::new();
    let line = |md: &mut String, s: String| {
        md.push_str(&s);
        md.push('\n');
    };
    let s = &r["setup"];
    line(
        &mut md,
        format!(
            "# velt benchmark ({} run)\n",
            r["mode"].as_str().unwrap_or("?")
        ),
    );
    line(
        &mut md,
        format!(
            "{} CPUs, kernel {}; {} devices, batches of {} samples, window {} batches, {} s per load phase.\n",
            r["machine"]["cpus"],
            r["machine"]["kernel"].as_str().unwrap_or("?"),
            s["devices"],
            s["batch"],
            s["window"],
            s["phase_seconds"]
        ),
    );
    line(&mut md, "| measurement | result |\n|---|---|".into());
    line(
        &mut md,
        format!(
            "| (a) raw DB ceiling (best loader) | {} rows/s |",
            num(&r["a_raw_ceiling"]["best_rows_per_s"])
        ),
    );
    let max = &r["b_velt_max"];
    line(
        &mut md,
        format!(
            "| (b) velt end-to-end, max load | {} samples/s acked; ack p50 {} ms, p99 {} ms; server CPU {} cores, peak RSS {} MiB |",
            num(&max["summary"]["acked_samples_per_s"]),
            num(&max["summary"]["ack_latency"]["p50_ms"]),
            num(&max["summary"]["ack_latency"]["p99_ms"]),
            num(&max["server"]["cpu_cores"]),
            num(&max["server"]["peak_rss_mib"])
        ),
    );
    let half = &r["b_velt_half"]["phase"];
    line(
        &mut md,
        format!(
            "| (b) velt end-to-end, half load ({} samples/s offered) | {} samples/s acked; ack p50 {} ms, p99 {} ms; server CPU {} cores |",
            num(&r["b_velt_half"]["target_samples_per_s"]),
            num(&half["summary"]["acked_samples_per_s"]),
            num(&half["summary"]["ack_latency"]["p50_ms"]),
            num(&half["summary"]["ack_latency"]["p99_ms"]),
            num(&half["server"]["cpu_cores"])
        ),
    );
    let half_qos0 = &r["b_velt_half_qos0"]["phase"];
    line(
        &mut md,
        format!(
            "| (b) the same half load, telemetry at QoS 0 | {} samples/s acked; ack p50 {} ms, p99 {} ms; server CPU {} cores |",
            num(&half_qos0["summary"]["acked_samples_per_s"]),
            num(&half_qos0["summary"]["ack_latency"]["p50_ms"]),
            num(&half_qos0["summary"]["ack_latency"]["p99_ms"]),
            num(&half_qos0["server"]["cpu_cores"])
        ),
    );
    line(
        &mut md,
        format!(
            "| (b) rows in DB = samples acked | {} = {} ({}) |",
            r["b_db_check"]["rows_stored"],
            r["b_db_check"]["samples_acked"],
            if r["b_db_check"]["exactly_once"] == true {
                "exactly once"
            } else {
                "MISMATCH"
            }
        ),
    );
    line(
        &mut md,
        format!(
            "| (c) REST JSON ingest | {} samples/s; server CPU {} cores, peak RSS {} MiB |",
            num(&r["c_rest"]["samples_per_s"]),
            num(&r["c_rest"]["server"]["cpu_cores"]),
            num(&r["c_rest"]["server"]["peak_rss_mib"])
        ),
    );
    let d = &r["d_mqtt_msgs_per_s"];
    line(
        &mut md,
        format!(
            "| (d) MQTT QoS 1 msg/s ({} B payload, {} publishers) | velt edge {}, plain rumqttd {}, Mosquitto {} |",
            d["payload_bytes"],
            d["publishers"],
            num(&d["velt_edge"]),
            num(&d["plain_rumqttd"]),
            num(&d["mosquitto"])
        ),
    );
    let w = &r["bytes_per_sample"];
    line(
        &mut md,
        format!(
            "| bytes per sample | MQTT payload {}, MQTT packet {}, REST JSON body {} |",
            num(&w["b_mqtt_payload"]),
            num(&w["b_mqtt_packet"]),
            num(&w["c_rest_json_body"])
        ),
    );
    let i = &r["idle_connections"];
    line(
        &mut md,
        format!(
            "| idle device connections | {} of {} connected in {} s; server RSS {} MiB (peak {} MiB, {} KiB/connection) |",
            i["connected"],
            i["target"],
            num(&i["seconds_to_connect"]),
            num(&i["rss_mib"]),
            num(&i["peak_rss_mib"]),
            num(&i["rss_growth_kib_per_connection"])
        ),
    );
    let q = &r["ratios"];
    line(
        &mut md,
        format!(
            "\n**Ratios:** b/a = {}, b/c = {}, d velt/plain rumqttd = {}, d velt/Mosquitto = {}\n",
            num(&q["b_over_a"]),
            num(&q["b_over_c"]),
            num(&q["d_velt_over_plain"]),
            num(&q["d_velt_over_mosquitto"])
        ),
    );
    line(
        &mut md,
        "| target | wanted | measured | met |\n|---|---|---|---|".into(),
    );
    for t in r["targets"].as_array().into_iter().flatten() {
        line(
            &mut md,
            format!(
                "| {} | {} | {} | {} |",
                t["name"].as_str().unwrap_or(""),
                t["target"].as_str().unwrap_or(""),
                t["actual"].as_str().unwrap_or(""),
                if t["met"] == true { "yes" } else { "**no**" }
            ),
        );
    }
    line(&mut md, "\n(a) variants:\n".into());
    for v in r["a_raw_ceiling"]["variants"]
        .as_array()
        .into_iter()
        .flatten()
    {
        line(
            &mut md,
            format!(
                "- {}: {} rows/s",
                v["name"].as_str().unwrap_or(""),
                num(&v["rows_per_s"])
            ),
        );
    }
    md
}

/// The report must parse and hold a finite, positive figure for every measurement.
fn check_well_formed(json: &str) -> anyhow::Result<()> {
    let r: Value = serde_json::from_str(json)?;
    for path in [
        "/a_raw_ceiling/best_rows_per_s",
        "/b_velt_max/summary/acked_samples_per_s",
        "/b_velt_half/phase/summary/acked_samples_per_s",
        "/b_velt_max/summary/ack_latency/p99_ms",
        "/c_rest/samples_per_s",
        "/d_mqtt_msgs_per_s/velt_edge",
        "/d_mqtt_msgs_per_s/plain_rumqttd",
        "/bytes_per_sample/b_mqtt_packet",
        "/bytes_per_sample/c_rest_json_body",
        "/idle_connections/rss_mib",
        "/ratios/b_over_a",
        "/ratios/b_over_c",
    ] {
        let value = r.pointer(path).and_then(Value::as_f64);
        anyhow::ensure!(
            value.is_some_and(|v| v.is_finite() && v > 0.0),
            "report field {path} is missing or not a positive number: {value:?}"
        );
    }
    anyhow::ensure!(
        r["b_db_check"]["exactly_once"] == true,
        "rows in the database differ from samples acked"
    );
    anyhow::ensure!(
        r["targets"].as_array().is_some_and(|t| !t.is_empty()),
        "no targets"
    );
    Ok(())
}
