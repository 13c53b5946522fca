//! velt-proto: the wire format between velt sensors and the velt server.
//!
//! Sensors publish postcard-encoded frames over MQTT; this crate owns everything both ends
//! must agree on, and nothing else (no sockets, no runtime):
//!
//! - [`telemetry`]: [`TelemetryBatch`], a compact batch of 6-axis IMU samples, and the
//!   [`Sample`] type it is built from and decoded to.
//! - [`status`]: [`DeviceStatus`] (battery, firmware, uptime) and [`Ack`] (the server's
//!   "committed up to `seq`").
//! - [`topics`]: MQTT topic names (`velt/devices/{device_id}/{channel}`), builders and a
//!   strict parser.
//! - [`Envelope`] and the `encode_*` / `decode_*` functions: the framed bytes. Every frame
//!   starts with a version byte and a kind byte; a new layout is a new [`Envelope`] variant,
//!   and a decoder refuses versions it does not know with [`DecodeError::UnknownVersion`].
//!
//! The crate is `#![no_std]` with `alloc`, so sensor firmware can share it. The byte layout
//! is specified in `docs/wire-format.md` and pinned by golden-byte tests.
//!
//! ```
//! use velt_proto::{Sample, TelemetryBatch, decode_telemetry, encode_telemetry};
//!
//! let samples = [Sample { ts_us: 1_700_000_000_000_000, accel: [0.0, 0.0, 9.81], gyro: [0.0; 3] }];
//! let batch = TelemetryBatch::from_samples(
//!     1, None, Some(10_000), velt_proto::ACCEL_SCALE_16G, velt_proto::GYRO_SCALE_2000DPS, &samples,
//! )?;
//! let bytes = encode_telemetry(&batch);
//! assert_eq!(decode_telemetry(&bytes)?, batch);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![no_std]
#![warn(missing_docs)]

extern crate alloc;
#[cfg(test)]
extern crate std;

mod error;
pub mod status;
pub mod telemetry;
pub mod topics;
mod wire;

use alloc::vec::Vec;

pub use error::{DecodeError, EncodeError};
pub use status::{Ack, DeviceStatus, MAX_FIRMWARE_VERSION_LEN};
pub use telemetry::{
    ACCEL_SCALE_16G, Axis, GYRO_SCALE_2000DPS, MAX_SAMPLES_PER_BATCH, RawSample, Sample, Samples,
    TelemetryBatch, Timing,
};

/// The wire version that [`encode`] and the `encode_*` functions write: the first byte of
/// every frame they produce.
pub const CURRENT_VERSION: u8 = 1;

/// A decoded message, independent of the wire version it arrived in.
///
/// `#[non_exhaustive]`: a payload for the `cmd` channel may be added as a new kind.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Message {
    /// A batch of IMU samples (device → server, `telemetry` channel).
    Telemetry(TelemetryBatch),
    /// Battery, firmware and uptime (device → server, `status` channel).
    Status(DeviceStatus),
    /// Highest contiguous committed batch `seq` (server → device, `ack` channel).
    Ack(Ack),
}

impl Message {
    /// Which kind of message this is (the frame's second byte).
    pub fn kind(&self) -> MessageKind {
        match self {
            Message::Telemetry(_) => MessageKind::Telemetry,
            Message::Status(_) => MessageKind::Status,
            Message::Ack(_) => MessageKind::Ack,
        }
    }
}

/// The kind byte that follows the version byte in every frame.
///
/// The MQTT channel already implies the kind; the byte is there so a payload published on
/// the wrong topic is refused ([`DecodeError::UnexpectedKind`]) instead of misread.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
#[non_exhaustive]
pub enum MessageKind {
    /// `0x00`: [`TelemetryBatch`].
    Telemetry = 0,
    /// `0x01`: [`DeviceStatus`].
    Status = 1,
    /// `0x02`: [`Ack`].
    Ack = 2,
}

