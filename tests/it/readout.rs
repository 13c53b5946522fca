//! Reading telemetry back: keyset pages, session selections, buckets, CSV / NDJSON
//! exports, session summaries, ownership and parameter errors.

use reqwest::{StatusCode, header};
use serde_json::{Value, json};

use crate::common::{T0, TestApp, User, backend_tests, samples};

backend_tests!(
    pages_cover_a_range_exactly_once,
    a_session_is_its_device_window_plus_attributed_samples,
    buckets_aggregate_known_data,
    csv_and_ndjson_exports_stream_the_stored_rows,
    summary_of_known_data_with_a_gap,
    foreign_devices_and_sessions_are_not_found,
    bad_parameters_are_refused_naming_them,
);

/// Posts `body` (any number of samples) in requests of at most 10 000.
async fn ingest(app: &TestApp, user: &User, body: Value) {
    for chunk in body.as_array().unwrap().chunks(10_000) {
        let resp = app
            .post(
                "/api/v1/telemetry",
                &user.access,
                Value::from(chunk.to_vec()),
            )
            .await;
        assert_eq!(resp.status, StatusCode::CREATED, "{resp:?}");
    }
}

/// Every sample of a paged read, following `next_cursor` to the end; also returns the
/// number of pages.
async fn read_all(app: &TestApp, user: &User, path_and_query: &str) -> (Vec<Value>, usize) {
    let mut all = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let url = match &cursor {
            Some(cursor) => format!("{path_and_query}&cursor={cursor}"),
            None => path_and_query.to_owned(),
        };
        let resp = app.get(&url, &user.access).await;
        assert_eq!(resp.status, StatusCode::OK, "{resp:?}");
        pages += 1;
        let items = resp.body["samples"]
            .as_array()
            .or(resp.body["buckets"].as_array())
            .unwrap();
        all.extend(items.iter().cloned());
        match resp.body["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return (all, pages),
        }
        assert!(pages < 10_000, "paging does not end");
    }
}

fn ts_us(sample: &Value) -> i64 {
    velt::timestamp::parse_rfc3339(sample["ts"].as_str().unwrap()).unwrap()
}

/// `samples(..)` with every sample attributed to `session`.
fn attributed(mut body: Value, session: i64) -> Value {
    for sample in body.as_array_mut().unwrap() {
        sample["session_id"] = json!(session);
    }
    body
}

async fn pages_cover_a_range_exactly_once(app: TestApp) {
    let user = app.signup().await;
    let device = app.pair(&user).await;
    let other = app.pair(&user).await;
    ingest(&app, &user, samples(device, T0, 2_500)).await;
    ingest(&app, &user, samples(other, T0, 50)).await;

    let (all, pages) = read_all(
        &app,
        &user,
        &format!("/api/v1/devices/{device}/telemetry?limit=700"),
    )
    .await;
    assert_eq!(pages, 4, "700 + 700 + 700 + 400, and no empty last page");
    let times: Vec<i64> = all.iter().map(ts_us).collect();
    let expected: Vec<i64> = (0..2_500).map(|i| T0 + i * 10_000).collect();
    assert_eq!(times, expected, "every sample once, oldest first");
    assert!(all.iter().all(|s| s["device_id"] == device));
    // Values come back as they went in.
    assert_eq!(all[7]["ax"].as_f64().unwrap() as f32, 0.07);
    assert_eq!(all[7]["gz"], json!(-0.5));

    // A sub-range: `from` inclusive, `to` exclusive, RFC 3339 or µs.
    let from = velt::timestamp::to_rfc3339(T0 + 1_000_000);
    let (part, _) = read_all(
        &app,
        &user,
        &format!(
            "/api/v1/devices/{device}/telemetry?from={from}&to={}&limit=30",
            T0 + 2_000_000
        ),
    )
    .await;
    let times: Vec<i64> = part.iter().map(ts_us).collect();
    assert_eq!(
        times,
        (100..200).map(|i| T0 + i * 10_000).collect::<Vec<_>>()
    );

    // The default page is 1 000 samples.
    let first = app
        .get(&format!("/api/v1/devices/{device}/telemetry"), &user.access)
        .await;
    assert_eq!(first.body["samples"].as_array().unwrap().len(), 1_000);
    assert!(first.body["next_cursor"].is_string());
    // An empty range has no cursor.
    let empty = app
        .get(
            &format!("/api/v1/devices/{device}/telemetry?to={T0}"),
            &user.access,
        )
        .await;
    assert_eq!(
        empty.body,
        json!({"samples": [], "next_cursor": null}),
        "{empty:?}"
    );
}

