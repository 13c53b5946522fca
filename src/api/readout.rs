//! Reading telemetry back: `GET /devices/{id}/telemetry` and `/sessions/{id}/telemetry`
//! (keyset-paged ranges, downsampled buckets, CSV / NDJSON exports streamed page by page)
//! and `GET /sessions/{id}/summary`.
//!
//! Query parameters are parsed here, by hand, so that every mistake is a 422 naming the
//! parameter; all SQL is in `store::readout`. Cursors are opaque to clients: a kind byte
//! and two integers (the last row's `(ts, device_id)`, or the next bucket's start and the
//! bucket width), hex-encoded.

use std::{collections::HashSet, fmt::Write as _};

use axum::{
    body::Body,
    extract::{RawQuery, State},
    http::{HeaderValue, header},
    response::{IntoResponse, Response},
};
use bytes::Bytes;
use serde::Serialize;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{
    AppState, Error, ErrorBody, Result,
    extract::{AuthUser, Id},
};
use crate::{
    store::{self, BucketRow, Key, Selection, Session, Store, TelemetryRow, TimeRange},
    timestamp::{now_us, parse_rfc3339, to_rfc3339},
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(device_telemetry))
        .routes(routes!(session_telemetry))
        .routes(routes!(session_summary))
}

const SESSION_NOT_FOUND: Error = Error::NotFound("session not found");

/// Largest `limit` (rows or buckets per page) and `points`.
const MAX_LIMIT: i64 = 10_000;
const DEFAULT_ROW_LIMIT: i64 = 1_000;
const MIN_BUCKET_US: i64 = 10_000;
const MAX_BUCKET_US: i64 = 86_400_000_000;
/// Rows (buckets) fetched per statement while streaming an export: the memory bound.
const EXPORT_PAGE_ROWS: i64 = 5_000;
const EXPORT_PAGE_BUCKETS: i64 = 1_000;

const READ_PARAMS: &[&str] = &[
    "from", "to", "limit", "cursor", "bucket", "points", "format",
];

/// Query parameters of the telemetry reads (documentation only: parsing is by hand).
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
struct ReadParams {
    /// Start of the range, inclusive: RFC 3339 (`2025-07-28T17:05:03.5Z`) or µs since
    /// the epoch. Default: the first sample.
    from: Option<String>,
    /// End of the range, exclusive, in the same forms. Default: the last sample.
    to: Option<String>,
    /// Samples per page, 1 to 10 000 (default 1 000); with `bucket` or `points`, buckets
    /// per page (default 10 000). Not with `format=csv|ndjson`, which stream everything.
    limit: Option<u32>,
    /// The `next_cursor` of the previous page, with the same other parameters.
    cursor: Option<String>,
    /// Downsample into buckets of this width, `10ms` to `1d` (e.g. `500ms`, `5s`, `1m`,
    /// `1h`). Buckets start at multiples of the width since the epoch; empty ones are left out.
    bucket: Option<String>,
    /// Downsample into at most about this many buckets (1 to 10 000) over the range
    /// (`from`..`to` if given, else first to last sample); the width is chosen for you
    /// (whole milliseconds, at least 10 ms) and returned as `bucket_us`.
    points: Option<u32>,
    /// `json` (default), `csv` (header row, RFC 3339 µs times) or `ndjson`; the latter
    /// two stream the whole range as an attachment.
    format: Option<String>,
}

/// Query parameters of the session summary (documentation only).
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
struct SummaryParams {
    /// The nominal sample period, e.g. `10ms`. Default: the most frequent interval
    /// between consecutive samples of a device.
    period: Option<String>,
}

/// One stored sample, as ingested: acceleration m/s², rotation rad/s.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct SampleView {
    device_id: i64,
    /// Sample time, RFC 3339 UTC with microseconds.
    #[schema(example = "2025-07-28T17:05:03.120000Z")]
    ts: String,
    session_id: Option<i64>,
    ax: f32,
    ay: f32,
    az: f32,
    gx: f32,
    gy: f32,
    gz: f32,
}

impl From<&TelemetryRow> for SampleView {
    fn from(row: &TelemetryRow) -> Self {
        let [ax, ay, az] = row.accel;
        let [gx, gy, gz] = row.gyro;
        SampleView {
            device_id: row.device_id,
            ts: to_rfc3339(row.ts),
            session_id: row.session_id,
            ax,
            ay,
            az,
            gx,
            gy,
            gz,
        }
    }
}

