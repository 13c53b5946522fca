//! The way into the telemetry table. Every sample, whether it came over REST or MQTT,
//! goes through the one [`Writer`] task, which batches rows into multi-row INSERTs and
//! tells each producer when its rows are committed. [`crash`] finds impacts in the
//! samples on the way in.

pub mod crash;
pub mod writer;

pub use writer::{Receipt, WriteError, Writer};
