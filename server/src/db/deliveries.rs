//! The delivery outbox: one row per ticket whose PIN must reach Kodi.

use kodi_tickets_protocol::DeliveryOutcome;

use super::{now, Delivery, DeliveryId, DeliveryStatus, DeviceId, Pool, TicketId};

/// Seconds between retries while Kodi is busy (a profile session is in use).
pub const BUSY_RETRY_SECS: i64 = 30;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Job {
    pub id: DeliveryId,
    pub ticket_id: TicketId,
    pub profile_name: String,
    pub lock_code: String,
    /// How often it was queued again (Retry): a new count is a new thing to send.
    #[sqlx(default)]
    pub requeues: i64,
    /// How the PIN goes: the server runs `Local` and `Ssh` jobs, an agent the others.
    pub method: Delivery,
    #[sqlx(skip)]
    pub ssh: Option<SshTarget>,
}

/// Where the server logs in to run the Kodi script of a device delivered by `ssh`.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct SshTarget {
    pub ssh_user: String,
    pub ssh_host: String,
    pub ssh_port: i64,
    pub ssh_key_path: String,
}

/// Queues a ticket's PIN for its Kodi box.
pub async fn insert<'c, E>(
    executor: E,
    ticket_id: TicketId,
    method: Delivery,
    device_id: Option<DeviceId>,
    at: i64,
) -> Result<(), sqlx::Error>
where
    E: sqlx::Executor<'c, Database = sqlx::Sqlite>,
{
    sqlx::query(
        "INSERT INTO deliveries (ticket_id, method, device_id, status, next_attempt_at, created_at, updated_at)
         VALUES (?1, ?2, ?3, 'pending', ?4, ?4, ?4)",
    )
    .bind(ticket_id)
    .bind(method)
    .bind(device_id)
    .bind(at)
    .execute(executor)
    .await?;
    Ok(())
}

/// Claims the oldest due job, marking it running, in one statement.
pub async fn claim_due(pool: &Pool) -> Result<Option<Job>, sqlx::Error> {
    let t = now();
    let claimed: Option<(DeliveryId,)> = sqlx::query_as(
        "UPDATE deliveries SET status = 'running', attempts = attempts + 1, updated_at = ?1
         WHERE id = (SELECT id FROM deliveries
                     WHERE status = 'pending' AND method IN ('local', 'ssh') AND next_attempt_at <= ?1
                     ORDER BY next_attempt_at, id LIMIT 1)
         RETURNING id",
    )
    .bind(t)
    .fetch_all(pool)
    .await
    .map(super::first)?;
    let Some((id,)) = claimed else {
        return Ok(None);
    };
    let job: Option<Job> = sqlx::query_as(
        "SELECT d.id, d.ticket_id, p.name AS profile_name, t.lock_code, d.method
         FROM deliveries d JOIN tickets t ON t.id = d.ticket_id JOIN profiles p ON p.id = t.profile_id
         WHERE d.id = ?",
    )
    .bind(id)
    .fetch_optional(pool)
    .await?;
    let Some(mut job) = job else {
        return Ok(None);
    };
    if job.method == Delivery::Ssh {
        if let Some(device) = device_of(pool, id).await? {
            job.ssh = ssh_target(pool, device).await?;
        }
    }
    Ok(Some(job))
}

async fn device_of(pool: &Pool, id: DeliveryId) -> Result<Option<DeviceId>, sqlx::Error> {
    sqlx::query_scalar("SELECT device_id FROM deliveries WHERE id = ?")
        .bind(id)
        .fetch_one(pool)
        .await
}

/// A device's SSH settings, when all of them are set.
pub async fn ssh_target(
    pool: &Pool,
    device_id: DeviceId,
) -> Result<Option<SshTarget>, sqlx::Error> {
    sqlx::query_as(
        "SELECT ssh_user, ssh_host, ssh_port, ssh_key_path FROM devices
         WHERE id = ? AND ssh_user IS NOT NULL AND ssh_host IS NOT NULL
           AND ssh_key_path IS NOT NULL",
    )
    .bind(device_id)
    .fetch_optional(pool)
    .await
}

/// When the next pending job falls due, if any.
pub async fn next_due_at(pool: &Pool) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT MIN(next_attempt_at) FROM deliveries
         WHERE status = 'pending' AND method IN ('local', 'ssh')",
    )
    .fetch_one(pool)
    .await
}

