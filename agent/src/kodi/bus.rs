//! The add-on's messages on Kodi's bus (`kodi-addon/PROTOCOL.md`): what the agent receives
//! as `Other.kodi_tickets.*` notifications, and what it answers with `JSONRPC.NotifyAll`.

use serde_json::Value;

/// The agent's sender name on the bus.
pub const SENDER: &str = "kodi-tickets-agent";
/// The notifications the agent listens to, as Kodi names them (`Other.` + message).
pub const LISTENS_TO: [&str; 3] = [
    "Other.kodi_tickets.ping",
    "Other.kodi_tickets.pin",
    "Other.kodi_tickets.time_left",
];

/// A request of the add-on's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FromAddon {
    Ping {
        request_id: String,
    },
    /// `pin` is checked by [`parse`]: exactly four ASCII digits, else `None` is returned
    /// for it and the agent answers `bad_request`.
    Pin {
        request_id: String,
        pin: Option<String>,
    },
    TimeLeft {
        request_id: String,
    },
}

/// A notification's method and params as the add-on's request; `None` for anything else.
pub fn parse(method: &str, params: &Value) -> Option<FromAddon> {
    // Kodi wraps NotifyAll's data as {"sender": ..., "data": ...}; an add-on's data may
    // arrive as a JSON object or as a string holding one.
    let data = match &params["data"] {
        Value::String(text) => serde_json::from_str(text).ok()?,
        other => other.clone(),
    };
    let request_id = data["request_id"]
        .as_str()?
        .chars()
        .take(64)
        .collect::<String>();
    match method {
        "Other.kodi_tickets.ping" => Some(FromAddon::Ping { request_id }),
        "Other.kodi_tickets.time_left" => Some(FromAddon::TimeLeft { request_id }),
        "Other.kodi_tickets.pin" => {
            let pin = data["pin"]
                .as_str()
                .filter(|p| p.len() == 4 && p.bytes().all(|b| b.is_ascii_digit()))
                .map(str::to_owned);
            Some(FromAddon::Pin { request_id, pin })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn requests_are_read_from_objects_and_strings() {
        let ping = parse(
            "Other.kodi_tickets.ping",
            &json!({"sender": "x", "data": {"request_id": "r1"}}),
        );
        assert_eq!(
            ping,
            Some(FromAddon::Ping {
                request_id: "r1".into()
            })
        );
        let pin = parse(
            "Other.kodi_tickets.pin",
            &json!({"sender": "x", "data": "{\"request_id\":\"r2\",\"pin\":\"0420\"}"}),
        );
        assert_eq!(
            pin,
            Some(FromAddon::Pin {
                request_id: "r2".into(),
                pin: Some("0420".into())
            })
        );
    }

    /// The messages the agent sends or hears, as `kodi-addon/PROTOCOL.md` documents them.
    #[test]
    fn every_message_is_in_the_protocol_document() {
        let document = include_str!("../../../kodi-addon/PROTOCOL.md");
        let documented = |name: &str, direction: &str| {
            document
                .lines()
                .any(|line| line.starts_with(&format!("| `{name}` | {direction}")))
        };
        for heard in LISTENS_TO {
            let name = heard.strip_prefix("Other.").unwrap();
            assert!(documented(name, "add-on → agent"), "{name} not documented");
        }
        let agent_source = include_str!("../agent.rs");
        for sent in ["pong", "session", "result", "closing", "warning"] {
            let name = format!("kodi_tickets.{sent}");
            assert!(
                agent_source.contains(&format!("\"{name}\"")),
                "the agent sends {name}"
            );
            assert!(documented(&name, "agent → add-on"), "{name} not documented");
        }
    }

    #[test]
    fn bad_pins_and_unknown_messages() {
        for bad in [json!("12a4"), json!(1234), json!("12345"), json!(null)] {
            let parsed = parse(
                "Other.kodi_tickets.pin",
                &json!({"data": {"request_id": "r", "pin": bad}}),
            );
            assert_eq!(
                parsed,
                Some(FromAddon::Pin {
                    request_id: "r".into(),
                    pin: None
                })
            );
        }
        assert_eq!(
            parse("Other.kodi_tickets.pin", &json!({"data": {"pin": "1234"}})),
            None,
            "no request id"
        );
        assert_eq!(
            parse(
                "Other.something_else",
                &json!({"data": {"request_id": "r"}})
            ),
            None
        );
        assert_eq!(
            parse("Other.kodi_tickets.ping", &json!({"data": "not json"})),
            None
        );
    }
}
