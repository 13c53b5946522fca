//! Telemetry batches: the samples a device publishes on its `telemetry` channel.
//!
//! A [`TelemetryBatch`] holds the int16 counts the IMU produced plus what is needed to turn
//! them back into SI units and timestamps: a start time, the [`Timing`] of the samples and
//! one scale factor each for the accelerometer and the gyroscope. Firmware that already has
//! raw counts builds a batch with [`TelemetryBatch::from_raw`]; code holding SI values uses
//! [`TelemetryBatch::from_samples`], which quantizes. Both validate everything, so a batch
//! that exists can always be encoded, and [`TelemetryBatch::samples`] cannot fail.
//!
//! How the counts are compressed on the wire (delta / linear prediction, zigzag varints)
//! is the business of the wire layout, not of this type.

use alloc::vec::Vec;

use crate::EncodeError;

/// The most samples one batch may hold (about 41 s at 100 Hz). Decoders refuse larger
/// declared counts before allocating anything for them.
pub const MAX_SAMPLES_PER_BATCH: usize = 4096;

/// Accelerometer scale for a ±16 g int16 sensor: 16 × 9.80665 / 32768 ≈ 0.004788 m/s² per
/// count.
pub const ACCEL_SCALE_16G: f32 = (16.0 * 9.80665 / 32768.0) as f32;

/// Gyroscope scale for a ±2000 °/s int16 sensor: 2000 × π/180 / 32768 ≈ 0.001065 rad/s per
/// count.
pub const GYRO_SCALE_2000DPS: f32 = (2000.0 * core::f64::consts::PI / 180.0 / 32768.0) as f32;

/// One 6-axis IMU sample in SI units.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// Sample time in microseconds since the Unix epoch (UTC).
    pub ts_us: i64,
    /// Acceleration in m/s² (x, y, z), gravity included.
    pub accel: [f32; 3],
    /// Angular rate in rad/s (x, y, z).
    pub gyro: [f32; 3],
}

/// One 6-axis sample as int16 counts; multiply by the batch's scales for SI units.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct RawSample {
    /// Accelerometer counts (x, y, z); × `accel_scale` = m/s².
    pub accel: [i16; 3],
    /// Gyroscope counts (x, y, z); × `gyro_scale` = rad/s.
    pub gyro: [i16; 3],
}

impl RawSample {
    /// The count on one axis.
    pub fn axis(&self, axis: Axis) -> i16 {
        match axis {
            Axis::AccelX => self.accel[0],
            Axis::AccelY => self.accel[1],
            Axis::AccelZ => self.accel[2],
            Axis::GyroX => self.gyro[0],
            Axis::GyroY => self.gyro[1],
            Axis::GyroZ => self.gyro[2],
        }
    }

    /// Sets the count on one axis.
    pub fn set_axis(&mut self, axis: Axis, count: i16) {
        match axis {
            Axis::AccelX => self.accel[0] = count,
            Axis::AccelY => self.accel[1] = count,
            Axis::AccelZ => self.accel[2] = count,
            Axis::GyroX => self.gyro[0] = count,
            Axis::GyroY => self.gyro[1] = count,
            Axis::GyroZ => self.gyro[2] = count,
        }
    }
}

/// One of the six IMU axes, in wire order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Axis {
    /// Accelerometer x.
    AccelX,
    /// Accelerometer y.
    AccelY,
    /// Accelerometer z.
    AccelZ,
    /// Gyroscope x.
    GyroX,
    /// Gyroscope y.
    GyroY,
    /// Gyroscope z.
    GyroZ,
}

impl Axis {
    /// All six axes in wire order.
    pub const ALL: [Axis; 6] = [
        Axis::AccelX,
        Axis::AccelY,
        Axis::AccelZ,
        Axis::GyroX,
        Axis::GyroY,
        Axis::GyroZ,
    ];

    /// Position in wire order (0 = accel x … 5 = gyro z).
    pub fn index(self) -> usize {
        self as usize
    }
}

