//! The way into the telemetry table. Every sample, whether it came over REST or MQTT,
//! goes through the one [`Writer`] task, which batches rows into multi-row INSERTs and
//! tells each producer when its rows are committed. [`crash`] finds impacts in the
//! samples on the way in; [`mqtt`] is the broker-side source of samples, and [`acks`]
//! decides what each device is told is safely stored.

pub mod acks;
pub mod crash;
pub mod live;
pub mod mqtt;
pub mod writer;

pub use writer::{Receipt, WriteError, Writer};