/// A page of samples, oldest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct TelemetryPage {
    samples: Vec<SampleView>,
    /// Pass as `cursor` for the next page; `null` once the range is exhausted.
    next_cursor: Option<String>,
}

/// Minimum, maximum and mean of one axis.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, ToSchema)]
pub struct AxisStats {
    min: f32,
    max: f32,
    mean: f32,
}

impl AxisStats {
    fn new(min: f64, max: f64, mean: f64) -> Self {
        AxisStats {
            min: min as f32,
            max: max as f32,
            mean: mean as f32,
        }
    }

    fn maybe(min: Option<f64>, max: Option<f64>, mean: Option<f64>) -> Option<Self> {
        Some(Self::new(min?, max?, mean?))
    }
}

/// Aggregates of the samples in one bucket.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct BucketView {
    /// Start of the bucket (RFC 3339); it spans `bucket_us` from there.
    start: String,
    /// Samples in the bucket.
    count: i64,
    ax: AxisStats,
    ay: AxisStats,
    az: AxisStats,
    gx: AxisStats,
    gy: AxisStats,
    gz: AxisStats,
    /// Largest acceleration magnitude √(ax²+ay²+az²) in the bucket, m/s².
    peak_accel: f32,
}

impl From<&BucketRow> for BucketView {
    fn from(b: &BucketRow) -> Self {
        BucketView {
            start: to_rfc3339(b.bucket),
            count: b.count,
            ax: AxisStats::new(b.ax_min, b.ax_max, b.ax_mean),
            ay: AxisStats::new(b.ay_min, b.ay_max, b.ay_mean),
            az: AxisStats::new(b.az_min, b.az_max, b.az_mean),
            gx: AxisStats::new(b.gx_min, b.gx_max, b.gx_mean),
            gy: AxisStats::new(b.gy_min, b.gy_max, b.gy_mean),
            gz: AxisStats::new(b.gz_min, b.gz_max, b.gz_mean),
            peak_accel: b.peak_accel_squared.sqrt() as f32,
        }
    }
}

/// A page of buckets, oldest first; buckets without samples are left out.
#[derive(Debug, Serialize, ToSchema)]
pub struct BucketPage {
    /// Width of every bucket, µs.
    bucket_us: i64,
    buckets: Vec<BucketView>,
    /// Pass as `cursor` for the next page; `null` once the range is exhausted.
    next_cursor: Option<String>,
}

/// Samples, or buckets when `bucket` or `points` is given.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum TelemetryRead {
    Samples(TelemetryPage),
    Buckets(BucketPage),
}

/// Intervals between consecutive samples of a device longer than the threshold.
#[derive(Debug, Serialize, ToSchema)]
pub struct GapSummary {
    /// 3 × the nominal period, µs (`null` when there is no period).
    threshold_us: Option<i64>,
    count: i64,
    /// Sum of those intervals, seconds.
    total_s: f64,
}

/// The sample with the largest acceleration magnitude.
#[derive(Debug, Serialize, ToSchema)]
pub struct PeakView {
    /// √(ax²+ay²+az²), m/s².
    value: f32,
    ts: String,
    device_id: i64,
}

/// What a session recorded.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionSummary {
    session_id: i64,
    /// Samples in the session.
    count: i64,
    /// First and last sample time.
    first: Option<String>,
    last: Option<String>,
    /// Last minus first sample time, seconds.
    duration_s: Option<f64>,
    /// (count − 1) / duration: the rate actually achieved, Hz.
    effective_rate_hz: Option<f64>,
    /// The nominal sample period (the `period` parameter, or the most frequent interval).
    nominal_period_us: Option<i64>,
    nominal_rate_hz: Option<f64>,
    gaps: GapSummary,
    ax: Option<AxisStats>,
    ay: Option<AxisStats>,
    az: Option<AxisStats>,
    gx: Option<AxisStats>,
    gy: Option<AxisStats>,
    gz: Option<AxisStats>,
    peak_accel: Option<PeakView>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Format {
    #[default]
    Json,
    Csv,
    Ndjson,
}

/// Where a page continues; opaque to clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cursor {
    /// After this row.
    Row(Key),
    /// At this bucket start, with this width.
    Bucket { start: i64, width: i64 },
}

