//! Tests of layout v1: golden bytes, compression on realistic motion, error paths and
//! property tests (round trips, hostile input never panics, quantization bounds).

use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use std::println;

use proptest::prelude::*;

use super::*;
use crate::{
    ACCEL_SCALE_16G, Envelope, GYRO_SCALE_2000DPS, Sample, decode, decode_ack, decode_status,
    decode_telemetry, encode, encode_ack, encode_status, encode_telemetry,
};

const T0: i64 = 1_700_000_000_000_000;

/// The batch annotated byte by byte in docs/wire-format.md.
fn golden_batch() -> TelemetryBatch {
    let raw = vec![
        RawSample {
            accel: [12, -34, 2048],
            gyro: [5, -3, 100],
        },
        RawSample {
            accel: [15, -30, 2050],
            gyro: [6, -3, 200],
        },
        RawSample {
            accel: [18, -27, 2049],
            gyro: [7, -2, 300],
        },
    ];
    TelemetryBatch::from_raw(
        7,
        Some(42),
        T0,
        Timing::FixedPeriod { period_us: 10_000 },
        ACCEL_SCALE_16G,
        GYRO_SCALE_2000DPS,
        raw,
    )
    .unwrap()
}

#[rustfmt::skip]
const GOLDEN_TELEMETRY: &[u8] = &[
    0x01,                                           // version 1
    0x00,                                           // kind: telemetry
    0x07,                                           // seq = 7
    0x01, 0x2a,                                     // session_id = Some(42)
    0x80, 0x80, 0xf2, 0x81, 0x83, 0x89, 0x85, 0x06, // t0_us = 1_700_000_000_000_000 (zigzag)
    0x0a, 0xe8, 0x9c, 0x3b,                         // accel_scale = 0.0047884034 (f32 LE)
    0x58, 0xa0, 0x8b, 0x3a,                         // gyro_scale = 0.0010652645 (f32 LE)
    0x03,                                           // sample_count = 3
    0x00, 0x90, 0x4e,                               // timing: fixed period, 10_000 µs
    0x20,                                           // predictors: gyro z linear
    0x18, 0x06, 0x06,                               // accel x: 12, +3, +3
    0x43, 0x08, 0x06,                               // accel y: -34, +4, +3
    0x80, 0x20, 0x04, 0x01,                         // accel z: 2048, +2, -1
    0x0a, 0x02, 0x02,                               // gyro x: 5, +1, +1
    0x05, 0x00, 0x02,                               // gyro y: -3, 0, +1
    0xc8, 0x01, 0xc8, 0x01, 0x00,                   // gyro z: 100, +100, linear residual 0
];

#[rustfmt::skip]
const GOLDEN_TELEMETRY_DELTAS: &[u8] = &[
    0x01, 0x00,                   // version 1, telemetry
    0x00,                         // seq = 0
    0x00,                         // session_id = None
    0x00,                         // t0_us = 0
    0x00, 0x00, 0x80, 0x3f,       // accel_scale = 1.0
    0x00, 0x00, 0x00, 0x3f,       // gyro_scale = 0.5
    0x02,                         // sample_count = 2
    0x01, 0x8e, 0x4e,             // timing: deltas, [9_998]
    0x00,                         // predictors: all previous-value
    0xfe, 0xff, 0x03, 0x01,       // accel x: 32767, -1
    0xff, 0xff, 0x03, 0xfe, 0xff, 0x03, // accel y: -32768, +32767
    0x00, 0x00,                   // accel z: 0, 0
    0x00, 0x00,                   // gyro x
    0x00, 0x00,                   // gyro y
    0x00, 0x00,                   // gyro z
];

#[rustfmt::skip]
const GOLDEN_STATUS: &[u8] = &[
    0x01, 0x01,                   // version 1, kind: status
    0x57,                         // battery_pct = 87
    0x05, b'1', b'.', b'4', b'.', b'2', // firmware_version = "1.4.2"
    0x90, 0x1c,                   // uptime_s = 3600
];

