//! The read side of `telemetry`: keyset-paged ranges, per-bucket aggregates for plots,
//! and session summaries. Every statement is the same on both backends.
//!
//! A read covers a [`Selection`]: one device's samples, or one session's, which are its
//! device's samples within the session's time span *plus* the samples explicitly
//! attributed to it (`session_id`), e.g. from other devices. Each half reads its own
//! index: the primary key `(device_id, ts)` or `(session_id, ts)` (whose entries carry
//! the primary key too). Rows come oldest first, ties broken by device: the order key is
//! `(ts, device_id)`, unique because `(device_id, ts)` is the primary key.
//!
//! The halves usually overlap (ingest attributes a device's samples to its open
//! session). Pages take `limit` rows from each half at the cursor and merge them with a
//! deduplicating `UNION`: `O(limit)` per page. Aggregates scan everything once, so there
//! the second half excludes what the first covers and `UNION ALL` needs no dedup (an
//! excluding half would make every *page* rescan the overlap to find `limit` rows).

use super::{Result, Store, TelemetryRow, on_pool};

/// Which samples a read covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Selection {
    /// Every sample of one device.
    Device(i64),
    /// A session: the samples of `device_id` (if any) within `[start, end]`, plus every
    /// sample with `session_id = session_id`.
    Session {
        session_id: i64,
        device_id: Option<i64>,
        start: i64,
        end: i64,
    },
}

/// An inclusive range of sample times, µs since the epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeRange {
    pub from: i64,
    pub to: i64,
}

impl TimeRange {
    pub const ALL: TimeRange = TimeRange {
        from: i64::MIN,
        to: i64::MAX,
    };
}

/// A position in the `(ts, device_id)` order: a page continues after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Key {
    pub ts: i64,
    pub device_id: i64,
}

/// Aggregates of the samples in one time bucket. Acceleration is m/s², rotation rad/s.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct BucketRow {
    /// Start of the bucket (µs since the epoch, a multiple of the bucket width).
    pub bucket: i64,
    pub count: i64,
    pub ax_min: f64,
    pub ax_max: f64,
    pub ax_mean: f64,
    pub ay_min: f64,
    pub ay_max: f64,
    pub ay_mean: f64,
    pub az_min: f64,
    pub az_max: f64,
    pub az_mean: f64,
    pub gx_min: f64,
    pub gx_max: f64,
    pub gx_mean: f64,
    pub gy_min: f64,
    pub gy_max: f64,
    pub gy_mean: f64,
    pub gz_min: f64,
    pub gz_max: f64,
    pub gz_mean: f64,
    /// The largest `ax² + ay² + az²` in the bucket (the square root is the caller's).
    pub peak_accel_squared: f64,
}

/// Whole-selection aggregates; everything but `count` is `None` when there are no samples.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct Aggregates {
    pub count: i64,
    pub first: Option<i64>,
    pub last: Option<i64>,
    pub ax_min: Option<f64>,
    pub ax_max: Option<f64>,
    pub ax_mean: Option<f64>,
    pub ay_min: Option<f64>,
    pub ay_max: Option<f64>,
    pub ay_mean: Option<f64>,
    pub az_min: Option<f64>,
    pub az_max: Option<f64>,
    pub az_mean: Option<f64>,
    pub gx_min: Option<f64>,
    pub gx_max: Option<f64>,
    pub gx_mean: Option<f64>,
    pub gy_min: Option<f64>,
    pub gy_max: Option<f64>,
    pub gy_mean: Option<f64>,
    pub gz_min: Option<f64>,
    pub gz_max: Option<f64>,
    pub gz_mean: Option<f64>,
}

/// The sample with the largest acceleration magnitude.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Peak {
    pub ts: i64,
    pub device_id: i64,
    pub accel_squared: f64,
}

/// Intervals between consecutive samples of a device longer than a threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Gaps {
    pub count: i64,
    /// Sum of those intervals, µs.
    pub total_us: i64,
}

const COLUMNS: &str = "device_id, ts, session_id, ax, ay, az, gx, gy, gz";

const AXES: [&str; 6] = ["ax", "ay", "az", "gx", "gy", "gz"];

/// `MIN(ax) AS ax_min, MAX(ax) AS ax_max, AVG(ax) AS ax_mean, …` for every axis.
fn axis_aggregates() -> String {
    AXES.iter()
        .map(|a| format!("MIN({a}) AS {a}_min, MAX({a}) AS {a}_max, AVG({a}) AS {a}_mean"))
        .collect::<Vec<_>>()
        .join(", ")
}

type RawRow = (i64, i64, Option<i64>, f32, f32, f32, f32, f32, f32);

