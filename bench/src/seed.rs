//! Seeding and resetting the server's SQLite file directly (fast, and never measured): the
//! measured operations all go through HTTP.

use std::path::Path;
use std::time::Duration;

use rand::RngCore;
use sha2::{Digest, Sha256};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
use sqlx::SqlitePool;

pub fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// One connection to the server's database, patient with the server's writes.
pub async fn open(db: &Path) -> anyhow::Result<SqlitePool> {
    let options = SqliteConnectOptions::new()
        .filename(db)
        .busy_timeout(Duration::from_secs(30));
    Ok(SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(options)
        .await?)
}

/// A device token as the server makes them (`kt_…`) and the hash it keeps.
pub fn new_token() -> (String, String) {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let token = format!("kt_{}", hex::encode(bytes));
    let hash = hex::encode(Sha256::digest(token.as_bytes()));
    (token, hash)
}

/// Inserts `names.len()` devices in one transaction; their ids and tokens, in order.
pub async fn devices(pool: &SqlitePool, names: &[String]) -> anyhow::Result<Vec<(i64, String)>> {
    let mut tx = pool.begin().await?;
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        let (token, hash) = new_token();
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO devices (name, token_hash, created_at) VALUES (?, ?, ?) RETURNING id",
        )
        .bind(name)
        .bind(hash)
        .bind(now())
        .fetch_one(&mut *tx)
        .await?;
        out.push((id, token));
    }
    tx.commit().await?;
    Ok(out)
}

pub async fn device_id(pool: &SqlitePool, name: &str) -> anyhow::Result<i64> {
    Ok(sqlx::query_scalar("SELECT id FROM devices WHERE name = ?")
        .bind(name)
        .fetch_one(pool)
        .await?)
}

/// Inserts profiles (name, device) in one transaction; their ids, in order.
pub async fn profiles(
    pool: &SqlitePool,
    profiles: &[(String, Option<i64>)],
) -> anyhow::Result<Vec<i64>> {
    let mut tx = pool.begin().await?;
    let mut ids = Vec::with_capacity(profiles.len());
    let t = now();
    for (name, device) in profiles {
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO profiles (name, device_id, created_at, updated_at) VALUES (?, ?, ?, ?)
             RETURNING id",
        )
        .bind(name)
        .bind(device)
        .bind(t)
        .bind(t)
        .fetch_one(&mut *tx)
        .await?;
        ids.push(id);
    }
    tx.commit().await?;
    Ok(ids)
}

pub async fn profile(pool: &SqlitePool, name: &str, device: Option<i64>) -> anyhow::Result<i64> {
    Ok(profiles(pool, &[(name.to_owned(), device)]).await?[0])
}

