//! The agent's side of the API: a live stream of what to do on the box, and its reports.

use std::net::SocketAddr;

use kodi_tickets_protocol::times::parse_rfc3339;
use kodi_tickets_protocol::{AgentStatus, DeliveryReport, LoggedOff};
use rocket::futures::StreamExt;
use rocket::response::stream::{Event, EventStream};
use rocket::serde::json::Json;
use rocket::tokio;
use rocket::{get, post, routes, Route, Shutdown, State};

use crate::agent_events;
use crate::auth::Device;
use crate::db::{self, deliveries, devices, tickets, withdrawals, Db, DeliveryId, TicketId};
use crate::error::{Error, Result};
use crate::gate::Peers;
use crate::presence::{Changes, Presence};

pub fn routes() -> Vec<Route> {
    routes![events, report, withdrawn, logged_off, status]
}

/// Server-sent events for one device (see [`agent_events`]). Ends when the device is revoked
/// or paired again, and as soon as the gate sees the box go (so its pages show it offline at
/// once). Most agents' streams are served by the gate itself; this one serves the rest (HTTPS,
/// a connection that carried another request first).
#[get("/agent/events")]
fn events(
    device: Device,
    db: &Db,
    presence: &State<Presence>,
    peers: &State<Peers>,
    gate_end: Option<SocketAddr>,
    shutdown: Shutdown,
) -> EventStream![Event + 'static] {
    let online = presence.connect(device.id);
    let mut departure = peers.departure(gate_end);
    let stop = async move {
        tokio::select! {
            _ = shutdown => {}
            () = departure.wait() => {}
        }
    };
    let events = agent_events::follow(db::Pool::clone(db), device, online, stop);
    EventStream::from(events.map(|event| Event::json(&event).event(agent_events::kind(&event))))
        .heartbeat(agent_events::HEARTBEAT)
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