const GOLDEN_ACK: &[u8] = &[0x01, 0x02, 0xac, 0x02]; // version 1, ack, seq = 300

fn deltas_batch() -> TelemetryBatch {
    let raw = vec![
        RawSample {
            accel: [i16::MAX, i16::MIN, 0],
            gyro: [0; 3],
        },
        RawSample {
            accel: [32766, -1, 0],
            gyro: [0; 3],
        },
    ];
    TelemetryBatch::from_raw(0, None, 0, Timing::Deltas(vec![9_998]), 1.0, 0.5, raw).unwrap()
}

fn golden_status() -> DeviceStatus {
    DeviceStatus::new(87, "1.4.2", 3600).unwrap()
}

#[test]
fn golden_telemetry_fixed_period() {
    assert_eq!(encode_telemetry(&golden_batch()), GOLDEN_TELEMETRY);
    assert_eq!(decode_telemetry(GOLDEN_TELEMETRY), Ok(golden_batch()));
}

#[test]
fn golden_telemetry_deltas() {
    assert_eq!(encode_telemetry(&deltas_batch()), GOLDEN_TELEMETRY_DELTAS);
    assert_eq!(
        decode_telemetry(GOLDEN_TELEMETRY_DELTAS),
        Ok(deltas_batch())
    );
}

#[test]
fn golden_status_and_ack() {
    assert_eq!(encode_status(&golden_status()), GOLDEN_STATUS);
    assert_eq!(decode_status(GOLDEN_STATUS), Ok(golden_status()));
    assert_eq!(encode_ack(&Ack { seq: 300 }), GOLDEN_ACK);
    assert_eq!(decode_ack(GOLDEN_ACK), Ok(Ack { seq: 300 }));
    assert_eq!(encode_ack(&Ack { seq: 0 }), [0x01, 0x02, 0x00]);
}

#[test]
fn envelope_and_generic_decode_agree_with_the_typed_functions() {
    let messages = [
        Message::Telemetry(golden_batch()),
        Message::Status(golden_status()),
        Message::Ack(Ack { seq: 300 }),
    ];
    let goldens: [&[u8]; 3] = [GOLDEN_TELEMETRY, GOLDEN_STATUS, GOLDEN_ACK];
    for (message, golden) in messages.into_iter().zip(goldens) {
        assert_eq!(encode(&message), golden);
        assert_eq!(decode(golden).as_ref(), Ok(&message));
        let envelope = Envelope::from_bytes(golden).unwrap();
        assert_eq!(envelope.version(), crate::CURRENT_VERSION);
        assert_eq!(envelope.message(), &message);
        assert_eq!(envelope.to_bytes(), golden);
        assert_eq!(envelope.into_message(), message);
    }
}

// ---- compression on realistic motion ------------------------------------------------------

/// Deterministic xorshift64* noise, roughly normal (Irwin–Hall of 4 uniforms), σ = 1.
struct Noise(u64);

impl Noise {
    fn uniform(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
    }

    fn normal(&mut self) -> f64 {
        let sum: f64 = (0..4).map(|_| self.uniform()).sum();
        (sum - 2.0) * 3f64.sqrt()
    }
}

/// 100 Hz wrist/hip IMU while walking: gravity (9.81 m/s², mostly on z, slightly tilted),
/// a 1.8 Hz step cadence with harmonics of a few m/s², 0.9 Hz stride sway, gyro swings up
/// to ~3 rad/s, and sensor noise (σ 0.02 m/s², 0.005 rad/s: several counts).
fn walking(len: usize, start_s: f64, seed: u64) -> Vec<Sample> {
    motion(len, start_s, seed, 1.0, 1.0)
}

