//! Running sessions: their ends as the server sends them, the warnings before the end, and
//! the end itself, which holds until Kodi is *seen* without the profile logged in.
//!
//! NOTE: `System.LogOff` goes over UDP and may be lost; a child may switch Kodi's control
//! services off inside the session, or type the old PIN again right after the log-off. So a
//! session whose time is up stays until the watcher shows Kodi at its login screen (or in
//! another profile), `System.LogOff` is sent again with back-off meanwhile, any
//! ticket-controlled profile logged in without a running ticket is logged off too, and a
//! Kodi that stays unreachable past a short grace is restarted.

use kodi_tickets_protocol::bus::{ToAddon, Warning};
use kodi_tickets_protocol::ForcedRestart;

use super::{parse_rfc3339, rfc3339, Action, Core, ServerFailure};
use crate::state::{key, Session};

/// Minutes before the end at which the TV shows how long is left.
const WARN_AT_MINUTES: [i64; 2] = [5, 1];
/// Seconds after the first `System.LogOff` before it is sent again; doubles up to the max.
/// Kodi takes ~1.2 s to log off and the watcher a few more to see it.
const LOG_OFF_RETRY_FIRST: i64 = 5;
const LOG_OFF_RETRY_MAX: i64 = 30;
/// Seconds Kodi may stay unreachable when it must end a session before it is restarted.
/// The watcher reports Kodi unreachable only after ~3 s, so a profile switch never counts.
pub(super) const RESTART_GRACE: i64 = 20;
/// Seconds at least between two restarts, whatever they were for.
const RESTART_AGAIN_AFTER: i64 = 120;
/// Restarts after which, with Kodi never seen in between, the agent stops restarting it
/// (Kodi does not start on this box, or was stopped on purpose).
const MAX_RESTARTS_UNSEEN: u32 = 3;

/// When to send `System.LogOff` again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Retry {
    next_at: i64,
    delay: i64,
}

impl Retry {
    /// Due at `now`, also when the clock went back further than any retry delay.
    fn due(&self, now: i64) -> bool {
        now >= self.next_at || self.next_at - now > LOG_OFF_RETRY_MAX
    }
}

/// Restarts of Kodi made to end sessions.
#[derive(Debug, Default)]
pub(super) struct Restarts {
    /// The profile of the restart under way.
    running: Option<String>,
    last_attempt_at: Option<i64>,
    /// Restarts since Kodi was last seen.
    unseen: u32,
    /// The last one finished, for the server.
    pub(super) last: Option<ForcedRestart>,
}

impl Restarts {
    pub(super) fn kodi_seen(&mut self) {
        self.unseen = 0;
    }

    fn allowed(&self, now: i64) -> bool {
        self.running.is_none()
            && self.unseen < MAX_RESTARTS_UNSEEN
            && self
                .last_attempt_at
                .is_none_or(|at| now - at >= RESTART_AGAIN_AFTER || at > now)
    }
}

impl Core {
    pub(super) fn on_session(
        &mut self,
        now: i64,
        ticket_id: i64,
        profile: String,
        expires_at: &str,
        out: &mut Vec<Action>,
    ) {
        let Some(expires_at) = parse_rfc3339(expires_at) else {
            tracing::warn!("session {ticket_id}: unreadable expiry {expires_at:?}");
            return;
        };
        self.ticket_profiles.insert(key(&profile));
        // NOTE: an end for a session this agent does not hold (it ended it already) is
        // stale: acting on it would re-lock the profile over the next ticket's PIN or log
        // off whoever uses the profile now.
        if expires_at <= now && !self.state.sessions.contains_key(&ticket_id) {
            return;
        }
        // A session the server knows is running cannot be armed or waiting any more.
        self.state.queued.retain(|a| a.ticket_id != ticket_id);
        if self
            .state
            .armed
            .get(&key(&profile))
            .is_some_and(|a| a.ticket_id == ticket_id)
        {
            self.state.armed.remove(&key(&profile));
        }
        let session = self
            .state
            .sessions
            .entry(ticket_id)
            .or_insert_with(|| Session::new(profile, expires_at));
        if session.expires_at != expires_at {
            session.expires_at = expires_at;
            // More minutes: warn again when the new end comes near.
            session.warned.retain(|m| expires_at - now <= m * 60);
        }
        out.push(Action::SaveState);
        self.end_sessions(now, out);
    }

