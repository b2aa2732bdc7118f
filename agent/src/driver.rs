//! The I/O around the decisions of [`crate::core`]: it turns the server's stream, the Kodi
//! watcher, the add-on bus and the clock into events, carries out the actions, and feeds
//! each outcome back.
//!
//! Everything runs on one task, so the core needs no lock; the actions of one event run one
//! after the other, and a script run (a Kodi restart, seconds) holds everything else back
//! on purpose: nothing else may touch Kodi meanwhile.

use std::collections::VecDeque;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use kodi_tickets_protocol::bus::{FromAddon, Request, ToAddon, ADDON_SENDER, AGENT_SENDER};
use kodi_tickets_protocol::{AgentEvent, AgentStatus, LoggedOff, LoginRequest};
use rand::Rng;
use tokio::sync::mpsc;

use crate::apply;
use crate::config::Config;
use crate::core::{
    parse_rfc3339, rfc3339, Action, Core, Event, FoundTicket, Mode, PinTicket, ScriptJob,
    ServerFailure,
};
use crate::kodi::{hurry_switch, log_off, Heard, Kodi, KodiError, Observation};
use crate::profiles_xml;
use crate::server::{ServerClient, ServerError};
use crate::state::State;

/// How often the agent tells the server what its Kodi looks like.
const STATUS_EVERY: Duration = Duration::from_secs(60);
/// How long the add-on may take to close its dialogs (it answers within ~0.2 s).
const CLOSE_DIALOGS_TIMEOUT: Duration = Duration::from_secs(1);
/// How long after a whole second of the wall clock the tick comes, so that [`now`] reads
/// the new second whatever the timer's rounding.
const TICK_AFTER_SECOND: Duration = Duration::from_millis(5);

/// The clock the core is given: Unix seconds.
pub use kodi_tickets_protocol::times::now;

pub struct Driver {
    config: Config,
    server: ServerClient,
    core: Core,
    /// The connection for the agent's calls to Kodi (see [`Driver::rpc`]).
    rpc: Option<Kodi>,
    /// Add-on requests heard while waiting for `closed`, handled once the actions are done.
    deferred: VecDeque<FromAddon>,
}

/// How waiting for the add-on's `closed` ended.
#[derive(Debug, PartialEq, Eq)]
enum DialogsClosed {
    Answered,
    TimedOut,
}

impl Driver {
    /// A driver that goes on from the state saved at `config.state_file`.
    pub fn new(config: Config, server: ServerClient) -> std::io::Result<Driver> {
        let state = State::load(&config.state_file)?;
        let mode = if config.pin_pad_profile.is_empty() {
            Mode::Native
        } else {
            Mode::PinPad {
                profile: config.pin_pad_profile.clone(),
            }
        };
        Ok(Driver {
            core: Core::new(mode, env!("CARGO_PKG_VERSION"), state),
            config,
            server,
            rpc: None,
            deferred: VecDeque::new(),
        })
    }

    /// Runs until SIGINT or SIGTERM.
    pub async fn run(
        mut self,
        mut server_events: mpsc::Receiver<AgentEvent>,
        mut kodi: mpsc::Receiver<Observation>,
        heard: Heard,
    ) -> std::io::Result<()> {
        let Heard {
            mut addon,
            mut pin_typed,
        } = heard;
        // NOTE: the core's time is whole Unix seconds and a session ends at a whole second:
        // ticking just after each one acts on an end as it comes, where a free-running
        // second would act up to a second late.
        let tick = tokio::time::sleep(until_next_second(SystemTime::now()));
        tokio::pin!(tick);
        let mut status = tokio::time::interval(STATUS_EVERY);
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        loop {
            let event = tokio::select! {
                Some(event) = server_events.recv() => Event::Server(event),
                Some(observation) = kodi.recv() => Event::Kodi(observation),
                Some(()) = pin_typed.recv() => {
                    // At the login screen a right PIN begins a switch at once. (Elsewhere:
                    // the add-on's PIN pad, whose login the agent hurries anyway, or a
                    // settings lock; nothing switches, and the wake-ups end after 3 s.)
                    self.hurry_switch();
                    continue;
                }
                Some(request) = addon.recv() => Event::Addon(request),
                () = &mut tick => {
                    let next = until_next_second(SystemTime::now());
                    tick.as_mut().reset(tokio::time::Instant::now() + next);
                    Event::Tick
                }
                _ = status.tick() => {
                    self.send_status().await;
                    continue;
                }
                _ = tokio::signal::ctrl_c() => break,
                _ = terminate.recv() => break,
            };
            self.feed(event, &mut addon).await;
        }
        tracing::info!("stopping; state is saved, running sessions resume at the next start");
        Ok(())
    }