/// [`walking`] with the motion amplitudes times `vigour` and the noise times `noisiness`.
fn motion(len: usize, start_s: f64, seed: u64, vigour: f64, noisiness: f64) -> Vec<Sample> {
    use core::f64::consts::TAU;
    let mut noise = Noise(seed);
    (0..len)
        .map(|i| {
            let t = start_s + i as f64 / 100.0;
            let step = TAU * 1.8 * t;
            let stride = TAU * 0.9 * t;
            let accel = [
                1.2 + vigour * 1.5 * (stride + 0.3).sin() + vigour * 0.4 * (2.0 * step).sin(),
                -0.6 + vigour * (1.0 * (step + 1.1).sin() + 0.3 * (3.0 * stride).cos()),
                9.72 + vigour * (3.0 * step.sin() + 0.8 * (2.0 * step + 0.5).sin()),
            ]
            .map(|value| value + noisiness * 0.02 * noise.normal());
            let gyro = [
                1.2 * (step + 0.7).sin() + 0.2 * (2.0 * step).cos(),
                3.0 * (stride - 0.4).sin(),
                0.8 * (stride + 2.0).cos() + 0.3 * step.sin(),
            ]
            .map(|value| vigour * value + noisiness * 0.005 * noise.normal());
            Sample {
                ts_us: T0 + (start_s * 1e6) as i64 + i as i64 * 10_000,
                accel: accel.map(|value| value as f32),
                gyro: gyro.map(|value| value as f32),
            }
        })
        .collect()
}

fn walking_batch(start_s: f64, seed: u64) -> TelemetryBatch {
    let samples = walking(50, start_s, seed);
    TelemetryBatch::from_samples(
        1_234,
        Some(99),
        Some(10_000),
        ACCEL_SCALE_16G,
        GYRO_SCALE_2000DPS,
        &samples,
    )
    .unwrap()
}

#[test]
fn realistic_50_sample_batch_is_at_most_12_bytes_per_sample() {
    // Several windows of the gait cycle, so no lucky phase carries the figure.
    let mut worst: f64 = 0.0;
    for (window, seed) in (0..8).zip(1u64..) {
        let batch = walking_batch(window as f64 * 0.37, seed * 0x9e37_79b9);
        let bytes = encode_telemetry(&batch);
        assert_eq!(decode_telemetry(&bytes).as_ref(), Ok(&batch));
        let per_sample = bytes.len() as f64 / batch.len() as f64;
        // The same batch with first differences only, for the docs' comparison.
        let chosen: usize = Axis::ALL
            .map(|axis| {
                let predictor = Predictor::best_for(&batch.raw, axis);
                Residuals::new(&batch.raw, axis, predictor)
                    .map(|r| varint_len(zigzag(r)))
                    .sum::<usize>()
            })
            .iter()
            .sum();
        let previous_only: usize = Axis::ALL
            .map(|axis| {
                Residuals::new(&batch.raw, axis, Predictor::Previous)
                    .map(|r| varint_len(zigzag(r)))
                    .sum::<usize>()
            })
            .iter()
            .sum();
        let delta_only = (bytes.len() - chosen + previous_only) as f64 / batch.len() as f64;
        println!(
            "window {window}: {} bytes for {} samples = {per_sample:.2} bytes/sample \
             (first differences only: {delta_only:.2})",
            bytes.len(),
            batch.len(),
        );
        worst = worst.max(per_sample);
    }
    println!("worst: {worst:.2} bytes/sample");
    assert!(worst <= 12.0, "{worst} bytes/sample");
}

#[test]
fn harsher_motion_still_fits() {
    // Not the target scenario: twice the motion and five times the noise, to show the
    // margin (the linear predictor loses to first differences when noise dominates).
    let samples = motion(50, 0.0, 3, 2.0, 5.0);
    let batch = TelemetryBatch::from_samples(
        1_234,
        Some(99),
        Some(10_000),
        ACCEL_SCALE_16G,
        GYRO_SCALE_2000DPS,
        &samples,
    )
    .unwrap();
    let per_sample = encode_telemetry(&batch).len() as f64 / 50.0;
    println!("harsher motion: {per_sample:.2} bytes/sample");
    assert!(per_sample <= 12.0, "{per_sample} bytes/sample");
}