async fn a_session_is_its_device_window_plus_attributed_samples(app: TestApp) {
    let user = app.signup().await;
    let (a, b) = (app.pair(&user).await, app.pair(&user).await);
    // A finished session of device b, to attribute samples elsewhere explicitly.
    let elsewhere = app
        .post("/api/v1/sessions", &user.access, json!({"device_id": b}))
        .await
        .body["id"]
        .as_i64()
        .unwrap();
    app.patch(
        &format!("/api/v1/sessions/{elsewhere}"),
        &user.access,
        json!({}),
    )
    .await;
    let created = app
        .post("/api/v1/sessions", &user.access, json!({"device_id": a}))
        .await;
    let session = created.body["id"].as_i64().unwrap();
    let start =
        velt::timestamp::parse_rfc3339(created.body["start_time"].as_str().unwrap()).unwrap();

    // In the session: device a within its time span, even when attributed elsewhere…
    let window: Vec<Value> = (1..=20)
        .map(|i| json!({"device_id": a, "session_id": elsewhere, "ts": velt::timestamp::to_rfc3339(start + i), "ax": 1, "ay": 0, "az": 0, "gx": 0, "gy": 0, "gz": 0}))
        .collect();
    ingest(&app, &user, Value::from(window)).await;
    // …and samples attributed to it, from any device and any time…
    ingest(&app, &user, attributed(samples(b, T0, 30), session)).await;
    // …counted once when both hold.
    let both: Vec<Value> = (100..105)
        .map(|i| json!({"device_id": a, "session_id": session, "ts": velt::timestamp::to_rfc3339(start + i), "ax": 2, "ay": 0, "az": 0, "gx": 0, "gy": 0, "gz": 0}))
        .collect();
    ingest(&app, &user, Value::from(both)).await;
    // Not in it: device a before the session, attributed elsewhere.
    ingest(&app, &user, attributed(samples(a, T0, 40), elsewhere)).await;

    let (all, pages) = read_all(
        &app,
        &user,
        &format!("/api/v1/sessions/{session}/telemetry?limit=7"),
    )
    .await;
    assert_eq!(pages, 8);
    let keys: Vec<(i64, i64)> = all
        .iter()
        .map(|s| (ts_us(s), s["device_id"].as_i64().unwrap()))
        .collect();
    let mut expected: Vec<(i64, i64)> = (0..30).map(|i| (T0 + i * 10_000, b)).collect();
    expected.extend((1..=20).map(|i| (start + i, a)));
    expected.extend((100..105).map(|i| (start + i, a)));
    assert_eq!(keys, expected, "oldest first, each sample exactly once");

    // The same selection downsampled: every sample in some bucket.
    let (buckets, _) = read_all(
        &app,
        &user,
        &format!("/api/v1/sessions/{session}/telemetry?points=10"),
    )
    .await;
    let counted: i64 = buckets.iter().map(|b| b["count"].as_i64().unwrap()).sum();
    assert_eq!(counted, 55);
    let summary = app
        .get(&format!("/api/v1/sessions/{session}/summary"), &user.access)
        .await;
    assert_eq!(summary.body["count"], 55, "{summary:?}");
}

fn close(actual: &Value, expected: f64) -> bool {
    (actual.as_f64().unwrap() - expected).abs() < 1e-4
}

