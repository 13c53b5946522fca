//! The topic rules of the MQTT edge, as pure functions: which topics a principal may
//! PUBLISH to and which filters it may SUBSCRIBE to.
//!
//! Everything lives under `velt/devices/{device_id}/{channel}` (see
//! [`velt_proto::topics`]). Devices publish their own `telemetry` and `status` and
//! subscribe to their own `ack` and `cmd`; users subscribe to the `telemetry` and `status`
//! of devices they own; services follow the rules in their token. Anything outside the
//! velt tree (`#`, `+/…`, `$SYS/…`, `$share/…`), non-ASCII or malformed is refused for
//! everyone, before any rule is consulted.

use std::collections::HashSet;

use velt_proto::topics::{Channel, parse_topic};

use super::principal::Principal;
use crate::auth::{Access, AclRule};

/// The first level of every topic velt routes.
const ROOT: &str = "velt";

/// Longest topic or filter accepted, in bytes (velt's own topics are far shorter).
pub const MAX_TOPIC_LEN: usize = 256;

fn is_printable_ascii(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_graphic())
}

/// A topic name a client may publish to at all: printable ASCII (this also keeps the
/// router's `topic[..1]` from panicking on a multi-byte first character), no wildcards,
/// no empty levels, under `velt/`.
pub fn is_valid_topic(topic: &str) -> bool {
    !topic.is_empty()
        && topic.len() <= MAX_TOPIC_LEN
        && is_printable_ascii(topic)
        && topic.split('/').next() == Some(ROOT)
        && topic.contains('/')
        && topic
            .split('/')
            .all(|level| !level.is_empty() && !level.contains(['+', '#']))
}

/// A well-formed MQTT filter under `velt/`: `+` only as a whole level, `#` only as the
/// whole last level, printable ASCII, no empty levels.
pub fn is_valid_filter(filter: &str) -> bool {
    if filter.is_empty() || filter.len() > MAX_TOPIC_LEN || !is_printable_ascii(filter) {
        return false;
    }
    let levels: Vec<&str> = filter.split('/').collect();
    if levels[0] != ROOT || levels.len() < 2 {
        return false;
    }
    levels.iter().enumerate().all(|(i, level)| match *level {
        "" => false,
        "+" => true,
        "#" => i == levels.len() - 1,
        other => !other.contains(['+', '#']),
    })
}

/// Whether every topic `filter` can match is also matched by `rule` (both MQTT filters).
/// A topic name is a filter without wildcards, so this is also "does `rule` match the
/// topic".
pub fn covers(rule: &str, filter: &str) -> bool {
    let mut rule_levels = rule.split('/');
    let mut filter_levels = filter.split('/');
    loop {
        match (rule_levels.next(), filter_levels.next()) {
            (Some("#"), _) => return true,
            (Some(_), Some("#")) => return false,
            (Some("+"), Some(_)) => {}
            (Some(r), Some(f)) if r == f && f != "+" => {}
            (Some(_), Some(_)) => return false,
            (None, None) => return true,
            // `a/#` also matches `a` itself.
            (Some(r), None) => return r == "#" && rule_levels.next().is_none(),
            (None, Some(_)) => return false,
        }
    }
}

/// The device id and channel of an exact velt topic, with the id as stored (`i64`).
fn device_topic(topic: &str) -> Option<(i64, Channel)> {
    let (id, channel) = parse_topic(topic)?;
    Some((i64::try_from(id).ok()?, channel))
}

/// May `principal` PUBLISH to `topic` (also checked for a CONNECT's will)?
pub fn may_publish(principal: &Principal, topic: &str) -> bool {
    if !is_valid_topic(topic) {
        return false;
    }
    match principal {
        Principal::Device { device_id, .. } => matches!(
            device_topic(topic),
            Some((id, Channel::Telemetry | Channel::Status)) if id == *device_id
        ),
        Principal::User { .. } => false,
        Principal::Service { acl, .. } => allowed_by(acl, Access::Pub, topic),
    }
}

/// May `principal` SUBSCRIBE to `filter`? `owned` is the set of devices a user
/// principal owns (ignored for the others).
pub fn may_subscribe(principal: &Principal, owned: &HashSet<i64>, filter: &str) -> bool {
    if !is_valid_filter(filter) {
        return false;
    }
    match principal {
        Principal::Device { device_id, .. } => matches!(
            device_topic(filter),
            Some((id, Channel::Ack | Channel::Cmd)) if id == *device_id
        ),
        Principal::User { .. } => matches!(
            device_topic(filter),
            Some((id, Channel::Telemetry | Channel::Status)) if owned.contains(&id)
        ),
        Principal::Service { acl, .. } => allowed_by(acl, Access::Sub, filter),
    }
}