#[test]
fn realistic_data_quantizes_within_half_a_count() {
    let samples = walking(50, 0.0, 7);
    let batch = walking_batch(0.0, 7);
    for (input, output) in samples.iter().zip(batch.samples()) {
        assert_eq!(input.ts_us, output.ts_us);
        assert_within_half_count(&input.accel, &output.accel, ACCEL_SCALE_16G);
        assert_within_half_count(&input.gyro, &output.gyro, GYRO_SCALE_2000DPS);
    }
}

fn assert_within_half_count(input: &[f32; 3], output: &[f32; 3], scale: f32) {
    for (a, b) in input.iter().zip(output) {
        // Half a count, plus f32 rounding of the decoded product.
        let bound = f64::from(scale) / 2.0 + f64::from(a.abs()) * 1e-6;
        let error = (f64::from(*a) - f64::from(*b)).abs();
        assert!(
            error <= bound,
            "{a} decoded as {b}: error {error} > {bound}"
        );
    }
}

// ---- decode errors --------------------------------------------------------------------

/// The golden batch's bytes up to and including the predictor byte (offset 25).
fn golden_header() -> Vec<u8> {
    GOLDEN_TELEMETRY[..26].to_vec()
}

fn with(bytes: &[u8], offset: usize, value: u8) -> Vec<u8> {
    let mut bytes = bytes.to_vec();
    bytes[offset] = value;
    bytes
}

#[test]
fn decode_refuses_framing_errors() {
    assert_eq!(decode(&[]), Err(DecodeError::Empty));
    assert_eq!(decode_telemetry(&[]), Err(DecodeError::Empty));
    for version in [0x00, 0x02, 0x7f, 0x80, 0xff] {
        assert_eq!(
            decode_telemetry(&with(GOLDEN_TELEMETRY, 0, version)),
            Err(DecodeError::UnknownVersion(version))
        );
    }
    assert_eq!(
        decode(&[0x01]),
        Err(DecodeError::Truncated { field: "kind" })
    );
    assert_eq!(decode(&[0x01, 0x03]), Err(DecodeError::UnknownKind(3)));
    assert_eq!(
        decode_ack(&with(GOLDEN_ACK, 1, 0x80)),
        Err(DecodeError::UnknownKind(0x80))
    );
    assert_eq!(
        decode_telemetry(GOLDEN_STATUS),
        Err(DecodeError::UnexpectedKind {
            expected: MessageKind::Telemetry,
            found: MessageKind::Status
        })
    );
    assert_eq!(
        decode_status(GOLDEN_ACK),
        Err(DecodeError::UnexpectedKind {
            expected: MessageKind::Status,
            found: MessageKind::Ack
        })
    );
    assert_eq!(
        decode_ack(GOLDEN_TELEMETRY),
        Err(DecodeError::UnexpectedKind {
            expected: MessageKind::Ack,
            found: MessageKind::Telemetry
        })
    );
    for golden in [GOLDEN_TELEMETRY, GOLDEN_STATUS, GOLDEN_ACK] {
        let mut long = golden.to_vec();
        long.push(0);
        assert_eq!(decode(&long), Err(DecodeError::TrailingBytes { count: 1 }));
        long.extend_from_slice(&[1, 2, 3]);
        assert_eq!(decode(&long), Err(DecodeError::TrailingBytes { count: 4 }));
        for len in 0..golden.len() {
            assert!(
                decode(&golden[..len]).is_err(),
                "prefix of {len} bytes decoded"
            );
        }
    }
}