impl Cursor {
    fn encode(self) -> String {
        let (kind, a, b) = match self {
            Cursor::Row(key) => (1u8, key.ts, key.device_id),
            Cursor::Bucket { start, width } => (2u8, start, width),
        };
        let mut bytes = Vec::with_capacity(17);
        bytes.push(kind);
        bytes.extend(a.to_be_bytes());
        bytes.extend(b.to_be_bytes());
        hex::encode(bytes)
    }

    fn decode(text: &str) -> Option<Cursor> {
        let bytes = hex::decode(text).ok()?;
        let (&kind, rest) = bytes.split_first()?;
        if rest.len() != 16 {
            return None;
        }
        let a = i64::from_be_bytes(rest[..8].try_into().ok()?);
        let b = i64::from_be_bytes(rest[8..].try_into().ok()?);
        match kind {
            1 => Some(Cursor::Row(Key {
                ts: a,
                device_id: b,
            })),
            2 if (MIN_BUCKET_US..=MAX_BUCKET_US).contains(&b) => {
                Some(Cursor::Bucket { start: a, width: b })
            }
            _ => None,
        }
    }
}

/// The parsed query string, each value checked on its own.
#[derive(Debug, Default)]
struct Params {
    from: Option<i64>,
    to: Option<i64>,
    limit: Option<i64>,
    cursor: Option<Cursor>,
    bucket: Option<i64>,
    points: Option<i64>,
    format: Format,
    period: Option<i64>,
}

fn unprocessable(name: &str, message: impl std::fmt::Display) -> Error {
    Error::Unprocessable(format!("{name}: {message}"))
}

impl Params {
    fn parse(query: Option<&str>, allowed: &[&str]) -> Result<Params> {
        let mut params = Params::default();
        let mut seen = HashSet::new();
        for (name, value) in url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
            let name = name.as_ref();
            if !allowed.contains(&name) {
                return Err(unprocessable(name, "unknown query parameter"));
            }
            if !seen.insert(name.to_owned()) {
                return Err(unprocessable(name, "given more than once"));
            }
            let value = value.trim();
            match name {
                "from" => params.from = Some(parse_time(name, value)?),
                "to" => params.to = Some(parse_time(name, value)?),
                "limit" => params.limit = Some(parse_count(name, value)?),
                "points" => params.points = Some(parse_count(name, value)?),
                "bucket" => {
                    params.bucket = Some(parse_duration(name, value, MIN_BUCKET_US, MAX_BUCKET_US)?)
                }
                "period" => params.period = Some(parse_duration(name, value, 1, MAX_BUCKET_US)?),
                "cursor" => {
                    params.cursor = Some(
                        Cursor::decode(value)
                            .ok_or_else(|| unprocessable(name, "not a cursor this API issued"))?,
                    )
                }
                "format" => {
                    params.format = match value {
                        "json" => Format::Json,
                        "csv" => Format::Csv,
                        "ndjson" => Format::Ndjson,
                        _ => return Err(unprocessable(name, "must be json, csv or ndjson")),
                    }
                }
                _ => unreachable!("every allowed parameter is handled"),
            }
        }
        Ok(params)
    }
}

fn parse_time(name: &str, value: &str) -> Result<i64> {
    value
        .parse::<i64>()
        .ok()
        .or_else(|| parse_rfc3339(value))
        .ok_or_else(|| {
            unprocessable(
                name,
                "must be an RFC 3339 time (e.g. 2025-07-28T17:05:03Z) or µs since the epoch",
            )
        })
}

