//! The agent's decisions: what to apply when, which login to report, when to end a session.
//!
//! Everything runs on one task, so the state needs no lock; the script runs (a Kodi restart,
//! seconds) block it on purpose: nothing else may touch Kodi meanwhile.

use std::net::SocketAddr;
use std::path::PathBuf;

use kodi_tickets_protocol::{
    AgentEvent, AgentStatus, DeliveryOutcome, DeliveryReport, LoginRequest,
};
use rand::Rng;

use crate::apply;
use crate::config::Config;
use crate::kodi::bus::{self, FromAddon};
use crate::kodi::{Kodi, KodiError, Observation, SessionState};
use crate::profiles_xml;
use crate::server::{ServerClient, ServerError};
use crate::state::{key, Arm, Session, State, UnreportedLogin};

/// Minutes before the end at which the TV shows how long is left.
const WARN_AT_MINUTES: [i64; 2] = [5, 1];

pub struct Agent {
    config: Config,
    server: ServerClient,
    state: State,
    state_path: PathBuf,
    /// What the Kodi watcher saw last; `None` while Kodi does not answer.
    kodi: Option<SessionState>,
    /// The connection the agent's own calls to Kodi go over (see [`Agent::rpc`]).
    rpc: Option<Kodi>,
    /// The profile whose session the add-on last spoke from: it relays warnings there, so
    /// the agent does not show them a second time.
    addon_in: Option<String>,
}

pub fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

