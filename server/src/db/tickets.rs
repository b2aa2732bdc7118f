//! Tickets: PIN allocation, use, expiry.

use kodi_tickets_protocol::TicketState;

use super::{now, Delivery, DeliveryStatus, DeviceId, Pool, ProfileId, TicketId};

static CREATE_TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Kodi lock codes the server hands out: "0000" to "9999".
pub const PIN_SPACE: i64 = 10_000;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Ticket {
    pub id: TicketId,
    pub profile_id: ProfileId,
    pub profile_name: String,
    /// The Kodi box the ticket's profile is on now (none: the server's machine).
    pub device_id: Option<DeviceId>,
    pub lock_code: String,
    pub length: i64,
    /// As stored: a running ticket stays `InUse` here until the sweeper marks it expired.
    pub state: TicketState,
    pub created_at: i64,
    pub used_at: Option<i64>,
    pub expires_at: Option<i64>,
    /// When the TV was seen at its login screen after the ticket ended.
    pub logged_off_at: Option<i64>,
    pub delivery_status: Option<DeliveryStatus>,
    pub delivery_message: Option<String>,
    pub delivery_updated_at: Option<i64>,
}

impl Ticket {
    /// The state as of `at`: a running ticket whose time is up is expired even before the
    /// sweeper has written so.
    pub fn state_at(&self, at: i64) -> TicketState {
        match self.state {
            TicketState::InUse if self.expires_at.is_none_or(|e| e <= at) => TicketState::Expired,
            stored => stored,
        }
    }

    /// Whether, as of `at`, its session has ended but its TV was not yet seen logged off.
    pub fn awaits_log_off(&self, at: i64) -> bool {
        !matches!(self.state_at(at), TicketState::Unused | TicketState::InUse)
            && self.used_at.is_some()
            && self.logged_off_at.is_none()
    }

    pub fn remaining_seconds_at(&self, at: i64) -> Option<i64> {
        self.expires_at.map(|e| (e - at).max(0))
    }
}

const SELECT: &str = "SELECT t.id, t.profile_id, p.name AS profile_name, p.device_id, t.lock_code,
        t.length,
        t.state, t.created_at, t.used_at, t.expires_at, t.logged_off_at,
        d.status AS delivery_status, d.last_message AS delivery_message,
        d.updated_at AS delivery_updated_at
    FROM tickets t JOIN profiles p ON p.id = t.profile_id
    LEFT JOIN deliveries d ON d.ticket_id = t.id";

pub enum Created {
    Ticket {
        id: TicketId,
        lock_code: String,
        /// The Kodi box that gets the PIN (none: the server's machine).
        device_id: Option<DeviceId>,
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
    profile_id: ProfileId,
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
    let route: Option<(Option<DeviceId>, Option<Delivery>)> = sqlx::query_as(
        "SELECT p.device_id, d.delivery FROM profiles p LEFT JOIN devices d ON d.id = p.device_id
         WHERE p.id = ?",
    )
    .bind(profile_id)
    .fetch_optional(&mut *tx)
    .await?;
    let Some((device_id, delivery)) = route else {
        return Ok(Created::ProfileNotFound);
    };
    let method = delivery
        .filter(|_| device_id.is_some())
        .unwrap_or(Delivery::Local);
    // NOTE: the counts per block of 100 codes (kept by triggers) find the block of the drawn
    // free code; only that block's live codes are read, however many tickets are live.
    let live_per_block: Vec<i64> = sqlx::query_scalar("SELECT live FROM pin_blocks ORDER BY block")
        .fetch_all(&mut *tx)
        .await?;
    let Some(slot) = locate_free(&live_per_block, draw) else {
        return Ok(Created::NoFreeCode);
    };
    let (first, last) = slot.bounds();
    let taken: Vec<String> = sqlx::query_scalar(
        "SELECT lock_code FROM tickets
         WHERE state IN ('unused', 'in_use') AND lock_code BETWEEN ? AND ?",
    )
    .bind(first)
    .bind(last)
    .fetch_all(&mut *tx)
    .await?;
    let lock_code = slot.code(&taken).ok_or_else(|| {
        sqlx::Error::Protocol("pin_blocks disagrees with the live tickets".into())
    })?;
    let id: TicketId = sqlx::query_scalar(
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
    Ok(Created::Ticket {
        id,
        lock_code,
        device_id,
    })
}

/// Codes per block of `pin_blocks`: block `b` holds the codes `b * 100` to `b * 100 + 99`.
pub const BLOCK_SIZE: i64 = 100;

/// Where a drawn free code lies: its block, and its rank among that block's free codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FreeSlot {
    block: i64,
    rank: usize,
}

/// Locates the `draw`-th (modulo their number) of the free codes in order, from the number of
/// live codes in each block (block 0 first). `None` when no code is free.
pub fn locate_free(live_per_block: &[i64], draw: u32) -> Option<FreeSlot> {
    let free_in = |live: &i64| (BLOCK_SIZE - live).max(0) as usize;
    let free: usize = live_per_block.iter().map(free_in).sum();
    if free == 0 {
        return None;
    }
    let mut rank = draw as usize % free;
    for (block, live) in live_per_block.iter().enumerate() {
        let here = free_in(live);
        if rank < here {
            return Some(FreeSlot {
                block: block as i64,
                rank,
            });
        }
        rank -= here;
    }
    unreachable!("rank < the sum of the blocks' free codes")
}

impl FreeSlot {
    /// The block's first and last code, as stored.
    pub fn bounds(&self) -> (String, String) {
        let first = self.block * BLOCK_SIZE;
        (
            format!("{first:04}"),
            format!("{:04}", first + BLOCK_SIZE - 1),
        )
    }

