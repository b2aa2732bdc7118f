//! The add-on's requests: ping, time left, and PIN-pad mode, where a ticket's PIN is typed
//! on the add-on's PIN pad, checked with the server, and opens its profile with the
//! lock-code hash Kodi holds (the PIN never becomes a lock code).

use kodi_tickets_protocol::bus::{FromAddon, PinResult, Pong, Refusal, SessionLeft, ToAddon};

use super::{refusal, rfc3339, Action, Core, PinTicket, ServerFailure};
use crate::state::{key, Session};

/// How long a switch to the PIN-pad profile may take before it is asked for again.
const PIN_PAD_LOAD_RETRY: i64 = 10;

impl Core {
    pub(super) fn on_addon(&mut self, now: i64, request: FromAddon, out: &mut Vec<Action>) {
        self.addon_in = self.logged_on_profile();
        let answer = match request {
            FromAddon::Ping(request) => ToAddon::Pong(Pong {
                request_id: request.request_id,
                agent_version: self.agent_version.clone(),
            }),
            FromAddon::TimeLeft(request) => {
                let current = self.logged_on_profile();
                let session = self
                    .state
                    .sessions
                    .values()
                    .find(|s| Some(key(&s.profile)) == current && s.expires_at > now);
                ToAddon::Session(SessionLeft {
                    request_id: request.request_id,
                    profile: session.map(|s| s.profile.clone()),
                    expires_at: session.map(|s| rfc3339(s.expires_at)),
                    remaining_seconds: session.map(|s| s.expires_at - now),
                })
            }
            FromAddon::Pin(typed) => match typed.digits() {
                Some(pin) => {
                    out.push(Action::CheckPin {
                        pin: pin.to_owned(),
                        request_id: typed.request_id,
                    });
                    return;
                }
                None => ToAddon::Result(PinResult::refused(typed.request_id, Refusal::BadRequest)),
            },
            // The driver waits for these after a `closing`; a late one means nothing.
            FromAddon::Closed(_) => return,
        };
        out.push(Action::TellAddon(answer));
    }

    pub(super) fn on_pin_checked(
        &mut self,
        request_id: String,
        answer: Result<PinTicket, ServerFailure>,
        out: &mut Vec<Action>,
    ) {
        let ticket = match answer {
            Ok(ticket) => ticket,
            Err(failure) => {
                let refused = PinResult::refused(request_id, refusal(&failure));
                out.push(Action::TellAddon(ToAddon::Result(refused)));
                return;
            }
        };
        self.ticket_profiles.insert(key(&ticket.profile));
        let mut session = Session::new(ticket.profile.clone(), ticket.expires_at);
        session.via_pin_pad = true;
        // NOTE: -1 keeps a session whose id the server did not tell: it still ends on time.
        self.state
            .sessions
            .insert(ticket.ticket_id.unwrap_or(-1), session);
        out.push(Action::SaveState);
        if !ticket.known_to_kodi {
            tracing::error!("profile {} is not in Kodi's profiles.xml", ticket.profile);
            let refused = PinResult::refused(request_id, Refusal::KodiError);
            out.push(Action::TellAddon(ToAddon::Result(refused)));
            return;
        }
        // The add-on hears the answer only while its service runs, i.e. before the switch:
        // answer first, then close its dialogs and switch.
        let accepted = PinResult::accepted(
            request_id,
            ticket.profile.clone(),
            rfc3339(ticket.expires_at),
        );
        out.push(Action::TellAddon(ToAddon::Result(accepted)));
        out.push(Action::CloseAddonDialogs);
        out.push(Action::LoadProfile {
            profile: ticket.profile,
        });
    }

    /// In PIN-pad mode, a box at the login screen with nothing left to do goes back to the
    /// PIN-pad profile, whose add-on shows the PIN pad.
    pub(super) fn back_to_pin_pad(&mut self, now: i64, out: &mut Vec<Action>) {
        let Some(profile) = self.pin_pad_profile().map(str::to_owned) else {
            return;
        };
        if !self.at_login_screen()
            || self.script_running
            || !self.state.relock.is_empty()
            || !self.state.queued.is_empty()
        {
            return;
        }
        // NOTE: Kodi answers at once and switches ~1 s later; the watcher sees it. Until
        // then (or if the load failed) the login screen still shows: do not ask every tick.
        if self
            .pin_pad_loaded_at
            .is_some_and(|at| (now - at).abs() < PIN_PAD_LOAD_RETRY)
        {
            return;
        }
        self.pin_pad_loaded_at = Some(now);
        out.push(Action::LoadProfile { profile });
    }
}
