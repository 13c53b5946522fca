//! Wire layout version 1 (frames starting with `0x01`).
//!
//! After the version byte comes a kind byte ([`MessageKind`]) and the body of that kind.
//! Telemetry counts are stored per axis: the first count, then one residual per further
//! sample against a predictor chosen per axis (previous value, or linear extrapolation
//! from the two previous values, whichever encodes shorter). Smooth motion sampled at
//! 100 Hz has small second differences, so most residuals fit one byte.
//! `docs/wire-format.md` lists every field; the golden tests below pin the bytes.

use alloc::vec;
use alloc::vec::Vec;

use super::{Reader, Writer, varint_len, zigzag};
use crate::status::{Ack, DeviceStatus, MAX_FIRMWARE_VERSION_LEN};
use crate::telemetry::{
    Axis, MAX_SAMPLES_PER_BATCH, RawSample, TelemetryBatch, Timing, last_timestamp, scale_is_valid,
};
use crate::{DecodeError, Message, MessageKind};

const VERSION: u8 = 1;
const TIMING_FIXED_PERIOD: u8 = 0;
const TIMING_DELTAS: u8 = 1;
/// Bits 0..=5 of the predictor byte, one per axis in [`Axis::ALL`] order.
const PREDICTOR_MASK: u8 = 0b0011_1111;

pub(crate) fn encode(message: &Message) -> Vec<u8> {
    match message {
        Message::Telemetry(batch) => encode_telemetry(batch),
        Message::Status(status) => encode_status(status),
        Message::Ack(ack) => encode_ack(ack),
    }
}

fn frame(kind: MessageKind, body_capacity: usize) -> Writer {
    let mut writer = Writer::with_capacity(2 + body_capacity);
    writer.byte(VERSION);
    writer.byte(kind as u8);
    writer
}

pub(crate) fn encode_telemetry(batch: &TelemetryBatch) -> Vec<u8> {
    let mut w = frame(MessageKind::Telemetry, 40 + 8 * batch.len());
    w.varint(batch.seq);
    w.option_varint(batch.session_id);
    w.zigzag(batch.t0_us);
    w.f32(batch.accel_scale);
    w.f32(batch.gyro_scale);
    w.varint(batch.raw.len() as u64);
    match &batch.timing {
        Timing::FixedPeriod { period_us } => {
            w.byte(TIMING_FIXED_PERIOD);
            w.varint(u64::from(*period_us));
        }
        Timing::Deltas(deltas) => {
            w.byte(TIMING_DELTAS);
            for &delta in deltas {
                w.varint(u64::from(delta));
            }
        }
    }
    let predictors: [Predictor; 6] = Axis::ALL.map(|axis| Predictor::best_for(&batch.raw, axis));
    let flags = Axis::ALL
        .into_iter()
        .filter(|axis| predictors[axis.index()] == Predictor::Linear)
        .fold(0u8, |flags, axis| flags | 1 << axis.index());
    w.byte(flags);
    for axis in Axis::ALL {
        w.zigzag(i64::from(batch.raw[0].axis(axis)));
        for residual in Residuals::new(&batch.raw, axis, predictors[axis.index()]) {
            w.zigzag(residual);
        }
    }
    w.into_bytes()
}

pub(crate) fn encode_status(status: &DeviceStatus) -> Vec<u8> {
    let mut w = frame(MessageKind::Status, 8 + status.firmware_version().len());
    w.byte(status.battery_pct());
    w.str(status.firmware_version());
    w.varint(u64::from(status.uptime_s()));
    w.into_bytes()
}

pub(crate) fn encode_ack(ack: &Ack) -> Vec<u8> {
    let mut w = frame(MessageKind::Ack, 10);
    w.varint(ack.seq);
    w.into_bytes()
}

/// Decodes everything after the version byte.
pub(crate) fn decode(body: &[u8], expected: Option<MessageKind>) -> Result<Message, DecodeError> {
    let (&kind, body) = body
        .split_first()
        .ok_or(DecodeError::Truncated { field: "kind" })?;
    let kind = MessageKind::from_byte(kind).ok_or(DecodeError::UnknownKind(kind))?;
    if let Some(expected) = expected {
        if expected != kind {
            return Err(super::unexpected(expected, kind));
        }
    }
    let mut r = Reader::new(body);
    let message = match kind {
        MessageKind::Telemetry => Message::Telemetry(decode_telemetry(&mut r)?),
        MessageKind::Status => Message::Status(decode_status(&mut r)?),
        MessageKind::Ack => Message::Ack(Ack {
            seq: r.take("seq")?,
        }),
    };
    r.finish()?;
    Ok(message)
}

