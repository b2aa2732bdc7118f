//! Ends of tickets on Kodi boxes the server reaches itself (`local`, `ssh`): written by the
//! triggers of migration `ticket_ends`, drained by the delivery worker.

use super::deliveries::{self, SshTarget};
use super::{now, Delivery, DeliveryId, DeviceId, Pool, ProfileId, TicketId};

/// A ticket whose session must end and whose PIN must stop opening its profile.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct End {
    pub ticket_id: TicketId,
    /// `None` once the profile was deleted (its Kodi profile is still re-locked).
    pub profile_id: Option<ProfileId>,
    pub profile_name: String,
    /// `Local` or `Ssh`: the server ends only what it delivered itself.
    pub method: Delivery,
    #[sqlx(skip)]
    pub ssh: Option<SshTarget>,
}

/// How a run of an end went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndOutcome {
    Done,
    /// Not yet (Kodi busy or unreachable): again in this many seconds.
    RetryIn(i64),
    Failed,
}

/// Claims the most overdue end, marking it running, in one statement.
pub async fn claim_due(pool: &Pool) -> Result<Option<End>, sqlx::Error> {
    let t = now();
    let end: Option<End> = sqlx::query_as(
        "UPDATE ticket_ends SET status = 'running', attempts = attempts + 1, updated_at = ?1
         WHERE ticket_id = (SELECT ticket_id FROM ticket_ends
                            WHERE status = 'pending' AND due_at <= ?1
                            ORDER BY due_at, ticket_id LIMIT 1)
         RETURNING ticket_id, profile_id, profile_name, method",
    )
    .bind(t)
    .fetch_all(pool)
    .await
    .map(super::first)?;
    let Some(mut end) = end else {
        return Ok(None);
    };
    if end.method == Delivery::Ssh {
        let device: Option<DeviceId> =
            sqlx::query_scalar("SELECT device_id FROM ticket_ends WHERE ticket_id = ?")
                .bind(end.ticket_id)
                .fetch_one(pool)
                .await?;
        if let Some(device) = device {
            end.ssh = deliveries::ssh_target(pool, device).await?;
        }
    }
    Ok(Some(end))
}

/// When the next pending end falls due, if any.
pub async fn next_due_at(pool: &Pool) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query_scalar("SELECT MIN(due_at) FROM ticket_ends WHERE status = 'pending'")
        .fetch_one(pool)
        .await
}

pub async fn finish(
    pool: &Pool,
    ticket_id: TicketId,
    outcome: EndOutcome,
    exit_code: Option<i32>,
    message: &str,
) -> Result<(), sqlx::Error> {
    let t = now();
    let (status, due) = match outcome {
        EndOutcome::Done => ("done", t),
        EndOutcome::RetryIn(secs) => ("pending", t + secs),
        EndOutcome::Failed => ("failed", t),
    };
    sqlx::query(
        "UPDATE ticket_ends SET status = ?, due_at = ?, last_exit_code = ?, last_message = ?,
                updated_at = ? WHERE ticket_id = ?",
    )
    .bind(status)
    .bind(due)
    .bind(exit_code)
    .bind(message)
    .bind(t)
    .bind(ticket_id)
    .execute(pool)
    .await?;
    Ok(())
}

/// A profile's next unused ticket, whose PIN replaces an ended one's.
#[derive(Debug, sqlx::FromRow)]
pub struct NextTicket {
    pub ticket_id: TicketId,
    pub delivery_id: DeliveryId,
    pub lock_code: String,
}

/// The profile's newest unused ticket that the server sets on its TV itself, if any: its PIN
/// replaces an ended ticket's.
pub async fn next_ticket(
    pool: &Pool,
    profile_id: ProfileId,
) -> Result<Option<NextTicket>, sqlx::Error> {
    sqlx::query_as(
        "SELECT t.id AS ticket_id, d.id AS delivery_id, t.lock_code
         FROM tickets t JOIN deliveries d ON d.ticket_id = t.id
         WHERE t.profile_id = ? AND t.state = 'unused' AND d.method IN ('local', 'ssh')
         ORDER BY t.id DESC LIMIT 1",
    )
    .bind(profile_id)
    .fetch_optional(pool)
    .await
}
