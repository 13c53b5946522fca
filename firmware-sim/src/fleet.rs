//! Many devices at once: one task each, live counters for the progress bar, and the
//! combined [`Summary`].

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use tokio_util::sync::CancellationToken;

use crate::{
    SampleSource,
    creds::DeviceCreds,
    device::{Device, DeviceOptions, DeviceReport},
    stats::{LiveStats, Summary},
};

/// Runs every device in `devices` against `mqtt_addr`, each with the source
/// `source_for(index, creds)` gives it, until all are done (or `stop`). Devices connect
/// `ramp` apart so a big fleet does not hit the accept queue at once.
pub async fn run_fleet<S, F>(
    devices: &[DeviceCreds],
    mqtt_addr: &str,
    options: &DeviceOptions,
    mut source_for: F,
    live: Arc<LiveStats>,
    stop: CancellationToken,
    ramp: Duration,
) -> anyhow::Result<(Summary, Vec<DeviceReport>)>
where
    S: SampleSource,
    F: FnMut(usize, &DeviceCreds) -> S,
{
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(devices.len());
    for (index, creds) in devices.iter().enumerate() {
        let device = Device::new(creds.clone(), mqtt_addr)?;
        let source = source_for(index, creds);
        let mut options = options.clone();
        options.seed = options.seed.wrapping_add(index as u64);
        let live = live.clone();
        let stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            device.run(source, &options, live, stop).await
        }));
        if !ramp.is_zero() {
            tokio::time::sleep(ramp).await;
        }
    }
    let mut reports = Vec::with_capacity(tasks.len());
    for task in tasks {
        reports.push(task.await?);
    }
    let summary = Summary::from_reports(&reports, started.elapsed());
    Ok((summary, reports))
}

/// Carries the devices' counters into their credentials, for the next run.
pub fn remember_counters(devices: &mut [DeviceCreds], reports: &[DeviceReport]) {
    for report in reports {
        if let Some(creds) = devices.iter_mut().find(|c| c.device_id == report.device_id) {
            creds.next_seq = report.next_seq;
            creds.next_ts_us = report.next_ts_us;
        }
    }
}