impl MessageKind {
    /// The kind for a kind byte, if it is one.
    pub fn from_byte(byte: u8) -> Option<MessageKind> {
        match byte {
            0 => Some(MessageKind::Telemetry),
            1 => Some(MessageKind::Status),
            2 => Some(MessageKind::Ack),
            _ => None,
        }
    }
}

impl core::fmt::Display for MessageKind {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            MessageKind::Telemetry => "telemetry",
            MessageKind::Status => "status",
            MessageKind::Ack => "ack",
        })
    }
}

/// A frame: a [`Message`] together with the wire version it is (or will be) laid out in.
///
/// The variant *is* the version byte: `V1` frames start with `0x01`. A future layout is
/// added as a new variant (`V2`, first byte `0x02`) next to the old one, so servers keep
/// decoding firmware that still speaks V1; an existing variant's layout never changes.
/// The enum is `#[non_exhaustive]` so adding a version is not a breaking change.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Envelope {
    /// Wire layout version 1 (first byte `0x01`), described in `docs/wire-format.md`.
    V1(Message),
}

impl Envelope {
    /// The version byte this frame is encoded with.
    pub fn version(&self) -> u8 {
        match self {
            Envelope::V1(_) => 1,
        }
    }

    /// The message inside.
    pub fn message(&self) -> &Message {
        match self {
            Envelope::V1(message) => message,
        }
    }

    /// The message inside, by value.
    pub fn into_message(self) -> Message {
        match self {
            Envelope::V1(message) => message,
        }
    }

    /// Encodes the frame: version byte, kind byte, body.
    pub fn to_bytes(&self) -> Vec<u8> {
        match self {
            Envelope::V1(message) => wire::v1::encode(message),
        }
    }

    /// Decodes a frame of any known version; the whole slice must be one frame.
    pub fn from_bytes(bytes: &[u8]) -> Result<Envelope, DecodeError> {
        wire::decode(bytes, None)
    }
}

/// Encodes any message in the [`CURRENT_VERSION`] layout.
pub fn encode(message: &Message) -> Vec<u8> {
    wire::v1::encode(message)
}

/// Decodes a frame of any known version and kind.
pub fn decode(bytes: &[u8]) -> Result<Message, DecodeError> {
    wire::decode(bytes, None).map(Envelope::into_message)
}

/// Encodes a telemetry batch in the [`CURRENT_VERSION`] layout.
pub fn encode_telemetry(batch: &TelemetryBatch) -> Vec<u8> {
    wire::v1::encode_telemetry(batch)
}

/// Decodes a telemetry frame; any other kind is [`DecodeError::UnexpectedKind`].
pub fn decode_telemetry(bytes: &[u8]) -> Result<TelemetryBatch, DecodeError> {
    match wire::decode(bytes, Some(MessageKind::Telemetry))?.into_message() {
        Message::Telemetry(batch) => Ok(batch),
        other => Err(wire::unexpected(MessageKind::Telemetry, other.kind())),
    }
}

/// Encodes a device status in the [`CURRENT_VERSION`] layout.
pub fn encode_status(status: &DeviceStatus) -> Vec<u8> {
    wire::v1::encode_status(status)
}

/// Decodes a status frame; any other kind is [`DecodeError::UnexpectedKind`].
pub fn decode_status(bytes: &[u8]) -> Result<DeviceStatus, DecodeError> {
    match wire::decode(bytes, Some(MessageKind::Status))?.into_message() {
        Message::Status(status) => Ok(status),
        other => Err(wire::unexpected(MessageKind::Status, other.kind())),
    }
}

/// Encodes an ack in the [`CURRENT_VERSION`] layout.
pub fn encode_ack(ack: &Ack) -> Vec<u8> {
    wire::v1::encode_ack(ack)
}

/// Decodes an ack frame; any other kind is [`DecodeError::UnexpectedKind`].
pub fn decode_ack(bytes: &[u8]) -> Result<Ack, DecodeError> {
    match wire::decode(bytes, Some(MessageKind::Ack))?.into_message() {
        Message::Ack(ack) => Ok(ack),
        other => Err(wire::unexpected(MessageKind::Ack, other.kind())),
    }
}
