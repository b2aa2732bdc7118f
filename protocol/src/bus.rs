//! Messages between the Kodi add-on and the agent on Kodi's bus (`kodi-addon/PROTOCOL.md`).
//!
//! Both sides send with `JSONRPC.NotifyAll {"sender", "message", "data"}`. Each enum here
//! serialises to exactly the `{"message", "data"}` part of those parameters, and reads from
//! it: the agent hears a message as the notification `Other.<message>` with params
//! `{"sender", "data"}`, and puts `message` back together with `data` to read it.

use serde::{Deserialize, Deserializer, Serialize};

/// The sender name the add-on broadcasts with; the agent takes `pin` and `closed` from no
/// other (anyone on the box may `ping` or ask `time_left`).
pub const ADDON_SENDER: &str = "service.kodi-tickets";
/// The sender name the agent broadcasts with.
pub const AGENT_SENDER: &str = "kodi-tickets-agent";
/// Every message name starts with this.
pub const PREFIX: &str = "kodi_tickets.";

/// A message from the add-on to the agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "message", content = "data")]
pub enum FromAddon {
    /// `kodi_tickets.ping`: is the agent running?
    #[serde(rename = "kodi_tickets.ping")]
    Ping(Request),
    /// `kodi_tickets.pin`: someone typed a PIN on the PIN pad.
    #[serde(rename = "kodi_tickets.pin")]
    Pin(PinTyped),
    /// `kodi_tickets.time_left`: how long is left in this session?
    #[serde(rename = "kodi_tickets.time_left")]
    TimeLeft(Request),
    /// `kodi_tickets.closed`: the add-on closed its dialogs after a `closing`.
    #[serde(rename = "kodi_tickets.closed")]
    Closed(Request),
}

/// A message from the agent to the add-on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "message", content = "data")]
pub enum ToAddon {
    /// `kodi_tickets.pong`: the answer to a ping.
    #[serde(rename = "kodi_tickets.pong")]
    Pong(Pong),
    /// `kodi_tickets.result`: the outcome of a typed PIN.
    #[serde(rename = "kodi_tickets.result")]
    Result(PinResult),
    /// `kodi_tickets.session`: the answer to `time_left`.
    #[serde(rename = "kodi_tickets.session")]
    Session(SessionLeft),
    /// `kodi_tickets.warning`: the session ends in a few minutes.
    #[serde(rename = "kodi_tickets.warning")]
    Warning(Warning),
    /// `kodi_tickets.closing`: close every dialog, the agent is about to switch profile.
    #[serde(rename = "kodi_tickets.closing")]
    Closing(Request),
}

/// A request that carries only its id (`ping`, `time_left`, `closing`, `closed`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// Chosen by the asking side; the answer repeats it.
    pub request_id: String,
}

/// `kodi_tickets.pin`'s data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PinTyped {
    /// Chosen by the add-on; the `result` repeats it.
    pub request_id: String,
    /// What was typed, when it was a string; see [`PinTyped::digits`].
    #[serde(default, deserialize_with = "text_or_none")]
    pub pin: Option<String>,
}

impl PinTyped {
    /// The PIN when it is exactly four ASCII digits, the only shape a ticket's PIN has.
    pub fn digits(&self) -> Option<&str> {
        self.pin
            .as_deref()
            .filter(|p| p.len() == 4 && p.bytes().all(|b| b.is_ascii_digit()))
    }
}

/// `kodi_tickets.pong`'s data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pong {
    /// The ping's id.
    pub request_id: String,
    /// The agent's version.
    pub agent_version: String,
}

/// `kodi_tickets.result`'s data. `profile` and `expires_at` are set exactly when `ok` is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PinResult {
    /// The `pin` message's id.
    pub request_id: String,
    /// Whether the ticket was accepted; the agent is loading its profile then.
    pub ok: bool,
    /// Why not, when `ok` is false.
    pub reason: Option<Refusal>,
    /// The profile the ticket opens.
    pub profile: Option<String>,
    /// When the session ends (RFC 3339, UTC).
    pub expires_at: Option<String>,
}

