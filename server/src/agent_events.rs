//! What a connected agent is told: every unacknowledged delivery and deleted ticket and every
//! running session on connect, then each new one as it happens. Served by Rocket's
//! `GET /api/agent/events` and, for most connections, by the gate itself (see
//! `gate::agent_streams`); both frame these events the same way.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::time::Duration;

use kodi_tickets_protocol::AgentEvent;
use rocket::futures::Stream;
use rocket::response::stream::stream;
use rocket::tokio::{self, time};

use crate::auth::Device;
use crate::db::{self, deliveries, devices, tickets, withdrawals, TicketId};
use crate::presence::Connected;
use crate::views::rfc3339;

/// How often an open stream re-checks its device (revocation, sessions) without a change.
const TICK: Duration = Duration::from_secs(5);
/// How long after its end a session is still looked at, so "end now" reaches a connection
/// that was told the session runs.
const ENDED_GRACE_SECS: i64 = 300;
/// Time between two comments on a stream with nothing to say, so that the agent, and anything
/// between it and the server, knows the connection still works.
pub const HEARTBEAT: Duration = Duration::from_secs(15);

/// The name of an event's server-sent `event:` line.
pub fn kind(event: &AgentEvent) -> &'static str {
    match event {
        AgentEvent::Arm { .. } => "arm",
        AgentEvent::Session { .. } => "session",
        AgentEvent::Withdrawn { .. } => "withdrawn",
    }
}

/// The events for `device` while it stays live (not revoked, not paired again) and until
/// `stop` returns; `online` keeps the device shown online and wakes the stream on a change.
pub fn follow(
    pool: db::Pool,
    device: Device,
    mut online: Connected,
    stop: impl Future<Output = ()> + Send + 'static,
) -> impl Stream<Item = AgentEvent> + Send + 'static {
    stream! {
        let mut stop = std::pin::pin!(stop);
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
                    yield AgentEvent::Arm {
                        delivery_id: job.id.0,
                        ticket_id: job.ticket_id.0,
                        profile: job.profile_name,
                        lock_code: job.lock_code,
                    };
                }
            }
            match withdrawals::for_device(&pool, device.id).await {
                Ok(withdrawn) => {
                    sent_withdrawals.retain(|id| withdrawn.iter().any(|w| w.ticket_id == *id));
                    for w in withdrawn {
                        if sent_withdrawals.insert(w.ticket_id) {
                            yield AgentEvent::Withdrawn {
                                ticket_id: w.ticket_id.0,
                                profile: w.profile_name,
                            };
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
                    yield AgentEvent::Session {
                        ticket_id: s.ticket_id.0,
                        profile: s.profile_name,
                        expires_at: rfc3339(s.expires_at),
                    };
                }
            }
            tokio::select! {
                _ = online.changed() => {}
                _ = time::sleep(TICK) => {}
                _ = &mut stop => break,
            }
        }
    }
}
