//! CSV recordings: `velt-sim record` writes them, `velt-sim replay` plays them back.
//!
//! Format: a header line `ts,ax,ay,az,gx,gy,gz`, then one sample per line. `ts` is seconds
//! since the start of the recording as a decimal with at most 6 fractional digits
//! (microsecond precision, e.g. `0.010000`), strictly increasing; `ax..az` in m/s², `gx..gz`
//! in rad/s. Blank lines and lines starting with `#` are ignored. Every value must fit the
//! ±16 g / ±2000 °/s scales the simulator encodes with.

use std::{io::Write, path::Path};

use velt_proto::Sample;

use crate::SampleSource;

/// The header line of a recording.
pub const HEADER: &str = "ts,ax,ay,az,gx,gy,gz";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("line {line}: {message}")]
    Parse { line: usize, message: String },
    #[error("the recording holds no samples")]
    Empty,
}

/// Reads a recording; timestamps come back in µs from the start of the file's time axis.
pub fn read_csv(path: &Path) -> Result<Vec<Sample>, Error> {
    parse_csv(&std::fs::read_to_string(path)?)
}

/// Parses recording text (see the module docs).
pub fn parse_csv(text: &str) -> Result<Vec<Sample>, Error> {
    let mut samples: Vec<Sample> = Vec::new();
    let mut header_seen = false;
    for (index, line) in text.lines().enumerate() {
        let line_no = index + 1;
        let err = |message: String| Error::Parse {
            line: line_no,
            message,
        };
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if !header_seen {
            let header: String = line.chars().filter(|c| !c.is_whitespace()).collect();
            if header != HEADER {
                return Err(err(format!("expected the header {HEADER:?}")));
            }
            header_seen = true;
            continue;
        }
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        if fields.len() != 7 {
            return Err(err(format!("expected 7 fields, found {}", fields.len())));
        }
        let ts_us = parse_seconds(fields[0]).ok_or_else(|| {
            err(format!(
                "ts {:?}: expected seconds with at most 6 decimals",
                fields[0]
            ))
        })?;
        let mut values = [0.0_f32; 6];
        for (value, (name, field)) in values
            .iter_mut()
            .zip(HEADER.split(',').skip(1).zip(&fields[1..]))
        {
            *value = field
                .parse::<f32>()
                .ok()
                .filter(|v| v.is_finite())
                .ok_or_else(|| err(format!("{name} {field:?}: not a finite number")))?;
        }
        if let Some(last) = samples.last()
            && ts_us <= last.ts_us
        {
            return Err(err(format!("ts {} does not increase", fields[0])));
        }
        let sample = Sample {
            ts_us,
            accel: [values[0], values[1], values[2]],
            gyro: [values[3], values[4], values[5]],
        };
        // Out-of-range values are refused here, with a line number, not mid-replay.
        velt_proto::TelemetryBatch::from_samples(
            0,
            None,
            None,
            velt_proto::ACCEL_SCALE_16G,
            velt_proto::GYRO_SCALE_2000DPS,
            std::slice::from_ref(&sample),
        )
        .map_err(|e| err(format!("{e}")))?;
        samples.push(sample);
    }
    if samples.is_empty() {
        return Err(Error::Empty);
    }
    Ok(samples)
}

/// `"1.25"` → 1 250 000 µs; exact decimal parsing, no float rounding.
fn parse_seconds(text: &str) -> Option<i64> {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    if whole.is_empty() || fraction.len() > 6 || !whole.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let whole: i64 = whole.parse().ok()?;
    let micros: i64 = format!("{fraction:0<6}").parse().ok()?;
    whole.checked_mul(1_000_000)?.checked_add(micros)
}

/// Writes samples as a recording; times relative to the first sample.
pub fn write_csv(out: &mut impl Write, samples: &[Sample]) -> std::io::Result<()> {
    let t0 = samples.first().map_or(0, |s| s.ts_us);
    writeln!(out, "{HEADER}")?;
    for s in samples {
        let t = s.ts_us - t0;
        writeln!(
            out,
            "{}.{:06},{},{},{},{},{},{}",
            t / 1_000_000,
            t % 1_000_000,
            s.accel[0],
            s.accel[1],
            s.accel[2],
            s.gyro[0],
            s.gyro[1],
            s.gyro[2]
        )?;
    }
    Ok(())
}