fn parse_count(name: &str, value: &str) -> Result<i64> {
    match value.parse::<i64>() {
        Ok(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
        _ => Err(unprocessable(
            name,
            format!("must be an integer from 1 to {MAX_LIMIT}"),
        )),
    }
}

/// A duration such as `10ms`, `5s`, `1m`, `1h`, `1d`, in µs, within `[min, max]`.
fn parse_duration(name: &str, value: &str, min: i64, max: i64) -> Result<i64> {
    let shown = |us: i64| humantime::format_duration(std::time::Duration::from_micros(us as u64));
    let message = || {
        unprocessable(
            name,
            format!(
                "must be a duration from {} to {} (e.g. 500ms, 5s, 1m)",
                shown(min),
                shown(max)
            ),
        )
    };
    let duration = humantime::parse_duration(value).map_err(|_| message())?;
    match i64::try_from(duration.as_micros()) {
        Ok(us) if (min..=max).contains(&us) && duration.subsec_nanos() % 1_000 == 0 => Ok(us),
        _ => Err(message()),
    }
}

/// What a validated read asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Read {
    range: TimeRange,
    /// Whether `from` / `to` were given (they then bound a `points` span).
    explicit: (bool, bool),
    format: Format,
    mode: Mode,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Rows {
        limit: i64,
        after: Option<Key>,
    },
    Buckets {
        width: Width,
        limit: i64,
        /// Where this page starts (from a cursor); else at the first sample.
        start: Option<i64>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Width {
    Fixed(i64),
    Points(i64),
}

impl Read {
    fn parse(query: Option<&str>) -> Result<Read> {
        let p = Params::parse(query, READ_PARAMS)?;
        let from = p.from.unwrap_or(i64::MIN);
        // `to` is exclusive on the API, inclusive in the store.
        let to = p.to.map_or(i64::MAX, |to| to.saturating_sub(1));
        if p.from.is_some() && p.to.is_some() && from > to {
            return Err(unprocessable("to", "must be after from"));
        }
        if p.bucket.is_some() && p.points.is_some() {
            return Err(unprocessable("points", "cannot be combined with bucket"));
        }
        if p.format != Format::Json && p.limit.is_some() {
            return Err(unprocessable(
                "limit",
                "not used with format=csv or ndjson: exports stream the whole range",
            ));
        }
        let downsample = p.bucket.is_some()
            || p.points.is_some()
            || matches!(p.cursor, Some(Cursor::Bucket { .. }));
        let mode = if downsample {
            let (start, cursor_width) = match p.cursor {
                Some(Cursor::Bucket { start, width }) => (Some(start), Some(width)),
                Some(Cursor::Row(_)) => {
                    return Err(unprocessable(
                        "cursor",
                        "belongs to a query without bucket or points",
                    ));
                }
                None => (None, None),
            };
            let width = match (p.bucket, p.points, cursor_width) {
                (Some(bucket), _, Some(width)) if bucket != width => {
                    return Err(unprocessable(
                        "cursor",
                        "belongs to a query with another bucket",
                    ));
                }
                // A cursor fixes the width chosen for `points` on the first page.
                (_, _, Some(width)) => Width::Fixed(width),
                (Some(bucket), _, None) => Width::Fixed(bucket),
                (None, Some(points), None) => Width::Points(points),
                (None, None, None) => unreachable!("downsample needs one of them"),
            };
            Mode::Buckets {
                width,
                limit: p.limit.unwrap_or(MAX_LIMIT),
                start,
            }
        } else {
            let after = match p.cursor {
                Some(Cursor::Row(key)) => Some(key),
                Some(Cursor::Bucket { .. }) => unreachable!("a bucket cursor downsamples"),
                None => None,
            };
            Mode::Rows {
                limit: p.limit.unwrap_or(DEFAULT_ROW_LIMIT),
                after,
            }
        };
        Ok(Read {
            range: TimeRange { from, to },
            explicit: (p.from.is_some(), p.to.is_some()),
            format: p.format,
            mode,
        })
    }
}

/// The start of the bucket of `ts`: buckets are aligned to the epoch.
fn align(ts: i64, width: i64) -> i64 {
    ts - ts.rem_euclid(width)
}

/// A bucket width giving at most `points` buckets over `span_us` (plus one for the
/// alignment): whole milliseconds, within the allowed widths.
fn width_for_points(span_us: i64, points: i64) -> i64 {
    // Both are positive: signed `div_ceil` is unstable.
    let ceil = |a: i64, b: i64| a / b + i64::from(a % b != 0);
    ceil(ceil(span_us.max(1), points), 1_000)
        .saturating_mul(1_000)
        .clamp(MIN_BUCKET_US, MAX_BUCKET_US)
}

fn session_selection(session: &Session) -> Selection {
    Selection::Session {
        session_id: session.id,
        device_id: session.device_id,
        start: session.start_time,
        end: session.end_time.unwrap_or_else(now_us),
    }
}

/// The first page's samples after `after`, and the cursor for the next one.
async fn row_page(
    store: &Store,
    selection: &Selection,
    range: TimeRange,
    after: Option<Key>,
    limit: i64,
) -> Result<(Vec<TelemetryRow>, Option<Key>), store::Error> {
    let mut rows = store
        .telemetry_page(selection, range, after, limit + 1)
        .await?;
    let next = if rows.len() as i64 > limit {
        rows.truncate(limit as usize);
        rows.last().map(|row| Key {
            ts: row.ts,
            device_id: row.device_id,
        })
    } else {
        None
    };
    Ok((rows, next))
}

/// The buckets of `[start, start + limit × width)` within `range`, and the start of the
/// next bucket holding samples, if any. Each page reads a bounded span of time; gaps
/// between pages are skipped with an index seek.
async fn bucket_page(
    store: &Store,
    selection: &Selection,
    range: TimeRange,
    start: i64,
    width: i64,
    limit: i64,
) -> Result<(Vec<BucketRow>, Option<i64>), store::Error> {
    let end = start.saturating_add(limit.saturating_mul(width));
    let window = TimeRange {
        from: range.from.max(start),
        to: range.to.min(end.saturating_sub(1)),
    };
    let buckets = store
        .telemetry_buckets(selection, window, start, width)
        .await?;
    let next = if end <= range.to {
        let rest = TimeRange {
            from: end,
            to: range.to,
        };
        store
            .first_ts(selection, rest)
            .await?
            .map(|ts| align(ts, width))
    } else {
        None
    };
    Ok((buckets, next))
}

/// The bucket width and the first bucket of a downsampled read; `None` when the range
/// holds no sample.
async fn resolve_buckets(
    store: &Store,
    selection: &Selection,
    read: &Read,
    width: Width,
    start: Option<i64>,
) -> Result<Option<(i64, i64)>, store::Error> {
    if let (Width::Fixed(width), Some(start)) = (width, start) {
        return Ok(Some((width, start)));
    }
    let Some((first, last)) = store.telemetry_bounds(selection, read.range).await? else {
        return Ok(None);
    };
    let width = match width {
        Width::Fixed(width) => width,
        Width::Points(points) => {
            let lo = if read.explicit.0 {
                read.range.from
            } else {
                first
            };
            let hi = if read.explicit.1 { read.range.to } else { last };
            width_for_points(hi.saturating_sub(lo).saturating_add(1), points)
        }
    };
    Ok(Some((width, align(first, width))))
}

/// Answers a validated read of `selection`; `name` names the export file.
async fn respond(
    store: &Store,
    selection: Selection,
    read: Read,
    name: String,
) -> Result<Response> {
    match (read.format, read.mode) {
        (Format::Json, Mode::Rows { limit, after }) => {
            let (rows, next) = row_page(store, &selection, read.range, after, limit).await?;
            Ok(axum::Json(TelemetryRead::Samples(TelemetryPage {
                samples: rows.iter().map(SampleView::from).collect(),
                next_cursor: next.map(|key| Cursor::Row(key).encode()),
            }))
            .into_response())
        }
        (
            Format::Json,
            Mode::Buckets {
                width,
                limit,
                start,
            },
        ) => {
            let page = match resolve_buckets(store, &selection, &read, width, start).await? {
                None => BucketPage {
                    bucket_us: match width {
                        Width::Fixed(width) => width,
                        Width::Points(_) => MIN_BUCKET_US,
                    },
                    buckets: Vec::new(),
                    next_cursor: None,
                },
                Some((width, start)) => {
                    let (buckets, next) =
                        bucket_page(store, &selection, read.range, start, width, limit).await?;
                    BucketPage {
                        bucket_us: width,
                        buckets: buckets.iter().map(BucketView::from).collect(),
                        next_cursor: next.map(|start| Cursor::Bucket { start, width }.encode()),
                    }
                }
            };
            Ok(axum::Json(TelemetryRead::Buckets(page)).into_response())
        }
        (format, mode) => {
            let (next, kind) = match mode {
                Mode::Rows { after, .. } => (Next::Rows(after), "telemetry"),
                Mode::Buckets { width, start, .. } => {
                    let next = match resolve_buckets(store, &selection, &read, width, start).await?
                    {
                        Some((width, start)) => Next::Buckets { start, width },
                        None => Next::Done,
                    };
                    (next, "buckets")
                }
            };
            let export = Export {
                store: store.clone(),
                selection,
                range: read.range,
                format,
                header: matches!(format, Format::Csv).then_some(kind),
                next,
            };
            Ok(export.into_response(&format!("{name}-{kind}")))
        }
    }
}

/// A streamed export: one statement per chunk, so memory stays bounded by a page.
struct Export {
    store: Store,
    selection: Selection,
    range: TimeRange,
    format: Format,
    /// The CSV header still to send (`telemetry` or `buckets`).
    header: Option<&'static str>,
    next: Next,
}

#[derive(Debug, Clone, Copy)]
enum Next {
    Rows(Option<Key>),
    Buckets { start: i64, width: i64 },
    Done,
}

const SAMPLE_HEADER: &str = "ts,device_id,session_id,ax,ay,az,gx,gy,gz\n";

fn bucket_header() -> String {
    let mut header = "start,count".to_owned();
    for axis in ["ax", "ay", "az", "gx", "gy", "gz"] {
        let _ = write!(header, ",{axis}_min,{axis}_max,{axis}_mean");
    }
    header.push_str(",peak_accel\n");
    header
}

impl Export {
    fn into_response(self, file_stem: &str) -> Response {
        let (content_type, extension) = match self.format {
            Format::Csv => ("text/csv; charset=utf-8", "csv"),
            _ => ("application/x-ndjson", "ndjson"),
        };
        let stream = futures_util::stream::unfold(self, |mut export| async move {
            match export.next_chunk().await {
                Ok(Some(chunk)) => Some((Ok(chunk), export)),
                Ok(None) => None,
                Err(err) => {
                    // The status line is long gone: all that is left is to cut the body
                    // short, so the client sees a truncated transfer, not a short file.
                    tracing::error!(error = %err, "export failed mid-stream");
                    export.next = Next::Done;
                    export.header = None;
                    Some((Err(err), export))
                }
            }
        });
        let mut response = Body::from_stream(stream).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        if let Ok(value) =
            HeaderValue::from_str(&format!("attachment; filename=\"{file_stem}.{extension}\""))
        {
            headers.insert(header::CONTENT_DISPOSITION, value);
        }
        response
    }

    async fn next_chunk(&mut self) -> Result<Option<Bytes>, store::Error> {
        let mut out = String::new();
        match self.header.take() {
            Some("buckets") => out.push_str(&bucket_header()),
            Some(_) => out.push_str(SAMPLE_HEADER),
            None => {}
        }
        match self.next {
            Next::Done if out.is_empty() => return Ok(None),
            Next::Done => {}
            Next::Rows(after) => {
                let rows = self
                    .store
                    .telemetry_page(&self.selection, self.range, after, EXPORT_PAGE_ROWS)
                    .await?;
                self.next = match rows.last() {
                    Some(row) if rows.len() as i64 == EXPORT_PAGE_ROWS => Next::Rows(Some(Key {
                        ts: row.ts,
                        device_id: row.device_id,
                    })),
                    _ => Next::Done,
                };
                for row in &rows {
                    match self.format {
                        Format::Csv => csv_sample(&mut out, row),
                        _ => ndjson(&mut out, &SampleView::from(row)),
                    }
                }
            }
            Next::Buckets { start, width } => {
                let (buckets, next) = bucket_page(
                    &self.store,
                    &self.selection,
                    self.range,
                    start,
                    width,
                    EXPORT_PAGE_BUCKETS,
                )
                .await?;
                self.next = next.map_or(Next::Done, |start| Next::Buckets { start, width });
                for bucket in &buckets {
                    match self.format {
                        Format::Csv => csv_bucket(&mut out, bucket),
                        _ => ndjson(&mut out, &BucketView::from(bucket)),
                    }
                }
            }
        }
        Ok(Some(Bytes::from(out)))
    }
}

fn csv_sample(out: &mut String, row: &TelemetryRow) {
    let _ = write!(out, "{},{},", to_rfc3339(row.ts), row.device_id);
    if let Some(session) = row.session_id {
        let _ = write!(out, "{session}");
    }
    for value in row.accel.iter().chain(&row.gyro) {
        let _ = write!(out, ",{value}");
    }
    out.push('\n');
}

fn csv_bucket(out: &mut String, bucket: &BucketRow) {
    let view = BucketView::from(bucket);
    let _ = write!(out, "{},{}", view.start, view.count);
    for axis in [view.ax, view.ay, view.az, view.gx, view.gy, view.gz] {
        let _ = write!(out, ",{},{},{}", axis.min, axis.max, axis.mean);
    }
    let _ = writeln!(out, ",{}", view.peak_accel);
}

fn ndjson(out: &mut String, value: &impl Serialize) {
    // Serializing plain structs of numbers and strings cannot fail.
    if let Ok(line) = serde_json::to_string(value) {
        out.push_str(&line);
        out.push('\n');
    }
}

/// A device's samples: a page (`limit`, `cursor`), buckets (`bucket` or `points`), or a
/// streamed export (`format=csv|ndjson`).
#[utoipa::path(get, path = "/devices/{id}/telemetry", tag = "telemetry",
    params(("id" = i64, Path, description = "Device id"), ReadParams), security(("bearer" = [])),
    responses(
        (status = 200, description = "A page of samples or buckets (JSON), or the whole range as an attachment",
            content((TelemetryRead = "application/json"), (String = "text/csv"), (String = "application/x-ndjson"))),
        (status = 401, description = "Missing, invalid or expired token", body = ErrorBody),
        (status = 404, description = "`device not found` (or not the caller's)", body = ErrorBody),
        (status = 422, description = "Invalid parameter; the message names it", body = ErrorBody),
    ))]
