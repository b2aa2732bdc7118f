//! Admin browser sessions. Only the SHA-256 of a session token is stored.

use super::{now, AdminId, Pool};

pub async fn insert(pool: &Pool, token_hash: &str, admin_id: AdminId) -> Result<(), sqlx::Error> {
    let t = now();
    sqlx::query(
        "INSERT INTO sessions (token_hash, admin_id, created_at, last_seen_at) VALUES (?, ?, ?, ?)",
    )
    .bind(token_hash)
    .bind(admin_id)
    .bind(t)
    .bind(t)
    .execute(pool)
    .await?;
    Ok(())
}

/// How long a session lasts: since it was last used, and since it started.
#[derive(Debug, Clone, Copy)]
pub struct Lifetimes {
    pub idle_secs: i64,
    pub absolute_secs: i64,
}

/// The admin id of a live session (used within the idle lifetime, started within the absolute
/// one), refreshing its last-seen time.
pub async fn touch(
    pool: &Pool,
    token_hash: &str,
    lifetimes: Lifetimes,
) -> Result<Option<AdminId>, sqlx::Error> {
    sqlx::query_scalar(
        "UPDATE sessions SET last_seen_at = ?1
         WHERE token_hash = ?2 AND last_seen_at > ?1 - ?3 AND created_at > ?1 - ?4
         RETURNING admin_id",
    )
    .bind(now())
    .bind(token_hash)
    .bind(lifetimes.idle_secs)
    .bind(lifetimes.absolute_secs)
    .fetch_all(pool)
    .await
    .map(super::first)
}

/// Deletes the sessions past either lifetime; returns how many.
pub async fn delete_expired<'c, E>(
    executor: E,
    at: i64,
    lifetimes: Lifetimes,
) -> Result<u64, sqlx::Error>
where
    E: sqlx::Executor<'c, Database = sqlx::Sqlite>,
{
    let r =
        sqlx::query("DELETE FROM sessions WHERE last_seen_at <= ?1 - ?2 OR created_at <= ?1 - ?3")
            .bind(at)
            .bind(lifetimes.idle_secs)
            .bind(lifetimes.absolute_secs)
            .execute(executor)
            .await?;
    Ok(r.rows_affected())
}

pub async fn delete(pool: &Pool, token_hash: &str) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM sessions WHERE token_hash = ?")
        .bind(token_hash)
        .execute(pool)
        .await?;
    Ok(())
}

/// Ends every session of an admin except `keep` (the one changing the password).
pub async fn delete_others<'c, E>(
    executor: E,
    admin_id: AdminId,
    keep: Option<&str>,
) -> Result<(), sqlx::Error>
where
    E: sqlx::Executor<'c, Database = sqlx::Sqlite>,
{
    sqlx::query("DELETE FROM sessions WHERE admin_id = ? AND token_hash IS NOT ?")
        .bind(admin_id)
        .bind(keep)
        .execute(executor)
        .await?;
    Ok(())
}

/// Whether the session is still there (not logged out, not ended by a password change).
pub async fn exists(pool: &Pool, token_hash: &str) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM sessions WHERE token_hash = ?)")
        .bind(token_hash)
        .fetch_one(pool)
        .await
}
