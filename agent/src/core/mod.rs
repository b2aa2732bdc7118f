//! The agent's decisions, without I/O: which PIN to apply when, which login to report, when
//! to warn, when and how to end a session, what to answer the PIN pad.
//!
//! [`Core::handle`] takes one [`Event`] with the time it happened and hands back the
//! [`Action`]s to carry out, in order; the driver (`crate::driver`) owns the server stream,
//! Kodi, the script, the add-on bus and the disk, and feeds the outcome of each action that
//! has one back as an event. Time is whole Unix seconds, passed in: nothing here reads a
//! clock.
//!
//! By concern: [`native`] (a ticket's PIN as the profile's lock code: queue, apply, re-lock,
//! report the login), [`pin_pad`] (the add-on's PIN pad), [`ending`] (warnings, the end of a
//! session until Kodi is seen logged off, restarting Kodi when it cannot be reached).

mod ending;
mod native;
mod pin_pad;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};

use kodi_tickets_protocol::bus::{FromAddon, Refusal, ToAddon};
pub use kodi_tickets_protocol::times::{parse_rfc3339, rfc3339};
use kodi_tickets_protocol::{AgentEvent, DeliveryReport, ForcedRestart};

use crate::kodi::{Observation, SessionState};
use crate::state::{key, Arm, State};

/// Something that happened, for [`Core::handle`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The server's event stream: a ticket to arm, a running session, or a deleted ticket.
    Server(AgentEvent),
    /// What the Kodi watcher saw (only changes are sent).
    Kodi(Observation),
    /// A request of the add-on's on Kodi's bus (`pin` and `closed` only from its sender).
    Addon(FromAddon),
    /// A [`Action::RunScript`] finished.
    ScriptDone {
        job: ScriptJob,
        report: DeliveryReport,
    },
    /// The server's answer to [`Action::ReportLogin`].
    LoginAnswered {
        ticket_id: i64,
        /// The session's end (Unix seconds) when the server accepted the login.
        answer: Result<i64, ServerFailure>,
    },
    /// The server's answer to [`Action::LookUpTicket`]: the ticket that has the PIN now, if
    /// any, with its end once it runs.
    TicketLookedUp {
        ticket_id: i64,
        found: Option<FoundTicket>,
    },
    /// The server's answer to [`Action::CheckPin`].
    PinChecked {
        request_id: String,
        answer: Result<PinTicket, ServerFailure>,
    },
    /// [`Action::RestartKodi`] finished.
    KodiRestarted { ok: bool, message: String },
    /// The server's answer to [`Action::ReportLogOff`].
    LogOffReported {
        ticket_id: i64,
        answer: Result<(), ServerFailure>,
    },
    /// A clock tick (every second).
    Tick,
}

/// What the driver is asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Write [`Core::state`] to disk.
    SaveState,
    /// Run the Kodi script (it restarts Kodi); answer with [`Event::ScriptDone`].
    RunScript(ScriptJob),
    /// Tell the server how a delivery went.
    ReportDelivery {
        delivery_id: i64,
        report: DeliveryReport,
    },
    /// Tell the server a ticket's PIN opened its profile at `used_at`; answer with
    /// [`Event::LoginAnswered`].
    ReportLogin {
        ticket_id: i64,
        lock_code: String,
        used_at: i64,
    },
    /// Ask the server which ticket has `lock_code`; answer with [`Event::TicketLookedUp`].
    LookUpTicket { ticket_id: i64, lock_code: String },
    /// Use a PIN typed on the PIN pad; answer with [`Event::PinChecked`].
    CheckPin { request_id: String, pin: String },
    /// Broadcast a message to the add-on.
    TellAddon(ToAddon),
    /// Show a toast on the TV.
    Notify(String),
    /// Ask the add-on to close its dialogs and wait until it has (or a second has passed):
    /// Kodi cannot switch profile while a script holds a modal dialog.
    CloseAddonDialogs,
    /// Log `profile` in with the lock-code hash Kodi holds for it.
    LoadProfile { profile: String },
    /// Send Kodi `System.LogOff` to end `profile`'s session (the driver first checks that a
    /// profile other than the master is logged in: anything else would leave JSON-RPC down).
    LogOff { profile: String },
    /// Stop and start Kodi with the configured commands; answer with
    /// [`Event::KodiRestarted`].
    RestartKodi { profile: String },
    /// Send the server this box's status now (it includes [`Core::forced_restart`]).
    SendStatus,
    /// Tell the server a deleted ticket is dealt with.
    AcknowledgeWithdrawal { ticket_id: i64 },
    /// Tell the server Kodi was seen logged off at `at` after the ticket's end; answer with
    /// [`Event::LogOffReported`].
    ReportLogOff { ticket_id: i64, at: i64 },
}