/// Tickets in `state` (without a delivery: nothing sets their PINs on a TV) with the given
/// codes, in one transaction.
pub async fn tickets(
    pool: &SqlitePool,
    profile: i64,
    codes: impl IntoIterator<Item = u32>,
    state: &str,
) -> anyhow::Result<()> {
    let mut tx = pool.begin().await?;
    let t = now();
    for code in codes {
        sqlx::query(
            "INSERT INTO tickets (profile_id, lock_code, length, state, created_at)
             VALUES (?, ?, 30, ?, ?)",
        )
        .bind(profile)
        .bind(format!("{code:04}"))
        .bind(state)
        .bind(t)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// A profile's history as the profile page shows it: `count` tickets issued an hour apart,
/// each with its delivery. The newest `live` are unused (PINs `first_live_code`…), the
/// others used and expired (a few revoked).
pub async fn history(
    pool: &SqlitePool,
    profile: i64,
    count: usize,
    live: usize,
    first_live_code: u32,
) -> anyhow::Result<()> {
    let mut tx = pool.begin().await?;
    let t = now();
    for i in 0..count {
        let created = t - (count - i) as i64 * 3600;
        let is_live = i >= count - live;
        let (code, state, used, expires) = if is_live {
            let code = first_live_code + (i - (count - live)) as u32;
            (code, "unused", None, None)
        } else if i % 50 == 7 {
            ((i * 37 % 10_000) as u32, "revoked", None, None)
        } else {
            let used = created + 120;
            (
                (i * 37 % 10_000) as u32,
                "expired",
                Some(used),
                Some(used + 1800),
            )
        };
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO tickets (profile_id, lock_code, length, state, created_at, used_at, expires_at)
             VALUES (?, ?, 30, ?, ?, ?, ?) RETURNING id",
        )
        .bind(profile)
        .bind(format!("{code:04}"))
        .bind(state)
        .bind(created)
        .bind(used)
        .bind(expires)
        .fetch_one(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO deliveries (ticket_id, method, status, attempts, last_exit_code,
                                     last_message, next_attempt_at, created_at, updated_at)
             VALUES (?1, 'local', 'applied', 1, 0, 'applied to Kodi', ?2, ?2, ?3)",
        )
        .bind(id)
        .bind(created)
        .bind(created + 5)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// `n` codes that no live ticket holds now, lowest first.
pub async fn free_codes(pool: &SqlitePool, n: usize) -> anyhow::Result<Vec<u32>> {
    let live: std::collections::HashSet<String> =
        sqlx::query_scalar("SELECT lock_code FROM tickets WHERE state IN ('unused', 'in_use')")
            .fetch_all(pool)
            .await?
            .into_iter()
            .collect();
    Ok((0..10_000u32)
        .filter(|c| !live.contains(&format!("{c:04}")))
        .take(n)
        .collect())
}

/// Sets every live (unused or in use) ticket, or those of one profile, to `state`.
pub async fn end_live(pool: &SqlitePool, profile: Option<i64>, state: &str) -> anyhow::Result<u64> {
    let r = sqlx::query(
        "UPDATE tickets SET state = ?1 WHERE state IN ('unused', 'in_use')
         AND (?2 IS NULL OR profile_id = ?2)",
    )
    .bind(state)
    .bind(profile)
    .execute(pool)
    .await?;
    Ok(r.rows_affected())
}

/// Makes every ticket of a profile unused again (the filler of the 9,999th-ticket figure).
pub async fn revive(pool: &SqlitePool, profile: i64) -> anyhow::Result<u64> {
    let r = sqlx::query("UPDATE tickets SET state = 'unused' WHERE profile_id = ?")
        .bind(profile)
        .execute(pool)
        .await?;
    Ok(r.rows_affected())
}

/// Revokes the unused tickets created after ticket `after`.
pub async fn end_after(pool: &SqlitePool, after: i64) -> anyhow::Result<()> {
    sqlx::query("UPDATE tickets SET state = 'revoked' WHERE id > ? AND state = 'unused'")
        .bind(after)
        .execute(pool)
        .await?;
    Ok(())
}

pub async fn live_count(pool: &SqlitePool) -> anyhow::Result<i64> {
    Ok(
        sqlx::query_scalar("SELECT COUNT(*) FROM tickets WHERE state IN ('unused', 'in_use')")
            .fetch_one(pool)
            .await?,
    )
}

pub async fn max_ticket_id(pool: &SqlitePool) -> anyhow::Result<i64> {
    Ok(
        sqlx::query_scalar("SELECT coalesce(max(id), 0) FROM tickets")
            .fetch_one(pool)
            .await?,
    )
}

/// Marks the pending deliveries of tickets above `after` as applied (what agents would report).
pub async fn settle_deliveries(pool: &SqlitePool, after: i64) -> anyhow::Result<()> {
    sqlx::query(
        "UPDATE deliveries SET status = 'applied', updated_at = ?
         WHERE ticket_id > ? AND status IN ('pending', 'running')",
    )
    .bind(now())
    .bind(after)
    .execute(pool)
    .await?;
    Ok(())
}

/// Whether the device's event stream has connected (it stamps `last_seen_at`).
pub async fn seen(pool: &SqlitePool, device: i64) -> anyhow::Result<bool> {
    let at: Option<i64> = sqlx::query_scalar("SELECT last_seen_at FROM devices WHERE id = ?")
        .bind(device)
        .fetch_one(pool)
        .await?;
    Ok(at.is_some())
}