fn decode_telemetry(r: &mut Reader<'_>) -> Result<TelemetryBatch, DecodeError> {
    let seq: u64 = r.take("seq")?;
    let session_id: Option<u64> = r.take("session_id")?;
    let t0_us: i64 = r.take("t0_us")?;
    let accel_scale: f32 = r.take("accel_scale")?;
    if !scale_is_valid(accel_scale) {
        return Err(DecodeError::InvalidScale {
            field: "accel_scale",
        });
    }
    let gyro_scale: f32 = r.take("gyro_scale")?;
    if !scale_is_valid(gyro_scale) {
        return Err(DecodeError::InvalidScale {
            field: "gyro_scale",
        });
    }
    let count: u32 = r.take("sample_count")?;
    let len = match count as usize {
        0 => return Err(DecodeError::EmptyBatch),
        len @ 1..=MAX_SAMPLES_PER_BATCH => len,
        _ => return Err(DecodeError::TooManySamples { count }),
    };
    let timing = match r.take::<u8>("timing")? {
        TIMING_FIXED_PERIOD => match r.take::<u32>("period_us")? {
            0 => return Err(DecodeError::InvalidPeriod),
            period_us => Timing::FixedPeriod { period_us },
        },
        TIMING_DELTAS => {
            // Each delta takes at least one byte: refuse before allocating for them.
            if r.remaining() < len - 1 {
                return Err(DecodeError::Truncated { field: "delta_us" });
            }
            let mut deltas = Vec::with_capacity(len - 1);
            for index in 0..len - 1 {
                match r.take::<u32>("delta_us")? {
                    0 => return Err(DecodeError::ZeroDelta { index }),
                    delta => deltas.push(delta),
                }
            }
            Timing::Deltas(deltas)
        }
        tag => {
            return Err(DecodeError::UnknownTag {
                field: "timing",
                tag,
            });
        }
    };
    if last_timestamp(t0_us, &timing, len).is_none() {
        return Err(DecodeError::TimestampOverflow);
    }
    let flags: u8 = r.take("predictors")?;
    if flags & !PREDICTOR_MASK != 0 {
        return Err(DecodeError::UnknownPredictorBits(flags));
    }
    // Six counts per sample, at least one byte each.
    if r.remaining() < 6 * len {
        return Err(DecodeError::Truncated { field: "counts" });
    }
    let mut raw = vec![RawSample::default(); len];
    for axis in Axis::ALL {
        let linear = flags & 1 << axis.index() != 0;
        let first: i16 = r.take("counts")?;
        raw[0].set_axis(axis, first);
        for index in 1..len {
            let residual: i32 = r.take("counts")?;
            let previous = i64::from(raw[index - 1].axis(axis));
            let prediction = match index {
                2.. if linear => 2 * previous - i64::from(raw[index - 2].axis(axis)),
                _ => previous,
            };
            let count = i16::try_from(prediction + i64::from(residual))
                .map_err(|_| DecodeError::CountOutOfRange { axis, index })?;
            raw[index].set_axis(axis, count);
        }
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

fn decode_status(r: &mut Reader<'_>) -> Result<DeviceStatus, DecodeError> {
    let battery_pct: u8 = r.take("battery_pct")?;
    if battery_pct > 100 {
        return Err(DecodeError::BatteryOutOfRange(battery_pct));
    }
    // Borrowed: the bound is checked before anything is copied.
    let firmware_version: &str = r.take("firmware_version")?;
    if firmware_version.len() > MAX_FIRMWARE_VERSION_LEN {
        return Err(DecodeError::FirmwareVersionTooLong {
            len: firmware_version.len(),
        });
    }
    let uptime_s: u32 = r.take("uptime_s")?;
    DeviceStatus::new(battery_pct, firmware_version, uptime_s)
        .map_err(|_| DecodeError::Malformed { field: "status" })
}

/// How an axis predicts each count from the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Predictor {
    /// `x[i-1]`: residuals are first differences.
    Previous,
    /// `2·x[i-1] − x[i-2]` (from the third sample on; the second uses `x[0]`):
    /// residuals are second differences.
    Linear,
}

impl Predictor {
    /// The predictor that encodes `axis` in fewer bytes; `Previous` on a tie.
    pub(crate) fn best_for(raw: &[RawSample], axis: Axis) -> Predictor {
        let cost = |predictor| -> usize {
            Residuals::new(raw, axis, predictor)
                .map(|residual| varint_len(zigzag(residual)))
                .sum()
        };
        if cost(Predictor::Linear) < cost(Predictor::Previous) {
            Predictor::Linear
        } else {
            Predictor::Previous
        }
    }
}

/// The residuals of samples `1..` on one axis (`count - prediction`).
pub(crate) struct Residuals<'a> {
    raw: &'a [RawSample],
    axis: Axis,
    predictor: Predictor,
    index: usize,
}

impl<'a> Residuals<'a> {
    pub(crate) fn new(raw: &'a [RawSample], axis: Axis, predictor: Predictor) -> Residuals<'a> {
        Residuals {
            raw,
            axis,
            predictor,
            index: 1,
        }
    }
}

impl Iterator for Residuals<'_> {
    type Item = i64;

    fn next(&mut self) -> Option<i64> {
        let count = |index: usize| i64::from(self.raw[index].axis(self.axis));
        let index = self.index;
        let current = i64::from(self.raw.get(index)?.axis(self.axis));
        let prediction = match (self.predictor, index) {
            (Predictor::Linear, 2..) => 2 * count(index - 1) - count(index - 2),
            _ => count(index - 1),
        };
        self.index += 1;
        Some(current - prediction)
    }
}

#[cfg(test)]
mod tests;
