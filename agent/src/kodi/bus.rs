//! The add-on's messages on Kodi's bus (typed in `kodi_tickets_protocol::bus`): what the
//! agent hears as `Other.kodi_tickets.*` notifications, and the parameters of the
//! `JSONRPC.NotifyAll` it answers with.

use kodi_tickets_protocol::bus::{FromAddon, ToAddon, ADDON_SENDER};
use serde_json::{json, Value};

/// The notifications the agent listens to, as Kodi names them (`Other.` + message).
pub const LISTENS_TO: [&str; 4] = [
    "Other.kodi_tickets.ping",
    "Other.kodi_tickets.pin",
    "Other.kodi_tickets.time_left",
    "Other.kodi_tickets.closed",
];

/// The messages taken from the add-on's sender only.
const ADDON_ONLY: [&str; 2] = ["kodi_tickets.pin", "kodi_tickets.closed"];

/// Longest request id kept: the add-on's are 32 characters; a longer one is cut, not echoed.
const MAX_REQUEST_ID: usize = 64;

/// A notification's method and params as the add-on's request; `None` for anything else,
/// including a `pin` or `closed` from any sender but the add-on's.
///
/// NOTE: `ping` and `time_left` only read, so any local client may ask (the real-Kodi tests
/// ping the agent); a `pin` uses a ticket and a `closed` lets a profile switch go ahead.
pub fn parse(method: &str, params: &Value) -> Option<FromAddon> {
    let message = method.strip_prefix("Other.")?;
    let from_addon = params["sender"] == ADDON_SENDER;
    if !from_addon && ADDON_ONLY.contains(&message) {
        return None;
    }
    // Kodi wraps NotifyAll's data as {"sender": ..., "data": ...}; an add-on's data may
    // arrive as a JSON object or as a string holding one.
    let mut data = match &params["data"] {
        Value::String(text) => serde_json::from_str(text).ok()?,
        other => other.clone(),
    };
    if let Some(Value::String(id)) = data.get_mut("request_id") {
        *id = id.chars().take(MAX_REQUEST_ID).collect();
    }
    serde_json::from_value(json!({ "message": message, "data": data })).ok()
}

/// `JSONRPC.NotifyAll`'s `message` and `data` for `message`.
pub fn notify_all_params(message: &ToAddon) -> (String, Value) {
    let mut value = serde_json::to_value(message).unwrap_or_default();
    let name = value["message"].as_str().unwrap_or_default().to_owned();
    (name, value["data"].take())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kodi_tickets_protocol::bus::{PinTyped, Request, Warning};

    fn from_addon(data: Value) -> Value {
        json!({"sender": ADDON_SENDER, "data": data})
    }

    #[test]
    fn requests_are_read_from_objects_and_strings() {
        let ping = parse(
            "Other.kodi_tickets.ping",
            &from_addon(json!({"request_id": "r1"})),
        );
        assert_eq!(
            ping,
            Some(FromAddon::Ping(Request {
                request_id: "r1".into()
            }))
        );
        let pin = parse(
            "Other.kodi_tickets.pin",
            &from_addon(json!("{\"request_id\":\"r2\",\"pin\":\"0420\"}")),
        );
        assert_eq!(
            pin,
            Some(FromAddon::Pin(PinTyped {
                request_id: "r2".into(),
                pin: Some("0420".into())
            }))
        );
        let closed = parse(
            "Other.kodi_tickets.closed",
            &from_addon(json!({"request_id": "c"})),
        );
        assert!(matches!(closed, Some(FromAddon::Closed(_))));
    }

    #[test]
    fn pins_and_closed_from_any_other_sender_are_ignored() {
        let data = json!({"request_id": "r", "pin": "1234"});
        for method in ["Other.kodi_tickets.pin", "Other.kodi_tickets.closed"] {
            for sender in [json!("kodi-tickets-agent"), json!("xbmc"), json!(null)] {
                let params = json!({"sender": sender, "data": data});
                assert_eq!(parse(method, &params), None, "{method} from {sender}");
            }
            assert!(
                parse(method, &from_addon(data.clone())).is_some(),
                "{method}"
            );
        }
        let ping = json!({"sender": "kodi-tickets-test", "data": data});
        assert!(
            parse("Other.kodi_tickets.ping", &ping).is_some(),
            "anyone may ping"
        );
    }

    #[test]
    fn every_message_listened_to_is_read() {
        for method in LISTENS_TO {
            let heard = parse(
                method,
                &from_addon(json!({"request_id": "r", "pin": "1234"})),
            );
            assert!(heard.is_some(), "{method}");
        }
    }

    #[test]
    fn long_request_ids_are_cut() {
        let long = "x".repeat(500);
        let Some(FromAddon::Ping(ping)) = parse(
            "Other.kodi_tickets.ping",
            &from_addon(json!({"request_id": long})),
        ) else {
            panic!("a ping")
        };
        assert_eq!(ping.request_id.len(), MAX_REQUEST_ID);
    }

    #[test]
    fn unknown_and_malformed_messages_are_none() {
        let unreadable = [
            ("Other.kodi_tickets.pin", from_addon(json!({"pin": "1234"}))),
            (
                "Other.something_else",
                from_addon(json!({"request_id": "r"})),
            ),
            ("Other.kodi_tickets.ping", from_addon(json!("not json"))),
            ("kodi_tickets.ping", from_addon(json!({"request_id": "r"}))),
        ];
        for (method, params) in unreadable {
            assert_eq!(parse(method, &params), None, "{method} {params}");
        }
    }

    #[test]
    fn answers_are_sent_as_message_and_data() {
        let warning = ToAddon::Warning(Warning {
            profile: "Kids".into(),
            minutes_left: 1,
        });
        assert_eq!(
            notify_all_params(&warning),
            (
                "kodi_tickets.warning".to_owned(),
                json!({"profile": "Kids", "minutes_left": 1})
            )
        );
    }
}
