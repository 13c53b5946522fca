//! Framing and the byte-level primitives shared by the wire layouts.
//!
//! A frame is `version byte, body`; the version byte picks the layout module (only
//! [`v1`] so far) and is the one thing every future layout must keep. Primitives follow
//! postcard's encoding: unsigned integers as LEB128 varints, signed integers zigzagged then
//! varint, `u8` and `f32` as raw little-endian bytes, `Option` as a 0/1 tag, strings as
//! varint length + UTF-8.
//!
//! Decoding goes through postcard ([`Reader`]), so varint overflow and UTF-8 are checked by
//! the library. Encoding is written out here ([`Writer`]) because it cannot fail, and
//! postcard's serializer returns a `Result` for everything; a test pins the two to the same
//! bytes.

pub(crate) mod v1;

use alloc::vec::Vec;

use crate::{DecodeError, Envelope, MessageKind};

/// Decodes one whole frame; with `expected`, a frame of another kind is refused before its
/// body is read.
pub(crate) fn decode(bytes: &[u8], expected: Option<MessageKind>) -> Result<Envelope, DecodeError> {
    let (&version, body) = bytes.split_first().ok_or(DecodeError::Empty)?;
    match version {
        1 => v1::decode(body, expected).map(Envelope::V1),
        other => Err(DecodeError::UnknownVersion(other)),
    }
}

pub(crate) fn unexpected(expected: MessageKind, found: MessageKind) -> DecodeError {
    DecodeError::UnexpectedKind { expected, found }
}

/// Appends postcard-encoded primitives to a buffer.
pub(crate) struct Writer {
    bytes: Vec<u8>,
}

impl Writer {
    pub(crate) fn with_capacity(capacity: usize) -> Writer {
        Writer {
            bytes: Vec::with_capacity(capacity),
        }
    }

    pub(crate) fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }

    /// A raw byte (postcard `u8`, and enum tags below 128).
    pub(crate) fn byte(&mut self, value: u8) {
        self.bytes.push(value);
    }

    /// Unsigned LEB128, as postcard writes `u16`/`u32`/`u64`.
    pub(crate) fn varint(&mut self, mut value: u64) {
        while value >= 0x80 {
            self.bytes.push(value as u8 | 0x80);
            value >>= 7;
        }
        self.bytes.push(value as u8);
    }

    /// Zigzag then varint, as postcard writes `i16`/`i32`/`i64` (zigzag's value does not
    /// depend on the integer's width).
    pub(crate) fn zigzag(&mut self, value: i64) {
        self.varint(zigzag(value));
    }

    pub(crate) fn f32(&mut self, value: f32) {
        self.bytes.extend_from_slice(&value.to_le_bytes());
    }

    pub(crate) fn option_varint(&mut self, value: Option<u64>) {
        match value {
            None => self.byte(0),
            Some(value) => {
                self.byte(1);
                self.varint(value);
            }
        }
    }

    pub(crate) fn str(&mut self, value: &str) {
        self.varint(value.len() as u64);
        self.bytes.extend_from_slice(value.as_bytes());
    }
}

pub(crate) fn zigzag(value: i64) -> u64 {
    ((value << 1) ^ (value >> 63)) as u64
}

/// Bytes a varint of `value` takes.
pub(crate) fn varint_len(value: u64) -> usize {
    let bits = 64 - value.leading_zeros() as usize;
    bits.div_ceil(7).max(1)
}

/// Reads postcard values off the front of a slice, naming the field in errors.
pub(crate) struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Reader<'a> {
        Reader { rest: bytes }
    }

    pub(crate) fn take<T: serde::Deserialize<'a>>(
        &mut self,
        field: &'static str,
    ) -> Result<T, DecodeError> {
        match postcard::take_from_bytes(self.rest) {
            Ok((value, rest)) => {
                self.rest = rest;
                Ok(value)
            }
            Err(postcard::Error::DeserializeUnexpectedEnd) => Err(DecodeError::Truncated { field }),
            Err(_) => Err(DecodeError::Malformed { field }),
        }
    }

    pub(crate) fn remaining(&self) -> usize {
        self.rest.len()
    }

    /// Succeeds only if every byte was consumed.
    pub(crate) fn finish(self) -> Result<(), DecodeError> {
        match self.rest.len() {
            0 => Ok(()),
            count => Err(DecodeError::TrailingBytes { count }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn written(write: impl FnOnce(&mut Writer)) -> Vec<u8> {
        let mut writer = Writer::with_capacity(16);
        write(&mut writer);
        writer.into_bytes()
    }

    fn postcard<T: serde::Serialize>(value: &T) -> Vec<u8> {
        postcard::to_allocvec(value).unwrap()
    }

    #[test]
    fn varint_len_matches_the_encoding() {
        for value in [
            0,
            1,
            127,
            128,
            16_383,
            16_384,
            u64::from(u32::MAX),
            u64::MAX,
        ] {
            assert_eq!(
                varint_len(value),
                written(|w| w.varint(value)).len(),
                "{value}"
            );
        }
    }

    proptest! {
        #[test]
        fn writer_matches_postcard(
            a in any::<u64>(), b in any::<u32>(), c in any::<i64>(), d in any::<i32>(),
            e in any::<i16>(), f in any::<f32>(), g in any::<Option<u64>>(), h in ".{0,40}",
            i in any::<u8>(),
        ) {
            prop_assert_eq!(written(|w| w.varint(a)), postcard(&a));
            prop_assert_eq!(written(|w| w.varint(u64::from(b))), postcard(&b));
            prop_assert_eq!(written(|w| w.zigzag(c)), postcard(&c));
            prop_assert_eq!(written(|w| w.zigzag(i64::from(d))), postcard(&d));
            prop_assert_eq!(written(|w| w.zigzag(i64::from(e))), postcard(&e));
            prop_assert_eq!(written(|w| w.f32(f)), postcard(&f));
            prop_assert_eq!(written(|w| w.option_varint(g)), postcard(&g));
            prop_assert_eq!(written(|w| w.str(&h)), postcard(&h.as_str()));
            prop_assert_eq!(written(|w| w.byte(i)), postcard(&i));
        }
    }
}
