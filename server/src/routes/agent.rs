//! The agent's side of the API: a live stream of what to do on the box, and its reports.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::time::Duration;

use kodi_tickets_protocol::times::parse_rfc3339;
use kodi_tickets_protocol::{AgentEvent, AgentStatus, DeliveryReport, LoggedOff};
use rocket::response::stream::{Event, EventStream};
use rocket::serde::json::Json;
use rocket::tokio::{self, time};
use rocket::{get, post, routes, Route, Shutdown, State};

use crate::auth::Device;
use crate::db::{self, deliveries, devices, tickets, withdrawals, Db, DeliveryId, TicketId};
use crate::error::{Error, Result};
use crate::gate::Peers;
use crate::presence::{Changes, Presence};
use crate::views::rfc3339;

pub fn routes() -> Vec<Route> {
    routes![events, report, withdrawn, logged_off, status]
}

/// How often an open stream re-checks its device (revocation, sessions) without a change.
const TICK: Duration = Duration::from_secs(5);
/// How long after its end a session is still looked at, so "end now" reaches a connection
/// that was told the session runs.
const ENDED_GRACE_SECS: i64 = 300;

/// Server-sent events for one device: every unacknowledged delivery and deleted ticket and
/// every running session on connect, then each new one as it happens. Ends when the device is
/// revoked or paired again, and as soon as the gate sees the box go (so its pages show it offline at once).
#[get("/agent/events")]
fn events(
    device: Device,
    db: &Db,
    presence: &State<Presence>,
    peers: &State<Peers>,
    gate_end: Option<SocketAddr>,
    mut shutdown: Shutdown,
) -> EventStream![Event + 'static] {
    let pool = db::Pool::clone(db);
    let mut online = presence.connect(device.id);
    let mut departure = peers.departure(gate_end);
    EventStream! {
        let mut sent_deliveries = HashSet::new();
        let mut sent_withdrawals = HashSet::new();
        let mut sent_sessions: HashMap<TicketId, i64> = HashMap::new();
        loop {
            match devices::is_live(&pool, device.id, &device.token_hash).await {
                Ok(true) => {}
                Ok(false) => break,
                Err(e) => tracing::error!("agent stream: {e}"),
            }
            let pending = match deliveries::pending_for_device(&pool, device.id).await {
                Ok(pending) => {
                    sent_deliveries.retain(|sent| pending.iter().any(|job| sent == &(job.id, job.requeues)));
                    pending
                }
                Err(e) => {
                    tracing::error!("agent stream: {e}");
                    Vec::new()
                }
            };
            for job in pending {
                // NOTE: keyed by the requeue count too: a delivery that failed and was queued
                // again (the page's Retry) before this stream looked is still sent again.
                if sent_deliveries.insert((job.id, job.requeues)) {
                    yield Event::json(&AgentEvent::Arm {
                        delivery_id: job.id.0,
                        ticket_id: job.ticket_id.0,
                        profile: job.profile_name,
                        lock_code: job.lock_code,
                    })
                    .event("arm");
                }
            }
            match withdrawals::for_device(&pool, device.id).await {
                Ok(withdrawn) => {
                    sent_withdrawals.retain(|id| withdrawn.iter().any(|w| w.ticket_id == *id));
                    for w in withdrawn {
                        if sent_withdrawals.insert(w.ticket_id) {
                            yield Event::json(&AgentEvent::Withdrawn {
                                ticket_id: w.ticket_id.0,
                                profile: w.profile_name,
                            })
                            .event("withdrawn");
                        }
                    }
                }
                Err(e) => tracing::error!("agent stream: {e}"),
            }
            let now = db::now();
            for s in tickets::sessions_for_device(&pool, device.id, now, ENDED_GRACE_SECS)
                .await
                .unwrap_or_default()
            {
                // NOTE: an ended session goes only to a connection that was told it runs (the
                // admin's "end now"); repeating old ends on reconnect would log off whoever
                // uses the profile now.
                let told = sent_sessions.contains_key(&s.ticket_id);
                if s.expires_at <= now && !told {
                    continue;
                }
                if sent_sessions.insert(s.ticket_id, s.expires_at) != Some(s.expires_at) {
                    yield Event::json(&AgentEvent::Session {
                        ticket_id: s.ticket_id.0,
                        profile: s.profile_name,
                        expires_at: rfc3339(s.expires_at),
                    })
                    .event("session");
                }
            }
            tokio::select! {
                _ = online.changed() => {}
                _ = time::sleep(TICK) => {}
                _ = &mut shutdown => break,
                () = departure.wait() => break,
            }
        }
    }
    .heartbeat(Duration::from_secs(15))
}

