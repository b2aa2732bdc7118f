//! Tickets: PIN allocation, use, expiry.

use kodi_tickets_protocol::TicketState;

use super::{now, Pool};

/// Kodi lock codes the server hands out: "0000" to "9999".
pub const PIN_SPACE: i64 = 10_000;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Ticket {
    pub id: i64,
    pub profile_id: i64,
    pub profile_name: String,
    pub lock_code: String,
    pub length: i64,
    pub state: String,
    pub created_at: i64,
    pub used_at: Option<i64>,
    pub expires_at: Option<i64>,
    pub delivery_status: Option<String>,
    pub delivery_message: Option<String>,
}

impl Ticket {
    /// The state as of `at`: a running ticket whose time is up is expired even before the
    /// sweeper has written so.
    pub fn state_at(&self, at: i64) -> TicketState {
        match self.state.as_str() {
            "unused" => TicketState::Unused,
            "in_use" if self.expires_at.is_some_and(|e| e > at) => TicketState::InUse,
            "revoked" => TicketState::Revoked,
            _ => TicketState::Expired,
        }
    }

    pub fn remaining_seconds_at(&self, at: i64) -> Option<i64> {
        self.expires_at.map(|e| (e - at).max(0))
    }
}

const SELECT: &str = "SELECT t.id, t.profile_id, p.name AS profile_name, t.lock_code, t.length,
        t.state, t.created_at, t.used_at, t.expires_at,
        d.status AS delivery_status, d.last_message AS delivery_message
    FROM tickets t JOIN profiles p ON p.id = t.profile_id
    LEFT JOIN deliveries d ON d.ticket_id = t.id";

pub enum Created {
    Ticket {
        id: i64,
        lock_code: String,
    },
    /// Every one of the 10,000 codes belongs to a live ticket.
    NoFreeCode,
    ProfileNotFound,
}

/// Creates a ticket with a PIN drawn uniformly among the codes no live ticket holds, and its
/// delivery row, in one transaction.
///
/// `draw` is a random number from a CSPRNG; the statement takes it modulo the number of free
/// codes, so the choice is uniform and the cost does not grow as codes run out.
pub async fn insert(
    pool: &Pool,
    profile_id: i64,
    length: i64,
    draw: u32,
) -> Result<Created, sqlx::Error> {
    let t = now();
    let mut tx = pool.begin().await?;
    // NOTE: the first statement writes, so SQLite takes the write lock before reading the
    // free codes: concurrent creations queue on the busy timeout instead of racing.
    expire_due(&mut *tx, t).await?;
    let exists: Option<i64> = sqlx::query_scalar("SELECT id FROM profiles WHERE id = ?")
        .bind(profile_id)
        .fetch_optional(&mut *tx)
        .await?;
    if exists.is_none() {
        return Ok(Created::ProfileNotFound);
    }
    let row: Option<(i64, String)> = sqlx::query_as(
        "WITH RECURSIVE n(v) AS (SELECT 0 UNION ALL SELECT v + 1 FROM n WHERE v < ?1 - 1),
         free(code) AS (
             SELECT printf('%04d', v) FROM n
             WHERE printf('%04d', v) NOT IN
                 (SELECT lock_code FROM tickets WHERE state IN ('unused', 'in_use')))
         INSERT INTO tickets (profile_id, lock_code, length, state, created_at)
         SELECT ?2, code, ?3, 'unused', ?4 FROM free
         ORDER BY code LIMIT 1 OFFSET (?5 % max(1, (SELECT COUNT(*) FROM free)))
         RETURNING id, lock_code",
    )
    .bind(PIN_SPACE)
    .bind(profile_id)
    .bind(length)
    .bind(t)
    .bind(i64::from(draw))
    .fetch_all(&mut *tx)
    .await
    .map(super::first)?;
    let Some((id, lock_code)) = row else {
        return Ok(Created::NoFreeCode);
    };
    super::deliveries::insert(&mut *tx, id, t).await?;
    tx.commit().await?;
    Ok(Created::Ticket { id, lock_code })
}

/// Marks running tickets whose time is up as expired, freeing their codes.
pub async fn expire_due<'c, E>(executor: E, at: i64) -> Result<u64, sqlx::Error>
where
    E: sqlx::Executor<'c, Database = sqlx::Sqlite>,
{
    let r = sqlx::query(
        "UPDATE tickets SET state = 'expired' WHERE state = 'in_use' AND expires_at <= ?",
    )
    .bind(at)
    .execute(executor)
    .await?;
    Ok(r.rows_affected())
}

/// Marks the unused ticket with this PIN as used at `at`, in one statement: of any number of
/// racing calls exactly one succeeds.
pub async fn mark_used(
    pool: &Pool,
    lock_code: &str,
    at: i64,
) -> Result<Option<Ticket>, sqlx::Error> {
    let id: Option<i64> = sqlx::query_scalar(
        "UPDATE tickets SET state = 'in_use', used_at = ?1, expires_at = ?1 + length * 60
         WHERE lock_code = ?2 AND state = 'unused' RETURNING id",
    )
    .bind(at)
    .bind(lock_code)
    .fetch_all(pool)
    .await
    .map(super::first)?;
    match id {
        Some(id) => find(pool, id).await,
        None => Ok(None),
    }
}

pub async fn find(pool: &Pool, id: i64) -> Result<Option<Ticket>, sqlx::Error> {
    sqlx::query_as(&format!("{SELECT} WHERE t.id = ?"))
        .bind(id)
        .fetch_optional(pool)
        .await
}

/// The live ticket holding this PIN, or else the latest one that held it.
pub async fn find_by_code(pool: &Pool, lock_code: &str) -> Result<Option<Ticket>, sqlx::Error> {
    sqlx::query_as(&format!(
        "{SELECT} WHERE t.lock_code = ?
         ORDER BY t.state IN ('unused', 'in_use') DESC, t.id DESC LIMIT 1"
    ))
    .bind(lock_code)
    .fetch_optional(pool)
    .await
}

/// A profile's tickets, newest first.
pub async fn list_for_profile(pool: &Pool, profile_id: i64) -> Result<Vec<Ticket>, sqlx::Error> {
    sqlx::query_as(&format!(
        "{SELECT} WHERE t.profile_id = ? ORDER BY t.id DESC"
    ))
    .bind(profile_id)
    .fetch_all(pool)
    .await
}

pub async fn delete(pool: &Pool, id: i64) -> Result<bool, sqlx::Error> {
    let r = sqlx::query("DELETE FROM tickets WHERE id = ?")
        .bind(id)
        .execute(pool)
        .await?;
    Ok(r.rows_affected() > 0)
}
