//! The crate's two error types: [`EncodeError`] for values that cannot be put on the wire,
//! [`DecodeError`] for bytes that are not a valid frame.
//!
//! Both are plain data (no allocation, `Copy`), so firmware can match on them cheaply.

use crate::MessageKind;
use crate::telemetry::Axis;

/// Why a value could not be built or encoded.
///
/// Construction (`TelemetryBatch::from_samples`, `DeviceStatus::new`, …) validates
/// everything, so encoding a constructed value never fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// A batch needs at least one sample.
    #[error("a telemetry batch needs at least one sample")]
    EmptyBatch,
    /// More than [`MAX_SAMPLES_PER_BATCH`](crate::MAX_SAMPLES_PER_BATCH) samples.
    #[error("{count} samples exceed the per-batch maximum")]
    TooManySamples {
        /// The number of samples given.
        count: usize,
    },
    /// A sample value was NaN or infinite.
    #[error("sample {index}: {axis} is not finite")]
    NonFinite {
        /// Index of the sample in the batch.
        index: usize,
        /// The offending axis.
        axis: Axis,
    },
    /// A sample value does not fit an int16 count at the given scale. Values are never
    /// clamped: pick a scale that covers the sensor's range.
    #[error("sample {index}: {axis} is outside the int16 range at this scale")]
    OutOfRange {
        /// Index of the sample in the batch.
        index: usize,
        /// The offending axis.
        axis: Axis,
    },
    /// A scale factor was not finite and positive.
    #[error("{field} must be finite and positive")]
    InvalidScale {
        /// `"accel_scale"` or `"gyro_scale"`.
        field: &'static str,
    },
    /// A fixed sample period of zero.
    #[error("the sample period must be at least 1 µs")]
    InvalidPeriod,
    /// With a fixed period, a sample's `ts_us` is not `t0_us + index * period_us`.
    #[error("sample {index}: timestamp does not match the fixed sample period")]
    TimestampMismatch {
        /// Index of the sample in the batch.
        index: usize,
    },
    /// A timestamp is not strictly greater than the previous one (or a delta is zero).
    #[error("sample {index}: timestamp is not after the previous sample's")]
    NonIncreasingTimestamps {
        /// Index of the sample in the batch.
        index: usize,
    },
    /// The gap to the previous sample does not fit a `u32` of microseconds (~71 minutes).
    #[error("sample {index}: gap to the previous sample exceeds u32::MAX µs")]
    DeltaTooLarge {
        /// Index of the sample in the batch.
        index: usize,
    },
    /// Per-sample timing deltas must number one less than the samples.
    #[error("expected {expected} timing deltas, got {found}")]
    TimingLengthMismatch {
        /// `samples - 1`.
        expected: usize,
        /// The number of deltas given.
        found: usize,
    },
    /// The last sample's timestamp would overflow an `i64` of microseconds.
    #[error("sample timestamps overflow i64 microseconds")]
    TimestampOverflow,
    /// Battery percentage above 100.
    #[error("battery percentage {0} is above 100")]
    BatteryOutOfRange(u8),
    /// Firmware version longer than [`MAX_FIRMWARE_VERSION_LEN`](crate::MAX_FIRMWARE_VERSION_LEN) bytes.
    #[error("firmware version is {len} bytes, longer than the maximum")]
    FirmwareVersionTooLong {
        /// Its length in bytes.
        len: usize,
    },
}

/// Why bytes could not be decoded. Decoding never panics; every malformed input ends here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The payload was empty.
    #[error("empty payload")]
    Empty,
    /// The version byte names a layout this build does not know.
    #[error("unknown wire version {0}")]
    UnknownVersion(u8),
    /// The kind byte names no message kind.
    #[error("unknown message kind {0}")]
    UnknownKind(u8),
    /// A valid frame of another kind than the caller asked for (e.g. a status payload on
    /// the telemetry topic).
    #[error("expected a {expected} message, found {found}")]
    UnexpectedKind {
        /// The kind the caller asked for.
        expected: MessageKind,
        /// The kind in the frame.
        found: MessageKind,
    },
    /// The payload ended in the middle of a field.
    #[error("payload ends inside {field}")]
    Truncated {
        /// The field being read.
        field: &'static str,
    },
    /// A field's bytes are not a valid encoding (bad varint or overflow, bad option tag,
    /// invalid UTF-8, …).
    #[error("malformed {field}")]
    Malformed {
        /// The field being read.
        field: &'static str,
    },
    /// A tag byte (timing kind) with no meaning.
    #[error("unknown tag {tag} in {field}")]
    UnknownTag {
        /// The field being read.
        field: &'static str,
        /// The tag value found.
        tag: u8,
    },
    /// Bytes left over after a complete frame.
    #[error("{count} trailing bytes after the frame")]
    TrailingBytes {
        /// How many.
        count: usize,
    },
    /// A telemetry batch declaring zero samples.
    #[error("telemetry batch has no samples")]
    EmptyBatch,
    /// A telemetry batch declaring more than
    /// [`MAX_SAMPLES_PER_BATCH`](crate::MAX_SAMPLES_PER_BATCH) samples; refused before
    /// anything is allocated for them.
    #[error("telemetry batch declares {count} samples, above the maximum")]
    TooManySamples {
        /// The declared count.
        count: u32,
    },
    /// A scale factor that is not finite and positive.
    #[error("{field} is not finite and positive")]
    InvalidScale {
        /// `"accel_scale"` or `"gyro_scale"`.
        field: &'static str,
    },
    /// A fixed sample period of zero.
    #[error("sample period is zero")]
    InvalidPeriod,
    /// A per-sample timing delta of zero (timestamps must strictly increase).
    #[error("timing delta {index} is zero")]
    ZeroDelta {
        /// Index of the delta (sample `index + 1`).
        index: usize,
    },
    /// A sample timestamp overflows `i64` microseconds.
    #[error("sample timestamps overflow i64 microseconds")]
    TimestampOverflow,
    /// Predictor bits set for axes that do not exist.
    #[error("unknown predictor bits {0:#04x}")]
    UnknownPredictorBits(u8),
    /// Reconstructing an axis from its residuals left the int16 range.
    #[error("sample {index}: {axis} leaves the int16 range")]
    CountOutOfRange {
        /// The axis.
        axis: Axis,
        /// Index of the sample.
        index: usize,
    },
    /// Battery percentage above 100.
    #[error("battery percentage {0} is above 100")]
    BatteryOutOfRange(u8),
    /// Firmware version longer than
    /// [`MAX_FIRMWARE_VERSION_LEN`](crate::MAX_FIRMWARE_VERSION_LEN) bytes.
    #[error("firmware version is {len} bytes, longer than the maximum")]
    FirmwareVersionTooLong {
        /// Its length in bytes.
        len: usize,
    },
}