fn to_row(raw: RawRow) -> TelemetryRow {
    let (device_id, ts, session_id, ax, ay, az, gx, gy, gz) = raw;
    TelemetryRow {
        device_id,
        ts,
        session_id,
        accel: [ax, ay, az],
        gyro: [gx, gy, gz],
    }
}

/// One `UNION ALL` branch: a `WHERE` clause over `telemetry` and its parameters.
#[derive(Debug, Clone, PartialEq)]
struct Branch {
    filter: String,
    binds: Vec<i64>,
}

/// The branches that make up `selection` within `range`, continuing after `after`;
/// `disjoint` makes the attributed half exclude the device half. Empty when nothing can
/// match.
fn branches(
    selection: &Selection,
    range: TimeRange,
    after: Option<Key>,
    disjoint: bool,
) -> Vec<Branch> {
    // A branch bound to one device continues at the cursor's time, or just after it when
    // the cursor's device sorts at or after this one.
    let device_branch = |device: i64, from: i64, to: i64| {
        let from = match after {
            Some(key) if device > key.device_id => from.max(key.ts),
            Some(key) => from.max(key.ts.saturating_add(1)),
            None => from,
        };
        (from <= to).then(|| Branch {
            filter: "device_id = ? AND ts >= ? AND ts <= ?".to_owned(),
            binds: vec![device, from, to],
        })
    };
    match *selection {
        Selection::Device(device) => device_branch(device, range.from, range.to)
            .into_iter()
            .collect(),
        Selection::Session {
            session_id,
            device_id,
            start,
            end,
        } => {
            let mut branches = Vec::with_capacity(2);
            if let Some(device) = device_id {
                branches.extend(device_branch(
                    device,
                    range.from.max(start),
                    range.to.min(end),
                ));
            }
            let from = match after {
                Some(key) => range.from.max(key.ts),
                None => range.from,
            };
            if from <= range.to {
                let mut filter = "session_id = ? AND ts >= ? AND ts <= ?".to_owned();
                let mut binds = vec![session_id, from, range.to];
                if let Some(key) = after {
                    filter.push_str(" AND (ts > ? OR device_id > ?)");
                    binds.extend([key.ts, key.device_id]);
                }
                if let (Some(device), true) = (device_id, disjoint) {
                    filter.push_str(" AND (device_id <> ? OR ts < ? OR ts > ?)");
                    binds.extend([device, start, end]);
                }
                branches.push(Branch { filter, binds });
            }
            branches
        }
    }
}

/// A derived table of the selection's rows (all columns) from disjoint branches, for
/// aggregates.
fn source(branches: &[Branch]) -> (String, Vec<i64>) {
    let sql = branches
        .iter()
        .map(|b| format!("SELECT {COLUMNS} FROM telemetry WHERE {}", b.filter))
        .collect::<Vec<_>>()
        .join(" UNION ALL ");
    let binds = branches.iter().flat_map(|b| b.binds.clone()).collect();
    (sql, binds)
}

/// `$query` with every `i64` of `$binds` bound, in order.
macro_rules! bound {
    ($query:expr, $binds:expr) => {{
        let mut query = $query;
        for value in $binds {
            query = query.bind(value);
        }
        query
    }};
}

impl Store {
    /// Up to `limit` rows of `selection` within `range` after `after`, in `(ts, device_id)`
    /// order. Each branch is read in index order with its own `LIMIT`, so a page costs
    /// `O(limit)` however large the range.
    pub async fn telemetry_page(
        &self,
        selection: &Selection,
        range: TimeRange,
        after: Option<Key>,
        limit: i64,
    ) -> Result<Vec<TelemetryRow>> {
        let branches = branches(selection, range, after, false);
        if branches.is_empty() || limit <= 0 {
            return Ok(Vec::new());
        }
        let select = |b: &Branch| {
            format!(
                "SELECT {COLUMNS} FROM telemetry WHERE {} ORDER BY ts, device_id LIMIT ?",
                b.filter
            )
        };
        let mut binds = Vec::new();
        let sql = if let [branch] = branches.as_slice() {
            binds.extend(branch.binds.iter().copied());
            binds.push(limit);
            select(branch)
        } else {
            let parts: Vec<String> = branches
                .iter()
                .enumerate()
                .map(|(i, b)| {
                    binds.extend(b.binds.iter().copied());
                    binds.push(limit);
                    format!("SELECT * FROM ({}) b{i}", select(b))
                })
                .collect();
            binds.push(limit);
            // UNION, not UNION ALL: a row in both halves is one row.
            format!("{} ORDER BY ts, device_id LIMIT ?", parts.join(" UNION "))
        };
        let rows: Vec<RawRow> =
            on_pool!(self, p => bound!(sqlx::query_as(&sql), binds).fetch_all(p).await?);
        Ok(rows.into_iter().map(to_row).collect())
    }

