//! `velt-sim`: simulated velt sensors from the command line (see `firmware-sim/README.md`).

use std::{
    io::{IsTerminal, Write},
    path::PathBuf,
    sync::Arc,
    time::Duration,
};

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;
use velt_sim::{
    CredsFile, DeviceOptions, Faults, ImuGenerator, LiveStats, Pacing, Profile, ReplaySource,
    Summary, api, fleet, recording,
};

#[derive(Debug, Parser)]
#[command(
    name = "velt-sim",
    version,
    about = "Simulated velt sensors: provision, run, replay, record"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Register (or log in to) an account and pair N devices; saves their MQTT credentials.
    Provision(ProvisionArgs),
    /// Run the devices of a credentials file: IMU data from a motion profile.
    Run(RunArgs),
    /// Replay a CSV recording (`ts,ax,ay,az,gx,gy,gz`) as one device, at its own timing.
    Replay(ReplayArgs),
    /// Write a CSV recording from a motion profile.
    Record(RecordArgs),
}

#[derive(Debug, Args)]
struct ProvisionArgs {
    /// velt's REST API.
    #[arg(long, env = "VELT_SIM_API", default_value = "http://127.0.0.1:8080")]
    api: String,
    #[arg(long, env = "VELT_SIM_EMAIL")]
    email: String,
    #[arg(long, env = "VELT_SIM_PASSWORD", hide_env_values = true)]
    password: String,
    /// Devices to pair.
    #[arg(long, default_value_t = 1)]
    devices: usize,
    /// MQTT address (host:port) saved in the file for `run`.
    #[arg(long)]
    mqtt: Option<String>,
    /// Device aliases are `<prefix>-<n>`.
    #[arg(long, default_value = "sim")]
    alias_prefix: String,
    /// Pairing requests in flight at once.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    #[arg(long, default_value = "creds.json")]
    out: PathBuf,
}

