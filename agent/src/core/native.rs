//! Lock-code mode: a ticket's PIN becomes its profile's lock code (the script restarts Kodi to
//! set it), the watcher sees the profile unlocked, and the login is reported to the server.

use kodi_tickets_protocol::{DeliveryOutcome, DeliveryReport};

use super::{Action, Core, FoundTicket, ScriptJob, ServerFailure};
use crate::state::{key, Arm, Session, UnreportedLogin};

impl Core {
    pub(super) fn on_arm(&mut self, arm: Arm, out: &mut Vec<Action>) {
        let profile = key(&arm.profile);
        self.ticket_profiles.insert(profile.clone());
        if self.state.armed.get(&profile).map(|a| a.ticket_id) == Some(arm.ticket_id) {
            // Sent again after a reconnect: already done.
            out.push(report(&arm, applied()));
            return;
        }
        if self.pin_pad_profile().is_some() {
            // The PIN pad checks PINs with the server: nothing to apply to Kodi.
            let report_ = DeliveryReport {
                outcome: DeliveryOutcome::Applied,
                exit_code: None,
                message: "PIN pad mode: the PIN opens the profile from the TV's PIN pad".into(),
            };
            out.push(report(&arm, report_));
            return;
        }
        if self.state.enqueue(arm.clone()) {
            out.push(Action::SaveState);
        }
        let applying = self.arm_waiting(out);
        if applying.as_ref().map(|a| a.ticket_id) == Some(arm.ticket_id) {
            return;
        }
        if let Some(reason) = self.why_waiting(&arm) {
            let waiting = DeliveryReport {
                outcome: DeliveryOutcome::Busy,
                exit_code: None,
                message: reason,
            };
            out.push(report(&arm, waiting));
        }
    }

    /// With nobody logged in and no script running, starts applying the next waiting ticket
    /// or, when none can go, the next re-lock. Returns the ticket it started applying.
    ///
    /// NOTE: the script restarts Kodi, so it runs only when Kodi was seen at its login
    /// screen. A Kodi that does not answer may be frozen with someone in a profile, or
    /// restarting between profiles: wait until it answers rather than restart it blindly.
    pub(super) fn arm_waiting(&mut self, out: &mut Vec<Action>) -> Option<Arm> {
        if self.script_running || !self.at_login_screen() {
            return None;
        }
        let next = self
            .state
            .queued
            .iter()
            .find(|arm| !self.profile_taken(&key(&arm.profile)))
            .cloned();
        if let Some(arm) = next {
            self.script_running = true;
            out.push(Action::RunScript(ScriptJob::Arm(arm.clone())));
            return Some(arm);
        }
        if let Some(profile) = self.state.relock.iter().next().cloned() {
            self.script_running = true;
            out.push(Action::RunScript(ScriptJob::Relock { profile }));
        }
        None
    }

    /// Whether `profile` (key) holds a ticket that must not be overwritten: an armed PIN
    /// not yet used, a running session or an unreported login.
    fn profile_taken(&self, profile: &str) -> bool {
        self.state.armed.contains_key(profile)
            || self
                .state
                .sessions
                .values()
                .any(|s| key(&s.profile) == profile)
            || self
                .state
                .unreported
                .iter()
                .any(|u| key(&u.profile) == profile)
    }

    pub(super) fn on_script_done(
        &mut self,
        job: ScriptJob,
        report_: DeliveryReport,
        out: &mut Vec<Action>,
    ) {
        self.script_running = false;
        let outcome = report_.outcome;
        match job {
            ScriptJob::Arm(arm) => {
                let profile = key(&arm.profile);
                match outcome {
                    DeliveryOutcome::Applied => {
                        self.state.queued.retain(|a| a.ticket_id != arm.ticket_id);
                        self.state.relock.remove(&profile);
                        self.state.armed.insert(profile, arm.clone());
                    }
                    // Someone logged in meanwhile: the next tick tries again.
                    DeliveryOutcome::Busy => {}
                    // The admin's Retry sends it again.
                    DeliveryOutcome::Failed => {
                        self.state.queued.retain(|a| a.ticket_id != arm.ticket_id)
                    }
                }
                out.push(Action::SaveState);
                out.push(report(&arm, report_));
            }
            ScriptJob::Relock { profile } => {
                match outcome {
                    DeliveryOutcome::Applied => {}
                    DeliveryOutcome::Failed => {
                        tracing::error!("cannot re-lock {profile}: {}", report_.message)
                    }
                    DeliveryOutcome::Busy => return,
                }
                self.state.relock.remove(&profile);
                out.push(Action::SaveState);
            }
        }
        if outcome != DeliveryOutcome::Busy {
            self.arm_waiting(out);
        }
    }

