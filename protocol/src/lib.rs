//! Wire types of the Kodi Tickets HTTP API, shared by the server and the agent, and the other
//! shared pieces: the add-on's messages to the agent (`bus`), the Kodi script as both run it
//! (`script`), and times (`times`).
//!
//! Field names keep those of the original Flask version so existing Kodi scripts keep working.

pub mod bus;
pub mod script;
pub mod times;

/// The DNS-SD service type a server announces itself under on the LAN (mDNS), and the agent
/// looks for. Its TXT record holds `scheme` (`http` or `https`) and `version`.
pub const DISCOVERY_SERVICE: &str = "_kodi-tickets._tcp.local.";

/// A profile name as Kodi compares it: case-insensitively, ASCII letters only (its
/// `StringUtils::EqualsNoCase`), so "ÄRGER" and "ärger" are two profiles. The key that maps
/// hold profiles under.
pub fn profile_key(name: &str) -> String {
    name.to_ascii_lowercase()
}

/// Whether two names address the same Kodi profile (see [`profile_key`]).
pub fn same_profile(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

use serde::{Deserialize, Serialize};

/// Body of `POST /api/login`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginRequest {
    /// The ticket's 4-digit PIN, as a string so leading zeros survive.
    pub lock_code: String,
    /// When the login happened (RFC 3339), for a login reported late because the server was
    /// unreachable; the ticket's minutes count from then. Absent: now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub used_at: Option<String>,
}

/// Answer of a successful `POST /api/login`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginResponse {
    /// Always `true`; failures answer with [`ErrorBody`] instead.
    pub success: bool,
    /// A human-readable summary.
    pub message: String,
    /// Name of the Kodi profile the ticket opens.
    pub profile: String,
    /// Length of the ticket in minutes.
    pub length: i64,
    /// When the ticket was used (RFC 3339, UTC).
    pub used_at: String,
    /// When the session ends (RFC 3339, UTC).
    pub expires_at: String,
}

/// State of a ticket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "sqlx", derive(sqlx::Type), sqlx(rename_all = "snake_case"))]
#[serde(rename_all = "snake_case")]
pub enum TicketState {
    /// Issued, not yet used (green).
    Unused,
    /// Used; its minutes are running (red).
    InUse,
    /// Ended: its time is up, or the admin ended it early (grey).
    Expired,
    /// Removed by the admin (grey, labelled *removed*).
    Revoked,
}

impl TicketState {
    /// The name stored in the database and sent on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            TicketState::Unused => "unused",
            TicketState::InUse => "in_use",
            TicketState::Expired => "expired",
            TicketState::Revoked => "revoked",
        }
    }
}

/// A ticket as `GET /api/ticket/<lock_code>` returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ticket {
    /// Database id.
    pub id: i64,
    /// Id of the profile the ticket opens.
    pub profile_id: i64,
    /// Name of that profile.
    pub profile_name: String,
    /// The 4-digit PIN.
    pub lock_code: String,
    /// Length in minutes.
    pub length: i64,
    /// `true` while the ticket can still be used or is running (unused or in use).
    pub is_active: bool,
    /// When the ticket was used (RFC 3339, UTC), if it was.
    pub used_at: Option<String>,
    /// When the ticket was created (RFC 3339, UTC).
    pub created_at: String,
    /// The ticket's state.
    pub state: TicketState,
    /// When the session ends (RFC 3339, UTC), once used.
    pub expires_at: Option<String>,
    /// Seconds left of a running session; `0` once expired, `null` before use.
    pub remaining_seconds: Option<i64>,
}

/// Every error of the API answers with this body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// What went wrong, for a human.
    pub error: String,
}

/// Answer of `GET /healthz`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    /// `"ok"` when the server and its database answer.
    pub status: String,
    /// The server's version.
    pub version: String,
}