    /// The first and last sample time of `selection` within `range`; `None` if it holds
    /// no sample. Each is an index seek per branch.
    pub async fn telemetry_bounds(
        &self,
        selection: &Selection,
        range: TimeRange,
    ) -> Result<Option<(i64, i64)>> {
        let mut bounds: Option<(i64, i64)> = None;
        for branch in branches(selection, range, None, false) {
            let first = self.edge_ts(&branch, "ASC").await?;
            let last = self.edge_ts(&branch, "DESC").await?;
            if let (Some(first), Some(last)) = (first, last) {
                bounds = Some(match bounds {
                    None => (first, last),
                    Some((lo, hi)) => (lo.min(first), hi.max(last)),
                });
            }
        }
        Ok(bounds)
    }

    /// The first sample time of `selection` within `range`, if any.
    pub async fn first_ts(&self, selection: &Selection, range: TimeRange) -> Result<Option<i64>> {
        let mut first: Option<i64> = None;
        for branch in branches(selection, range, None, false) {
            if let Some(ts) = self.edge_ts(&branch, "ASC").await? {
                first = Some(first.map_or(ts, |f| f.min(ts)));
            }
        }
        Ok(first)
    }

    async fn edge_ts(&self, branch: &Branch, direction: &str) -> Result<Option<i64>> {
        let sql = format!(
            "SELECT ts FROM telemetry WHERE {} ORDER BY ts {direction} LIMIT 1",
            branch.filter
        );
        Ok(
            on_pool!(self, p => bound!(sqlx::query_scalar(&sql), branch.binds.iter().copied()).fetch_optional(p).await?),
        )
    }

    /// Per-bucket aggregates of `selection` within `range`, oldest bucket first; only
    /// buckets holding samples. Buckets are `width` µs wide and start at `origin + k ×
    /// width`; `origin` must not be after `range.from` (so the integer arithmetic only
    /// sees non-negative offsets, which `%` treats alike on every backend).
    pub async fn telemetry_buckets(
        &self,
        selection: &Selection,
        range: TimeRange,
        origin: i64,
        width: i64,
    ) -> Result<Vec<BucketRow>> {
        let branches = branches(selection, range, None, true);
        if branches.is_empty() {
            return Ok(Vec::new());
        }
        let (source, source_binds) = source(&branches);
        let sql = format!(
            "SELECT ts - (ts - ?) % ? AS bucket, COUNT(*) AS count, {}, \
             MAX(ax * ax + ay * ay + az * az) AS peak_accel_squared \
             FROM ({source}) s GROUP BY bucket ORDER BY bucket",
            axis_aggregates()
        );
        let binds = [origin, width].into_iter().chain(source_binds);
        Ok(on_pool!(self, p => bound!(sqlx::query_as(&sql), binds).fetch_all(p).await?))
    }

    /// Count, first/last time and per-axis min/max/mean of the whole selection.
    pub async fn telemetry_aggregates(&self, selection: &Selection) -> Result<Aggregates> {
        let branches = branches(selection, TimeRange::ALL, None, true);
        if branches.is_empty() {
            return Ok(Aggregates::empty());
        }
        let (source, binds) = source(&branches);
        let sql = format!(
            "SELECT COUNT(*) AS count, MIN(ts) AS first, MAX(ts) AS last, {} FROM ({source}) s",
            axis_aggregates()
        );
        Ok(on_pool!(self, p => bound!(sqlx::query_as(&sql), binds).fetch_one(p).await?))
    }

    /// The sample with the largest acceleration magnitude (the earliest of equals).
    pub async fn telemetry_peak(&self, selection: &Selection) -> Result<Option<Peak>> {
        let branches = branches(selection, TimeRange::ALL, None, true);
        if branches.is_empty() {
            return Ok(None);
        }
        let (source, binds) = source(&branches);
        let sql = format!(
            "SELECT ts, device_id, ax * ax + ay * ay + az * az AS m FROM ({source}) s \
             ORDER BY m DESC, ts, device_id LIMIT 1"
        );
        let peak: Option<(i64, i64, f64)> =
            on_pool!(self, p => bound!(sqlx::query_as(&sql), binds).fetch_optional(p).await?);
        Ok(peak.map(|(ts, device_id, accel_squared)| Peak {
            ts,
            device_id,
            accel_squared,
        }))
    }