    /// The code itself, given the live codes of the block; `None` if the block has fewer free
    /// codes than its count said.
    pub fn code(&self, taken_in_block: &[String]) -> Option<String> {
        let first = self.block * BLOCK_SIZE;
        let mut is_free = [true; BLOCK_SIZE as usize];
        for code in taken_in_block {
            if let Some(slot) = code
                .parse::<i64>()
                .ok()
                .and_then(|n| is_free.get_mut(usize::try_from(n - first).ok()?))
            {
                *slot = false;
            }
        }
        (0..BLOCK_SIZE)
            .filter(|n| is_free[*n as usize])
            .nth(self.rank)
            .map(|n| format!("{:04}", first + n))
    }
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

/// A login to write: a PIN typed on a device's Kodi, and when.
pub struct Use<'a> {
    pub lock_code: &'a str,
    pub device_id: DeviceId,
    pub at: i64,
}

/// Marks the unused tickets with these PINs, each of a profile of the device reporting it, as
/// used at the given times (or at their creation, if later), in one statement and so one
/// commit; returns the ids and PINs of those it marked. A PIN no unused ticket of that
/// device's profiles holds is left out; of racing calls with one PIN exactly one marks it.
pub async fn mark_used(
    pool: &Pool,
    uses: &[Use<'_>],
) -> Result<Vec<(TicketId, String)>, sqlx::Error> {
    if uses.is_empty() {
        return Ok(Vec::new());
    }
    // NOTE: `state IN ('unused', 'in_use')` repeats the condition of the index on live PINs, so
    // that SQLite uses it (it does not infer it from `state = 'unused'`) instead of reading
    // every ticket ever issued.
    let sql = format!(
        "UPDATE tickets SET state = 'in_use',
                used_at = max(logins.column2, tickets.created_at),
                expires_at = max(logins.column2, tickets.created_at) + tickets.length * 60
         FROM (VALUES {}) AS logins JOIN profiles ON profiles.device_id = logins.column3
         WHERE tickets.lock_code = logins.column1 AND tickets.profile_id = profiles.id
           AND tickets.state IN ('unused', 'in_use') AND tickets.state = 'unused'
         RETURNING id, lock_code",
        vec!["(?, ?, ?)"; uses.len()].join(", ")
    );
    let mut query = sqlx::query_as(&sql);
    for login in uses {
        query = query
            .bind(login.lock_code)
            .bind(login.at)
            .bind(login.device_id);
    }
    query.fetch_all(pool).await
}

pub async fn find(pool: &Pool, id: TicketId) -> Result<Option<Ticket>, sqlx::Error> {
    sqlx::query_as(&format!("{SELECT} WHERE t.id = ?"))
        .bind(id)
        .fetch_optional(pool)
        .await
}

/// The live (unused or running) ticket holding this PIN, if it is of one of the device's
/// profiles.
pub async fn find_live_by_code(
    pool: &Pool,
    lock_code: &str,
    device_id: DeviceId,
) -> Result<Option<Ticket>, sqlx::Error> {
    // NOTE: the condition repeats the condition of the index on live PINs so that SQLite uses it.
    sqlx::query_as(&format!(
        "{SELECT} WHERE t.lock_code = ? AND t.state IN ('unused', 'in_use') AND p.device_id = ?
         LIMIT 1"
    ))
    .bind(lock_code)
    .bind(device_id)
    .fetch_optional(pool)
    .await
}

/// A running ticket of a profile on a given Kodi box.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RunningSession {
    pub ticket_id: TicketId,
    pub profile_name: String,
    pub expires_at: i64,
}

/// Tickets in use on the profiles of a device, and those ended within the last `grace`
/// seconds, so that an early end (End now) still reaches a stream that was told the session
/// runs.
pub async fn sessions_for_device(
    pool: &Pool,
    device_id: DeviceId,
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

/// Notes that the TV was seen logged off after the used ticket `id` ended (the first report
/// counts). With `reported_by`, only a ticket of one of that device's profiles counts.
/// `false` when there is no such ticket.
pub async fn mark_logged_off(
    pool: &Pool,
    id: TicketId,
    reported_by: Option<DeviceId>,
    at: i64,
) -> Result<bool, sqlx::Error> {
    let r = sqlx::query(
        "UPDATE tickets SET logged_off_at = coalesce(logged_off_at, ?1)
         WHERE id = ?2 AND used_at IS NOT NULL
           AND (?3 IS NULL OR profile_id IN (SELECT id FROM profiles WHERE device_id = ?3))",
    )
    .bind(at)
    .bind(id)
    .bind(reported_by)
    .execute(pool)
    .await?;
    Ok(r.rows_affected() > 0)
}

/// Ends a running ticket now (the admin's "end now").
pub async fn end_now(pool: &Pool, id: TicketId) -> Result<bool, sqlx::Error> {
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
pub async fn extend(pool: &Pool, id: TicketId, minutes: i64) -> Result<bool, sqlx::Error> {
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

/// When the next running ticket's time is up, after `now`.
pub async fn next_time_up(pool: &Pool, now: i64) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT MIN(expires_at) FROM tickets WHERE state = 'in_use' AND expires_at > ?",
    )
    .bind(now)
    .fetch_one(pool)
    .await
}

/// Every profile's live tickets (unused or running), newest first.
pub async fn live_all(pool: &Pool) -> Result<Vec<Ticket>, sqlx::Error> {
    sqlx::query_as(&format!(
        "{SELECT} WHERE t.state IN ('unused', 'in_use') ORDER BY t.id DESC"
    ))
    .fetch_all(pool)
    .await
}

/// Every ended ticket whose TV was not yet seen logged off, newest first.
pub async fn not_logged_off_all(pool: &Pool) -> Result<Vec<Ticket>, sqlx::Error> {
    // NOTE: the condition repeats the partial index's so that SQLite uses it.
    sqlx::query_as(&format!(
        "{SELECT} WHERE t.used_at IS NOT NULL AND t.logged_off_at IS NULL
           AND t.state IN ('expired', 'revoked')
         ORDER BY t.id DESC"
    ))
    .fetch_all(pool)
    .await
}

/// Per profile, the unused ticket whose PIN was applied to Kodi last (Kodi holds it now):
/// `(profile id, ticket id)`.
pub async fn armed_all(pool: &Pool) -> Result<Vec<(ProfileId, TicketId)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT profile_id, id FROM (
             SELECT t.profile_id, t.id, t.state,
                    ROW_NUMBER() OVER (PARTITION BY t.profile_id
                                       ORDER BY d.updated_at DESC, t.id DESC) AS n
             FROM tickets t JOIN deliveries d ON d.ticket_id = t.id
             WHERE d.status = 'applied')
         WHERE n = 1 AND state = 'unused'",
    )
    .fetch_all(pool)
    .await
}