    /// Why a ticket still waits in the queue, for the admin; `None` once it left the queue.
    fn why_waiting(&self, arm: &Arm) -> Option<String> {
        if !self
            .state
            .queued
            .iter()
            .any(|a| a.ticket_id == arm.ticket_id)
        {
            return None;
        }
        let profile = key(&arm.profile);
        Some(if self.state.armed.contains_key(&profile) {
            "waiting its turn: another ticket of this profile is armed on the TV".into()
        } else if let Some(current) = self.kodi.as_ref().filter(|s| s.logged_on) {
            format!(
                "waiting: “{}” is in use on the TV (applying restarts Kodi)",
                current.profile
            )
        } else {
            "waiting: this profile's session has not ended yet".into()
        })
    }

    /// Someone unlocked `profile` (key): if its lock code was a ticket's PIN, that ticket
    /// is used from `now` on.
    pub(super) fn profile_opened(&mut self, now: i64, profile: &str, out: &mut Vec<Action>) {
        let Some(arm) = self.state.armed.remove(profile) else {
            return;
        };
        tracing::info!(ticket = arm.ticket_id, profile = %arm.profile, "ticket PIN used on the TV");
        self.state.unreported.push(UnreportedLogin {
            ticket_id: arm.ticket_id,
            profile: arm.profile,
            lock_code: arm.lock_code,
            used_at: now,
        });
        out.push(Action::SaveState);
        self.report_logins(out);
    }

    /// Nobody is in `profile` (key) any more: its PIN, used, must not open it again.
    pub(super) fn session_left(&mut self, profile: &str, out: &mut Vec<Action>) {
        let running = self
            .state
            .sessions
            .values()
            .any(|s| key(&s.profile) == profile && !s.via_pin_pad)
            || self
                .state
                .unreported
                .iter()
                .any(|u| key(&u.profile) == profile);
        if running && self.state.relock.insert(profile.to_owned()) {
            out.push(Action::SaveState);
        }
    }

    /// Reports the logins seen on the TV that the server has not answered yet (retried on
    /// every tick until it has).
    pub(super) fn report_logins(&mut self, out: &mut Vec<Action>) {
        for login in &self.state.unreported {
            if self.reporting.insert(login.ticket_id) {
                out.push(Action::ReportLogin {
                    ticket_id: login.ticket_id,
                    lock_code: login.lock_code.clone(),
                    used_at: login.used_at,
                });
            }
        }
    }

    pub(super) fn on_login_answered(
        &mut self,
        now: i64,
        ticket_id: i64,
        answer: Result<i64, ServerFailure>,
        out: &mut Vec<Action>,
    ) {
        match answer {
            Ok(expires_at) => {
                self.reporting.remove(&ticket_id);
                if let Some(login) = self.take_unreported(ticket_id) {
                    self.state
                        .sessions
                        .insert(ticket_id, Session::new(login.profile, expires_at));
                    out.push(Action::SaveState);
                    self.end_sessions(now, out);
                }
            }
            // NOTE: the server does not know the PIN as unused: it was reported before (then
            // it runs), or the ticket was deleted (then nobody may stay in the profile on it).
            Err(ServerFailure::Refused(404)) => {
                if let Some(login) = self
                    .state
                    .unreported
                    .iter()
                    .find(|u| u.ticket_id == ticket_id)
                {
                    out.push(Action::LookUpTicket {
                        ticket_id,
                        lock_code: login.lock_code.clone(),
                    });
                }
            }
            Err(failure) => {
                tracing::warn!("login of ticket {ticket_id} not reported yet: {failure:?}");
                self.reporting.remove(&ticket_id);
            }
        }
    }

    pub(super) fn on_ticket_looked_up(
        &mut self,
        now: i64,
        ticket_id: i64,
        found: Option<FoundTicket>,
        out: &mut Vec<Action>,
    ) {
        self.reporting.remove(&ticket_id);
        let Some(login) = self.take_unreported(ticket_id) else {
            return;
        };
        let running = found
            .filter(|t| t.id == ticket_id)
            .and_then(|t| t.expires_at);
        let expires_at = running.unwrap_or(now);
        tracing::warn!(
            ticket = ticket_id,
            "server refused the login; session ends at {}",
            super::rfc3339(expires_at)
        );
        self.state
            .sessions
            .insert(ticket_id, Session::new(login.profile, expires_at));
        out.push(Action::SaveState);
        self.end_sessions(now, out);
    }

    fn take_unreported(&mut self, ticket_id: i64) -> Option<UnreportedLogin> {
        let index = self
            .state
            .unreported
            .iter()
            .position(|u| u.ticket_id == ticket_id)?;
        Some(self.state.unreported.remove(index))
    }
}

fn report(arm: &Arm, report: DeliveryReport) -> Action {
    Action::ReportDelivery {
        delivery_id: arm.delivery_id,
        report,
    }
}

fn applied() -> DeliveryReport {
    DeliveryReport {
        outcome: DeliveryOutcome::Applied,
        exit_code: Some(0),
        message: "applied to Kodi".into(),
    }
}