    /// The most frequent interval between consecutive samples of a device (the smaller
    /// of equally frequent ones): the selection's nominal sample period, in µs.
    pub async fn telemetry_typical_interval(&self, selection: &Selection) -> Result<Option<i64>> {
        let branches = branches(selection, TimeRange::ALL, None, true);
        if branches.is_empty() {
            return Ok(None);
        }
        let (source, binds) = source(&branches);
        let sql = format!(
            "SELECT delta FROM ({}) d WHERE delta IS NOT NULL \
             GROUP BY delta ORDER BY COUNT(*) DESC, delta LIMIT 1",
            intervals(&source)
        );
        Ok(on_pool!(self, p => bound!(sqlx::query_scalar(&sql), binds).fetch_optional(p).await?))
    }

    /// Intervals between consecutive samples of a device longer than `threshold_us`.
    pub async fn telemetry_gaps(&self, selection: &Selection, threshold_us: i64) -> Result<Gaps> {
        let branches = branches(selection, TimeRange::ALL, None, true);
        if branches.is_empty() {
            return Ok(Gaps::default());
        }
        let (source, binds) = source(&branches);
        // SUM of BIGINT is DECIMAL on MySQL: cast back (SQLite keeps the integer).
        let sql = format!(
            "SELECT COUNT(*), CAST(COALESCE(SUM(delta), 0) AS SIGNED) FROM ({}) d WHERE delta > ?",
            intervals(&source)
        );
        let binds = binds.into_iter().chain([threshold_us]);
        let (count, total_us): (i64, i64) =
            on_pool!(self, p => bound!(sqlx::query_as(&sql), binds).fetch_one(p).await?);
        Ok(Gaps { count, total_us })
    }
}

/// `delta`: each sample's distance to the previous sample of its device (NULL for the first).
fn intervals(source: &str) -> String {
    format!(
        "SELECT ts - LAG(ts) OVER (PARTITION BY device_id ORDER BY ts) AS delta FROM ({source}) s"
    )
}

impl Aggregates {
    fn empty() -> Aggregates {
        Aggregates {
            count: 0,
            first: None,
            last: None,
            ax_min: None,
            ax_max: None,
            ax_mean: None,
            ay_min: None,
            ay_max: None,
            ay_mean: None,
            az_min: None,
            az_max: None,
            az_mean: None,
            gx_min: None,
            gx_max: None,
            gx_mean: None,
            gy_min: None,
            gy_max: None,
            gy_mean: None,
            gz_min: None,
            gz_max: None,
            gz_mean: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SESSION: Selection = Selection::Session {
        session_id: 7,
        device_id: Some(3),
        start: 100,
        end: 200,
    };

    #[test]
    fn a_device_continues_strictly_after_the_cursor() {
        let after = Some(Key {
            ts: 150,
            device_id: 3,
        });
        let [branch] = branches(&Selection::Device(3), TimeRange::ALL, after, false)
            .try_into()
            .unwrap();
        assert_eq!(branch.binds, vec![3, 151, i64::MAX]);
    }

    #[test]
    fn a_session_is_its_device_window_plus_disjoint_attributed_samples() {
        let range = TimeRange { from: 0, to: 180 };
        let [device, attributed] = branches(&SESSION, range, None, true).try_into().unwrap();
        assert_eq!(device.binds, vec![3, 100, 180]);
        assert_eq!(attributed.binds, vec![7, 0, 180, 3, 100, 200]);
        assert!(attributed.filter.contains("device_id <> ?"));
    }

    #[test]
    fn the_cursor_device_decides_whether_its_time_is_included() {
        // After (150, device 2): device 3 may still have a sample at 150.
        let after = Some(Key {
            ts: 150,
            device_id: 2,
        });
        let [device, attributed] = branches(&SESSION, TimeRange::ALL, after, false)
            .try_into()
            .unwrap();
        assert_eq!(device.binds[1], 150);
        assert_eq!(&attributed.binds[..5], &[7, 150, i64::MAX, 150, 2]);
        // Past the session's end only attributed samples remain.
        let late = Some(Key {
            ts: 200,
            device_id: 3,
        });
        assert_eq!(branches(&SESSION, TimeRange::ALL, late, false).len(), 1);
    }

    #[test]
    fn an_unbound_session_reads_only_attributed_samples() {
        let unbound = Selection::Session {
            session_id: 7,
            device_id: None,
            start: 100,
            end: 200,
        };
        let [only] = branches(&unbound, TimeRange::ALL, None, true)
            .try_into()
            .unwrap();
        assert_eq!(only.filter, "session_id = ? AND ts >= ? AND ts <= ?");
    }
}