async fn buckets_aggregate_known_data(app: TestApp) {
    let user = app.signup().await;
    let device = app.pair(&user).await;
    // T0 is a whole second: 10 one-second buckets of 100 samples each.
    ingest(&app, &user, samples(device, T0, 1_000)).await;
    let resp = app
        .get(
            &format!("/api/v1/devices/{device}/telemetry?bucket=1s"),
            &user.access,
        )
        .await;
    assert_eq!(resp.status, StatusCode::OK, "{resp:?}");
    assert_eq!(resp.body["bucket_us"], 1_000_000);
    assert!(resp.body["next_cursor"].is_null());
    let buckets = resp.body["buckets"].as_array().unwrap();
    assert_eq!(buckets.len(), 10);
    for (k, bucket) in buckets.iter().enumerate() {
        let k = k as f64;
        assert_eq!(
            bucket["start"],
            json!(velt::timestamp::to_rfc3339(T0 + k as i64 * 1_000_000))
        );
        assert_eq!(bucket["count"], 100);
        assert!(close(&bucket["ax"]["min"], 0.01 * (100.0 * k)), "{bucket}");
        assert!(
            close(&bucket["ax"]["max"], 0.01 * (100.0 * k + 99.0)),
            "{bucket}"
        );
        assert!(
            close(&bucket["ax"]["mean"], 0.01 * (100.0 * k + 49.5)),
            "{bucket}"
        );
        assert!(close(&bucket["az"]["mean"], 9.81) && close(&bucket["gz"]["min"], -0.5));
        let ax_max = 0.01 * (100.0 * k + 99.0);
        let peak = (ax_max * ax_max + 0.02f64 * 0.02 + 9.81 * 9.81).sqrt();
        assert!(close(&bucket["peak_accel"], peak), "{bucket}");
    }

    // Paged: 3 buckets a page, the same 10 buckets in the end.
    let (paged, pages) = read_all(
        &app,
        &user,
        &format!("/api/v1/devices/{device}/telemetry?bucket=1s&limit=3"),
    )
    .await;
    assert_eq!((paged.len(), pages), (10, 4));
    assert_eq!(&paged, buckets);

    // A range that starts mid-bucket cuts that bucket.
    let part = app
        .get(
            &format!(
                "/api/v1/devices/{device}/telemetry?bucket=1s&from={}&to={}",
                T0 + 500_000,
                T0 + 2_000_000
            ),
            &user.access,
        )
        .await;
    let counts: Vec<i64> = part.body["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["count"].as_i64().unwrap())
        .collect();
    assert_eq!(counts, vec![50, 100]);

    // `points` picks the width: 9.99 s in 5 points → 1.999 s buckets, ≤ 6 of them.
    let resp = app
        .get(
            &format!("/api/v1/devices/{device}/telemetry?points=5"),
            &user.access,
        )
        .await;
    assert_eq!(resp.body["bucket_us"], 1_999_000, "{resp:?}");
    let buckets = resp.body["buckets"].as_array().unwrap();
    assert!(buckets.len() <= 6);
    let total: i64 = buckets.iter().map(|b| b["count"].as_i64().unwrap()).sum();
    assert_eq!(total, 1_000);
}

async fn export(app: &TestApp, user: &User, path: &str) -> (reqwest::header::HeaderMap, String) {
    let resp = app
        .http
        .get(app.url(path))
        .bearer_auth(&user.access)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let headers = resp.headers().clone();
    (headers, resp.text().await.unwrap())
}

async fn csv_and_ndjson_exports_stream_the_stored_rows(app: TestApp) {
    let user = app.signup().await;
    let device = app.pair(&user).await;
    // More than one export page (5 000 rows).
    let n = 12_345;
    ingest(&app, &user, samples(device, T0, n)).await;

    let (headers, csv) = export(
        &app,
        &user,
        &format!("/api/v1/devices/{device}/telemetry?format=csv"),
    )
    .await;
    assert_eq!(headers[header::CONTENT_TYPE], "text/csv; charset=utf-8");
    assert_eq!(
        headers[header::CONTENT_DISPOSITION],
        format!("attachment; filename=\"device-{device}-telemetry.csv\"")
    );
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some("ts,device_id,session_id,ax,ay,az,gx,gy,gz")
    );
    let rows: Vec<Vec<&str>> = lines.map(|line| line.split(',').collect()).collect();
    assert_eq!(rows.len(), n);
    for (i, row) in rows.iter().enumerate() {
        let ts = T0 + i as i64 * 10_000;
        assert_eq!(row[0], velt::timestamp::to_rfc3339(ts));
        assert!(row[0].ends_with('Z') && row[0].len() == 27, "µs precision");
        assert_eq!(row[1].parse::<i64>().unwrap(), device);
        assert_eq!(row[2], "", "no session");
        let values: Vec<f32> = row[3..].iter().map(|v| v.parse().unwrap()).collect();
        let expected = [(0.01 * i as f64) as f32, -0.02, 9.81, 0.001, 0.0, -0.5];
        assert_eq!(values, expected, "row {i}");
    }

    // NDJSON: the same rows as the JSON pages, one object per line.
    let (headers, ndjson) = export(
        &app,
        &user,
        &format!(
            "/api/v1/devices/{device}/telemetry?format=ndjson&from={}",
            T0 + 10_000_000
        ),
    )
    .await;
    assert_eq!(headers[header::CONTENT_TYPE], "application/x-ndjson");
    let streamed: Vec<Value> = ndjson
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let (paged, _) = read_all(
        &app,
        &user,
        &format!(
            "/api/v1/devices/{device}/telemetry?limit=10000&from={}",
            T0 + 10_000_000
        ),
    )
    .await;
    assert_eq!(streamed.len(), n - 1_000);
    assert_eq!(streamed, paged);

    // Buckets export too, with their own header.
    let (headers, csv) = export(
        &app,
        &user,
        &format!("/api/v1/devices/{device}/telemetry?format=csv&bucket=10s"),
    )
    .await;
    assert!(
        headers[header::CONTENT_DISPOSITION]
            .to_str()
            .unwrap()
            .contains("buckets.csv")
    );
    let mut lines = csv.lines();
    let header_row = lines.next().unwrap();
    assert!(header_row.starts_with("start,count,ax_min,ax_max,ax_mean,"));
    assert!(header_row.ends_with(",peak_accel"));
    let counts: i64 = lines
        .map(|line| line.split(',').nth(1).unwrap().parse::<i64>().unwrap())
        .sum();
    assert_eq!(counts, n as i64);

    // An empty export is just the header.
    let (_, csv) = export(
        &app,
        &user,
        &format!("/api/v1/devices/{device}/telemetry?format=csv&to={T0}"),
    )
    .await;
    assert_eq!(csv, "ts,device_id,session_id,ax,ay,az,gx,gy,gz\n");
}