/// Rounds a sample's values to what the wire carries (int16 counts at the default
/// scales), so a recording of them replays to exactly the stored values.
pub fn quantized(sample: &Sample) -> Sample {
    let q = |v: f32, scale: f32| (v / scale).round().clamp(-32768.0, 32767.0) * scale;
    Sample {
        ts_us: sample.ts_us,
        accel: sample.accel.map(|v| q(v, velt_proto::ACCEL_SCALE_16G)),
        gyro: sample.gyro.map(|v| q(v, velt_proto::GYRO_SCALE_2000DPS)),
    }
}

/// A recording as a [`SampleSource`], optionally looped: each pass is shifted by the
/// recording's span plus one sample interval, so looped timestamps keep increasing.
#[derive(Debug, Clone)]
pub struct ReplaySource {
    samples: Vec<Sample>,
    next: usize,
    looped: bool,
    offset_us: i64,
    pass_us: i64,
    period_us: Option<u32>,
}

impl ReplaySource {
    /// `samples` as read by [`read_csv`] (non-empty, increasing times).
    pub fn new(samples: Vec<Sample>, looped: bool) -> ReplaySource {
        let t0 = samples.first().map_or(0, |s| s.ts_us);
        let samples: Vec<Sample> = samples
            .into_iter()
            .map(|s| Sample {
                ts_us: s.ts_us - t0,
                ..s
            })
            .collect();
        let gaps: Vec<i64> = samples
            .windows(2)
            .map(|w| w[1].ts_us - w[0].ts_us)
            .collect();
        let step = gaps.first().copied().unwrap_or(10_000);
        let period_us = if gaps.iter().all(|&g| g == step) {
            u32::try_from(step).ok()
        } else {
            None
        };
        let pass_us = samples.last().map_or(0, |s| s.ts_us) + step;
        ReplaySource {
            samples,
            next: 0,
            looped,
            offset_us: 0,
            pass_us,
            period_us,
        }
    }

    pub fn len(&self) -> usize {
        self.samples.len()
    }

    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }
}

impl SampleSource for ReplaySource {
    fn next_batch(&mut self, max: usize) -> Vec<Sample> {
        let mut batch = Vec::with_capacity(max);
        while batch.len() < max {
            if self.next == self.samples.len() {
                if !self.looped || self.samples.is_empty() {
                    break;
                }
                self.next = 0;
                self.offset_us += self.pass_us;
                // A batch never spans two passes, so its timing stays simple.
                if !batch.is_empty() && self.period_us.is_none() {
                    break;
                }
            }
            let s = self.samples[self.next];
            batch.push(Sample {
                ts_us: s.ts_us + self.offset_us,
                ..s
            });
            self.next += 1;
        }
        batch
    }

    fn period_us(&self) -> Option<u32> {
        self.period_us
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_recordings_read_back_exactly() {
        let mut imu = crate::ImuGenerator::new(crate::Profile::Walk, 10_000, 3);
        let samples: Vec<Sample> = imu.next_batch(120).iter().map(quantized).collect();
        let mut text = Vec::new();
        write_csv(&mut text, &samples).unwrap();
        let read = parse_csv(std::str::from_utf8(&text).unwrap()).unwrap();
        assert_eq!(read, samples);
    }

    #[test]
    fn bad_lines_are_refused_with_their_number() {
        let err =
            parse_csv("ts,ax,ay,az,gx,gy,gz\n0.0,0,0,9.8,0,0,0\n0.01,0,x,9.8,0,0,0\n").unwrap_err();
        assert!(matches!(err, Error::Parse { line: 3, .. }), "{err}");
        assert!(parse_csv("ts,ax,ay,az,gx,gy,gz\n0.0,0,0,999,0,0,0\n").is_err());
        assert!(parse_csv("t,a\n").is_err());
        assert!(matches!(parse_csv(HEADER), Err(Error::Empty)));
        assert_eq!(parse_seconds("1.5"), Some(1_500_000));
        assert_eq!(parse_seconds("0.000001"), Some(1));
        assert_eq!(parse_seconds("1.0000001"), None);
    }

    #[test]
    fn looped_replay_keeps_time_increasing() {
        let samples: Vec<Sample> = (0..3)
            .map(|i| Sample {
                ts_us: 5_000_000 + i * 10_000,
                accel: [0.0, 0.0, 9.8],
                gyro: [0.0; 3],
            })
            .collect();
        let mut source = ReplaySource::new(samples, true);
        assert_eq!(source.period_us(), Some(10_000));
        let ts: Vec<i64> = source.next_batch(7).iter().map(|s| s.ts_us).collect();
        assert_eq!(ts, [0, 10_000, 20_000, 30_000, 40_000, 50_000, 60_000]);
    }
}
