//! Tickets: PIN allocation, use, expiry.

use kodi_tickets_protocol::TicketState;

use super::{now, Pool};

static CREATE_TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
static USE_TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

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
    pub delivery_updated_at: Option<i64>,
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
        d.status AS delivery_status, d.last_message AS delivery_message,
        d.updated_at AS delivery_updated_at
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
/// `draw` is a random number from a CSPRNG, taken modulo the number of free codes: the choice
/// is uniform and its cost does not grow as codes run out.
pub async fn insert(
    pool: &Pool,
    profile_id: i64,
    length: i64,
    draw: u32,
) -> Result<Created, sqlx::Error> {
    // NOTE: creations in this process queue here rather than in SQLite's busy handler, whose
    // growing sleeps would let a burst of them run into the busy timeout.
    let _turn = CREATE_TURN.lock().await;
    let t = now();
    let mut tx = pool.begin().await?;
    // NOTE: the first statement writes, so SQLite takes the write lock before the free codes
    // are read: concurrent creations (from any process) queue instead of racing.
    expire_due(&mut *tx, t).await?;
    let route: Option<(Option<i64>, Option<String>)> = sqlx::query_as(
        "SELECT p.device_id, d.delivery FROM profiles p LEFT JOIN devices d ON d.id = p.device_id
         WHERE p.id = ?",
    )
    .bind(profile_id)
    .fetch_optional(&mut *tx)
    .await?;
    let Some((device_id, delivery)) = route else {
        return Ok(Created::ProfileNotFound);
    };
    let method = match (device_id, delivery.as_deref()) {
        (Some(_), Some("agent")) => "agent",
        (Some(_), Some("ssh")) => "ssh",
        _ => "local",
    };
    // NOTE: one row holding every taken code (four digits each) rather than a row per code:
    // with 9,999 live tickets, fetching rows one by one cost ten times the rest of the insert.
    let packed: Option<String> = sqlx::query_scalar(
        "SELECT group_concat(lock_code, '') FROM tickets WHERE state IN ('unused', 'in_use')",
    )
    .fetch_one(&mut *tx)
    .await?;
    let Some(lock_code) = pick_free_code_packed(packed.unwrap_or_default().as_bytes(), draw) else {
        return Ok(Created::NoFreeCode);
    };
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO tickets (profile_id, lock_code, length, state, created_at)
         VALUES (?, ?, ?, 'unused', ?) RETURNING id",
    )
    .bind(profile_id)
    .bind(&lock_code)
    .bind(length)
    .bind(t)
    .fetch_all(&mut *tx)
    .await
    .and_then(super::only)?;
    super::deliveries::insert(&mut *tx, id, method, device_id, t).await?;
    tx.commit().await?;
    Ok(Created::Ticket { id, lock_code })
}

/// The `draw`-th (modulo their number) of the codes not in `taken`, in order.
pub fn pick_free_code(taken: &[String], draw: u32) -> Option<String> {
    pick_free(taken.iter().filter_map(|code| code.parse().ok()), draw)
}

/// [`pick_free_code`] with the taken codes packed together, four digits each.
fn pick_free_code_packed(packed: &[u8], draw: u32) -> Option<String> {
    let codes = packed
        .chunks(4)
        .filter_map(|code| std::str::from_utf8(code).ok()?.parse().ok());
    pick_free(codes, draw)
}

fn pick_free(taken: impl Iterator<Item = usize>, draw: u32) -> Option<String> {
    let mut is_taken = vec![false; PIN_SPACE as usize];
    for n in taken {
        if let Some(slot) = is_taken.get_mut(n) {
            *slot = true;
        }
    }
    let free = is_taken.iter().filter(|t| !**t).count();
    if free == 0 {
        return None;
    }
    let wanted = draw as usize % free;
    let n = (0..PIN_SPACE as usize)
        .filter(|n| !is_taken[*n])
        .nth(wanted)
        .expect("wanted < number of free codes");
    Some(format!("{n:04}"))
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
    // NOTE: logins in this process queue here, like creations (see `insert`): under a burst,
    // SQLite's busy handler slept 1 ms and more per collision, far longer than a write takes.
    let turn = USE_TURN.lock().await;
    // NOTE: `state IN ('unused', 'in_use')` repeats the condition of the index on live PINs, so
    // that SQLite uses it (it does not infer it from `state = 'unused'`) instead of reading
    // every ticket ever issued.
    let id: Option<i64> = sqlx::query_scalar(
        "UPDATE tickets SET state = 'in_use', used_at = max(?1, created_at),
                expires_at = max(?1, created_at) + length * 60
         WHERE lock_code = ?2 AND state IN ('unused', 'in_use') AND state = 'unused'
         RETURNING id",
    )
    .bind(at)
    .bind(lock_code)
    .fetch_all(pool)
    .await
    .map(super::first)?;
    drop(turn);
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
    // NOTE: the live ticket through the index on live PINs (the condition repeated so SQLite
    // uses it); only a PIN no live ticket holds reads the history, which has no index.
    let live = sqlx::query_as(&format!(
        "{SELECT} WHERE t.lock_code = ? AND t.state IN ('unused', 'in_use') LIMIT 1"
    ))
    .bind(lock_code)
    .fetch_optional(pool)
    .await?;
    if live.is_some() {
        return Ok(live);
    }
    sqlx::query_as(&format!(
        "{SELECT} WHERE t.lock_code = ? ORDER BY t.id DESC LIMIT 1"
    ))
    .bind(lock_code)
    .fetch_optional(pool)
    .await
}