fn rfc3339(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

fn parse_time(text: &str) -> Option<i64> {
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(|t| t.unix_timestamp())
}

impl Agent {
    pub fn new(config: Config, server: ServerClient) -> std::io::Result<Agent> {
        let state_path = config.state_file.clone();
        let state = State::load(&state_path)?;
        Ok(Agent {
            config,
            server,
            state,
            state_path,
            kodi: None,
            rpc: None,
            addon_in: None,
        })
    }

    fn save(&self) {
        if let Err(e) = self.state.save(&self.state_path) {
            tracing::error!(
                "cannot save the agent state to {}: {e}",
                self.state_path.display()
            );
        }
    }

    fn eventserver(&self) -> Option<SocketAddr> {
        self.config.kodi_eventserver.parse().ok()
    }

    /// The connection for the agent's calls to Kodi, opened when first needed and kept: Kodi
    /// drops it on every profile switch, and the next call opens it again.
    ///
    /// NOTE: one connection kept open rather than one per call: Kodi 20.1 died broadcasting
    /// a `JSONRPC.NotifyAll` to the WebSocket client that sent it and had just closed.
    async fn rpc(&mut self) -> Result<&Kodi, KodiError> {
        if self.rpc.as_ref().is_some_and(|kodi| !kodi.is_connected()) {
            self.rpc = None;
        }
        if self.rpc.is_none() {
            self.rpc = Some(Kodi::connect(&self.config.kodi_jsonrpc).await?);
        }
        Ok(self.rpc.as_ref().expect("connected just now"))
    }

    fn logged_on_profile(&self) -> Option<&str> {
        self.kodi
            .as_ref()
            .filter(|s| s.logged_on)
            .map(|s| s.profile.as_str())
    }

    pub async fn on_event(&mut self, event: AgentEvent) {
        match event {
            AgentEvent::Arm {
                delivery_id,
                ticket_id,
                profile,
                lock_code,
            } => {
                let arm = Arm {
                    delivery_id,
                    ticket_id,
                    profile,
                    lock_code,
                };
                let armed_now = self
                    .state
                    .armed
                    .get(&key(&arm.profile))
                    .map(|a| a.ticket_id);
                if armed_now == Some(arm.ticket_id) {
                    // Sent again after a reconnect: already done.
                    self.report(&arm, applied()).await;
                    return;
                }
                if self.pin_pad_mode() {
                    // The PIN pad checks PINs with the server: nothing to apply to Kodi.
                    let report = DeliveryReport {
                        outcome: DeliveryOutcome::Applied,
                        exit_code: None,
                        message: "PIN pad mode: the PIN opens the profile from the TV's PIN pad"
                            .into(),
                    };
                    self.report(&arm, report).await;
                    return;
                }
                if self.state.enqueue(arm.clone()) {
                    self.save();
                }
                self.arm_waiting().await;
                if let Some(reason) = self.why_waiting(&arm) {
                    let waiting = DeliveryReport {
                        outcome: DeliveryOutcome::Busy,
                        exit_code: None,
                        message: reason,
                    };
                    self.report(&arm, waiting).await;
                }
            }
            AgentEvent::Session {
                ticket_id,
                profile,
                expires_at,
            } => {
                let Some(expires_at) = parse_time(&expires_at) else {
                    tracing::warn!("session {ticket_id}: unreadable expiry {expires_at:?}");
                    return;
                };
                // NOTE: an end for a session this agent does not hold (it ended it already) is
                // stale: acting on it would re-lock the profile over the next ticket's PIN or
                // log off whoever uses the profile now.
                if expires_at <= now() && !self.state.sessions.contains_key(&ticket_id) {
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
                    .or_insert_with(|| Session::new(profile.clone(), expires_at));
                if session.expires_at != expires_at {
                    session.expires_at = expires_at;
                    // More minutes: warn again when the new end comes near.
                    session.warned.retain(|m| expires_at - now() <= m * 60);
                }
                self.save();
                self.end_due_sessions().await;
            }
        }
    }

    pub async fn on_observation(&mut self, observation: Observation) {
        match observation {
            Observation::Unreachable => self.kodi = None,
            Observation::Session(session) => {
                tracing::info!(logged_on = session.logged_on, profile = %session.profile, "Kodi session");
                let was = self.logged_on_profile().map(key);
                self.kodi = Some(session);
                let is = self.logged_on_profile().map(key);
                if let Some(profile) = was.filter(|p| Some(p) != is.as_ref()) {
                    self.session_left(&profile);
                }
                if let Some(profile) = is {
                    self.profile_opened(&profile).await;
                }
                self.arm_waiting().await;
            }
        }
    }

    /// Someone unlocked `profile`: if its lock code was a ticket's PIN, that ticket is used.
    async fn profile_opened(&mut self, profile: &str) {
        let Some(arm) = self.state.armed.remove(profile) else {
            return;
        };
        tracing::info!(ticket = arm.ticket_id, profile = %arm.profile, "ticket PIN used on the TV");
        self.state.unreported.push(UnreportedLogin {
            ticket_id: arm.ticket_id,
            profile: arm.profile,
            lock_code: arm.lock_code,
            used_at: now(),
        });
        self.save();
        self.report_logins().await;
    }

    /// Nobody is in `profile` any more: its PIN, used, must not open it again.
    fn session_left(&mut self, profile: &str) {
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
        if running {
            self.state.relock.insert(profile.to_owned());
            self.save();
        }
    }

    /// Tells the server about logins seen on the TV, with the time they happened; retried
    /// every tick until the server has them.
    async fn report_logins(&mut self) {
        let pending = std::mem::take(&mut self.state.unreported);
        for login in pending {
            let request = LoginRequest {
                lock_code: login.lock_code.clone(),
                used_at: Some(rfc3339(login.used_at)),
            };
            match self.server.login(&request).await {
                Ok(answer) => {
                    let expires_at = parse_time(&answer.expires_at).unwrap_or_else(now);
                    self.state
                        .sessions
                        .insert(login.ticket_id, Session::new(login.profile, expires_at));
                }
                Err(ServerError::Refused { status: 404, .. }) => self.login_refused(login).await,
                Err(e) => {
                    tracing::warn!("login of ticket {} not reported yet: {e}", login.ticket_id);
                    self.state.unreported.push(login);
                }
            }
        }
        self.save();
    }

    /// The server does not know the PIN as unused: it was reported before (then it runs), or
    /// the ticket was deleted (then nobody may stay in the profile on it).
    async fn login_refused(&mut self, login: UnreportedLogin) {
        let running = match self.server.ticket(&login.lock_code).await {
            Ok(t) if t.id == login.ticket_id => t.expires_at.as_deref().and_then(parse_time),
            _ => None,
        };
        let expires_at = running.unwrap_or_else(now);
        tracing::warn!(
            ticket = login.ticket_id,
            "server refused the login; session ends at {}",
            rfc3339(expires_at)
        );
        self.state
            .sessions
            .insert(login.ticket_id, Session::new(login.profile, expires_at));
        self.end_due_sessions().await;
    }

    pub async fn tick(&mut self) {
        if !self.state.unreported.is_empty() {
            self.report_logins().await;
        }
        self.warn_sessions().await;
        self.end_due_sessions().await;
        self.arm_waiting().await;
        self.back_to_pin_pad().await;
    }

    fn pin_pad_mode(&self) -> bool {
        !self.config.pin_pad_profile.is_empty()
    }

    /// In PIN-pad mode, a box at the login screen with nothing left to do goes back to the
    /// PIN-pad profile, whose add-on shows the PIN pad.
    async fn back_to_pin_pad(&mut self) {
        let at_login_screen = self.kodi.as_ref().is_some_and(|s| !s.logged_on);
        if !self.pin_pad_mode()
            || !at_login_screen
            || !self.state.relock.is_empty()
            || !self.state.queued.is_empty()
        {
            return;
        }
        let profile = self.config.pin_pad_profile.clone();
        let hash =
            profiles_xml::lock_code_hash(&self.config.profiles_xml(), &profile).unwrap_or_default();
        let loaded = match self.rpc().await {
            Ok(kodi) => kodi.load_profile_md5(&profile, &hash).await,
            Err(e) => Err(e),
        };
        match loaded {
            // NOTE: Kodi answers at once and switches ~1 s later; the watcher sees it.
            Ok(()) => self.kodi = None,
            Err(e) => tracing::warn!("cannot open the PIN-pad profile {profile}: {e}"),
        }
    }

    /// A request of the add-on's, from Kodi's bus.
    pub async fn on_addon(&mut self, request: FromAddon) {
        self.addon_in = self.logged_on_profile().map(key);
        let (message, data) = match request {
            FromAddon::Ping { request_id } => (
                "kodi_tickets.pong",
                serde_json::json!({
                    "request_id": request_id,
                    "agent_version": env!("CARGO_PKG_VERSION"),
                }),
            ),
            FromAddon::TimeLeft { request_id } => {
                let now = now();
                let current = self.logged_on_profile().map(key);
                let session = self
                    .state
                    .sessions
                    .values()
                    .find(|s| Some(key(&s.profile)) == current && s.expires_at > now);
                (
                    "kodi_tickets.session",
                    serde_json::json!({
                        "request_id": request_id,
                        "profile": session.map(|s| s.profile.clone()),
                        "expires_at": session.map(|s| rfc3339(s.expires_at)),
                        "remaining_seconds": session.map(|s| s.expires_at - now),
                    }),
                )
            }
            FromAddon::Pin { request_id, pin } => {
                let outcome = match pin {
                    Some(pin) => self.check_pin(&pin).await,
                    None => Err("bad_request"),
                };
                match outcome {
                    Ok((profile, expires_at, hash)) => {
                        // The add-on hears the answer only while its service runs, i.e. before
                        // the switch: answer first, then close its dialogs and switch.
                        let data = serde_json::json!({
                            "request_id": request_id, "ok": true, "reason": null,
                            "profile": profile, "expires_at": rfc3339(expires_at),
                        });
                        self.tell_addon("kodi_tickets.result", data).await;
                        self.log_in_pin_pad_ticket(&profile, &hash).await;
                        return;
                    }
                    Err(reason) => (
                        "kodi_tickets.result",
                        serde_json::json!({
                            "request_id": request_id, "ok": false, "reason": reason,
                            "profile": null, "expires_at": null,
                        }),
                    ),
                }
            }
        };
        self.tell_addon(message, data).await;
    }

    /// Asks the add-on to close its dialogs before Kodi switches profile: Kodi cannot switch
    /// while a script holds a modal dialog (it waits 5 s, kills the script and ends the
    /// switch half-done). The add-on answers within ~0.2 s; a second is plenty.
    async fn close_addon_dialogs(&mut self) {
        let request_id = format!("{:016x}", rand::thread_rng().gen::<u64>());
        self.tell_addon(
            "kodi_tickets.closing",
            serde_json::json!({ "request_id": request_id }),
        )
        .await;
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }

    async fn tell_addon(&mut self, message: &str, data: serde_json::Value) {
        let sent = match self.rpc().await {
            Ok(kodi) => kodi.notify_all(bus::SENDER, message, data).await,
            Err(e) => Err(e),
        };
        if let Err(e) = sent {
            tracing::warn!("cannot answer the add-on: {e}");
        }
    }

    /// A PIN typed on the PIN pad: the server decides. On success, the ticket's profile and
    /// expiry and the lock-code hash Kodi holds for that profile (to log it in with).
    async fn check_pin(&mut self, pin: &str) -> Result<(String, i64, String), &'static str> {
        let request = LoginRequest {
            lock_code: pin.to_owned(),
            used_at: None,
        };
        let answer = match self.server.login(&request).await {
            Ok(answer) => answer,
            Err(ServerError::Refused { status: 429, .. }) => return Err("rate_limited"),
            Err(ServerError::Refused { .. }) => return Err("unknown_pin"),
            Err(_) => return Err("server_unreachable"),
        };
        let expires_at = parse_time(&answer.expires_at).unwrap_or_else(now);
        let ticket_id = self.server.ticket(pin).await.map(|t| t.id).unwrap_or(-1);
        let mut session = Session::new(answer.profile.clone(), expires_at);
        session.via_pin_pad = true;
        self.state.sessions.insert(ticket_id, session);
        self.save();
        let Some(hash) = profiles_xml::lock_code_hash(&self.config.profiles_xml(), &answer.profile)
        else {
            tracing::error!("profile {} is not in Kodi's profiles.xml", answer.profile);
            return Err("kodi_error");
        };
        Ok((answer.profile, expires_at, hash))
    }

    /// Logs an accepted PIN-pad ticket's profile in, after the add-on closed its dialogs. A
    /// failure is only logged: the add-on shows the PIN pad again when no switch came.
    async fn log_in_pin_pad_ticket(&mut self, profile: &str, hash: &str) {
        self.close_addon_dialogs().await;
        let loaded = match self.rpc().await {
            Ok(kodi) => kodi.load_profile_md5(profile, hash).await,
            Err(e) => Err(e),
        };
        if let Err(e) = loaded {
            tracing::error!("cannot open {profile} for a PIN-pad ticket: {e}");
        }
    }

    async fn warn_sessions(&mut self) {
        let now = now();
        let Some(current) = self.logged_on_profile().map(key) else {
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
        if let Some(minutes) = due.into_iter().min() {
            self.save();
            let text = if minutes == 1 {
                "1 minute left".to_owned()
            } else {
                format!("{minutes} minutes left")
            };
            let addon_relays = self.addon_in.as_deref() == Some(current.as_str());
            if !addon_relays {
                match self.rpc().await {
                    Ok(kodi) => {
                        if let Err(e) = kodi.notify("Kodi Tickets", &text, 10_000).await {
                            tracing::warn!("cannot show the warning: {e}");
                        }
                    }
                    Err(e) => tracing::warn!("cannot show the warning: {e}"),
                }
            }
            let profile = self.logged_on_profile().unwrap_or_default().to_owned();
            self.tell_addon(
                "kodi_tickets.warning",
                serde_json::json!({ "profile": profile, "minutes_left": minutes }),
            )
            .await;
        }
    }

    /// Logs off sessions whose time is up and marks their profiles for a new lock code.
    async fn end_due_sessions(&mut self) {
        let now = now();
        let ended: Vec<i64> = self
            .state
            .sessions
            .iter()
            .filter(|(_, s)| s.expires_at <= now)
            .map(|(id, _)| *id)
            .collect();
        for ticket_id in ended {
            let Some(session) = self.state.sessions.get(&ticket_id).cloned() else {
                continue;
            };
            let profile = key(&session.profile);
            if self.logged_on_profile().map(key).as_deref() == Some(profile.as_str()) {
                tracing::info!(ticket = ticket_id, profile = %session.profile, "time is up: logging off");
                let Some(eventserver) = self.eventserver() else {
                    return;
                };
                self.close_addon_dialogs().await;
                let result = match self.rpc().await {
                    Ok(kodi) => kodi.end_session(eventserver).await,
                    Err(e) => Err(e),
                };
                if let Err(e) = result {
                    // Kept: the next tick tries again.
                    tracing::warn!("cannot log off {}: {e}", session.profile);
                    continue;
                }
            }
            self.state.sessions.remove(&ticket_id);
            if !session.via_pin_pad {
                self.state.relock.insert(profile);
            }
            self.save();
        }
    }

    /// With nobody logged in, replaces used PINs and arms waiting tickets.
    async fn arm_waiting(&mut self) {
        // NOTE: the script restarts Kodi, so it runs only when Kodi was seen at its login
        // screen. A Kodi that does not answer may be frozen with someone in a profile, or
        // restarting between profiles: wait until it answers rather than restart it blindly.
        if self.kodi.as_ref().is_none_or(|s| s.logged_on) {
            return;
        }
        let mut index = 0;
        while index < self.state.queued.len() {
            let arm = self.state.queued[index].clone();
            let profile = key(&arm.profile);
            let busy = self.state.armed.contains_key(&profile)
                || self
                    .state
                    .sessions
                    .values()
                    .any(|s| key(&s.profile) == profile)
                || self
                    .state
                    .unreported
                    .iter()
                    .any(|u| key(&u.profile) == profile);
            if busy {
                index += 1;
                continue;
            }
            let label = format!("ticket={} delivery={}", arm.ticket_id, arm.delivery_id);
            let report =
                apply::set_lock_code(&self.config, &arm.profile, &arm.lock_code, &label).await;
            match report.outcome {
                DeliveryOutcome::Applied => {
                    self.state.queued.remove(index);
                    self.state.relock.remove(&profile);
                    self.state.armed.insert(profile, arm.clone());
                }
                DeliveryOutcome::Busy => index += 1,
                DeliveryOutcome::Failed => {
                    // The admin's Retry sends it again.
                    self.state.queued.remove(index);
                }
            }
            self.save();
            self.report(&arm, report).await;
            if self.logged_on_profile().is_some() {
                return;
            }
        }
        let relock: Vec<String> = self.state.relock.iter().cloned().collect();
        for profile in relock {
            let secret = format!("{:04}", rand::thread_rng().gen_range(0..10_000));
            let report = apply::set_lock_code(&self.config, &profile, &secret, "relock").await;
            match report.outcome {
                DeliveryOutcome::Applied | DeliveryOutcome::Failed => {
                    if report.outcome == DeliveryOutcome::Failed {
                        tracing::error!("cannot re-lock {profile}: {}", report.message);
                    }
                    self.state.relock.remove(&profile);
                    self.save();
                }
                DeliveryOutcome::Busy => return,
            }
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
        } else if let Some(current) = self.logged_on_profile() {
            format!("waiting: “{current}” is in use on the TV (applying restarts Kodi)")
        } else {
            "waiting: this profile's session has not ended yet".into()
        })
    }

    async fn report(&self, arm: &Arm, report: DeliveryReport) {
        if let Err(e) = self.server.report(arm.delivery_id, &report).await {
            // The server sends unacknowledged deliveries again on reconnect; re-applying an
            // armed ticket is then answered from the state without running the script.
            tracing::warn!("delivery {} not acknowledged yet: {e}", arm.delivery_id);
        }
    }

    /// Tells the server what this box's Kodi looks like (Devices page).
    pub async fn send_status(&mut self) {
        let status = match self.rpc().await {
            Ok(kodi) => AgentStatus {
                agent_version: env!("CARGO_PKG_VERSION").into(),
                kodi_reachable: true,
                kodi_version: kodi.version().await.ok(),
                master_lock: kodi.master_lock_on().await.ok(),
            },
            Err(_) => AgentStatus {
                agent_version: env!("CARGO_PKG_VERSION").into(),
                kodi_reachable: false,
                kodi_version: None,
                master_lock: None,
            },
        };
        if status.master_lock == Some(false) {
            tracing::warn!("Kodi's master lock is off: Kodi does not enforce profile PINs");
        }
        if let Err(e) = self.server.status(&status).await {
            tracing::warn!("cannot send the status: {e}");
        }
    }
}

fn applied() -> DeliveryReport {
    DeliveryReport {
        outcome: DeliveryOutcome::Applied,
        exit_code: Some(0),
        message: "applied to Kodi".into(),
    }
}