impl core::fmt::Display for Axis {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Axis::AccelX => "accel x",
            Axis::AccelY => "accel y",
            Axis::AccelZ => "accel z",
            Axis::GyroX => "gyro x",
            Axis::GyroY => "gyro y",
            Axis::GyroZ => "gyro z",
        })
    }
}

/// When each sample of a batch was taken, relative to the batch's `t0_us`.
///
/// Timestamps always strictly increase: periods and deltas are at least 1 µs.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Timing {
    /// Sample `i` was taken at `t0_us + i * period_us` (e.g. 10 000 µs for 100 Hz).
    FixedPeriod {
        /// Microseconds between consecutive samples, ≥ 1.
        period_us: u32,
    },
    /// Sample `i + 1` was taken `deltas_us[i]` µs after sample `i`; there are exactly
    /// `len - 1` deltas, each ≥ 1.
    Deltas(Vec<u32>),
}

/// A batch of 1..=[`MAX_SAMPLES_PER_BATCH`] consecutive samples from one device.
///
/// Fields are private so that every batch is valid: scales finite and positive, timing
/// consistent with the sample count, no timestamp overflow.
#[derive(Debug, Clone, PartialEq)]
pub struct TelemetryBatch {
    pub(crate) seq: u64,
    pub(crate) session_id: Option<u64>,
    pub(crate) t0_us: i64,
    pub(crate) timing: Timing,
    pub(crate) accel_scale: f32,
    pub(crate) gyro_scale: f32,
    pub(crate) raw: Vec<RawSample>,
}

impl TelemetryBatch {
    /// Builds a batch from SI samples, quantizing each value to
    /// `round(value / scale)` (halves away from zero).
    ///
    /// - `seq`: the device's batch counter, monotonic per device.
    /// - `session_id`: the recording session, if the device is in one.
    /// - `period_us`: `Some(p)` declares a fixed sample period; every `ts_us` must then be
    ///   exactly `samples[0].ts_us + i * p` ([`EncodeError::TimestampMismatch`] otherwise).
    ///   `None` stores one delta per sample, taken from the `ts_us` values, which must
    ///   strictly increase by at most `u32::MAX` µs.
    /// - `accel_scale` (m/s² per count), `gyro_scale` (rad/s per count): finite, positive.
    ///
    /// Values that do not fit an int16 count after scaling are an error
    /// ([`EncodeError::OutOfRange`]), never clamped; NaN and infinities are
    /// [`EncodeError::NonFinite`].
    pub fn from_samples(
        seq: u64,
        session_id: Option<u64>,
        period_us: Option<u32>,
        accel_scale: f32,
        gyro_scale: f32,
        samples: &[Sample],
    ) -> Result<TelemetryBatch, EncodeError> {
        check_count(samples.len())?;
        check_scales(accel_scale, gyro_scale)?;
        let t0_us = samples[0].ts_us;
        let timing = match period_us {
            Some(period_us) => {
                if period_us == 0 {
                    return Err(EncodeError::InvalidPeriod);
                }
                for (index, sample) in samples.iter().enumerate() {
                    let expected = (index as i64)
                        .checked_mul(i64::from(period_us))
                        .and_then(|offset| t0_us.checked_add(offset))
                        .ok_or(EncodeError::TimestampOverflow)?;
                    if sample.ts_us != expected {
                        return Err(EncodeError::TimestampMismatch { index });
                    }
                }
                Timing::FixedPeriod { period_us }
            }
            None => {
                let mut deltas = Vec::with_capacity(samples.len() - 1);
                for (index, pair) in samples.windows(2).enumerate() {
                    let index = index + 1;
                    // i128 so that far-apart i64 timestamps cannot overflow the subtraction.
                    let delta = i128::from(pair[1].ts_us) - i128::from(pair[0].ts_us);
                    if delta <= 0 {
                        return Err(EncodeError::NonIncreasingTimestamps { index });
                    }
                    let delta =
                        u32::try_from(delta).map_err(|_| EncodeError::DeltaTooLarge { index })?;
                    deltas.push(delta);
                }
                Timing::Deltas(deltas)
            }
        };
        let mut raw = Vec::with_capacity(samples.len());
        for (index, sample) in samples.iter().enumerate() {
            let mut counts = RawSample::default();
            for (axis, value) in Axis::ALL
                .into_iter()
                .zip(sample.accel.iter().chain(&sample.gyro))
            {
                let scale = if axis.index() < 3 {
                    accel_scale
                } else {
                    gyro_scale
                };
                let count = quantize(*value, scale).map_err(|fault| match fault {
                    QuantizeFault::NonFinite => EncodeError::NonFinite { index, axis },
                    QuantizeFault::OutOfRange => EncodeError::OutOfRange { index, axis },
                })?;
                counts.set_axis(axis, count);
            }
            raw.push(counts);
        }
        Ok(TelemetryBatch {
            seq,
            session_id,
            t0_us,
            timing,
            accel_scale,
            gyro_scale,
            raw,
        })
    }

