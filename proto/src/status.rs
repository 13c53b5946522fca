//! Device health and flow control: [`DeviceStatus`] (device → server, `status` channel)
//! and [`Ack`] (server → device, `ack` channel).

use alloc::string::String;

use crate::EncodeError;

/// The longest firmware version string, in bytes of UTF-8.
pub const MAX_FIRMWARE_VERSION_LEN: usize = 32;

/// A device's periodic health report.
///
/// Fields are private so that every value is valid: battery 0..=100 %, firmware version at
/// most [`MAX_FIRMWARE_VERSION_LEN`] bytes. Decoders enforce the same bounds.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DeviceStatus {
    battery_pct: u8,
    firmware_version: String,
    uptime_s: u32,
}

impl DeviceStatus {
    /// A status report: battery charge in percent (0..=100), the firmware's version string
    /// (any UTF-8, at most [`MAX_FIRMWARE_VERSION_LEN`] bytes) and seconds since boot.
    pub fn new(
        battery_pct: u8,
        firmware_version: impl Into<String>,
        uptime_s: u32,
    ) -> Result<DeviceStatus, EncodeError> {
        let firmware_version = firmware_version.into();
        if battery_pct > 100 {
            return Err(EncodeError::BatteryOutOfRange(battery_pct));
        }
        if firmware_version.len() > MAX_FIRMWARE_VERSION_LEN {
            return Err(EncodeError::FirmwareVersionTooLong {
                len: firmware_version.len(),
            });
        }
        Ok(DeviceStatus {
            battery_pct,
            firmware_version,
            uptime_s,
        })
    }

    /// Battery charge in percent, 0..=100.
    pub fn battery_pct(&self) -> u8 {
        self.battery_pct
    }

    /// The firmware's version string.
    pub fn firmware_version(&self) -> &str {
        &self.firmware_version
    }

    /// Seconds since the device booted.
    pub fn uptime_s(&self) -> u32 {
        self.uptime_s
    }
}

/// The server's acknowledgement: every telemetry batch of this device with a sequence
/// number up to and including `seq` is committed to storage, with no gaps, so the device
/// may drop them from its retransmit buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ack {
    /// Highest contiguous committed [`TelemetryBatch::seq`](crate::TelemetryBatch::seq).
    pub seq: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_validates_battery_and_firmware_version() {
        assert!(DeviceStatus::new(0, "", 0).is_ok());
        let status = DeviceStatus::new(100, "x".repeat(MAX_FIRMWARE_VERSION_LEN), 7).unwrap();
        assert_eq!(status.battery_pct(), 100);
        assert_eq!(status.firmware_version().len(), MAX_FIRMWARE_VERSION_LEN);
        assert_eq!(status.uptime_s(), 7);
        assert_eq!(
            DeviceStatus::new(101, "1.0", 0),
            Err(EncodeError::BatteryOutOfRange(101))
        );
        assert_eq!(
            DeviceStatus::new(50, "x".repeat(MAX_FIRMWARE_VERSION_LEN + 1), 0),
            Err(EncodeError::FirmwareVersionTooLong {
                len: MAX_FIRMWARE_VERSION_LEN + 1
            })
        );
        // The bound is in bytes, not characters.
        assert!(DeviceStatus::new(50, "é".repeat(16), 0).is_ok());
        assert!(DeviceStatus::new(50, "é".repeat(17), 0).is_err());
    }
}