impl PinResult {
    /// The ticket opens `profile` until `expires_at`.
    pub fn accepted(request_id: String, profile: String, expires_at: String) -> PinResult {
        PinResult {
            request_id,
            ok: true,
            reason: None,
            profile: Some(profile),
            expires_at: Some(expires_at),
        }
    }

    /// The PIN opens nothing, for `reason`.
    pub fn refused(request_id: String, reason: Refusal) -> PinResult {
        PinResult {
            request_id,
            ok: false,
            reason: Some(reason),
            profile: None,
            expires_at: None,
        }
    }
}

/// Why a typed PIN opens nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Refusal {
    /// No unused ticket has it: unknown, used, expired or revoked.
    UnknownPin,
    /// Too many wrong PINs; try later.
    RateLimited,
    /// The agent cannot reach the server.
    ServerUnreachable,
    /// The ticket's profile could not be loaded.
    KodiError,
    /// The message was malformed.
    BadRequest,
}

/// `kodi_tickets.session`'s data: all `None` when no session of the logged-in profile runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionLeft {
    /// The `time_left` message's id.
    pub request_id: String,
    /// The running session's profile.
    pub profile: Option<String>,
    /// When it ends (RFC 3339, UTC).
    pub expires_at: Option<String>,
    /// Seconds until then.
    pub remaining_seconds: Option<i64>,
}

/// `kodi_tickets.warning`'s data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Warning {
    /// The profile whose session ends soon.
    pub profile: String,
    /// Whole minutes left (5 or 1).
    pub minutes_left: i64,
}