    /// Builds a batch from int16 counts as read from the IMU.
    ///
    /// `t0_us` is the first sample's time in µs since the Unix epoch (UTC); `timing` gives
    /// the others (with [`Timing::Deltas`], exactly `raw.len() - 1` deltas, each ≥ 1).
    /// Scales as in [`from_samples`](Self::from_samples).
    pub fn from_raw(
        seq: u64,
        session_id: Option<u64>,
        t0_us: i64,
        timing: Timing,
        accel_scale: f32,
        gyro_scale: f32,
        raw: Vec<RawSample>,
    ) -> Result<TelemetryBatch, EncodeError> {
        check_count(raw.len())?;
        check_scales(accel_scale, gyro_scale)?;
        match &timing {
            Timing::FixedPeriod { period_us: 0 } => return Err(EncodeError::InvalidPeriod),
            Timing::FixedPeriod { .. } => {}
            Timing::Deltas(deltas) => {
                if deltas.len() != raw.len() - 1 {
                    return Err(EncodeError::TimingLengthMismatch {
                        expected: raw.len() - 1,
                        found: deltas.len(),
                    });
                }
                if let Some(index) = deltas.iter().position(|&delta| delta == 0) {
                    return Err(EncodeError::NonIncreasingTimestamps { index: index + 1 });
                }
            }
        }
        if last_timestamp(t0_us, &timing, raw.len()).is_none() {
            return Err(EncodeError::TimestampOverflow);
        }
        Ok(TelemetryBatch {
            seq,
            session_id,
            t0_us,
            timing,
            accel_scale,
            gyro_scale,
            raw,
        })
    }

    /// The device's batch counter (monotonic per device; what [`Ack`](crate::Ack) refers to).
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// The recording session this batch belongs to, if any.
    pub fn session_id(&self) -> Option<u64> {
        self.session_id
    }

    /// First sample's time in µs since the Unix epoch (UTC).
    pub fn t0_us(&self) -> i64 {
        self.t0_us
    }

    /// How the other samples' times derive from [`t0_us`](Self::t0_us).
    pub fn timing(&self) -> &Timing {
        &self.timing
    }

    /// Accelerometer scale in m/s² per count.
    pub fn accel_scale(&self) -> f32 {
        self.accel_scale
    }

    /// Gyroscope scale in rad/s per count.
    pub fn gyro_scale(&self) -> f32 {
        self.gyro_scale
    }

    /// The samples as int16 counts.
    pub fn raw(&self) -> &[RawSample] {
        &self.raw
    }

    /// Number of samples (1..=[`MAX_SAMPLES_PER_BATCH`]).
    pub fn len(&self) -> usize {
        self.raw.len()
    }

    /// Always `false`: a batch holds at least one sample.
    pub fn is_empty(&self) -> bool {
        self.raw.is_empty()
    }

    /// The last sample's time in µs since the Unix epoch (UTC).
    pub fn last_ts_us(&self) -> i64 {
        // Checked on construction; the fallback is unreachable.
        last_timestamp(self.t0_us, &self.timing, self.raw.len()).unwrap_or(self.t0_us)
    }