/// Options shared by `run` and `replay`.
#[derive(Debug, Args)]
struct Common {
    /// Credentials written by `provision`.
    #[arg(long, default_value = "creds.json")]
    creds: PathBuf,
    /// velt's MQTT address (host:port); default: the one saved in the credentials file,
    /// else 127.0.0.1:1883.
    #[arg(long, env = "VELT_SIM_MQTT")]
    mqtt: Option<String>,
    /// Samples per batch (1..=4096).
    #[arg(long, default_value_t = 50)]
    batch: usize,
    /// Open a session per device over REST first (and stop it at the end); needs the
    /// account's password.
    #[arg(long)]
    start_session: bool,
    /// The account's password, for --start-session.
    #[arg(long, env = "VELT_SIM_PASSWORD", hide_env_values = true)]
    password: Option<String>,
    /// Resend a batch not acknowledged within this time.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    ack_timeout: Duration,
    /// QoS of telemetry publishes: 1, or 0 (velt's acks and the outbox make it durable
    /// either way; 0 saves the PUBACK and lowers ack latency).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(0..=1))]
    qos: u8,
    /// After sending, wait at most this long for outstanding acks.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    drain_timeout: Duration,
    /// Unacknowledged batches kept per device; sending pauses while the outbox is full.
    #[arg(long, default_value_t = 200)]
    max_unacked: usize,
    /// Publish a status message (battery, firmware, uptime) this often.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    status_every: Duration,
    /// Fault: drop the TCP connection (no DISCONNECT) this often.
    #[arg(long, value_parser = humantime::parse_duration)]
    drop_connection_every: Option<Duration>,
    /// Fault: publish this fraction (0..=1) of batches twice.
    #[arg(long, default_value_t = 0.0)]
    duplicate_rate: f64,
    /// Fault: shift every timestamp, e.g. `2s` or `-500ms`.
    #[arg(long, value_parser = parse_skew, allow_hyphen_values = true)]
    clock_skew: Option<i64>,
    /// Print the summary as JSON on stdout.
    #[arg(long)]
    json: bool,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
    /// Seed of the noise and fault generators.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

#[derive(Debug, Args)]
struct RunArgs {
    #[command(flatten)]
    common: Common,
    /// Samples per second per device.
    #[arg(long, default_value_t = 100)]
    rate: u32,
    /// How long to send.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    duration: Duration,
    #[arg(long, default_value = "walk")]
    profile: Profile,
    /// Simulate an impact (≥ 12 g) this long after the start.
    #[arg(long, value_parser = humantime::parse_duration)]
    crash_at: Option<Duration>,
    /// Use only the first N devices of the file.
    #[arg(long)]
    devices: Option<usize>,
    /// Send as fast as acks allow instead of in real time (load test).
    #[arg(long)]
    unpaced: bool,
}

#[derive(Debug, Args)]
struct ReplayArgs {
    /// The recording.
    file: PathBuf,
    #[command(flatten)]
    common: Common,
    /// Device id (from the credentials file) to replay as; default: the first.
    #[arg(long)]
    device: Option<u64>,
    /// Playback speed (timestamps keep the recording's spacing).
    #[arg(long, default_value_t = 1.0)]
    speed: f64,
    /// Start over at the end, until --duration.
    #[arg(long = "loop")]
    looped: bool,
    /// Stop after this long (with --loop; default 60s).
    #[arg(long, value_parser = humantime::parse_duration)]
    duration: Option<Duration>,
    /// Time of the recording's t=0 in µs since the epoch; default: now.
    #[arg(long)]
    start_us: Option<i64>,
}

#[derive(Debug, Args)]
struct RecordArgs {
    #[arg(long, default_value = "walk")]
    profile: Profile,
    /// Samples per second.
    #[arg(long, default_value_t = 100)]
    rate: u32,
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    duration: Duration,
    #[arg(long, value_parser = humantime::parse_duration)]
    crash_at: Option<Duration>,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Output file; default: stdout.
    #[arg(long)]
    out: Option<PathBuf>,
}

fn parse_skew(text: &str) -> Result<i64, String> {
    let (sign, rest) = match text.strip_prefix('-') {
        Some(rest) => (-1, rest),
        None => (1, text.strip_prefix('+').unwrap_or(text)),
    };
    let duration = humantime::parse_duration(rest).map_err(|e| e.to_string())?;
    Ok(sign * duration.as_micros() as i64)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("velt_sim=warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    match cli.command {
        Command::Provision(args) => provision(args).await,
        Command::Run(args) => run(args).await,
        Command::Replay(args) => replay(args).await,
        Command::Record(args) => record(args),
    }
}

async fn provision(args: ProvisionArgs) -> anyhow::Result<()> {
    let mut file = api::provision(
        &args.api,
        &args.email,
        &args.password,
        args.devices,
        &args.alias_prefix,
        args.concurrency,
    )
    .await?;
    file.mqtt = args.mqtt;
    file.save(&args.out)?;
    eprintln!(
        "paired {} device(s) for {}; credentials in {}",
        file.devices.len(),
        file.email,
        args.out.display()
    );
    for device in &file.devices {
        println!(
            "{}\t{}\t{}",
            device.device_id, device.hardware_id, device.alias
        );
    }
    Ok(())
}

fn period_for(rate: u32) -> anyhow::Result<u32> {
    anyhow::ensure!(
        (1..=1_000_000).contains(&rate),
        "--rate must be 1..=1000000 samples/s"
    );
    Ok(1_000_000 / rate)
}

fn device_options(common: &Common) -> anyhow::Result<DeviceOptions> {
    anyhow::ensure!(
        (0.0..=1.0).contains(&common.duplicate_rate),
        "--duplicate-rate must be between 0 and 1"
    );
    anyhow::ensure!(
        (1..=velt_proto::MAX_SAMPLES_PER_BATCH).contains(&common.batch),
        "--batch must be 1..=4096"
    );
    Ok(DeviceOptions {
        batch: common.batch,
        max_unacked: common.max_unacked.max(1),
        ack_timeout: common.ack_timeout,
        drain_timeout: common.drain_timeout,
        status_every: (!common.status_every.is_zero()).then_some(common.status_every),
        faults: Faults {
            drop_connection_every: common.drop_connection_every,
            duplicate_rate: common.duplicate_rate,
            clock_skew_us: common.clock_skew.unwrap_or(0),
        },
        seed: common.seed,
        telemetry_qos: if common.qos == 0 {
            rumqttc::QoS::AtMostOnce
        } else {
            rumqttc::QoS::AtLeastOnce
        },
        ..DeviceOptions::default()
    })
}

/// Opens one session per device if asked; returns (device id, session id) pairs.
async fn open_sessions(
    common: &Common,
    file: &CredsFile,
    devices: &[velt_sim::DeviceCreds],
) -> anyhow::Result<Option<(api::Api, Vec<(u64, u64)>)>> {
    if !common.start_session {
        return Ok(None);
    }
    let password = common
        .password
        .as_deref()
        .context("--start-session needs --password (or VELT_SIM_PASSWORD)")?;
    let mut client = api::Api::new(&file.api);
    let username = file.email.split('@').next().unwrap_or("sim");
    client
        .register_or_login(&file.email, password, username)
        .await?;
    let mut sessions = Vec::new();
    for device in devices {
        sessions.push((
            device.device_id,
            client.start_session(device.device_id).await?,
        ));
    }
    Ok(Some((client, sessions)))
}

/// Runs the fleet with a progress bar, prints the summary, saves the counters.
async fn drive<S, F>(
    common: &Common,
    mut file: CredsFile,
    devices: Vec<velt_sim::DeviceCreds>,
    options: DeviceOptions,
    expected: Option<Duration>,
    sessions: Option<(api::Api, Vec<(u64, u64)>)>,
    mut source_for: F,
) -> anyhow::Result<()>
where
    S: velt_sim::SampleSource,
    F: FnMut(usize, &velt_sim::DeviceCreds) -> S,
{
    let mqtt = common
        .mqtt
        .clone()
        .or_else(|| file.mqtt.clone())
        .unwrap_or_else(|| "127.0.0.1:1883".into());
    let live = Arc::new(LiveStats::default());
    let stop = CancellationToken::new();
    let interrupt = stop.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            interrupt.cancel();
        }
    });
    let show = !common.quiet && !common.json && std::io::stderr().is_terminal();
    let progress = show.then(|| progress_bar(expected, live.clone(), devices.len()));

    let session_of = |id: u64| {
        sessions
            .as_ref()
            .and_then(|(_, list)| list.iter().find(|(d, _)| *d == id).map(|(_, s)| *s))
    };
    // Each device's session goes into its batches.
    let mut tasks = Vec::new();
    let started = std::time::Instant::now();
    for (index, creds) in devices.iter().enumerate() {
        let mut options = options.clone();
        options.session_id = session_of(creds.device_id);
        let one = [creds.clone()];
        let source = source_for(index, creds);
        let mut source = Some(source);
        let (mqtt, live, stop) = (mqtt.clone(), live.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            fleet::run_fleet(
                &one,
                &mqtt,
                &options,
                |_, _| source.take().expect("one device, one source"),
                live,
                stop,
                Duration::ZERO,
            )
            .await
        }));
    }
    let mut reports = Vec::new();
    for task in tasks {
        reports.extend(task.await??.1);
    }
    let summary = Summary::from_reports(&reports, started.elapsed());
    if let Some((bar, ticker)) = progress {
        ticker.abort();
        bar.finish_and_clear();
    }
    if let Some((client, list)) = &sessions {
        for (_, session) in list {
            if let Err(err) = client.stop_session(*session).await {
                eprintln!("warning: session {session} not stopped: {err}");
            }
        }
    }
    // Like firmware keeping its counters in flash: the next run continues from here.
    let path = &common.creds;
    let mut saved = file.devices.clone();
    fleet::remember_counters(&mut saved, &reports);
    file.devices = saved;
    file.save(path)?;

    if common.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        print!("{}", summary.to_text());
    }
    std::io::stdout().flush()?;
    if !summary.all_acked() {
        eprintln!(
            "error: {} batch(es) ({} samples) were never acknowledged",
            summary.outstanding_batches, summary.outstanding_samples
        );
        std::process::exit(2);
    }
    Ok(())
}

