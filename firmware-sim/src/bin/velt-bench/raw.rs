//! (a) The raw database ceiling: a standalone loader (no velt) inserting the same rows
//! into the same `telemetry` table schema with plain multi-row INSERTs; the fastest of a
//! few variants counts.

use std::time::Instant;

use serde::Serialize;
use sqlx::{Connection, Executor, MySqlConnection, QueryBuilder};

/// One telemetry row, as velt stores it.
#[derive(Debug, Clone, Copy)]
pub struct Row {
    pub device_id: i64,
    pub ts: i64,
    pub values: [f32; 6],
}

/// The `telemetry` table of `migrations/mysql/0001_initial.sql`.
pub const TELEMETRY_DDL: &str = "CREATE TABLE telemetry (
    device_id  BIGINT NOT NULL,
    ts         BIGINT NOT NULL,
    session_id BIGINT NULL,
    ax FLOAT NOT NULL, ay FLOAT NOT NULL, az FLOAT NOT NULL,
    gx FLOAT NOT NULL, gy FLOAT NOT NULL, gz FLOAT NOT NULL,
    PRIMARY KEY (device_id, ts),
    KEY telemetry_session (session_id, ts)
) ENGINE = InnoDB";

#[derive(Debug, Clone, Serialize)]
pub struct Variant {
    pub name: String,
    pub rows: usize,
    pub seconds: f64,
    pub rows_per_s: f64,
}

async fn reset(base: &str, db: &str) -> anyhow::Result<()> {
    let mut conn = MySqlConnection::connect(base).await?;
    conn.execute(format!("DROP DATABASE IF EXISTS `{db}`").as_str())
        .await?;
    conn.execute(format!("CREATE DATABASE `{db}`").as_str())
        .await?;
    conn.close().await?;
    let mut conn = MySqlConnection::connect(&format!("{base}/{db}")).await?;
    conn.execute(TELEMETRY_DDL).await?;
    conn.close().await?;
    Ok(())
}

pub async fn drop_database(base: &str, db: &str) -> anyhow::Result<()> {
    let mut conn = MySqlConnection::connect(base).await?;
    conn.execute(format!("DROP DATABASE IF EXISTS `{db}`").as_str())
        .await?;
    Ok(())
}

fn literal_insert(rows: &[Row]) -> String {
    use std::fmt::Write;
    let mut sql = String::with_capacity(rows.len() * 110);
    sql.push_str(
        "INSERT INTO telemetry (device_id, ts, session_id, ax, ay, az, gx, gy, gz) VALUES ",
    );
    for (i, r) in rows.iter().enumerate() {
        if i > 0 {
            sql.push(',');
        }
        let v = r.values;
        let _ = write!(
            sql,
            "({},{},NULL,{},{},{},{},{},{})",
            r.device_id, r.ts, v[0], v[1], v[2], v[3], v[4], v[5]
        );
    }
    sql
}

async fn load_literal(url: &str, rows: &[Row], per_statement: usize) -> anyhow::Result<()> {
    let mut conn = MySqlConnection::connect(url).await?;
    // Statements are built before the clock starts for the part a real loader would
    // overlap with I/O; here they are built inline, as a simple loader would.
    for chunk in rows.chunks(per_statement) {
        conn.execute(literal_insert(chunk).as_str()).await?;
    }
    conn.close().await?;
    Ok(())
}

async fn load_bound(
    url: &str,
    rows: &[Row],
    per_statement: usize,
    per_tx: usize,
) -> anyhow::Result<()> {
    let mut conn = MySqlConnection::connect(url).await?;
    for tx_rows in rows.chunks(per_tx) {
        let mut tx = conn.begin().await?;
        for chunk in tx_rows.chunks(per_statement) {
            let mut q = QueryBuilder::new(
                "INSERT INTO telemetry (device_id, ts, session_id, ax, ay, az, gx, gy, gz) ",
            );
            q.push_values(chunk, |mut b, r| {
                b.push_bind(r.device_id)
                    .push_bind(r.ts)
                    .push_bind(None::<i64>);
                for v in r.values {
                    b.push_bind(v);
                }
            });
            q.build().execute(&mut *tx).await?;
        }
        tx.commit().await?;
    }
    conn.close().await?;
    Ok(())
}

/// Runs every variant on a fresh table each; returns them, fastest first.
pub async fn ceiling(base: &str, db: &str, rows: &[Row]) -> anyhow::Result<Vec<Variant>> {
    let url = format!("{base}/{db}");
    let mut results = Vec::new();
    for (name, parallel, literal) in [
        (
            "literal VALUES, 10 000 rows/statement, 1 connection",
            1,
            true,
        ),
        (
            "literal VALUES, 10 000 rows/statement, 2 connections",
            2,
            true,
        ),
        (
            "bound ? placeholders, 7 000 rows/statement, 21 000 rows/transaction, 1 connection",
            1,
            false,
        ),
    ] {
        reset(base, db).await?;
        let start = Instant::now();
        let share = rows.len().div_ceil(parallel);
        let mut tasks = Vec::new();
        for part in rows.chunks(share) {
            let part = part.to_vec();
            let url = url.clone();
            tasks.push(tokio::spawn(async move {
                if literal {
                    load_literal(&url, &part, 10_000).await
                } else {
                    load_bound(&url, &part, 7_000, 21_000).await
                }
            }));
        }
        for task in tasks {
            task.await??;
        }
        let seconds = start.elapsed().as_secs_f64();
        results.push(Variant {
            name: name.to_owned(),
            rows: rows.len(),
            seconds,
            rows_per_s: rows.len() as f64 / seconds,
        });
    }
    drop_database(base, db).await?;
    results.sort_by(|a, b| b.rows_per_s.total_cmp(&a.rows_per_s));
    Ok(results)
}
