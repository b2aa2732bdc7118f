//! Admin browser sessions. Only the SHA-256 of a session token is stored.

use super::{now, Pool};

pub async fn insert(pool: &Pool, token_hash: &str, admin_id: i64) -> Result<(), sqlx::Error> {
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

/// The admin id of a live session, refreshing its last-seen time.
pub async fn touch(pool: &Pool, token_hash: &str) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query_scalar(
        "UPDATE sessions SET last_seen_at = ? WHERE token_hash = ? RETURNING admin_id",
    )
    .bind(now())
    .bind(token_hash)
    .fetch_all(pool)
    .await
    .map(super::first)
}

pub async fn delete(pool: &Pool, token_hash: &str) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM sessions WHERE token_hash = ?")
        .bind(token_hash)
        .execute(pool)
        .await?;
    Ok(())
}

/// Ends every session of an admin except `keep` (the one changing the password).
pub async fn delete_others(
    pool: &Pool,
    admin_id: i64,
    keep: Option<&str>,
) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM sessions WHERE admin_id = ? AND token_hash IS NOT ?")
        .bind(admin_id)
        .bind(keep)
        .execute(pool)
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