fn progress_bar(
    expected: Option<Duration>,
    live: Arc<LiveStats>,
    devices: usize,
) -> (ProgressBar, tokio::task::JoinHandle<()>) {
    let bar = match expected {
        Some(total) => ProgressBar::new(total.as_secs().max(1)),
        None => ProgressBar::new_spinner(),
    };
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {wide_bar} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let ticker_bar = bar.clone();
    let ticker = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        let (mut sent0, mut acked0) = (0, 0);
        let mut latency = Duration::ZERO;
        let start = std::time::Instant::now();
        loop {
            tick.tick().await;
            let sent = LiveStats::get(&live.sent_samples);
            let acked = LiveStats::get(&live.acked_samples);
            if let Some(l) = live.take_latency() {
                latency = l;
            }
            ticker_bar.set_position(start.elapsed().as_secs());
            ticker_bar.set_message(format!(
                "sent {:>7.0}/s  acked {:>7.0}/s  ack {:>6.1} ms  unacked {}  resent {}  online {}/{}",
                (sent - sent0) as f64 * 2.0,
                (acked - acked0) as f64 * 2.0,
                latency.as_secs_f64() * 1000.0,
                LiveStats::get(&live.sent_batches).saturating_sub(LiveStats::get(&live.acked_batches)),
                LiveStats::get(&live.resent_batches),
                LiveStats::get(&live.connected),
                devices,
            ));
            (sent0, acked0) = (sent, acked);
        }
    });
    (bar, ticker)
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    let file = CredsFile::load(&args.common.creds)?;
    let count = args.devices.unwrap_or(file.devices.len());
    anyhow::ensure!(
        count > 0 && count <= file.devices.len(),
        "{} holds {} device(s)",
        args.common.creds.display(),
        file.devices.len()
    );
    let devices: Vec<_> = file.devices[..count].to_vec();
    let period = period_for(args.rate)?;
    let mut options = device_options(&args.common)?;
    options.duration = Some(args.duration);
    if args.unpaced {
        options.pacing = Pacing::Unpaced;
    }
    let sessions = open_sessions(&args.common, &file, &devices).await?;
    let (profile, seed) = (args.profile, args.common.seed);
    let crash = args.crash_at.map(|at| at.as_micros() as i64);
    drive(
        &args.common,
        file,
        devices,
        options,
        Some(args.duration),
        sessions,
        move |index, _| {
            ImuGenerator::new(profile, period, seed.wrapping_add(index as u64)).with_impact(crash)
        },
    )
    .await
}