/// A running ticket of a profile on a given Kodi box.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RunningSession {
    pub ticket_id: i64,
    pub profile_name: String,
    pub expires_at: i64,
}

/// Tickets in use (or ended within the last `grace` seconds, so an agent that missed the end
/// still logs off) on the profiles of a device.
pub async fn sessions_for_device(
    pool: &Pool,
    device_id: i64,
    now: i64,
    grace: i64,
) -> Result<Vec<RunningSession>, sqlx::Error> {
    sqlx::query_as(
        "SELECT t.id AS ticket_id, p.name AS profile_name, t.expires_at
         FROM tickets t JOIN profiles p ON p.id = t.profile_id
         WHERE t.profile_id IN (SELECT id FROM profiles WHERE device_id = ?1)
           AND t.used_at IS NOT NULL AND t.expires_at > ?2
         ORDER BY t.id",
    )
    .bind(device_id)
    .bind(now - grace)
    .fetch_all(pool)
    .await
}

/// Ends a running ticket now (the admin's "end now").
pub async fn end_now(pool: &Pool, id: i64) -> Result<bool, sqlx::Error> {
    let t = now();
    let r = sqlx::query(
        "UPDATE tickets SET state = 'expired', expires_at = ?1 WHERE id = ?2 AND state = 'in_use'",
    )
    .bind(t)
    .bind(id)
    .execute(pool)
    .await?;
    Ok(r.rows_affected() > 0)
}

/// Adds minutes to a running ticket.
pub async fn extend(pool: &Pool, id: i64, minutes: i64) -> Result<bool, sqlx::Error> {
    let r = sqlx::query(
        "UPDATE tickets SET expires_at = expires_at + ?1 * 60, length = length + ?1
         WHERE id = ?2 AND state = 'in_use' AND expires_at > ?3",
    )
    .bind(minutes)
    .bind(id)
    .bind(now())
    .execute(pool)
    .await?;
    Ok(r.rows_affected() > 0)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_draw_lands_on_a_free_code() {
        let taken: Vec<String> = (0..PIN_SPACE)
            .filter(|n| n % 3 != 0)
            .map(|n| format!("{n:04}"))
            .collect();
        let free = (PIN_SPACE as u32).div_ceil(3);
        let mut seen = std::collections::HashSet::new();
        for draw in 0..free {
            let code = pick_free_code(&taken, draw).unwrap();
            assert_eq!(code.parse::<i64>().unwrap() % 3, 0, "{code}");
            seen.insert(code);
        }
        assert_eq!(
            seen.len() as u32,
            free,
            "each free code is reachable exactly once per cycle"
        );
    }

    #[test]
    fn packed_codes_pick_like_a_list() {
        let taken: Vec<String> = (0..PIN_SPACE)
            .filter(|n| n % 7 == 3 || n % 5 == 0)
            .map(|n| format!("{n:04}"))
            .collect();
        let packed = taken.concat();
        for draw in [0, 1, 17, 4_000, u32::MAX] {
            assert_eq!(
                pick_free_code_packed(packed.as_bytes(), draw),
                pick_free_code(&taken, draw)
            );
        }
        assert_eq!(pick_free_code_packed(b"", 3), Some("0003".into()));
    }

    #[test]
    fn no_free_code_is_none() {
        let taken: Vec<String> = (0..PIN_SPACE).map(|n| format!("{n:04}")).collect();
        assert_eq!(pick_free_code(&taken, 7), None);
        assert_eq!(pick_free_code(&taken[1..], 12345), Some("0000".into()));
    }
}