/// A JSON string as `Some`, anything else (a number, `null`, an object) as `None`, so that a
/// malformed PIN is answered `bad_request` instead of dropping the whole message.
fn text_or_none<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum TextOrOther {
        Text(String),
        Other(serde::de::IgnoredAny),
    }
    Ok(match TextOrOther::deserialize(deserializer)? {
        TextOrOther::Text(text) => Some(text),
        TextOrOther::Other(_) => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    const DOCUMENT: &str = include_str!("../../kodi-addon/PROTOCOL.md");

    /// The table row of `name` with the direction `direction`, split into its cells.
    fn documented_row(name: &str, direction: &str) -> Vec<String> {
        let start = format!("| `{name}` | {direction} |");
        let line = DOCUMENT
            .lines()
            .find(|line| line.starts_with(&start))
            .unwrap_or_else(|| panic!("{name} ({direction}) is not in PROTOCOL.md"));
        line.split('|').map(|cell| cell.trim().to_owned()).collect()
    }

    /// Checks the serialised `message` against PROTOCOL.md: its name is in the table with
    /// the direction, and its data has exactly the documented fields.
    fn assert_documented(message: Value, direction: &str) {
        let name = message["message"].as_str().expect("a message name");
        assert!(name.starts_with(PREFIX), "{name}");
        let row = documented_row(name, direction);
        // Cells: "", name, direction, data, meaning, "".
        let data_cell = &row[3];
        let documented: Vec<&str> = data_cell
            .trim_start_matches("`{")
            .trim_end_matches("}`")
            .split(", ")
            .map(|field| field.trim_matches('"'))
            .collect();
        let mut sent: Vec<&str> = message["data"]
            .as_object()
            .expect("data is an object")
            .keys()
            .map(String::as_str)
            .collect();
        sent.sort_unstable();
        let mut expected = documented.clone();
        expected.sort_unstable();
        assert_eq!(sent, expected, "{name}'s fields as documented");
    }

    fn request() -> Request {
        Request {
            request_id: "r1".into(),
        }
    }

    #[test]
    fn every_message_is_the_documented_one() {
        let from_addon = [
            FromAddon::Ping(request()),
            FromAddon::Pin(PinTyped {
                request_id: "r1".into(),
                pin: Some("0420".into()),
            }),
            FromAddon::TimeLeft(request()),
            FromAddon::Closed(request()),
        ];
        for message in from_addon {
            assert_documented(serde_json::to_value(&message).unwrap(), "add-on → agent");
        }
        let to_addon = [
            ToAddon::Pong(Pong {
                request_id: "r1".into(),
                agent_version: "0.1.0".into(),
            }),
            ToAddon::Result(PinResult::refused("r1".into(), Refusal::UnknownPin)),
            ToAddon::Session(SessionLeft {
                request_id: "r1".into(),
                profile: None,
                expires_at: None,
                remaining_seconds: None,
            }),
            ToAddon::Warning(Warning {
                profile: "Kids".into(),
                minutes_left: 5,
            }),
            ToAddon::Closing(request()),
        ];
        for message in to_addon {
            assert_documented(serde_json::to_value(&message).unwrap(), "agent → add-on");
        }
    }

    #[test]
    fn every_refusal_is_a_documented_reason() {
        let row = documented_row("kodi_tickets.result", "agent → add-on");
        let meaning = &row[4];
        for reason in [
            Refusal::UnknownPin,
            Refusal::RateLimited,
            Refusal::ServerUnreachable,
            Refusal::KodiError,
            Refusal::BadRequest,
        ] {
            let name = serde_json::to_value(reason).unwrap();
            let name = name.as_str().unwrap();
            assert!(meaning.contains(&format!("`{name}`")), "{name}");
        }
    }

    #[test]
    fn the_senders_are_the_documented_ones() {
        assert!(DOCUMENT.contains(&format!("the add-on sends as `{ADDON_SENDER}`")));
        assert!(DOCUMENT.contains(&format!("the agent as `{AGENT_SENDER}`")));
    }

    #[test]
    fn a_result_serialises_as_the_addon_reads_it() {
        let accepted =
            PinResult::accepted("r".into(), "Kids".into(), "2026-12-04T16:00:00Z".into());
        assert_eq!(
            serde_json::to_value(ToAddon::Result(accepted)).unwrap(),
            json!({"message": "kodi_tickets.result", "data": {
                "request_id": "r", "ok": true, "reason": null,
                "profile": "Kids", "expires_at": "2026-12-04T16:00:00Z"}})
        );
        let refused = PinResult::refused("r".into(), Refusal::RateLimited);
        assert_eq!(
            serde_json::to_value(ToAddon::Result(refused)).unwrap()["data"]["reason"],
            "rate_limited"
        );
    }

    #[test]
    fn a_pin_that_is_not_four_digits_reads_as_none() {
        for bad in [
            json!("12a4"),
            json!(1234),
            json!("12345"),
            json!(null),
            json!("١٢٣٤"),
        ] {
            let message: FromAddon = serde_json::from_value(json!({
                "message": "kodi_tickets.pin", "data": {"request_id": "r", "pin": bad}
            }))
            .unwrap();
            let FromAddon::Pin(typed) = message else {
                panic!("a pin message")
            };
            assert_eq!(typed.digits(), None, "{bad}");
        }
        let message: FromAddon = serde_json::from_value(json!({
            "message": "kodi_tickets.pin", "data": {"request_id": "r", "pin": "0420", "x": 1}
        }))
        .unwrap();
        assert!(matches!(message, FromAddon::Pin(ref p) if p.digits() == Some("0420")));
    }

    #[test]
    fn unknown_messages_and_missing_ids_are_errors() {
        for unreadable in [
            json!({"message": "kodi_tickets.other", "data": {"request_id": "r"}}),
            json!({"message": "kodi_tickets.ping", "data": {}}),
            json!({"message": "kodi_tickets.pin", "data": {"pin": "1234"}}),
        ] {
            assert!(serde_json::from_value::<FromAddon>(unreadable).is_err());
        }
    }
}