#[test]
fn decode_refuses_bad_primitives() {
    // seq: an 11-byte varint overflows u64.
    let mut bad_seq = vec![0x01, 0x02];
    bad_seq.extend_from_slice(&[0xff; 10]);
    bad_seq.push(0x01);
    assert_eq!(
        decode_ack(&bad_seq),
        Err(DecodeError::Malformed { field: "seq" })
    );
    assert_eq!(
        decode_ack(&[0x01, 0x02, 0x80]),
        Err(DecodeError::Truncated { field: "seq" })
    );
    // session_id: option tag 2.
    assert_eq!(
        decode_telemetry(&with(GOLDEN_TELEMETRY, 3, 0x02)),
        Err(DecodeError::Malformed {
            field: "session_id"
        })
    );
    // firmware_version: invalid UTF-8.
    assert_eq!(
        decode_status(&with(GOLDEN_STATUS, 4, 0xff)),
        Err(DecodeError::Malformed {
            field: "firmware_version"
        })
    );
}

#[test]
fn decode_refuses_invalid_telemetry_values() {
    let header = golden_header();
    // Scales: 0.0, -1.0, NaN, +inf.
    for scale in [0.0f32, -1.0, f32::NAN, f32::INFINITY] {
        let mut bytes = GOLDEN_TELEMETRY.to_vec();
        bytes[13..17].copy_from_slice(&scale.to_le_bytes());
        assert_eq!(
            decode_telemetry(&bytes),
            Err(DecodeError::InvalidScale {
                field: "accel_scale"
            })
        );
        let mut bytes = GOLDEN_TELEMETRY.to_vec();
        bytes[17..21].copy_from_slice(&scale.to_le_bytes());
        assert_eq!(
            decode_telemetry(&bytes),
            Err(DecodeError::InvalidScale {
                field: "gyro_scale"
            })
        );
    }
    // sample_count 0, 4097 (0x81 0x20), and 4096 with almost no bytes behind it.
    assert_eq!(
        decode_telemetry(&with(GOLDEN_TELEMETRY, 21, 0)),
        Err(DecodeError::EmptyBatch)
    );
    let mut too_many = header[..21].to_vec();
    too_many.extend_from_slice(&[0x81, 0x20]);
    too_many.extend_from_slice(&header[22..]);
    assert_eq!(
        decode_telemetry(&too_many),
        Err(DecodeError::TooManySamples { count: 4097 })
    );
    let mut huge = header[..21].to_vec();
    huge.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x0f]);
    assert_eq!(
        decode_telemetry(&huge),
        Err(DecodeError::TooManySamples { count: u32::MAX })
    );
    let mut hostile = header[..21].to_vec();
    hostile.extend_from_slice(&[0x80, 0x20]);
    hostile.extend_from_slice(&header[22..]);
    hostile.extend_from_slice(&[0; 100]);
    assert_eq!(
        decode_telemetry(&hostile),
        Err(DecodeError::Truncated { field: "counts" })
    );
    let mut hostile_deltas = header[..21].to_vec();
    hostile_deltas.extend_from_slice(&[0x80, 0x20, 0x01, 0x01]);
    assert_eq!(
        decode_telemetry(&hostile_deltas),
        Err(DecodeError::Truncated { field: "delta_us" })
    );
    // A count that does not agree with the rest of the frame.
    assert!(decode_telemetry(&with(GOLDEN_TELEMETRY, 21, 2)).is_err());
    assert!(decode_telemetry(&with(GOLDEN_TELEMETRY, 21, 4)).is_err());
    // Timing: unknown tag, zero period, zero delta.
    assert_eq!(
        decode_telemetry(&with(GOLDEN_TELEMETRY, 22, 2)),
        Err(DecodeError::UnknownTag {
            field: "timing",
            tag: 2
        })
    );
    let mut zero_period = header[..23].to_vec();
    zero_period.push(0x00);
    zero_period.extend_from_slice(&GOLDEN_TELEMETRY[25..]);
    assert_eq!(
        decode_telemetry(&zero_period),
        Err(DecodeError::InvalidPeriod)
    );
    let mut zero_delta = GOLDEN_TELEMETRY_DELTAS.to_vec();
    zero_delta.splice(15..17, [0x00]); // the delta 9_998 (0x8e 0x4e) becomes 0
    assert_eq!(
        decode_telemetry(&zero_delta),
        Err(DecodeError::ZeroDelta { index: 0 })
    );
    // t0_us = i64::MAX with a 10 ms period.
    let mut late = header[..5].to_vec();
    late.extend_from_slice(&[0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]);
    late.extend_from_slice(&GOLDEN_TELEMETRY[13..]);
    assert_eq!(decode_telemetry(&late), Err(DecodeError::TimestampOverflow));
    // Predictor bits 6 and 7.
    for flags in [0x40, 0x80, 0xff] {
        assert_eq!(
            decode_telemetry(&with(GOLDEN_TELEMETRY, 25, flags)),
            Err(DecodeError::UnknownPredictorBits(flags))
        );
    }
    // A first count beyond i16 (zigzag 65536 = 0x80 0x80 0x04), and residuals leaving it.
    let mut wide = header.clone();
    wide.extend_from_slice(&[0x80, 0x80, 0x04]);
    wide.extend_from_slice(&GOLDEN_TELEMETRY[27..]);
    assert_eq!(
        decode_telemetry(&wide),
        Err(DecodeError::Malformed { field: "counts" })
    );
    // accel x = 32767, then +1.
    let mut overflow = header.clone();
    overflow.extend_from_slice(&[0xfe, 0xff, 0x03, 0x02, 0x00]);
    overflow.extend_from_slice(&GOLDEN_TELEMETRY[29..]);
    assert_eq!(
        decode_telemetry(&overflow),
        Err(DecodeError::CountOutOfRange {
            axis: Axis::AccelX,
            index: 1
        })
    );
    // Linear prediction on gyro x: 5, +1 (6), then 2·6 − 5 + 32767 leaves the range.
    let mut linear = with(GOLDEN_TELEMETRY, 25, 0x28);
    linear.splice(38..39, [0xfe, 0xff, 0x03]);
    assert_eq!(
        decode_telemetry(&linear),
        Err(DecodeError::CountOutOfRange {
            axis: Axis::GyroX,
            index: 2
        })
    );
}