async fn replay(args: ReplayArgs) -> anyhow::Result<()> {
    let samples = recording::read_csv(&args.file)
        .with_context(|| format!("cannot read recording {}", args.file.display()))?;
    anyhow::ensure!(args.speed > 0.0, "--speed must be positive");
    let file = CredsFile::load(&args.common.creds)?;
    let device = match args.device {
        Some(id) => file
            .devices
            .iter()
            .find(|d| d.device_id == id)
            .with_context(|| format!("device {id} is not in {}", args.common.creds.display()))?,
        None => file
            .devices
            .first()
            .context("the credentials file holds no device")?,
    }
    .clone();
    let mut options = device_options(&args.common)?;
    options.pacing = Pacing::RealTime { speed: args.speed };
    options.start_us = args.start_us;
    options.duration = if args.looped {
        Some(args.duration.unwrap_or(Duration::from_secs(60)))
    } else {
        args.duration
    };
    let span = Duration::from_micros(
        (samples.last().map_or(0, |s| s.ts_us) - samples[0].ts_us).max(0) as u64,
    )
    .div_f64(args.speed);
    let sessions = open_sessions(&args.common, &file, std::slice::from_ref(&device)).await?;
    let mut source = Some(ReplaySource::new(samples, args.looped));
    drive(
        &args.common,
        file,
        vec![device],
        options.clone(),
        Some(options.duration.unwrap_or(span)),
        sessions,
        move |_, _| source.take().expect("one replay source"),
    )
    .await
}

fn record(args: RecordArgs) -> anyhow::Result<()> {
    use velt_sim::SampleSource;
    let period = period_for(args.rate)?;
    let count = (args.duration.as_micros() / u128::from(period)).max(1) as usize;
    let mut imu = ImuGenerator::new(args.profile, period, args.seed)
        .with_impact(args.crash_at.map(|at| at.as_micros() as i64));
    let mut samples = Vec::with_capacity(count);
    while samples.len() < count {
        let want = (count - samples.len()).min(4096);
        samples.extend(imu.next_batch(want).iter().map(recording::quantized));
    }
    match &args.out {
        Some(path) => {
            let mut out = std::io::BufWriter::new(
                std::fs::File::create(path)
                    .with_context(|| format!("cannot create {}", path.display()))?,
            );
            recording::write_csv(&mut out, &samples)?;
            out.flush()?;
            eprintln!("wrote {} samples to {}", samples.len(), path.display());
        }
        None => {
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            recording::write_csv(&mut out, &samples)?;
            out.flush()?;
        }
    }
    Ok(())
}
