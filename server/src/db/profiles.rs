//! Kodi profiles.

use super::{now, DeviceId, Pool, ProfileId};

#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize)]
pub struct Profile {
    pub id: ProfileId,
    pub name: String,
    /// The Kodi box the profile lives on; none: the server's own machine.
    pub device_id: Option<DeviceId>,
    pub device_name: Option<String>,
}

/// Every profile with its box, for the start page.
pub async fn list(pool: &Pool) -> Result<Vec<Profile>, sqlx::Error> {
    sqlx::query_as(
        "SELECT p.id, p.name, p.device_id, d.name AS device_name
         FROM profiles p LEFT JOIN devices d ON d.id = p.device_id",
    )
    .fetch_all(pool)
    .await
}

pub async fn find(pool: &Pool, id: ProfileId) -> Result<Option<Profile>, sqlx::Error> {
    sqlx::query_as(
        "SELECT p.id, p.name, p.device_id, d.name AS device_name
         FROM profiles p LEFT JOIN devices d ON d.id = p.device_id WHERE p.id = ?",
    )
    .bind(id)
    .fetch_optional(pool)
    .await
}

/// Inserts a profile; `None` when the name is taken.
pub async fn insert(
    pool: &Pool,
    name: &str,
    device_id: Option<DeviceId>,
) -> Result<Option<ProfileId>, sqlx::Error> {
    let t = now();
    sqlx::query_scalar(
        "INSERT INTO profiles (name, device_id, created_at, updated_at) VALUES (?, ?, ?, ?)
         ON CONFLICT (name) DO NOTHING RETURNING id",
    )
    .bind(name)
    .bind(device_id)
    .bind(t)
    .bind(t)
    .fetch_all(pool)
    .await
    .map(super::first)
}

pub enum Update {
    Done,
    NotFound,
    NameTaken,
}

pub async fn update(
    pool: &Pool,
    id: ProfileId,
    name: &str,
    device_id: Option<DeviceId>,
) -> Result<Update, sqlx::Error> {
    let result =
        sqlx::query("UPDATE profiles SET name = ?, device_id = ?, updated_at = ? WHERE id = ?")
            .bind(name)
            .bind(device_id)
            .bind(now())
            .bind(id)
            .execute(pool)
            .await;
    match result {
        Ok(r) if r.rows_affected() == 0 => Ok(Update::NotFound),
        Ok(_) => Ok(Update::Done),
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Ok(Update::NameTaken),
        Err(e) => Err(e),
    }
}

/// Deletes a profile and, by cascade, its tickets; `false` when there was none.
pub async fn delete(pool: &Pool, id: ProfileId) -> Result<bool, sqlx::Error> {
    let r = sqlx::query("DELETE FROM profiles WHERE id = ?")
        .bind(id)
        .execute(pool)
        .await?;
    Ok(r.rows_affected() > 0)
}
