//! Talking to the Kodi on this box: its WebSocket JSON-RPC (`ws://{addr}/jsonrpc`) for
//! reading who is logged in and for logging a profile in, and its EventServer (UDP) for
//! ending a session, which no JSON-RPC method can do; both to cut a second of waiting out of
//! each profile switch ([`hurry_switch`]).
//!
//! NOTE: Kodi sends no notification for a login, a log-off or a profile switch, and it drops
//! every JSON-RPC client on each switch. [`watch`] therefore reconnects with backoff and
//! re-reads the session after every reconnect, on every `profiles.xml` rewrite and on a slow
//! poll.

pub mod bus;
mod client;
mod eventserver;
mod hurry;
mod listen;
mod rpc;
mod watch;

#[cfg(test)]
mod fake;

pub use client::Kodi;
pub use eventserver::log_off;
pub use hurry::hurry_switch;
pub use listen::{listen, Heard};
pub use watch::{watch, Observation};

/// What Kodi's screen is doing: who is logged in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionState {
    /// `false` at the login screen (nobody logged in), also while it asks for a profile's
    /// lock code ([`Kodi::session`] says how that is told).
    pub logged_on: bool,
    /// The current profile's name. At the login screen Kodi has the master profile loaded,
    /// so this reads "Master user" (or whatever the master profile is called) there.
    pub profile: String,
}

/// Everything that can go wrong talking to Kodi.
#[derive(Debug, thiserror::Error)]
pub enum KodiError {
    /// The WebSocket connection could not be opened.
    #[error("cannot connect to Kodi JSON-RPC at {url}: {source}")]
    Connect {
        url: String,
        #[source]
        source: jsonrpsee::core::ClientError,
    },
    /// Kodi answered a call with a JSON-RPC error. Only code and message are kept: the
    /// error's `data` is Kodi's parameter-validation trace and is not needed to act on it.
    #[error("Kodi refused {method}: {message} ({code})")]
    Rpc {
        method: &'static str,
        code: i32,
        message: String,
    },
    /// The call did not get an answer: the connection dropped, timed out or was closed.
    #[error("Kodi JSON-RPC {method} failed: {source}")]
    Transport {
        method: &'static str,
        #[source]
        source: jsonrpsee::core::ClientError,
    },
    /// Kodi answered, but not in the shape Kodi 20 answers.
    #[error("unexpected answer from Kodi to {method}: {detail}")]
    BadAnswer {
        method: &'static str,
        detail: String,
    },
    /// `load_profile_md5` was asked to load the profile that is already loaded and logged
    /// on: Kodi would stop its network services and never restart them.
    #[error("profile {profile:?} is already loaded and logged on; not loading it again")]
    AlreadyLoaded { profile: String },
    /// A log-off now would leave Kodi's JSON-RPC down ([`Kodi::check_log_off`]).
    #[error("not logging off: {reason}")]
    LogOffRefused { reason: &'static str },
    /// Sending to the EventServer failed.
    #[error("Kodi EventServer at {addr}: {source}")]
    Io {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
}