async fn device_telemetry(
    State(state): State<AppState>,
    user: AuthUser,
    Id(id): Id,
    RawQuery(query): RawQuery,
) -> Result<Response> {
    let read = Read::parse(query.as_deref())?;
    state
        .store
        .device_of(user.id, id)
        .await?
        .ok_or(super::devices::NOT_FOUND)?;
    respond(
        &state.store,
        Selection::Device(id),
        read,
        format!("device-{id}"),
    )
    .await
}

/// A session's samples: its device's samples between its start and its end (or now),
/// plus those explicitly attributed to it. Same parameters and answers as a device's.
#[utoipa::path(get, path = "/sessions/{id}/telemetry", tag = "telemetry",
    params(("id" = i64, Path, description = "Session id"), ReadParams), security(("bearer" = [])),
    responses(
        (status = 200, description = "A page of samples or buckets (JSON), or the whole session as an attachment",
            content((TelemetryRead = "application/json"), (String = "text/csv"), (String = "application/x-ndjson"))),
        (status = 401, description = "Missing, invalid or expired token", body = ErrorBody),
        (status = 404, description = "`session not found` (or not the caller's)", body = ErrorBody),
        (status = 422, description = "Invalid parameter; the message names it", body = ErrorBody),
    ))]
async fn session_telemetry(
    State(state): State<AppState>,
    user: AuthUser,
    Id(id): Id,
    RawQuery(query): RawQuery,
) -> Result<Response> {
    let read = Read::parse(query.as_deref())?;
    let session = state
        .store
        .session_of(user.id, id)
        .await?
        .ok_or(SESSION_NOT_FOUND)?;
    let selection = session_selection(&session);
    respond(&state.store, selection, read, format!("session-{id}")).await
}