#[test]
fn decode_refuses_invalid_status_values() {
    assert_eq!(
        decode_status(&with(GOLDEN_STATUS, 2, 101)),
        Err(DecodeError::BatteryOutOfRange(101))
    );
    assert_eq!(
        decode_status(&with(GOLDEN_STATUS, 2, 255)),
        Err(DecodeError::BatteryOutOfRange(255))
    );
    let long = "x".repeat(MAX_FIRMWARE_VERSION_LEN + 1);
    let mut bytes = vec![0x01, 0x01, 50, long.len() as u8];
    bytes.extend_from_slice(long.as_bytes());
    bytes.push(0);
    assert_eq!(
        decode_status(&bytes),
        Err(DecodeError::FirmwareVersionTooLong {
            len: MAX_FIRMWARE_VERSION_LEN + 1
        })
    );
    // A length prefix far beyond the payload.
    let hostile = [0x01, 0x01, 50, 0xff, 0xff, 0xff, 0xff, 0x0f, b'x'];
    assert_eq!(
        decode_status(&hostile),
        Err(DecodeError::Truncated {
            field: "firmware_version"
        })
    );
}

#[test]
fn errors_display_without_panicking() {
    use std::string::ToString;
    let shown = DecodeError::CountOutOfRange {
        axis: Axis::GyroZ,
        index: 3,
    }
    .to_string();
    assert_eq!(shown, "sample 3: gyro z leaves the int16 range");
    let shown = DecodeError::UnexpectedKind {
        expected: MessageKind::Telemetry,
        found: MessageKind::Ack,
    }
    .to_string();
    assert_eq!(shown, "expected a telemetry message, found ack");
    let _: &dyn core::error::Error = &DecodeError::Empty;
    let _: &dyn core::error::Error = &crate::EncodeError::EmptyBatch;
}