/// A delivery's status after a run with this outcome: a busy Kodi is tried again later.
fn status_after(outcome: DeliveryOutcome) -> DeliveryStatus {
    match outcome {
        DeliveryOutcome::Applied => DeliveryStatus::Applied,
        DeliveryOutcome::Busy => DeliveryStatus::Pending,
        DeliveryOutcome::Failed => DeliveryStatus::Failed,
    }
}

pub async fn finish(
    pool: &Pool,
    id: DeliveryId,
    outcome: DeliveryOutcome,
    exit_code: Option<i32>,
    message: &str,
) -> Result<(), sqlx::Error> {
    let t = now();
    let next = match outcome {
        DeliveryOutcome::Busy => t + BUSY_RETRY_SECS,
        DeliveryOutcome::Applied | DeliveryOutcome::Failed => t,
    };
    sqlx::query(
        "UPDATE deliveries SET status = ?, next_attempt_at = ?, last_exit_code = ?, last_message = ?,
                updated_at = ? WHERE id = ?",
    )
    .bind(status_after(outcome))
    .bind(next)
    .bind(exit_code)
    .bind(message)
    .bind(t)
    .bind(id)
    .execute(pool)
    .await?;
    Ok(())
}

/// What the retry button found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retried {
    /// The ticket's delivery had not failed: nothing to do.
    NotFailed,
    /// Queued again, for this box (none: the server's machine).
    Queued { device_id: Option<DeviceId> },
}

/// Queues a failed delivery again (the retry button).
pub async fn retry(pool: &Pool, ticket_id: TicketId) -> Result<Retried, sqlx::Error> {
    let t = now();
    let queued: Option<Option<DeviceId>> = sqlx::query_scalar(
        "UPDATE deliveries SET status = 'pending', next_attempt_at = ?1, updated_at = ?1,
                requeues = requeues + 1
         WHERE ticket_id = ?2 AND status = 'failed'
         RETURNING device_id",
    )
    .bind(t)
    .bind(ticket_id)
    .fetch_all(pool)
    .await
    .map(super::first)?;
    Ok(match queued {
        Some(device_id) => Retried::Queued { device_id },
        None => Retried::NotFailed,
    })
}

/// Jobs left running by a process that died are queued again at start-up.
pub async fn requeue_interrupted(pool: &Pool) -> Result<u64, sqlx::Error> {
    let r = sqlx::query(
        "UPDATE deliveries SET status = 'pending', updated_at = ?
         WHERE status = 'running' AND method IN ('local', 'ssh')",
    )
    .bind(now())
    .execute(pool)
    .await?;
    Ok(r.rows_affected())
}

/// The deliveries waiting for a device's agent, oldest first.
pub async fn pending_for_device(pool: &Pool, device_id: DeviceId) -> Result<Vec<Job>, sqlx::Error> {
    sqlx::query_as(
        "SELECT d.id, d.ticket_id, p.name AS profile_name, t.lock_code, d.requeues, d.method
         FROM deliveries d JOIN tickets t ON t.id = d.ticket_id JOIN profiles p ON p.id = t.profile_id
         WHERE d.device_id = ? AND d.method = 'agent' AND d.status IN ('pending', 'running')
         ORDER BY d.id",
    )
    .bind(device_id)
    .fetch_all(pool)
    .await
}

/// Records what a device's agent reports about one of its deliveries; `false` when the
/// delivery is not that device's.
pub async fn report(
    pool: &Pool,
    id: DeliveryId,
    device_id: DeviceId,
    outcome: DeliveryOutcome,
    exit_code: Option<i32>,
    message: &str,
) -> Result<bool, sqlx::Error> {
    let r = sqlx::query(
        "UPDATE deliveries SET status = ?, last_exit_code = ?, last_message = ?, updated_at = ?,
                attempts = attempts + 1
         WHERE id = ? AND device_id = ? AND method = 'agent'",
    )
    .bind(status_after(outcome))
    .bind(exit_code)
    .bind(message)
    .bind(now())
    .bind(id)
    .bind(device_id)
    .execute(pool)
    .await?;
    Ok(r.rows_affected() > 0)
}
