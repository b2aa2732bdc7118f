//! Pairing codes waiting for their box (migration `pairings`).

use super::{now, DeviceId, Pool};

/// Keeps a new code for the box `name`, replacing one it had; expired codes go. `device`: the
/// box exists already and is paired again.
pub async fn insert(
    pool: &Pool,
    code_hash: &str,
    name: &str,
    device: Option<DeviceId>,
    expires_at: i64,
) -> Result<(), sqlx::Error> {
    let t = now();
    let mut tx = pool.begin().await?;
    sqlx::query("DELETE FROM pairings WHERE expires_at <= ? OR name = ?")
        .bind(t)
        .bind(name)
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "INSERT INTO pairings (code_hash, name, device_id, created_at, expires_at)
         VALUES (?, ?, ?, ?, ?)",
    )
    .bind(code_hash)
    .bind(name)
    .bind(device)
    .bind(t)
    .bind(expires_at)
    .execute(&mut *tx)
    .await?;
    tx.commit().await
}

/// Takes the unexpired code with this hash, once: the name of its box, and the box itself if
/// it exists already.
pub async fn take(
    pool: &Pool,
    code_hash: &str,
) -> Result<Option<(String, Option<DeviceId>)>, sqlx::Error> {
    sqlx::query_as(
        "DELETE FROM pairings WHERE code_hash = ? AND expires_at > ? RETURNING name, device_id",
    )
    .bind(code_hash)
    .bind(now())
    .fetch_all(pool)
    .await
    .map(super::first)
}
