//! (c) velt's REST JSON ingest: `POST /api/v1/telemetry` with 10 000 samples per
//! request, a few requests in flight; counts committed samples per second.

use std::{
    sync::{Arc, Mutex},
    time::Instant,
};

use super::raw::Row;

/// RFC 3339 UTC with microseconds, from µs since the epoch.
pub fn rfc3339(ts_us: i64) -> String {
    let secs = ts_us.div_euclid(1_000_000);
    let micros = ts_us.rem_euclid(1_000_000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{micros:06}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// The JSON body for one request.
pub fn body(rows: &[Row]) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(rows.len() * 150);
    out.push('[');
    for (i, r) in rows.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let v = r.values;
        let _ = write!(
            out,
            r#"{{"device_id":{},"ts":"{}","ax":{},"ay":{},"az":{},"gx":{},"gy":{},"gz":{}}}"#,
            r.device_id,
            rfc3339(r.ts),
            v[0],
            v[1],
            v[2],
            v[3],
            v[4],
            v[5]
        );
    }
    out.push(']');
    out
}

pub struct RestResult {
    pub samples: u64,
    pub seconds: f64,
    pub body_bytes: u64,
}

/// Posts every body with `parallel` requests in flight.
pub async fn ingest(
    api: &str,
    token: &str,
    bodies: Vec<(String, usize)>,
    parallel: usize,
) -> anyhow::Result<RestResult> {
    let url = format!("{api}/api/v1/telemetry");
    let http = reqwest::Client::new();
    let body_bytes: u64 = bodies.iter().map(|(b, _)| b.len() as u64).sum();
    let queue = Arc::new(Mutex::new(bodies));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..parallel.max(1) {
        let (queue, http, url, token) =
            (queue.clone(), http.clone(), url.clone(), token.to_owned());
        tasks.push(tokio::spawn(async move {
            let mut stored = 0u64;
            loop {
                let next = queue.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.pop();
                let Some((body, _)) = next else { break };
                let response = http
                    .post(&url)
                    .bearer_auth(&token)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await?;
                let status = response.status();
                let answer: serde_json::Value = response.json().await?;
                anyhow::ensure!(status.is_success(), "POST /telemetry: {status}: {answer}");
                stored += answer["inserted"].as_u64().unwrap_or(0);
            }
            Ok::<_, anyhow::Error>(stored)
        }));
    }
    let mut samples = 0;
    for task in tasks {
        samples += task.await??;
    }
    Ok(RestResult {
        samples,
        seconds: start.elapsed().as_secs_f64(),
        body_bytes,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn rfc3339_of_known_instants() {
        assert_eq!(super::rfc3339(0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(
            super::rfc3339(1_700_000_000_123_456),
            "2023-11-14T22:13:20.123456Z"
        );
    }
}