/// What a run of the Kodi script is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScriptJob {
    /// Make a ticket's PIN the profile's lock code.
    Arm(Arm),
    /// Replace a used PIN, or a deleted ticket's, with a random secret (key as [`key`]).
    Relock { profile: String },
}

/// Why the server did not answer a request with what was asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerFailure {
    /// It answered with this 4xx status.
    Refused(u16),
    /// Not reached, 5xx, or the token was refused: try again later.
    Unavailable,
}

/// A ticket as the server's look-up answered it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundTicket {
    pub id: i64,
    /// Unix seconds, once the ticket runs.
    pub expires_at: Option<i64>,
}

/// A ticket the server accepted from the PIN pad.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinTicket {
    /// `None` when the server's look-up of the id failed.
    pub ticket_id: Option<i64>,
    pub profile: String,
    /// Unix seconds.
    pub expires_at: i64,
    /// Whether Kodi's `profiles.xml` has the profile (with the lock-code hash to load it).
    pub known_to_kodi: bool,
}

/// How the box is set up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// A ticket's PIN becomes the profile's lock code.
    Native,
    /// Tickets are typed on the add-on's PIN pad, shown in this unlocked profile.
    PinPad { profile: String },
}

/// The agent's decisions and what it remembers. See the module documentation.
pub struct Core {
    mode: Mode,
    agent_version: String,
    /// What survives restarts.
    state: State,
    /// What Kodi showed last; `None` while it does not answer.
    kodi: Option<SessionState>,
    /// The last session Kodi showed, kept while it does not answer.
    last_seen: Option<SessionState>,
    /// Since when Kodi has not answered.
    unreachable_since: Option<i64>,
    /// The profile whose session the add-on last spoke from: it relays warnings there, so
    /// the agent does not show them a second time.
    addon_in: Option<String>,
    /// Profiles tickets were sent for since the start (keys as [`key`]).
    ticket_profiles: BTreeSet<String>,
    /// The script run under way: nothing else may restart Kodi meanwhile.
    script_running: bool,
    /// Logins (by ticket) whose report or look-up is under way.
    reporting: BTreeSet<i64>,
    /// Log-offs (by ticket) whose report is under way.
    reporting_log_offs: BTreeSet<i64>,
    /// Profiles being logged off (key as [`key`]): when to send `System.LogOff` again.
    log_offs: BTreeMap<String, ending::Retry>,
    restarts: ending::Restarts,
    /// When the PIN-pad profile was last asked to load.
    pin_pad_loaded_at: Option<i64>,
}

impl Core {
    /// A core that goes on from `state` (as saved by the last run).
    pub fn new(mode: Mode, agent_version: &str, state: State) -> Core {
        Core {
            mode,
            agent_version: agent_version.to_owned(),
            state,
            kodi: None,
            last_seen: None,
            unreachable_since: None,
            addon_in: None,
            ticket_profiles: BTreeSet::new(),
            script_running: false,
            reporting: BTreeSet::new(),
            reporting_log_offs: BTreeSet::new(),
            log_offs: BTreeMap::new(),
            restarts: ending::Restarts::default(),
            pin_pad_loaded_at: None,
        }
    }

    /// What must survive a restart ([`Action::SaveState`] writes it).
    pub fn state(&self) -> &State {
        &self.state
    }

    /// The last restart of Kodi made to end a session, for the server's Devices page.
    pub fn forced_restart(&self) -> Option<&ForcedRestart> {
        self.restarts.last.as_ref()
    }