async fn summary_of_known_data_with_a_gap(app: TestApp) {
    let user = app.signup().await;
    let device = app.pair(&user).await;
    let session = app
        .post(
            "/api/v1/sessions",
            &user.access,
            json!({"device_id": device}),
        )
        .await
        .body["id"]
        .as_i64()
        .unwrap();
    let path = format!("/api/v1/sessions/{session}/summary");
    let empty = app.get(&path, &user.access).await;
    assert_eq!(empty.status, StatusCode::OK, "{empty:?}");
    assert_eq!(empty.body["count"], 0);
    assert!(empty.body["first"].is_null() && empty.body["peak_accel"].is_null());

    // 0 … 4.99 s, then nothing for 2.01 s, then 7 … 11.99 s: 100 Hz with one gap.
    ingest(&app, &user, attributed(samples(device, T0, 500), session)).await;
    ingest(
        &app,
        &user,
        attributed(samples(device, T0 + 7_000_000, 500), session),
    )
    .await;
    let summary = app.get(&path, &user.access).await;
    assert_eq!(summary.status, StatusCode::OK, "{summary:?}");
    let s = &summary.body;
    assert_eq!(s["session_id"], session);
    assert_eq!(s["count"], 1_000);
    assert_eq!(s["first"], json!(velt::timestamp::to_rfc3339(T0)));
    assert_eq!(
        s["last"],
        json!(velt::timestamp::to_rfc3339(T0 + 11_990_000))
    );
    assert!(close(&s["duration_s"], 11.99));
    assert!(close(&s["effective_rate_hz"], 999.0 / 11.99));
    assert_eq!(s["nominal_period_us"], 10_000);
    assert!(close(&s["nominal_rate_hz"], 100.0));
    assert_eq!(s["gaps"]["threshold_us"], 30_000);
    assert_eq!(s["gaps"]["count"], 1);
    assert!(close(&s["gaps"]["total_s"], 2.01));
    assert!(close(&s["ax"]["min"], 0.0) && close(&s["ax"]["max"], 4.99));
    assert!(close(&s["ax"]["mean"], 2.495));
    assert!(close(&s["az"]["min"], 9.81) && close(&s["gx"]["max"], 0.001));
    // ax peaks at 4.99 in both halves: the earlier one is reported.
    let peak = (4.99f64 * 4.99 + 0.02 * 0.02 + 9.81 * 9.81).sqrt();
    assert!(close(&s["peak_accel"]["value"], peak), "{s}");
    assert_eq!(
        s["peak_accel"]["ts"],
        json!(velt::timestamp::to_rfc3339(T0 + 4_990_000))
    );
    assert_eq!(s["peak_accel"]["device_id"], device);

    // A given nominal period moves the threshold.
    let coarse = app.get(&format!("{path}?period=1s"), &user.access).await;
    assert_eq!(coarse.body["gaps"]["threshold_us"], 3_000_000);
    assert_eq!(coarse.body["gaps"]["count"], 0);
}

