//! MQTT topic names: `velt/devices/{device_id}/{channel}`.
//!
//! `device_id` is a `u64` in canonical decimal (no sign, no leading zeros, `0` itself is
//! fine). Devices publish on `telemetry` and `status` and subscribe to their own `ack` and
//! `cmd`; the server does the opposite, through the wildcard filters below.

use alloc::string::String;

/// Every velt topic starts with this.
pub const PREFIX: &str = "velt/devices/";

/// The filter the server subscribes to for all devices' telemetry.
pub const TELEMETRY_FILTER: &str = "velt/devices/+/telemetry";

/// The filter the server subscribes to for all devices' status reports.
pub const STATUS_FILTER: &str = "velt/devices/+/status";

/// The last topic level: what flows on the topic and in which direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Channel {
    /// Device → server: [`TelemetryBatch`](crate::TelemetryBatch) frames.
    Telemetry,
    /// Device → server: [`DeviceStatus`](crate::DeviceStatus) frames.
    Status,
    /// Server → device: [`Ack`](crate::Ack) frames.
    Ack,
    /// Server → device: commands (payload format not defined by this crate yet).
    Cmd,
}

impl Channel {
    /// All channels.
    pub const ALL: [Channel; 4] = [
        Channel::Telemetry,
        Channel::Status,
        Channel::Ack,
        Channel::Cmd,
    ];

    /// The topic level, e.g. `"telemetry"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Telemetry => "telemetry",
            Channel::Status => "status",
            Channel::Ack => "ack",
            Channel::Cmd => "cmd",
        }
    }

    /// The channel for a topic level, matched exactly (case-sensitive).
    pub fn from_level(level: &str) -> Option<Channel> {
        Channel::ALL
            .into_iter()
            .find(|channel| channel.as_str() == level)
    }

    /// The filter matching this channel for every device, e.g. [`TELEMETRY_FILTER`].
    pub fn filter(self) -> &'static str {
        match self {
            Channel::Telemetry => TELEMETRY_FILTER,
            Channel::Status => STATUS_FILTER,
            Channel::Ack => "velt/devices/+/ack",
            Channel::Cmd => "velt/devices/+/cmd",
        }
    }
}

impl core::fmt::Display for Channel {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The topic for one device and channel, e.g. `velt/devices/42/telemetry`.
pub fn topic(device_id: u64, channel: Channel) -> String {
    alloc::format!("{PREFIX}{device_id}/{channel}")
}

/// Parses a topic of exactly the form `velt/devices/{device_id}/{channel}`.
///
/// Anything else is `None`: other prefixes, wildcards, extra or missing levels, a
/// `device_id` with a sign, leading zeros, non-ASCII digits or more than `u64::MAX`, and
/// unknown or differently-cased channels.
pub fn parse_topic(topic: &str) -> Option<(u64, Channel)> {
    let rest = topic.strip_prefix(PREFIX)?;
    let (id, level) = rest.split_once('/')?;
    let channel = Channel::from_level(level)?;
    Some((parse_device_id(id)?, channel))
}

/// Canonical decimal only: `u64::from_str` alone would accept `+7` and `007`.
fn parse_device_id(id: &str) -> Option<u64> {
    let canonical = match id.as_bytes() {
        [b'0'] => true,
        [b'1'..=b'9', rest @ ..] => rest.iter().all(u8::is_ascii_digit),
        _ => false,
    };
    if canonical { id.parse().ok() } else { None }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_and_parse_round_trip() {
        for channel in Channel::ALL {
            for id in [0, 1, 42, 1_000_000, u64::MAX] {
                let name = topic(id, channel);
                assert_eq!(parse_topic(&name), Some((id, channel)), "{name}");
            }
        }
        assert_eq!(topic(42, Channel::Telemetry), "velt/devices/42/telemetry");
        assert_eq!(topic(7, Channel::Cmd), "velt/devices/7/cmd");
    }

    #[test]
    fn filters_name_the_channel_for_every_device() {
        assert_eq!(Channel::Telemetry.filter(), TELEMETRY_FILTER);
        assert_eq!(Channel::Status.filter(), STATUS_FILTER);
        for channel in Channel::ALL {
            assert_eq!(channel.filter(), topic(0, channel).replace("/0/", "/+/"));
        }
    }

    #[test]
    fn parse_rejects_everything_but_the_exact_form() {
        let rejected = [
            "",
            "velt",
            "velt/devices",
            "velt/devices/",
            "velt/devices//telemetry",
            "velt/devices/42",
            "velt/devices/42/",
            "velt/devices/01/telemetry",
            "velt/devices/00/telemetry",
            "velt/devices/+/telemetry",
            "velt/devices/#",
            "velt/devices/42/#",
            "velt/devices/+42/telemetry",
            "velt/devices/-1/telemetry",
            "velt/devices/ 42/telemetry",
            "velt/devices/42 /telemetry",
            "velt/devices/4_2/telemetry",
            "velt/devices/0x2a/telemetry",
            "velt/devices/18446744073709551616/telemetry",
            "velt/devices/٤٢/telemetry",
            "velt/devices/４２/telemetry",
            "velt/devices/42/télémetry",
            "velt/devices/42/Telemetry",
            "velt/devices/42/telemetry/",
            "velt/devices/42/telemetry/extra",
            "velt/devices/42/unknown",
            "/velt/devices/42/telemetry",
            "Velt/devices/42/telemetry",
            "velt/device/42/telemetry",
            "velt/devices/42//telemetry",
            "other/velt/devices/42/telemetry",
            "velt/devices/42/telemetry\0",
        ];
        for name in rejected {
            assert_eq!(parse_topic(name), None, "{name:?}");
        }
    }
}