// ---- property tests -------------------------------------------------------------------

fn raw_sample() -> impl Strategy<Value = RawSample> {
    // Mix of full-range noise and smooth ramps, so both predictors get exercised.
    prop_oneof![
        (any::<[i16; 3]>(), any::<[i16; 3]>()).prop_map(|(accel, gyro)| RawSample { accel, gyro }),
        (-50i16..50, -50i16..50).prop_map(|(a, g)| RawSample {
            accel: [a; 3],
            gyro: [g; 3]
        }),
    ]
}

fn smooth_raw(len: usize) -> impl Strategy<Value = Vec<RawSample>> {
    (any::<[i16; 6]>(), any::<[i8; 6]>()).prop_map(move |(start, slope)| {
        (0..len)
            .map(|i| {
                let at = |axis: usize| {
                    (i64::from(start[axis]) + i as i64 * i64::from(slope[axis]))
                        .clamp(i64::from(i16::MIN), i64::from(i16::MAX)) as i16
                };
                RawSample {
                    accel: [at(0), at(1), at(2)],
                    gyro: [at(3), at(4), at(5)],
                }
            })
            .collect()
    })
}

fn timing(len: usize) -> impl Strategy<Value = Timing> {
    prop_oneof![
        (1u32..).prop_map(|period_us| Timing::FixedPeriod { period_us }),
        proptest::collection::vec(1u32.., len - 1).prop_map(Timing::Deltas),
    ]
}

fn scale() -> impl Strategy<Value = f32> {
    prop_oneof![
        Just(ACCEL_SCALE_16G),
        Just(GYRO_SCALE_2000DPS),
        1e-30f32..1e30
    ]
}

fn batch() -> impl Strategy<Value = TelemetryBatch> {
    (1usize..=80)
        .prop_flat_map(|len| {
            let raw = prop_oneof![
                proptest::collection::vec(raw_sample(), len),
                smooth_raw(len),
            ];
            (
                any::<u64>(),
                any::<Option<u64>>(),
                -(1i64 << 60)..(1i64 << 60),
                timing(len),
                scale(),
                scale(),
                raw,
            )
        })
        .prop_map(
            |(seq, session_id, t0_us, timing, accel_scale, gyro_scale, raw)| {
                TelemetryBatch::from_raw(
                    seq,
                    session_id,
                    t0_us,
                    timing,
                    accel_scale,
                    gyro_scale,
                    raw,
                )
                .unwrap()
            },
        )
}

fn message() -> impl Strategy<Value = Message> {
    prop_oneof![
        batch().prop_map(Message::Telemetry),
        (0u8..=100, "\\PC{0,8}", any::<u32>())
            .prop_filter_map("firmware version too long", |(battery, version, uptime)| {
                DeviceStatus::new(battery, version, uptime).ok()
            })
            .prop_map(Message::Status),
        any::<u64>().prop_map(|seq| Message::Ack(Ack { seq })),
    ]
}