/// Summary of a session's samples: count, time span, rates, gaps, per-axis statistics
/// and the peak acceleration.
#[utoipa::path(get, path = "/sessions/{id}/summary", tag = "telemetry",
    params(("id" = i64, Path, description = "Session id"), SummaryParams), security(("bearer" = [])),
    responses(
        (status = 200, description = "The summary", body = SessionSummary),
        (status = 401, description = "Missing, invalid or expired token", body = ErrorBody),
        (status = 404, description = "`session not found` (or not the caller's)", body = ErrorBody),
        (status = 422, description = "Invalid parameter; the message names it", body = ErrorBody),
    ))]
async fn session_summary(
    State(state): State<AppState>,
    user: AuthUser,
    Id(id): Id,
    RawQuery(query): RawQuery,
) -> Result<axum::Json<SessionSummary>> {
    let params = Params::parse(query.as_deref(), &["period"])?;
    let session = state
        .store
        .session_of(user.id, id)
        .await?
        .ok_or(SESSION_NOT_FOUND)?;
    let selection = session_selection(&session);
    let store = &state.store;
    let all = store.telemetry_aggregates(&selection).await?;
    let peak = store.telemetry_peak(&selection).await?;
    let period = match params.period {
        Some(period) => Some(period),
        None => store.telemetry_typical_interval(&selection).await?,
    };
    let threshold = period.map(|p| p.saturating_mul(3));
    let gaps = match threshold {
        Some(threshold) => store.telemetry_gaps(&selection, threshold).await?,
        None => store::Gaps::default(),
    };
    let duration_s = match (all.first, all.last) {
        (Some(first), Some(last)) => Some((last - first) as f64 / 1e6),
        _ => None,
    };
    Ok(axum::Json(SessionSummary {
        session_id: id,
        count: all.count,
        first: all.first.map(to_rfc3339),
        last: all.last.map(to_rfc3339),
        duration_s,
        effective_rate_hz: duration_s
            .filter(|d| *d > 0.0)
            .map(|d| (all.count - 1) as f64 / d),
        nominal_period_us: period,
        nominal_rate_hz: period.filter(|p| *p > 0).map(|p| 1e6 / p as f64),
        gaps: GapSummary {
            threshold_us: threshold,
            count: gaps.count,
            total_s: gaps.total_us as f64 / 1e6,
        },
        ax: AxisStats::maybe(all.ax_min, all.ax_max, all.ax_mean),
        ay: AxisStats::maybe(all.ay_min, all.ay_max, all.ay_mean),
        az: AxisStats::maybe(all.az_min, all.az_max, all.az_mean),
        gx: AxisStats::maybe(all.gx_min, all.gx_max, all.gx_mean),
        gy: AxisStats::maybe(all.gy_min, all.gy_max, all.gy_mean),
        gz: AxisStats::maybe(all.gz_min, all.gz_max, all.gz_mean),
        peak_accel: peak.map(|peak| PeakView {
            value: peak.accel_squared.sqrt() as f32,
            ts: to_rfc3339(peak.ts),
            device_id: peak.device_id,
        }),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(query: &str) -> String {
        Read::parse(Some(query)).unwrap_err().to_string()
    }

    #[test]
    fn cursors_round_trip_and_garbage_is_refused() {
        for cursor in [
            Cursor::Row(Key {
                ts: -5,
                device_id: 9,
            }),
            Cursor::Bucket {
                start: 1_753_722_300_000_000,
                width: 1_000_000,
            },
        ] {
            assert_eq!(Cursor::decode(&cursor.encode()), Some(cursor));
        }
        assert_eq!(Cursor::decode("zz"), None);
        assert_eq!(Cursor::decode("01"), None);
    }

    #[test]
    fn every_bad_parameter_is_named() {
        assert!(error("limit=0").starts_with("limit:"));
        assert!(error("limit=10001").starts_with("limit:"));
        assert!(error("from=yesterday").starts_with("from:"));
        assert!(error("from=10&to=5").starts_with("to:"));
        assert!(error("bucket=1ms").starts_with("bucket:"));
        assert!(error("bucket=2d").starts_with("bucket:"));
        assert!(error("bucket=1s&points=10").starts_with("points:"));
        assert!(error("format=xml").starts_with("format:"));
        assert!(error("format=csv&limit=5").starts_with("limit:"));
        assert!(error("cursor=nope").starts_with("cursor:"));
        assert!(error("colour=red").starts_with("colour:"));
        assert!(error("limit=1&limit=2").starts_with("limit:"));
        let rows = Cursor::Row(Key {
            ts: 1,
            device_id: 1,
        })
        .encode();
        assert!(error(&format!("bucket=1s&cursor={rows}")).starts_with("cursor:"));
    }

    #[test]
    fn times_are_rfc3339_or_microseconds_and_to_is_exclusive() {
        let read = Read::parse(Some("from=2025-07-28T17:05:03Z&to=1753722304000000")).unwrap();
        assert_eq!(
            read.range,
            TimeRange {
                from: 1_753_722_303_000_000,
                to: 1_753_722_303_999_999
            }
        );
        assert_eq!(
            read.mode,
            Mode::Rows {
                limit: 1_000,
                after: None
            }
        );
    }

    #[test]
    fn points_pick_whole_millisecond_widths_within_bounds() {
        // One hour in 1 000 points: 3.6 s buckets.
        assert_eq!(width_for_points(3_600_000_000, 1_000), 3_600_000);
        assert_eq!(width_for_points(1_000, 1_000), MIN_BUCKET_US);
        assert_eq!(width_for_points(i64::MAX, 1), MAX_BUCKET_US);
        assert_eq!(width_for_points(3_600_000_001, 1_000), 3_601_000);
    }

    #[test]
    fn buckets_align_to_the_epoch() {
        assert_eq!(align(1_234_567, 1_000_000), 1_000_000);
        assert_eq!(align(-1, 1_000_000), -1_000_000);
    }
}