fn allowed_by(acl: &[AclRule], access: Access, filter: &str) -> bool {
    acl.iter()
        .any(|rule| rule.allow == access && covers(&rule.filter, filter))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device(id: i64) -> Principal {
        Principal::Device {
            device_id: id,
            owner: 1,
            token_version: 1,
        }
    }

    fn service(rules: &[&str]) -> Principal {
        Principal::Service {
            name: "svc".into(),
            acl: rules.iter().map(|rule| rule.parse().unwrap()).collect(),
        }
    }

    const ALWAYS_REFUSED: &[&str] = &[
        "",
        "#",
        "+",
        "+/x",
        "+/devices/5/telemetry",
        "$SYS/#",
        "$SYS/broker/uptime",
        "$share/g/velt/devices/5/telemetry",
        "other/devices/5/telemetry",
        "/velt/devices/5/telemetry",
        "velt//5/telemetry",
        "velt/devices/5/telemetry/",
        "ü/x",
        "velt/devices/5/télémetry",
        "velt/devices/5/tele metry",
        "velt/devices/5/telemetry\0",
    ];

    #[test]
    fn devices_publish_only_their_own_telemetry_and_status() {
        let me = device(5);
        assert!(may_publish(&me, "velt/devices/5/telemetry"));
        assert!(may_publish(&me, "velt/devices/5/status"));
        for topic in [
            "velt/devices/6/telemetry",
            "velt/devices/5/ack",
            "velt/devices/5/cmd",
            "velt/devices/05/telemetry",
            "velt/devices/+/telemetry",
            "velt/devices/5/#",
            "velt/devices/5/unknown",
        ] {
            assert!(!may_publish(&me, topic), "{topic}");
        }
        for topic in ALWAYS_REFUSED {
            assert!(!may_publish(&me, topic), "{topic:?}");
        }
    }

    #[test]
    fn devices_subscribe_only_to_their_own_ack_and_cmd_exactly() {
        let me = device(5);
        let none = HashSet::new();
        assert!(may_subscribe(&me, &none, "velt/devices/5/ack"));
        assert!(may_subscribe(&me, &none, "velt/devices/5/cmd"));
        for filter in [
            "velt/devices/6/ack",
            "velt/devices/+/ack",
            "velt/devices/5/+",
            "velt/devices/5/#",
            "velt/devices/5/telemetry",
            "velt/#",
        ] {
            assert!(!may_subscribe(&me, &none, filter), "{filter}");
        }
        for filter in ALWAYS_REFUSED {
            assert!(!may_subscribe(&me, &none, filter), "{filter:?}");
        }
    }

    #[test]
    fn users_subscribe_to_telemetry_and_status_of_owned_devices_and_never_publish() {
        let user = Principal::User { user_id: 1 };
        let owned: HashSet<i64> = [5, 7].into();
        assert!(may_subscribe(&user, &owned, "velt/devices/5/telemetry"));
        assert!(may_subscribe(&user, &owned, "velt/devices/7/status"));
        for filter in [
            "velt/devices/6/telemetry",
            "velt/devices/5/ack",
            "velt/devices/5/cmd",
            "velt/devices/+/telemetry",
            "velt/devices/5/+",
            "velt/#",
        ] {
            assert!(!may_subscribe(&user, &owned, filter), "{filter}");
        }
        for filter in ALWAYS_REFUSED {
            assert!(!may_subscribe(&user, &owned, filter), "{filter:?}");
        }
        assert!(!may_publish(&user, "velt/devices/5/telemetry"));
        assert!(!may_publish(&user, "velt/devices/5/ack"));
    }

    #[test]
    fn services_follow_their_rules_with_wildcards() {
        let svc = service(&["sub:velt/devices/+/telemetry", "pub:velt/devices/+/ack"]);
        let none = HashSet::new();
        assert!(may_subscribe(&svc, &none, "velt/devices/+/telemetry"));
        assert!(may_subscribe(&svc, &none, "velt/devices/9/telemetry"));
        assert!(!may_subscribe(&svc, &none, "velt/devices/+/status"));
        assert!(!may_subscribe(&svc, &none, "velt/devices/#"));
        assert!(!may_subscribe(&svc, &none, "velt/devices/+/ack"));
        assert!(may_publish(&svc, "velt/devices/9/ack"));
        assert!(!may_publish(&svc, "velt/devices/9/telemetry"));

        let wide = service(&["sub:velt/#", "pub:#"]);
        assert!(may_subscribe(&wide, &none, "velt/devices/+/status"));
        assert!(may_subscribe(&wide, &none, "velt/#"));
        assert!(may_publish(&wide, "velt/anything/else"));
        for filter in ALWAYS_REFUSED {
            assert!(!may_subscribe(&wide, &none, filter), "{filter:?}");
            assert!(!may_publish(&wide, filter), "{filter:?}");
        }
    }

    #[test]
    fn covers_is_filter_inclusion() {
        let yes = [
            ("#", "a/b"),
            ("a/#", "a"),
            ("a/#", "a/b/c"),
            ("a/#", "a/+/c"),
            ("a/+/c", "a/b/c"),
            ("a/+/c", "a/+/c"),
            ("a/b", "a/b"),
        ];
        let no = [
            ("a/b", "a/+"),
            ("a/+", "a/#"),
            ("a/+", "a/b/c"),
            ("a/+/c", "a/b"),
            ("a/b/#", "a"),
            ("a/b", "a/b/c"),
            ("a/b/c", "a/b"),
            ("a/+/#", "a"),
        ];
        for (rule, filter) in yes {
            assert!(covers(rule, filter), "{rule} covers {filter}");
        }
        for (rule, filter) in no {
            assert!(!covers(rule, filter), "{rule} does not cover {filter}");
        }
    }

    #[test]
    fn filter_syntax() {
        for ok in ["velt/#", "velt/+/x", "velt/devices/+/telemetry", "velt/a"] {
            assert!(is_valid_filter(ok), "{ok}");
        }
        for bad in ["velt/#/x", "velt/a+", "velt/a#", "velt", "velt/", "Velt/x"] {
            assert!(!is_valid_filter(bad), "{bad}");
        }
        assert!(!is_valid_topic("velt"));
        assert!(!is_valid_topic(&format!(
            "velt/{}",
            "x".repeat(MAX_TOPIC_LEN)
        )));
    }
}