async fn foreign_devices_and_sessions_are_not_found(app: TestApp) {
    let owner = app.signup().await;
    let stranger = app.signup().await;
    let device = app.pair(&owner).await;
    ingest(&app, &owner, samples(device, T0, 10)).await;
    let session = app
        .post(
            "/api/v1/sessions",
            &owner.access,
            json!({"device_id": device}),
        )
        .await
        .body["id"]
        .as_i64()
        .unwrap();
    for (path, error) in [
        (
            format!("/api/v1/devices/{device}/telemetry"),
            "device not found",
        ),
        (
            format!("/api/v1/devices/{device}/telemetry?format=csv"),
            "device not found",
        ),
        (
            "/api/v1/devices/999999/telemetry".to_owned(),
            "device not found",
        ),
        (
            format!("/api/v1/sessions/{session}/telemetry?bucket=1s"),
            "session not found",
        ),
        (
            format!("/api/v1/sessions/{session}/summary"),
            "session not found",
        ),
    ] {
        let resp = app.get(&path, &stranger.access).await;
        assert_eq!(
            (resp.status, resp.error()),
            (StatusCode::NOT_FOUND, error),
            "{path}"
        );
        let owned = app
            .http
            .get(app.url(&path))
            .bearer_auth(&owner.access)
            .send()
            .await
            .unwrap();
        assert!(
            owned.status() == StatusCode::OK || path.contains("999999"),
            "{path}"
        );
    }
    let anonymous = app
        .call(
            reqwest::Method::GET,
            &format!("/api/v1/devices/{device}/telemetry"),
            None,
            None,
        )
        .await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
}

async fn bad_parameters_are_refused_naming_them(app: TestApp) {
    let user = app.signup().await;
    let device = app.pair(&user).await;
    let session = app
        .post("/api/v1/sessions", &user.access, json!({}))
        .await
        .body["id"]
        .as_i64()
        .unwrap();
    let telemetry = format!("/api/v1/devices/{device}/telemetry");
    for (query, name) in [
        ("limit=0", "limit"),
        ("limit=10001", "limit"),
        ("limit=ten", "limit"),
        ("from=yesterday", "from"),
        ("to=2025-13-01T00:00:00Z", "to"),
        ("from=20&to=10", "to"),
        ("bucket=1ms", "bucket"),
        ("bucket=2d", "bucket"),
        ("bucket=fast", "bucket"),
        ("points=0", "points"),
        ("points=5&bucket=1s", "points"),
        ("format=xlsx", "format"),
        ("format=csv&limit=10", "limit"),
        ("cursor=not-a-cursor", "cursor"),
        ("colour=red", "colour"),
        ("limit=1&limit=2", "limit"),
    ] {
        let resp = app.get(&format!("{telemetry}?{query}"), &user.access).await;
        assert_eq!(resp.status, StatusCode::UNPROCESSABLE_ENTITY, "{query}");
        assert!(
            resp.error().starts_with(&format!("{name}: ")),
            "{query}: {}",
            resp.error()
        );
    }
    let summary = format!("/api/v1/sessions/{session}/summary");
    for (query, name) in [("period=soon", "period"), ("limit=5", "limit")] {
        let resp = app.get(&format!("{summary}?{query}"), &user.access).await;
        assert_eq!(resp.status, StatusCode::UNPROCESSABLE_ENTITY, "{query}");
        assert!(resp.error().starts_with(&format!("{name}: ")), "{query}");
    }
    let resp = app
        .get("/api/v1/sessions/abc/telemetry", &user.access)
        .await;
    assert_eq!(resp.status, StatusCode::UNPROCESSABLE_ENTITY);

    // A bucket cursor cannot continue a plain read with another bucket.
    ingest(&app, &user, samples(device, T0, 300)).await;
    let page = app
        .get(&format!("{telemetry}?bucket=1s&limit=1"), &user.access)
        .await;
    let cursor = page.body["next_cursor"].as_str().unwrap();
    let resp = app
        .get(
            &format!("{telemetry}?bucket=2s&cursor={cursor}"),
            &user.access,
        )
        .await;
    assert_eq!(resp.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(resp.error().starts_with("cursor: "));

    // Everything is in the OpenAPI document.
    let doc = app
        .call(reqwest::Method::GET, "/api/v1/openapi.json", None, None)
        .await;
    for path in [
        "/api/v1/devices/{id}/telemetry",
        "/api/v1/sessions/{id}/telemetry",
        "/api/v1/sessions/{id}/summary",
        "/api/v1/devices/{id}/live",
    ] {
        let get = &doc.body["paths"][path]["get"];
        assert!(get.is_object(), "{path} undocumented");
        assert!(
            get["responses"]["422"].is_object(),
            "{path}: 422 undocumented"
        );
    }
    let params: Vec<&str> =
        doc.body["paths"]["/api/v1/devices/{id}/telemetry"]["get"]["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap())
            .collect();
    for name in [
        "from", "to", "limit", "cursor", "bucket", "points", "format",
    ] {
        assert!(params.contains(&name), "{name} undocumented: {params:?}");
    }
}