proptest! {
    #[test]
    fn telemetry_round_trips(batch in batch()) {
        let bytes = encode_telemetry(&batch);
        let decoded = decode_telemetry(&bytes).unwrap();
        prop_assert_eq!(&decoded, &batch);
        prop_assert_eq!(encode_telemetry(&decoded), bytes);
        prop_assert_eq!(decoded.samples().count(), batch.len());
        prop_assert_eq!(decoded.samples().last().map(|s| s.ts_us), Some(batch.last_ts_us()));
    }

    #[test]
    fn messages_round_trip(message in message()) {
        let bytes = encode(&message);
        prop_assert_eq!(decode(&bytes), Ok(message));
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = decode(&bytes);
        let _ = decode_telemetry(&bytes);
        let _ = decode_status(&bytes);
        let _ = decode_ack(&bytes);
    }

    #[test]
    fn arbitrary_bodies_never_panic(
        kind in 0u8..3,
        body in proptest::collection::vec(any::<u8>(), 0..400),
    ) {
        let mut bytes = vec![0x01, kind];
        bytes.extend_from_slice(&body);
        let _ = decode(&bytes);
    }

    #[test]
    fn corrupted_frames_never_panic(
        message in message(),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut bytes = encode(&message);
        for (index, value) in edits {
            let at = index.index(bytes.len());
            bytes[at] = value;
        }
        let _ = decode(&bytes);
        let truncated = &encode(&message)[..cut.index(bytes.len())];
        prop_assert!(decode(truncated).is_err());
    }

    #[test]
    fn quantization_error_is_at_most_half_a_count(
        values in proptest::collection::vec((any::<[i16; 6]>(), any::<[f32; 6]>()), 1..40),
        accel_scale in prop_oneof![Just(ACCEL_SCALE_16G), 1e-3f32..1.0],
        gyro_scale in prop_oneof![Just(GYRO_SCALE_2000DPS), 1e-3f32..1.0],
        period_us in 1u32..100_000,
    ) {
        // Values within ±(32767 counts) of the scale, with an arbitrary sub-count offset.
        let samples: Vec<Sample> = values
            .iter()
            .enumerate()
            .map(|(i, (counts, jitter))| {
                let value = |axis: usize, scale: f32| {
                    let offset = (jitter[axis].fract() * 0.49).clamp(-0.49, 0.49);
                    (f64::from(counts[axis].max(-32767)) + f64::from(offset)) as f32 * scale
                };
                Sample {
                    ts_us: T0 + i as i64 * i64::from(period_us),
                    accel: [0, 1, 2].map(|axis| value(axis, accel_scale)),
                    gyro: [3, 4, 5].map(|axis| value(axis, gyro_scale)),
                }
            })
            .collect();
        let batch = TelemetryBatch::from_samples(
            1, None, Some(period_us), accel_scale, gyro_scale, &samples,
        ).unwrap();
        let decoded = decode_telemetry(&encode_telemetry(&batch)).unwrap();
        for (input, output) in samples.iter().zip(decoded.samples()) {
            prop_assert_eq!(input.ts_us, output.ts_us);
            assert_within_half_count(&input.accel, &output.accel, accel_scale);
            assert_within_half_count(&input.gyro, &output.gyro, gyro_scale);
        }
    }

    #[test]
    fn per_sample_timestamps_round_trip(gaps in proptest::collection::vec(1u32.., 0..60)) {
        let mut ts_us = T0;
        let mut samples = vec![Sample { ts_us, accel: [0.0; 3], gyro: [0.0; 3] }];
        for gap in gaps {
            ts_us += i64::from(gap);
            samples.push(Sample { ts_us, accel: [0.0; 3], gyro: [0.0; 3] });
        }
        let batch = TelemetryBatch::from_samples(
            1, None, None, ACCEL_SCALE_16G, GYRO_SCALE_2000DPS, &samples,
        ).unwrap();
        let decoded = decode_telemetry(&encode_telemetry(&batch)).unwrap();
        let times: Vec<i64> = decoded.samples().map(|s| s.ts_us).collect();
        let expected: Vec<i64> = samples.iter().map(|s| s.ts_us).collect();
        prop_assert_eq!(times, expected);
    }
}

#[test]
fn firmware_version_round_trips_at_the_limit() {
    let version: String = "v".repeat(MAX_FIRMWARE_VERSION_LEN);
    let status = DeviceStatus::new(0, version, u32::MAX).unwrap();
    assert_eq!(decode_status(&encode_status(&status)), Ok(status));
}
