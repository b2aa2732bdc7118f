//! Tickets deleted while an agent holds them: written by the triggers of migration
//! `withdrawals`, sent on the device's event stream until the agent acknowledges them.

use super::{DeviceId, Pool, TicketId};

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Withdrawal {
    pub ticket_id: TicketId,
    pub profile_name: String,
}

/// The device's deleted tickets its agent has not acknowledged, oldest first.
pub async fn for_device(pool: &Pool, device_id: DeviceId) -> Result<Vec<Withdrawal>, sqlx::Error> {
    sqlx::query_as(
        "SELECT ticket_id, profile_name FROM withdrawals WHERE device_id = ? ORDER BY created_at, ticket_id",
    )
    .bind(device_id)
    .fetch_all(pool)
    .await
}

/// The agent dealt with it; `false` when it is not this device's.
pub async fn acknowledge(
    pool: &Pool,
    ticket_id: TicketId,
    device_id: DeviceId,
) -> Result<bool, sqlx::Error> {
    let r = sqlx::query("DELETE FROM withdrawals WHERE ticket_id = ? AND device_id = ?")
        .bind(ticket_id)
        .bind(device_id)
        .execute(pool)
        .await?;
    Ok(r.rows_affected() > 0)
}