/// A profile's newest `newest` live (unused or running) tickets, newest first, with any
/// running one and ticket `also` among them wherever they fall; every one for `newest` -1.
pub async fn live_for_profile(
    pool: &Pool,
    profile_id: ProfileId,
    newest: i64,
    also: Option<TicketId>,
) -> Result<Vec<Ticket>, sqlx::Error> {
    sqlx::query_as(&format!(
        "{SELECT} WHERE t.profile_id = ?1 AND t.state IN ('unused', 'in_use')
         AND (t.state = 'in_use' OR t.id = ?3 OR t.id IN (
             SELECT id FROM tickets WHERE profile_id = ?1 AND state IN ('unused', 'in_use')
             ORDER BY id DESC LIMIT ?2))
         ORDER BY t.id DESC"
    ))
    .bind(profile_id)
    .bind(newest)
    .bind(also)
    .fetch_all(pool)
    .await
}

/// How many live (unused or running) tickets a profile has.
pub async fn count_live_for_profile(
    pool: &Pool,
    profile_id: ProfileId,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT COUNT(*) FROM tickets WHERE profile_id = ? AND state IN ('unused', 'in_use')",
    )
    .bind(profile_id)
    .fetch_one(pool)
    .await
}

/// A page of a profile's ended tickets (expired or revoked), newest first.
pub async fn ended_for_profile(
    pool: &Pool,
    profile_id: ProfileId,
    limit: i64,
    offset: i64,
) -> Result<Vec<Ticket>, sqlx::Error> {
    sqlx::query_as(&format!(
        "{SELECT} WHERE t.profile_id = ? AND t.state NOT IN ('unused', 'in_use')
         ORDER BY t.id DESC LIMIT ? OFFSET ?"
    ))
    .bind(profile_id)
    .bind(limit)
    .bind(offset)
    .fetch_all(pool)
    .await
}