    /// A ticket deleted on the server: a waiting one is dropped, an armed one's PIN is
    /// replaced (by the next waiting ticket's, or a secret), a running one ends now.
    pub(super) fn on_withdrawn(
        &mut self,
        now: i64,
        ticket_id: i64,
        profile: &str,
        out: &mut Vec<Action>,
    ) {
        let profile = key(profile);
        self.ticket_profiles.insert(profile.clone());
        self.state.queued.retain(|a| a.ticket_id != ticket_id);
        if self
            .state
            .armed
            .get(&profile)
            .is_some_and(|a| a.ticket_id == ticket_id)
        {
            self.state.armed.remove(&profile);
            self.state.relock.insert(profile);
        }
        if let Some(session) = self.state.sessions.get_mut(&ticket_id) {
            session.expires_at = session.expires_at.min(now);
        }
        out.push(Action::SaveState);
        out.push(Action::AcknowledgeWithdrawal { ticket_id });
        self.end_sessions(now, out);
        self.arm_waiting(out);
    }

    /// Shows "N minutes left" once per step as the logged-in profile's session nears its end.
    pub(super) fn warn_sessions(&mut self, now: i64, out: &mut Vec<Action>) {
        let Some(current) = self.logged_on_profile() else {
            return;
        };
        let mut due = Vec::new();
        for session in self.state.sessions.values_mut() {
            if key(&session.profile) != current {
                continue;
            }
            let left = session.expires_at - now;
            for minutes in WARN_AT_MINUTES {
                if left > 0 && left <= minutes * 60 && session.warned.insert(minutes) {
                    due.push(minutes);
                }
            }
        }
        let Some(minutes) = due.into_iter().min() else {
            return;
        };
        out.push(Action::SaveState);
        if self.addon_in.as_deref() != Some(current.as_str()) {
            out.push(Action::Notify(if minutes == 1 {
                "1 minute left".to_owned()
            } else {
                format!("{minutes} minutes left")
            }));
        }
        let profile = self
            .kodi
            .as_ref()
            .map(|s| s.profile.clone())
            .unwrap_or_default();
        out.push(Action::TellAddon(ToAddon::Warning(Warning {
            profile,
            minutes_left: minutes,
        })));
    }

    /// Ends what must end: forgets the sessions whose time is up once Kodi shows their
    /// profile logged off (and marks it for a new lock code), logs off a profile that must
    /// not stay logged in, and restarts a Kodi that cannot be reached to do so.
    pub(super) fn end_sessions(&mut self, now: i64, out: &mut Vec<Action>) {
        if self.unreachable_since.is_some_and(|since| since > now) {
            // The clock went back: count the outage from now.
            self.unreachable_since = Some(now);
        }
        let current = self.logged_on_profile();
        if self.kodi.is_some() {
            let ended: Vec<i64> = self
                .state
                .sessions
                .iter()
                .filter(|(_, s)| s.expires_at <= now && Some(key(&s.profile)) != current)
                .map(|(id, _)| *id)
                .collect();
            for ticket_id in ended {
                let Some(session) = self.state.sessions.remove(&ticket_id) else {
                    continue;
                };
                tracing::info!(ticket = ticket_id, profile = %session.profile, "session ended: Kodi shows the profile logged off");
                if !session.via_pin_pad {
                    self.state.relock.insert(key(&session.profile));
                }
                self.state.logged_off.insert(ticket_id, now);
                out.push(Action::SaveState);
            }
            self.report_log_offs(out);
            // Kodi answers: whatever is not logged in any more needs no log-off.
            self.log_offs
                .retain(|profile, _| Some(profile) == current.as_ref());
        }
        if let Some(profile) = current {
            if self.must_leave(now, &profile) {
                self.log_off(now, &profile, out);
            } else {
                self.log_offs.remove(&profile);
            }
        }
        self.restart_if_unreachable(now, out);
    }

    /// Reports the ends Kodi showed that the server does not have yet (again on every tick
    /// until it has).
    pub(super) fn report_log_offs(&mut self, out: &mut Vec<Action>) {
        for (&ticket_id, &at) in &self.state.logged_off {
            if self.reporting_log_offs.insert(ticket_id) {
                out.push(Action::ReportLogOff { ticket_id, at });
            }
        }
    }