    /// Hands `event` to the core and carries out what it asks, feeding outcomes back.
    async fn feed(&mut self, event: Event, addon: &mut mpsc::Receiver<FromAddon>) {
        let mut next = Some(event);
        while let Some(event) = next
            .take()
            .or_else(|| self.deferred.pop_front().map(Event::Addon))
        {
            let mut pending: VecDeque<Action> = self.core.handle(now(), event).into();
            while let Some(action) = pending.pop_front() {
                if let Some(outcome) = self.execute(action, addon).await {
                    pending.extend(self.core.handle(now(), outcome));
                }
            }
        }
    }

    async fn execute(
        &mut self,
        action: Action,
        addon: &mut mpsc::Receiver<FromAddon>,
    ) -> Option<Event> {
        match action {
            Action::SaveState => {
                let path = &self.config.state_file;
                if let Err(e) = self.core.state().save(path) {
                    tracing::error!("cannot save the agent state to {}: {e}", path.display());
                }
                None
            }
            Action::RunScript(job) => {
                let (profile, lock_code, label) = match &job {
                    ScriptJob::Arm(arm) => (
                        arm.profile.clone(),
                        arm.lock_code.clone(),
                        format!("ticket={} delivery={}", arm.ticket_id, arm.delivery_id),
                    ),
                    ScriptJob::Relock { profile } => {
                        let secret = format!("{:04}", rand::thread_rng().gen_range(0..10_000));
                        (profile.clone(), secret, "relock".to_owned())
                    }
                };
                let report = apply::set_lock_code(&self.config, &profile, &lock_code, &label).await;
                Some(Event::ScriptDone { job, report })
            }
            Action::ReportDelivery {
                delivery_id,
                report,
            } => {
                if let Err(e) = self.server.report(delivery_id, &report).await {
                    // The server sends unacknowledged deliveries again on reconnect;
                    // re-applying an armed ticket is then answered without the script.
                    tracing::warn!("delivery {delivery_id} not acknowledged yet: {e}");
                }
                None
            }
            Action::AcknowledgeWithdrawal { ticket_id } => {
                if let Err(e) = self.server.acknowledge_withdrawal(ticket_id).await {
                    // Sent again on the next connect; dealing with it twice is harmless.
                    tracing::warn!("deleted ticket {ticket_id} not acknowledged yet: {e}");
                }
                None
            }
            Action::ReportLogin {
                ticket_id,
                lock_code,
                used_at,
            } => {
                let request = LoginRequest {
                    lock_code,
                    used_at: Some(rfc3339(used_at)),
                };
                let answer = match self.server.login(&request).await {
                    Ok(answer) => Ok(parse_rfc3339(&answer.expires_at).unwrap_or_else(now)),
                    Err(e) => Err(failure(&e)),
                };
                Some(Event::LoginAnswered { ticket_id, answer })
            }
            Action::LookUpTicket {
                ticket_id,
                lock_code,
            } => {
                let found = self
                    .server
                    .ticket(&lock_code)
                    .await
                    .ok()
                    .map(|t| FoundTicket {
                        id: t.id,
                        expires_at: t.expires_at.as_deref().and_then(parse_rfc3339),
                    });
                Some(Event::TicketLookedUp { ticket_id, found })
            }
            Action::CheckPin { request_id, pin } => {
                let answer = self.check_pin(pin).await;
                Some(Event::PinChecked { request_id, answer })
            }
            Action::TellAddon(message) => {
                self.tell_addon(&message).await;
                None
            }
            Action::Notify(text) => {
                let shown = match self.rpc().await {
                    Ok(kodi) => kodi.notify("Kodi Tickets", &text, 10_000).await,
                    Err(e) => Err(e),
                };
                if let Err(e) = shown {
                    tracing::warn!("cannot show the warning: {e}");
                }
                None
            }
            Action::CloseAddonDialogs => {
                // NOTE: without the add-on in the loaded profile no dialog of ours can be
                // open, and no answer can come: waiting out the timeout would only delay
                // every log-off on a box without it.
                let enabled = match self.rpc().await {
                    Ok(kodi) => kodi.addon_enabled(ADDON_SENDER).await,
                    Err(e) => Err(e),
                };
                if matches!(enabled, Ok(false)) {
                    tracing::debug!("the add-on is not enabled here: no dialogs to close");
                    return None;
                }
                let request_id = format!("{:016x}", rand::thread_rng().gen::<u64>());
                let closing = ToAddon::Closing(Request {
                    request_id: request_id.clone(),
                });
                self.tell_addon(&closing).await;
                let closed = wait_for_closed(
                    addon,
                    &request_id,
                    CLOSE_DIALOGS_TIMEOUT,
                    &mut self.deferred,
                )
                .await;
                tracing::debug!(?closed, "the add-on's dialogs");
                None
            }
            Action::LoadProfile { profile } => {
                let hash = profiles_xml::lock_code_hash(&self.config.profiles_xml(), &profile)
                    .unwrap_or_default();
                let loaded = match self.rpc().await {
                    Ok(kodi) => kodi.load_profile_md5(&profile, &hash).await,
                    Err(e) => Err(e),
                };
                match loaded {
                    Ok(()) => self.hurry_switch(),
                    Err(e) => tracing::error!("cannot open the profile {profile}: {e}"),
                }
                None
            }
            Action::LogOff { profile } => {
                let Ok(eventserver) = self.config.kodi_eventserver.parse() else {
                    tracing::error!(
                        "cannot log off {profile}: kodi_eventserver {:?} is not an address",
                        self.config.kodi_eventserver
                    );
                    return None;
                };
                let checked = match self.rpc().await {
                    Ok(kodi) => kodi.check_log_off().await,
                    Err(e) => Err(e),
                };
                let result = match checked {
                    Ok(()) => {
                        // From before the first packet: the EventServer's own wait begins
                        // while `log_off` still waits to say goodbye.
                        self.hurry_switch();
                        log_off(eventserver).await
                    }
                    Err(e) => Err(e),
                };
                if let Err(e) = result {
                    // The core sends it again until Kodi shows the profile logged off.
                    tracing::warn!("cannot log off {profile}: {e}");
                }
                None
            }
            Action::RestartKodi { profile } => {
                tracing::warn!(%profile, "restarting Kodi");
                self.rpc = None;
                let (ok, message) = apply::restart_kodi(&self.config).await;
                Some(Event::KodiRestarted { ok, message })
            }
            Action::ReportLogOff { ticket_id, at } => {
                let body = LoggedOff { at: rfc3339(at) };
                let answer = self
                    .server
                    .logged_off(ticket_id, &body)
                    .await
                    .map_err(|e| failure(&e));
                Some(Event::LogOffReported { ticket_id, answer })
            }
            Action::SendStatus => {
                self.send_status().await;
                None
            }
        }
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

    /// Shortens the switch Kodi is about to begin ([`hurry_switch`]), beside the driver: its
    /// events wait for nothing of it.
    fn hurry_switch(&self) {
        let Ok(eventserver) = self.config.kodi_eventserver.parse() else {
            return;
        };
        let jsonrpc = self.config.kodi_jsonrpc.clone();
        tokio::spawn(async move { hurry_switch(&jsonrpc, eventserver).await });
    }

    async fn tell_addon(&mut self, message: &ToAddon) {
        let (name, data) = crate::kodi::bus::notify_all_params(message);
        let sent = match self.rpc().await {
            Ok(kodi) => kodi.notify_all(AGENT_SENDER, &name, data).await,
            Err(e) => Err(e),
        };
        if let Err(e) = sent {
            tracing::warn!("cannot tell the add-on {name}: {e}");
        }
    }

    /// Uses a PIN typed on the PIN pad with the server.
    async fn check_pin(&mut self, pin: String) -> Result<PinTicket, ServerFailure> {
        let request = LoginRequest {
            lock_code: pin.clone(),
            used_at: None,
        };
        let answer = self.server.login(&request).await.map_err(|e| failure(&e))?;
        let ticket_id = self.server.ticket(&pin).await.ok().map(|t| t.id);
        let known_to_kodi =
            profiles_xml::lock_code_hash(&self.config.profiles_xml(), &answer.profile).is_some();
        Ok(PinTicket {
            ticket_id,
            expires_at: parse_rfc3339(&answer.expires_at).unwrap_or_else(now),
            profile: answer.profile,
            known_to_kodi,
        })
    }

    /// Tells the server what this box's Kodi looks like (Devices page).
    async fn send_status(&mut self) {
        let forced_restart = self.core.forced_restart().cloned();
        let status = match self.rpc().await {
            Ok(kodi) => AgentStatus {
                agent_version: env!("CARGO_PKG_VERSION").into(),
                kodi_reachable: true,
                kodi_version: kodi.version().await.ok(),
                master_lock: kodi.master_lock_on().await.ok(),
                forced_restart,
            },
            Err(_) => AgentStatus {
                agent_version: env!("CARGO_PKG_VERSION").into(),
                kodi_reachable: false,
                kodi_version: None,
                master_lock: None,
                forced_restart,
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

fn failure(error: &ServerError) -> ServerFailure {
    match error {
        ServerError::Refused { status, .. } => ServerFailure::Refused(*status),
        ServerError::Unavailable(_) | ServerError::Unauthorized => ServerFailure::Unavailable,
    }
}

/// The wait from `now` until just after the next whole second.
fn until_next_second(now: SystemTime) -> Duration {
    let into = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    Duration::from_secs(1) - Duration::from_nanos(into.subsec_nanos().into()) + TICK_AFTER_SECOND
}

/// Waits for the add-on's `closed` answering `request_id`, at most `timeout`; other
/// requests heard meanwhile are kept in `deferred`.
async fn wait_for_closed(
    addon: &mut mpsc::Receiver<FromAddon>,
    request_id: &str,
    timeout: Duration,
    deferred: &mut VecDeque<FromAddon>,
) -> DialogsClosed {
    let answered = async {
        while let Some(request) = addon.recv().await {
            match request {
                FromAddon::Closed(closed) if closed.request_id == request_id => return true,
                other => deferred.push_back(other),
            }
        }
        // NOTE: nobody listens to the bus any more (shutting down): wait out the timeout
        // as if the add-on had not answered.
        std::future::pending().await
    };
    match tokio::time::timeout(timeout, answered).await {
        Ok(_) => DialogsClosed::Answered,
        Err(_) => DialogsClosed::TimedOut,
    }
}

/// Holds the event stream open, reconnecting with capped backoff; the server sends every
/// unacknowledged delivery and deleted ticket and every running session again on each connect.
pub async fn follow_server(server: ServerClient, events: mpsc::Sender<AgentEvent>) {
    let mut backoff = Duration::from_millis(500);
    loop {
        match server.events().await {
            Ok(stream) => {
                tracing::info!("connected to the server");
                backoff = Duration::from_millis(500);
                let mut stream = std::pin::pin!(stream);
                while let Some(item) = stream.next().await {
                    match item {
                        Ok(event) => {
                            if events.send(event).await.is_err() {
                                return;
                            }
                        }
                        Err(e) => {
                            tracing::warn!("server stream broke: {e}");
                            break;
                        }
                    }
                }
                tracing::warn!("disconnected from the server; reconnecting");
            }
            Err(ServerError::Unauthorized) => {
                tracing::error!(
                    "the server refuses this device's token (revoked?); retrying in a minute"
                );
                backoff = Duration::from_secs(60);
            }
            Err(e) => tracing::warn!("cannot reach the server: {e}"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(30));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn closed(request_id: &str) -> FromAddon {
        FromAddon::Closed(Request {
            request_id: request_id.into(),
        })
    }

    fn ping(request_id: &str) -> FromAddon {
        FromAddon::Ping(Request {
            request_id: request_id.into(),
        })
    }

    #[test]
    fn ticks_come_just_after_each_whole_second() {
        let at = |ms| UNIX_EPOCH + Duration::from_millis(ms);
        let after = |ms| Duration::from_millis(ms) + TICK_AFTER_SECOND;
        assert_eq!(until_next_second(at(1_796_400_000_250)), after(750));
        assert_eq!(until_next_second(at(1_796_400_000_999)), after(1));
        assert_eq!(until_next_second(at(1_796_400_001_000)), after(1000));
    }

    #[tokio::test(start_paused = true)]
    async fn closing_waits_for_the_addons_closed_and_keeps_other_requests() {
        let (tx, mut rx) = mpsc::channel(8);
        tx.send(ping("p1")).await.unwrap();
        tx.send(closed("someone else's")).await.unwrap();
        tx.send(closed("c1")).await.unwrap();
        tx.send(ping("p2")).await.unwrap();
        let mut deferred = VecDeque::new();
        let started = tokio::time::Instant::now();
        let outcome = wait_for_closed(&mut rx, "c1", Duration::from_secs(1), &mut deferred).await;
        assert_eq!(outcome, DialogsClosed::Answered);
        assert_eq!(started.elapsed(), Duration::ZERO, "no fixed wait");
        assert_eq!(
            deferred,
            VecDeque::from([ping("p1"), closed("someone else's")])
        );
        assert_eq!(
            rx.recv().await,
            Some(ping("p2")),
            "later requests stay queued"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn closing_gives_up_after_the_timeout_without_an_answer() {
        let (tx, mut rx) = mpsc::channel(8);
        tx.send(closed("other")).await.unwrap();
        let mut deferred = VecDeque::new();
        let started = tokio::time::Instant::now();
        let outcome = wait_for_closed(&mut rx, "c1", Duration::from_secs(1), &mut deferred).await;
        assert_eq!(outcome, DialogsClosed::TimedOut);
        assert_eq!(started.elapsed(), Duration::from_secs(1));
        drop(tx);
    }
}