pub async fn count_ended_for_profile(
    pool: &Pool,
    profile_id: ProfileId,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT count(*) FROM tickets WHERE profile_id = ? AND state NOT IN ('unused', 'in_use')",
    )
    .bind(profile_id)
    .fetch_one(pool)
    .await
}

/// The profile's ticket whose PIN was applied to Kodi last: Kodi holds that lock code now.
pub async fn last_applied(
    pool: &Pool,
    profile_id: ProfileId,
) -> Result<Option<Ticket>, sqlx::Error> {
    sqlx::query_as(&format!(
        "{SELECT} WHERE t.profile_id = ? AND d.status = 'applied'
         ORDER BY d.updated_at DESC, t.id DESC LIMIT 1"
    ))
    .bind(profile_id)
    .fetch_optional(pool)
    .await
}

/// What removing a ticket did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Removed {
    /// It was live: it ended now and stays listed, as removed.
    Ended,
    /// It had ended: it left the list.
    Deleted,
    NotFound,
}

/// Removes a ticket (the page's Delete). A live one ends now and stays listed as removed: its
/// PIN stops opening the profile and a running session ends, through the triggers that end
/// and withdraw tickets. An ended one leaves the list.
pub async fn remove(pool: &Pool, id: TicketId) -> Result<Removed, sqlx::Error> {
    let ended = sqlx::query(
        "UPDATE tickets SET state = 'revoked',
                expires_at = CASE WHEN state = 'in_use' THEN min(expires_at, ?1) END
         WHERE id = ?2 AND state IN ('unused', 'in_use')",
    )
    .bind(now())
    .bind(id)
    .execute(pool)
    .await?;
    if ended.rows_affected() > 0 {
        return Ok(Removed::Ended);
    }
    Ok(if delete(pool, id).await? {
        Removed::Deleted
    } else {
        Removed::NotFound
    })
}

pub async fn delete(pool: &Pool, id: TicketId) -> Result<bool, sqlx::Error> {
    let r = sqlx::query("DELETE FROM tickets WHERE id = ?")
        .bind(id)
        .execute(pool)
        .await?;
    Ok(r.rows_affected() > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BLOCKS: usize = (PIN_SPACE / BLOCK_SIZE) as usize;

    #[test]
    fn draws_walk_the_free_codes_in_order_across_blocks() {
        let mut live = vec![BLOCK_SIZE; BLOCKS];
        live[3] = BLOCK_SIZE - 2;
        live[97] = BLOCK_SIZE - 1;
        let slots: Vec<FreeSlot> = (0..4).map(|d| locate_free(&live, d).unwrap()).collect();
        assert_eq!(
            slots,
            [
                FreeSlot { block: 3, rank: 0 },
                FreeSlot { block: 3, rank: 1 },
                FreeSlot { block: 97, rank: 0 },
                FreeSlot { block: 3, rank: 0 },
            ]
        );
        assert_eq!(slots[2].bounds(), ("9700".into(), "9799".into()));
    }

    #[test]
    fn no_free_code_is_none() {
        assert_eq!(locate_free(&vec![BLOCK_SIZE; BLOCKS], 7), None);
        assert_eq!(locate_free(&[], 7), None);
    }

    #[test]
    fn the_code_skips_the_blocks_taken_codes() {
        let slot = FreeSlot { block: 0, rank: 2 };
        let taken = ["0000".to_string(), "0002".into(), "0003".into()];
        assert_eq!(
            slot.code(&taken).as_deref(),
            Some("0005"),
            "free: 0001 0004 0005"
        );
        assert_eq!(
            FreeSlot {
                block: 42,
                rank: 99
            }
            .code(&[])
            .as_deref(),
            Some("4299")
        );
        let full: Vec<String> = (4200..4299).map(|n| format!("{n:04}")).collect();
        assert_eq!(FreeSlot { block: 42, rank: 1 }.code(&full), None);
    }
}