/// What the server asks of an agent, sent as server-sent events on `GET /api/agent/events`.
///
/// On every (re)connect the server sends again everything not yet acknowledged and every
/// running session, so an agent that was off or restarted catches up; applying an event
/// twice must be harmless.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AgentEvent {
    /// Make `lock_code` the Kodi lock code of `profile`, then report on delivery `delivery_id`.
    Arm {
        /// The delivery to acknowledge with `POST /api/agent/deliveries/<id>`.
        delivery_id: i64,
        /// The ticket whose PIN this is.
        ticket_id: i64,
        /// The Kodi profile's name.
        profile: String,
        /// The 4-digit PIN.
        lock_code: String,
    },
    /// A ticket of one of this box's profiles is running until `expires_at`; sent again when
    /// the admin ends it early (an `expires_at` in the past) or adds minutes.
    Session {
        /// The running ticket.
        ticket_id: i64,
        /// The Kodi profile's name.
        profile: String,
        /// When the session ends (RFC 3339, UTC).
        expires_at: String,
    },
    /// A ticket of one of this box's profiles was deleted while its PIN was armed, waiting
    /// or running: its PIN must stop opening the profile and its session ends now. Sent
    /// until acknowledged with `POST /api/agent/withdrawals/<ticket_id>`.
    Withdrawn {
        /// The deleted ticket.
        ticket_id: i64,
        /// The Kodi profile's name.
        profile: String,
    },
}

/// How applying a PIN went, as the agent reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryOutcome {
    /// The PIN is the profile's lock code on Kodi now.
    Applied,
    /// A profile session is in use; the agent applies it when the session ends.
    Busy,
    /// The script failed; the admin may retry.
    Failed,
}

/// Body of `POST /api/agent/deliveries/<id>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryReport {
    /// How it went.
    pub outcome: DeliveryOutcome,
    /// The script's exit code, if it ran to the end.
    pub exit_code: Option<i32>,
    /// A one-line summary for the admin (never the PIN).
    pub message: String,
}

/// Body of `POST /api/agent/sessions/<ticket_id>/logged-off`: the TV was seen at its login
/// screen (or in another profile) after the ticket's time was up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoggedOff {
    /// When it was seen (RFC 3339, UTC).
    pub at: String,
}

/// Body of `POST /api/pair`: the code the Devices page shows for a new box.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PairRequest {
    pub code: String,
}

/// Answer of `POST /api/pair`: the box's name and its token (the only time it is sent).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PairResponse {
    pub device: String,
    pub device_token: String,
}

/// Body of `POST /api/agent/status`: what the agent sees of its Kodi.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentStatus {
    /// The agent's version.
    pub agent_version: String,
    /// Whether Kodi's JSON-RPC answers.
    pub kodi_reachable: bool,
    /// Kodi's version, e.g. "20.1", when known.
    pub kodi_version: Option<String>,
    /// Whether the master profile has a lock; without one Kodi enforces no profile PIN.
    pub master_lock: Option<bool>,
    /// The last time the agent had to restart Kodi to end a session, when it had to since
    /// it started. Absent from older agents.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forced_restart: Option<ForcedRestart>,
}

/// A restart of Kodi the agent made because a session's time was up and Kodi's control
/// services (JSON-RPC, EventServer) stayed unreachable, so it could not log the profile off.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForcedRestart {
    /// When (RFC 3339, UTC).
    pub at: String,
    /// The profile whose session it ended.
    pub profile: String,
    /// Whether the stop and start commands succeeded.
    pub ok: bool,
    /// A one-line summary for the admin.
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profile_names_fold_ascii_letters_only() {
        assert!(same_profile("Kids", "kIDS"));
        assert!(!same_profile("Ärger", "ärger"));
        assert_eq!(profile_key("Room 12"), "room 12");
        assert_eq!(profile_key("ÄRGER"), "Ärger");
    }

    #[test]
    fn ticket_state_serializes_as_its_database_name() {
        for state in [
            TicketState::Unused,
            TicketState::InUse,
            TicketState::Expired,
            TicketState::Revoked,
        ] {
            let json = serde_json::to_string(&state).unwrap();
            assert_eq!(json, format!("\"{}\"", state.as_str()));
        }
    }

    #[test]
    fn agent_events_are_tagged_by_type() {
        let event = AgentEvent::Arm {
            delivery_id: 1,
            ticket_id: 2,
            profile: "Kids".into(),
            lock_code: "0420".into(),
        };
        let json = serde_json::to_value(&event).unwrap();
        assert_eq!(json["type"], "arm");
        assert_eq!(json["lock_code"], "0420");
        assert_eq!(serde_json::from_value::<AgentEvent>(json).unwrap(), event);
    }

    #[test]
    fn login_request_keeps_leading_zeros() {
        let req: LoginRequest = serde_json::from_str(r#"{"lock_code":"0042"}"#).unwrap();
        assert_eq!(req.lock_code, "0042");
    }
}