#[post("/agent/deliveries/<id>", data = "<report>")]
async fn report(
    device: Device,
    id: DeliveryId,
    report: Json<DeliveryReport>,
    db: &Db,
    changes: &State<Changes>,
) -> Result<Json<serde_json::Value>> {
    let message: String = report.message.chars().take(500).collect();
    if !deliveries::report(
        db,
        id,
        device.id,
        report.outcome,
        report.exit_code,
        &message,
    )
    .await?
    {
        return Err(Error::NotFoundMessage(
            "no such delivery for this device".into(),
        ));
    }
    changes.notify(Some(device.id));
    Ok(Json(serde_json::json!({ "ok": true })))
}

/// The agent has dealt with a deleted ticket (`withdrawn` event).
#[post("/agent/withdrawals/<ticket_id>")]
async fn withdrawn(
    device: Device,
    ticket_id: TicketId,
    db: &Db,
) -> Result<Json<serde_json::Value>> {
    if !withdrawals::acknowledge(db, ticket_id, device.id).await? {
        return Err(Error::NotFoundMessage(
            "no such deleted ticket for this device".into(),
        ));
    }
    Ok(Json(serde_json::json!({ "ok": true })))
}

/// The TV was seen logged off after a ticket of one of this device's profiles ended: the page
/// stops saying "TV not yet logged off".
#[post("/agent/sessions/<ticket_id>/logged-off", data = "<body>")]
async fn logged_off(
    device: Device,
    ticket_id: TicketId,
    body: Json<LoggedOff>,
    db: &Db,
    changes: &State<Changes>,
) -> Result<Json<serde_json::Value>> {
    let at = parse_rfc3339(&body.at)
        .ok_or_else(|| Error::BadRequest("at is not an RFC 3339 time".into()))?
        .min(db::now());
    if !tickets::mark_logged_off(db, ticket_id, Some(device.id), at).await? {
        return Err(Error::NotFoundMessage(
            "no such used ticket for this device".into(),
        ));
    }
    changes.pages().announce();
    Ok(Json(serde_json::json!({ "ok": true })))
}

#[post("/agent/status", data = "<status>")]
async fn status(
    device: Device,
    status: Json<AgentStatus>,
    db: &Db,
    changes: &State<Changes>,
) -> Result<Json<serde_json::Value>> {
    let version = status
        .kodi_version
        .as_deref()
        .map(|v| v.chars().take(40).collect::<String>());
    let forced = status.forced_restart.as_ref().and_then(|f| {
        let at = parse_rfc3339(&f.at)?;
        let note = if f.ok {
            format!(
                "Kodi was restarted to end “{}”: its remote control did not answer.",
                f.profile
            )
        } else {
            format!(
                "Kodi could not be restarted to end “{}”: {}",
                f.profile, f.message
            )
        };
        Some((at, note.chars().take(300).collect::<String>()))
    });
    let changed = devices::set_status(
        db,
        device.id,
        status.kodi_reachable,
        version.as_deref(),
        status.master_lock,
        forced.as_ref().map(|(at, note)| (*at, note.as_str())),
    )
    .await?;
    if changed {
        // The Devices page and the profile pages' warnings show it.
        changes.pages().announce();
    }
    Ok(Json(serde_json::json!({ "ok": true })))
}
