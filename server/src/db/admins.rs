//! Admin accounts.

use super::{now, AdminId, Pool};
use crate::error::Error;
use crate::password;

/// The documented first-start login; the admin must change it before anything else.
pub const DEFAULT_USERNAME: &str = "admin";
pub const DEFAULT_PASSWORD: &str = "admin123";

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Admin {
    pub id: AdminId,
    pub username: String,
    pub password_hash: String,
    pub must_change_password: bool,
}

pub async fn find_by_username(pool: &Pool, username: &str) -> Result<Option<Admin>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, username, password_hash, must_change_password FROM admins WHERE username = ?",
    )
    .bind(username)
    .fetch_optional(pool)
    .await
}

pub async fn find(pool: &Pool, id: AdminId) -> Result<Option<Admin>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, username, password_hash, must_change_password FROM admins WHERE id = ?",
    )
    .bind(id)
    .fetch_optional(pool)
    .await
}

/// Creates `admin`/`admin123` when there is no admin at all (first start).
pub async fn ensure_default(pool: &Pool) -> Result<(), Error> {
    let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM admins")
        .fetch_one(pool)
        .await?;
    if count > 0 {
        return Ok(());
    }
    let hash = password::hash(DEFAULT_PASSWORD.to_owned())
        .await
        .map_err(|e| Error::Internal(format!("cannot hash the default password: {e}")))?;
    let t = now();
    let inserted = sqlx::query(
        "INSERT OR IGNORE INTO admins (username, password_hash, must_change_password, created_at, updated_at)
         VALUES (?, ?, 1, ?, ?)",
    )
    .bind(DEFAULT_USERNAME)
    .bind(hash)
    .bind(t)
    .bind(t)
    .execute(pool)
    .await?;
    if inserted.rows_affected() > 0 {
        tracing::warn!(
            "created the default admin `{DEFAULT_USERNAME}` / `{DEFAULT_PASSWORD}`; \
             the first login must choose a new password"
        );
    }
    Ok(())
}

/// Sets a new password hash (and the must-change flag), creating the admin if needed, and
/// ends every session of that admin but `keep` (the one changing it), in one transaction: a
/// new password never leaves an old session running.
pub async fn set_password(
    pool: &Pool,
    username: &str,
    password_hash: &str,
    must_change: bool,
    keep: Option<&str>,
) -> Result<AdminId, sqlx::Error> {
    let t = now();
    let mut tx = pool.begin().await?;
    let id = sqlx::query_scalar(
        "INSERT INTO admins (username, password_hash, must_change_password, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?4)
         ON CONFLICT (username) DO UPDATE
           SET password_hash = excluded.password_hash,
               must_change_password = excluded.must_change_password,
               updated_at = excluded.updated_at
         RETURNING id",
    )
    .bind(username)
    .bind(password_hash)
    .bind(must_change)
    .bind(t)
    .fetch_all(&mut *tx)
    .await
    .and_then(super::only)?;
    super::sessions::delete_others(&mut *tx, id, keep).await?;
    tx.commit().await?;
    Ok(id)
}