    /// The samples in SI units: `count as f32 * scale`, timestamps from [`Timing`].
    pub fn samples(&self) -> Samples<'_> {
        Samples {
            batch: self,
            index: 0,
            next_ts_us: self.t0_us,
        }
    }
}

/// Iterator over a batch's samples in SI units; see [`TelemetryBatch::samples`].
#[derive(Debug, Clone)]
pub struct Samples<'a> {
    batch: &'a TelemetryBatch,
    index: usize,
    next_ts_us: i64,
}

impl Iterator for Samples<'_> {
    type Item = Sample;

    fn next(&mut self) -> Option<Sample> {
        let raw = self.batch.raw.get(self.index)?;
        let ts_us = self.next_ts_us;
        let step = match &self.batch.timing {
            Timing::FixedPeriod { period_us } => *period_us,
            Timing::Deltas(deltas) => deltas.get(self.index).copied().unwrap_or(0),
        };
        // Cannot overflow: the last timestamp was checked on construction.
        self.next_ts_us = ts_us.wrapping_add(i64::from(step));
        self.index += 1;
        let accel_scale = self.batch.accel_scale;
        let gyro_scale = self.batch.gyro_scale;
        Some(Sample {
            ts_us,
            accel: raw.accel.map(|count| f32::from(count) * accel_scale),
            gyro: raw.gyro.map(|count| f32::from(count) * gyro_scale),
        })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.batch.raw.len() - self.index;
        (left, Some(left))
    }
}

impl ExactSizeIterator for Samples<'_> {}

/// The last sample's timestamp, or `None` if it overflows `i64`.
pub(crate) fn last_timestamp(t0_us: i64, timing: &Timing, len: usize) -> Option<i64> {
    // At most 4095 × u32::MAX ≈ 1.8e13: the offset itself always fits an i64.
    let offset: i64 = match timing {
        Timing::FixedPeriod { period_us } => (len as i64 - 1) * i64::from(*period_us),
        Timing::Deltas(deltas) => deltas.iter().map(|&delta| i64::from(delta)).sum(),
    };
    t0_us.checked_add(offset)
}

pub(crate) fn scale_is_valid(scale: f32) -> bool {
    scale.is_finite() && scale > 0.0
}

fn check_count(len: usize) -> Result<(), EncodeError> {
    match len {
        0 => Err(EncodeError::EmptyBatch),
        1..=MAX_SAMPLES_PER_BATCH => Ok(()),
        count => Err(EncodeError::TooManySamples { count }),
    }
}

fn check_scales(accel_scale: f32, gyro_scale: f32) -> Result<(), EncodeError> {
    if !scale_is_valid(accel_scale) {
        return Err(EncodeError::InvalidScale {
            field: "accel_scale",
        });
    }
    if !scale_is_valid(gyro_scale) {
        return Err(EncodeError::InvalidScale {
            field: "gyro_scale",
        });
    }
    Ok(())
}

enum QuantizeFault {
    NonFinite,
    OutOfRange,
}