    /// Takes `event`, which happened at `now` (Unix seconds), and returns what to do.
    pub fn handle(&mut self, now: i64, event: Event) -> Vec<Action> {
        let mut out = Vec::new();
        match event {
            Event::Server(AgentEvent::Arm {
                delivery_id,
                ticket_id,
                profile,
                lock_code,
            }) => {
                let arm = Arm {
                    delivery_id,
                    ticket_id,
                    profile,
                    lock_code,
                };
                self.on_arm(arm, &mut out);
            }
            Event::Server(AgentEvent::Session {
                ticket_id,
                profile,
                expires_at,
            }) => self.on_session(now, ticket_id, profile, &expires_at, &mut out),
            Event::Server(AgentEvent::Withdrawn { ticket_id, profile }) => {
                self.on_withdrawn(now, ticket_id, &profile, &mut out)
            }
            Event::Kodi(observation) => self.on_observation(now, observation, &mut out),
            Event::Addon(request) => self.on_addon(now, request, &mut out),
            Event::ScriptDone { job, report } => self.on_script_done(job, report, &mut out),
            Event::LoginAnswered { ticket_id, answer } => {
                self.on_login_answered(now, ticket_id, answer, &mut out)
            }
            Event::TicketLookedUp { ticket_id, found } => {
                self.on_ticket_looked_up(now, ticket_id, found, &mut out)
            }
            Event::PinChecked { request_id, answer } => {
                self.on_pin_checked(request_id, answer, &mut out)
            }
            Event::KodiRestarted { ok, message } => {
                self.on_kodi_restarted(now, ok, message, &mut out)
            }
            Event::LogOffReported { ticket_id, answer } => {
                self.on_log_off_reported(ticket_id, answer, &mut out)
            }
            Event::Tick => self.on_tick(now, &mut out),
        }
        out
    }

    fn on_observation(&mut self, now: i64, observation: Observation, out: &mut Vec<Action>) {
        match observation {
            Observation::Unreachable => {
                self.kodi = None;
                self.unreachable_since.get_or_insert(now);
            }
            Observation::Session(session) => {
                tracing::info!(logged_on = session.logged_on, profile = %session.profile, "Kodi session");
                let was = self.logged_on_profile();
                self.kodi = Some(session.clone());
                self.last_seen = Some(session);
                self.unreachable_since = None;
                self.restarts.kodi_seen();
                let is = self.logged_on_profile();
                if let Some(profile) = was.filter(|p| Some(p) != is.as_ref()) {
                    self.session_left(&profile, out);
                }
                if let Some(profile) = is {
                    self.profile_opened(now, &profile, out);
                }
                self.end_sessions(now, out);
                self.arm_waiting(out);
            }
        }
    }

    fn on_tick(&mut self, now: i64, out: &mut Vec<Action>) {
        self.report_logins(out);
        self.report_log_offs(out);
        self.warn_sessions(now, out);
        self.end_sessions(now, out);
        self.arm_waiting(out);
        self.back_to_pin_pad(now, out);
    }

    /// The profile logged in on the TV (key as [`key`]); `None` at the login screen or while
    /// Kodi does not answer.
    fn logged_on_profile(&self) -> Option<String> {
        self.kodi
            .as_ref()
            .filter(|s| s.logged_on)
            .map(|s| key(&s.profile))
    }

    /// Kodi was seen at its login screen just now.
    fn at_login_screen(&self) -> bool {
        self.kodi.as_ref().is_some_and(|s| !s.logged_on)
    }

    fn pin_pad_profile(&self) -> Option<&str> {
        match &self.mode {
            Mode::Native => None,
            Mode::PinPad { profile } => Some(profile),
        }
    }

    /// Whether tickets decide who may use `profile` (key as [`key`]): one was sent for it,
    /// or the saved state still holds one of its tickets or its re-lock.
    fn ticket_controlled(&self, profile: &str) -> bool {
        let state = &self.state;
        self.ticket_profiles.contains(profile)
            || state.armed.contains_key(profile)
            || state.relock.contains(profile)
            || state.queued.iter().any(|a| key(&a.profile) == profile)
            || state.sessions.values().any(|s| key(&s.profile) == profile)
            || state.unreported.iter().any(|u| key(&u.profile) == profile)
    }

    /// Whether a ticket's minutes are running in `profile` (key as [`key`]) at `now`: a
    /// session not yet over, or a login the server has not answered yet.
    fn ticket_running(&self, now: i64, profile: &str) -> bool {
        self.state
            .sessions
            .values()
            .any(|s| key(&s.profile) == profile && s.expires_at > now)
            || self
                .state
                .unreported
                .iter()
                .any(|u| key(&u.profile) == profile)
    }
}

/// The PIN pad's answer to a PIN the server did not accept.
fn refusal(failure: &ServerFailure) -> Refusal {
    match failure {
        ServerFailure::Refused(429) => Refusal::RateLimited,
        ServerFailure::Refused(_) => Refusal::UnknownPin,
        ServerFailure::Unavailable => Refusal::ServerUnreachable,
    }
}