    pub(super) fn on_log_off_reported(
        &mut self,
        ticket_id: i64,
        answer: Result<(), ServerFailure>,
        out: &mut Vec<Action>,
    ) {
        self.reporting_log_offs.remove(&ticket_id);
        match answer {
            // NOTE: a 4xx will not get better (the ticket was deleted, say): dropped.
            Ok(()) | Err(ServerFailure::Refused(_)) => {
                self.state.logged_off.remove(&ticket_id);
                out.push(Action::SaveState);
            }
            Err(ServerFailure::Unavailable) => {
                tracing::warn!("log-off of ticket {ticket_id} not reported yet");
            }
        }
    }

    /// Whether `profile` (key) must not stay logged in: tickets decide who uses it, and no
    /// ticket's minutes run in it.
    fn must_leave(&self, now: i64, profile: &str) -> bool {
        self.pin_pad_profile().map(key).as_deref() != Some(profile)
            && self.ticket_controlled(profile)
            && !self.ticket_running(now, profile)
    }

    /// Sends `System.LogOff` for `profile` (key), again with back-off until Kodi is seen
    /// without it.
    fn log_off(&mut self, now: i64, profile: &str, out: &mut Vec<Action>) {
        let retry = self.log_offs.entry(profile.to_owned()).or_insert(Retry {
            next_at: now,
            delay: LOG_OFF_RETRY_FIRST,
        });
        if !retry.due(now) {
            return;
        }
        retry.next_at = now + retry.delay;
        retry.delay = (retry.delay * 2).min(LOG_OFF_RETRY_MAX);
        let name = self
            .kodi
            .as_ref()
            .map_or_else(|| profile.to_owned(), |s| s.profile.clone());
        let time_up = self
            .state
            .sessions
            .values()
            .any(|s| key(&s.profile) == profile && s.expires_at <= now);
        if time_up {
            tracing::info!(profile = %name, "time is up: logging off");
        } else {
            tracing::warn!(profile = %name, "no ticket runs in the logged-in profile: logging off");
        }
        out.push(Action::CloseAddonDialogs);
        out.push(Action::LogOff { profile: name });
    }

    /// Restarts Kodi when it has not answered for [`RESTART_GRACE`] seconds while a session
    /// must end: a session's time is up, the profile last seen must leave, or a used PIN
    /// waits to be replaced (the script needs Kodi at its login screen).
    fn restart_if_unreachable(&mut self, now: i64, out: &mut Vec<Action>) {
        let Some(since) = self.unreachable_since.filter(|_| self.kodi.is_none()) else {
            return;
        };
        let last_seen = self
            .last_seen
            .as_ref()
            .filter(|s| s.logged_on)
            .map(|s| (key(&s.profile), s.profile.clone()));
        let time_up = self
            .state
            .sessions
            .values()
            .filter(|s| s.expires_at <= now)
            .min_by_key(|s| s.expires_at)
            .map(|s| (s.expires_at.max(since), s.profile.clone()));
        let must_leave = || {
            last_seen
                .clone()
                .filter(|(profile, _)| self.must_leave(now, profile))
                .map(|(_, name)| (since, name))
        };
        // NOTE: only once Kodi was seen since the start: an agent that starts before Kodi
        // (at boot) must not restart it for a re-lock left over from the last run.
        let relock = || {
            let someone_entitled = last_seen
                .as_ref()
                .is_some_and(|(profile, _)| self.ticket_running(now, profile));
            self.state
                .relock
                .iter()
                .next()
                .filter(|_| self.last_seen.is_some() && !someone_entitled)
                .map(|profile| (since, profile.clone()))
        };
        let Some((from, profile)) = time_up.or_else(must_leave).or_else(relock) else {
            return;
        };
        if now - from < RESTART_GRACE || !self.restarts.allowed(now) {
            return;
        }
        tracing::warn!(%profile, "Kodi's control services do not answer: restarting Kodi to end the session");
        self.restarts.running = Some(profile.clone());
        self.restarts.last_attempt_at = Some(now);
        self.restarts.unseen += 1;
        out.push(Action::RestartKodi { profile });
    }

    pub(super) fn on_kodi_restarted(
        &mut self,
        now: i64,
        ok: bool,
        message: String,
        out: &mut Vec<Action>,
    ) {
        let profile = self.restarts.running.take().unwrap_or_default();
        if ok {
            tracing::info!(%profile, "Kodi restarted to end the session");
        } else {
            tracing::error!(%profile, "restarting Kodi failed: {message}");
        }
        self.restarts.last = Some(ForcedRestart {
            at: rfc3339(now),
            profile,
            ok,
            message,
        });
        out.push(Action::SendStatus);
    }
}