/// `round(value / scale)` with halves away from zero, if it fits an `i16`.
fn quantize(value: f32, scale: f32) -> Result<i16, QuantizeFault> {
    if !value.is_finite() {
        return Err(QuantizeFault::NonFinite);
    }
    let exact = f64::from(value) / f64::from(scale);
    // Exactly the values that round into -32768..=32767. Checking before rounding also keeps
    // the truncating cast below exact (core has no f64::round).
    if !(exact > -32768.5 && exact < 32767.5) {
        return Err(QuantizeFault::OutOfRange);
    }
    let truncated = exact as i32;
    let fraction = exact - f64::from(truncated);
    let rounded = if fraction >= 0.5 {
        truncated + 1
    } else if fraction <= -0.5 {
        truncated - 1
    } else {
        truncated
    };
    i16::try_from(rounded).map_err(|_| QuantizeFault::OutOfRange)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    const T0: i64 = 1_700_000_000_000_000;

    fn sample(ts_us: i64, accel: [f32; 3], gyro: [f32; 3]) -> Sample {
        Sample { ts_us, accel, gyro }
    }

    fn still(ts_us: i64) -> Sample {
        sample(ts_us, [0.0, 0.0, 9.81], [0.0; 3])
    }

    fn batch(samples: &[Sample], period_us: Option<u32>) -> Result<TelemetryBatch, EncodeError> {
        TelemetryBatch::from_samples(
            0,
            None,
            period_us,
            ACCEL_SCALE_16G,
            GYRO_SCALE_2000DPS,
            samples,
        )
    }

    #[test]
    fn scale_constants_match_the_datasheet_figures() {
        assert!((ACCEL_SCALE_16G - 0.004_788_4).abs() < 1e-7);
        assert!((GYRO_SCALE_2000DPS - 0.001_065_2).abs() < 1e-7);
    }

    #[test]
    fn quantize_rounds_half_away_from_zero_and_refuses_out_of_range() {
        let q = |v: f32| quantize(v, 1.0).ok();
        assert_eq!(q(0.49), Some(0));
        assert_eq!(q(0.5), Some(1));
        assert_eq!(q(-0.5), Some(-1));
        assert_eq!(q(-1.49), Some(-1));
        assert_eq!(q(32767.49), Some(32767));
        assert_eq!(q(32767.5), None);
        assert_eq!(q(-32768.49), Some(-32768));
        assert_eq!(q(-32768.5), None);
        assert_eq!(q(1e30), None);
        assert!(matches!(
            quantize(f32::NAN, 1.0),
            Err(QuantizeFault::NonFinite)
        ));
        assert!(matches!(
            quantize(f32::INFINITY, 1.0),
            Err(QuantizeFault::NonFinite)
        ));
    }

    #[test]
    fn from_samples_validates_its_input() {
        assert_eq!(batch(&[], Some(10_000)), Err(EncodeError::EmptyBatch));
        let many: Vec<Sample> = (0..=MAX_SAMPLES_PER_BATCH as i64)
            .map(|i| still(T0 + i * 10_000))
            .collect();
        assert_eq!(
            batch(&many, Some(10_000)),
            Err(EncodeError::TooManySamples {
                count: MAX_SAMPLES_PER_BATCH + 1
            })
        );
        assert!(batch(&many[..MAX_SAMPLES_PER_BATCH], Some(10_000)).is_ok());

        let nan = sample(T0, [0.0, f32::NAN, 0.0], [0.0; 3]);
        assert_eq!(
            batch(&[nan], None),
            Err(EncodeError::NonFinite {
                index: 0,
                axis: Axis::AccelY
            })
        );
        let fast = sample(T0 + 10_000, [0.0; 3], [0.0, 0.0, 40.0]);
        assert_eq!(
            batch(&[still(T0), fast], None),
            Err(EncodeError::OutOfRange {
                index: 1,
                axis: Axis::GyroZ
            })
        );

        for bad in [0.0, -1.0, f32::NAN, f32::INFINITY] {
            let result =
                TelemetryBatch::from_samples(0, None, None, bad, GYRO_SCALE_2000DPS, &[still(T0)]);
            assert_eq!(
                result,
                Err(EncodeError::InvalidScale {
                    field: "accel_scale"
                })
            );
            let result =
                TelemetryBatch::from_samples(0, None, None, ACCEL_SCALE_16G, bad, &[still(T0)]);
            assert_eq!(
                result,
                Err(EncodeError::InvalidScale {
                    field: "gyro_scale"
                })
            );
        }
    }

    #[test]
    fn from_samples_checks_timestamps() {
        let even = [still(T0), still(T0 + 10_000), still(T0 + 20_000)];
        assert_eq!(batch(&even, Some(0)), Err(EncodeError::InvalidPeriod));
        assert_eq!(
            batch(&even, Some(9_999)),
            Err(EncodeError::TimestampMismatch { index: 1 })
        );
        let fixed = batch(&even, Some(10_000)).unwrap();
        assert_eq!(fixed.timing(), &Timing::FixedPeriod { period_us: 10_000 });
        let deltas = batch(&even, None).unwrap();
        assert_eq!(deltas.timing(), &Timing::Deltas(vec![10_000, 10_000]));

        let repeated = [still(T0), still(T0 + 10), still(T0 + 10)];
        assert_eq!(
            batch(&repeated, None),
            Err(EncodeError::NonIncreasingTimestamps { index: 2 })
        );
        let backwards = [still(T0), still(T0 - 1)];
        assert_eq!(
            batch(&backwards, None),
            Err(EncodeError::NonIncreasingTimestamps { index: 1 })
        );
        let gap = [still(T0), still(T0 + i64::from(u32::MAX) + 1)];
        assert_eq!(
            batch(&gap, None),
            Err(EncodeError::DeltaTooLarge { index: 1 })
        );
        let extremes = [still(i64::MIN), still(i64::MAX)];
        assert_eq!(
            batch(&extremes, None),
            Err(EncodeError::DeltaTooLarge { index: 1 })
        );
        let late = [still(i64::MAX), still(i64::MAX)];
        assert_eq!(batch(&late, Some(1)), Err(EncodeError::TimestampOverflow));
    }

    #[test]
    fn from_raw_checks_timing_against_the_sample_count() {
        let raw = vec![RawSample::default(); 3];
        let build =
            |t0_us, timing| TelemetryBatch::from_raw(1, None, t0_us, timing, 1.0, 1.0, raw.clone());
        assert_eq!(
            build(T0, Timing::Deltas(vec![1])),
            Err(EncodeError::TimingLengthMismatch {
                expected: 2,
                found: 1
            })
        );
        assert_eq!(
            build(T0, Timing::Deltas(vec![1, 0])),
            Err(EncodeError::NonIncreasingTimestamps { index: 2 })
        );
        assert_eq!(
            build(T0, Timing::FixedPeriod { period_us: 0 }),
            Err(EncodeError::InvalidPeriod)
        );
        assert_eq!(
            build(i64::MAX - 1, Timing::FixedPeriod { period_us: 1 }),
            Err(EncodeError::TimestampOverflow)
        );
        assert_eq!(
            build(i64::MAX - 3, Timing::Deltas(vec![1, 3])),
            Err(EncodeError::TimestampOverflow)
        );
        let ok = build(i64::MAX - 2, Timing::FixedPeriod { period_us: 1 }).unwrap();
        assert_eq!(ok.last_ts_us(), i64::MAX);
        assert_eq!(
            TelemetryBatch::from_raw(1, None, 0, Timing::Deltas(vec![]), 1.0, 1.0, vec![]),
            Err(EncodeError::EmptyBatch)
        );
    }

    #[test]
    fn samples_reconstruct_timestamps_and_si_values() {
        let raw = vec![
            RawSample {
                accel: [1, -2, 2048],
                gyro: [0, 100, -100],
            },
            RawSample {
                accel: [0, 0, 0],
                gyro: [i16::MIN, i16::MAX, 0],
            },
            RawSample::default(),
        ];
        let batch =
            TelemetryBatch::from_raw(9, Some(3), T0, Timing::Deltas(vec![5, 7]), 0.5, 0.25, raw)
                .unwrap();
        let samples: Vec<Sample> = batch.samples().collect();
        assert_eq!(batch.samples().len(), 3);
        assert_eq!(batch.len(), 3);
        assert!(!batch.is_empty());
        assert_eq!(batch.last_ts_us(), T0 + 12);
        assert_eq!(
            samples,
            vec![
                sample(T0, [0.5, -1.0, 1024.0], [0.0, 25.0, -25.0]),
                sample(T0 + 5, [0.0; 3], [-8192.0, 8191.75, 0.0]),
                sample(T0 + 12, [0.0; 3], [0.0; 3]),
            ]
        );
    }
}
