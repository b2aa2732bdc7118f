//! Devices (Kodi boxes) and their API tokens. Only the SHA-256 of a token is stored.

use super::{now, Delivery, DeviceId, Pool};

#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize)]
pub struct Device {
    pub id: DeviceId,
    pub name: String,
    pub delivery: Delivery,
    pub kodi_version: Option<String>,
    pub master_lock: Option<bool>,
    pub kodi_reachable: Option<bool>,
    pub ssh_user: Option<String>,
    pub ssh_host: Option<String>,
    pub ssh_port: i64,
    pub ssh_key_path: Option<String>,
    pub created_at: i64,
    /// When the box was last paired again (a new token for it).
    pub paired_at: Option<i64>,
    pub last_seen_at: Option<i64>,
    pub revoked_at: Option<i64>,
    /// When the agent last restarted Kodi to end a session, and what it says about it.
    pub forced_restart_at: Option<i64>,
    pub forced_restart_note: Option<String>,
}

/// Inserts a device; `None` when the name is taken.
pub async fn insert(
    pool: &Pool,
    name: &str,
    token_hash: &str,
) -> Result<Option<DeviceId>, sqlx::Error> {
    sqlx::query_scalar(
        "INSERT INTO devices (name, token_hash, created_at) VALUES (?, ?, ?)
         ON CONFLICT (name) DO NOTHING RETURNING id",
    )
    .bind(name)
    .bind(token_hash)
    .bind(now())
    .fetch_all(pool)
    .await
    .map(super::first)
}

const SELECT: &str = "SELECT id, name, delivery, kodi_version, master_lock, kodi_reachable,
        ssh_user, ssh_host, ssh_port, ssh_key_path, created_at, paired_at,
        last_seen_at, revoked_at, forced_restart_at, forced_restart_note FROM devices";

/// Every device, live ones first, by name.
pub async fn list(pool: &Pool) -> Result<Vec<Device>, sqlx::Error> {
    sqlx::query_as(&format!(
        "{SELECT} ORDER BY revoked_at IS NOT NULL, name COLLATE NOCASE"
    ))
    .fetch_all(pool)
    .await
}

/// One device, revoked or not.
pub async fn find(pool: &Pool, id: DeviceId) -> Result<Option<Device>, sqlx::Error> {
    sqlx::query_as(&format!("{SELECT} WHERE id = ?"))
        .bind(id)
        .fetch_optional(pool)
        .await
}

/// A device's `last_seen_at` is written at most this often (the Devices page shows minutes).
const SEEN_EVERY_SECS: i64 = 60;

/// Notes that a device was seen, unless that was noted less than a minute ago.
///
/// NOTE: decided on the value just read, so the API stays read-only when it is busy: even an
/// `UPDATE` that changes no row takes SQLite's write lock, and every request (and each agent
/// stream's every wake-up) would queue behind the others and behind each commit.
async fn note_seen(
    pool: &Pool,
    id: DeviceId,
    last_seen_at: Option<i64>,
    t: i64,
) -> Result<(), sqlx::Error> {
    if last_seen_at.is_some_and(|at| at >= t - SEEN_EVERY_SECS) {
        return Ok(());
    }
    sqlx::query(
        "UPDATE devices SET last_seen_at = ?1 WHERE id = ?2 AND coalesce(last_seen_at, 0) < ?1 - ?3",
    )
    .bind(t)
    .bind(id)
    .bind(SEEN_EVERY_SECS)
    .execute(pool)
    .await?;
    Ok(())
}

/// The id of the live device with this token hash, noting that it was seen.
pub async fn authenticate(pool: &Pool, token_hash: &str) -> Result<Option<DeviceId>, sqlx::Error> {
    let t = now();
    let found: Option<(DeviceId, Option<i64>)> = sqlx::query_as(
        "SELECT id, last_seen_at FROM devices WHERE token_hash = ? AND revoked_at IS NULL",
    )
    .bind(token_hash)
    .fetch_optional(pool)
    .await?;
    let Some((id, last_seen_at)) = found else {
        return Ok(None);
    };
    note_seen(pool, id, last_seen_at, t).await?;
    Ok(Some(id))
}

/// Gives the live device `id` a new token (paired again): the old one is refused from now on.
pub async fn replace_token(
    pool: &Pool,
    id: DeviceId,
    token_hash: &str,
) -> Result<bool, sqlx::Error> {
    let r = sqlx::query(
        "UPDATE devices SET token_hash = ?, paired_at = ? WHERE id = ? AND revoked_at IS NULL",
    )
    .bind(token_hash)
    .bind(now())
    .bind(id)
    .execute(pool)
    .await?;
    Ok(r.rows_affected() > 0)
}

pub async fn revoke(pool: &Pool, id: DeviceId) -> Result<bool, sqlx::Error> {
    let r = sqlx::query("UPDATE devices SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL")
        .bind(now())
        .bind(id)
        .execute(pool)
        .await?;
    Ok(r.rows_affected() > 0)
}

/// Whether the device still holds the token with this hash and is not revoked, noting that it
/// was seen.
pub async fn is_live(pool: &Pool, id: DeviceId, token_hash: &str) -> Result<bool, sqlx::Error> {
    let t = now();
    let found: Option<Option<i64>> = sqlx::query_scalar(
        "SELECT last_seen_at FROM devices WHERE id = ? AND token_hash = ? AND revoked_at IS NULL",
    )
    .bind(id)
    .bind(token_hash)
    .fetch_optional(pool)
    .await?;
    let Some(last_seen_at) = found else {
        return Ok(false);
    };
    note_seen(pool, id, last_seen_at, t).await?;
    Ok(true)
}

/// What an agent says about its box; `forced_restart` (when, note) is kept until a newer one.
/// Returns whether anything the Devices page shows of Kodi changed.
pub async fn set_status(
    pool: &Pool,
    id: DeviceId,
    kodi_reachable: bool,
    kodi_version: Option<&str>,
    master_lock: Option<bool>,
    forced_restart: Option<(i64, &str)>,
) -> Result<bool, sqlx::Error> {
    type Shown = (Option<bool>, Option<String>, Option<bool>, Option<i64>);
    const SHOWN: &str =
        "SELECT kodi_reachable, kodi_version, master_lock, forced_restart_at FROM devices WHERE id = ?";
    let before: Option<Shown> = sqlx::query_as(SHOWN).bind(id).fetch_optional(pool).await?;
    sqlx::query(
        "UPDATE devices SET kodi_reachable = ?, kodi_version = coalesce(?, kodi_version),
                master_lock = coalesce(?, master_lock),
                forced_restart_at = coalesce(?, forced_restart_at),
                forced_restart_note = coalesce(?, forced_restart_note),
                last_seen_at = ? WHERE id = ?",
    )
    .bind(kodi_reachable)
    .bind(kodi_version)
    .bind(master_lock)
    .bind(forced_restart.map(|f| f.0))
    .bind(forced_restart.map(|f| f.1))
    .bind(now())
    .bind(id)
    .execute(pool)
    .await?;
    let after: Option<Shown> = sqlx::query_as(SHOWN).bind(id).fetch_optional(pool).await?;
    Ok(before != after)
}

/// How PINs reach a device (for `Ssh`, with where to log in).
pub async fn set_delivery(
    pool: &Pool,
    id: DeviceId,
    delivery: Delivery,
    ssh: Option<&super::deliveries::SshTarget>,
) -> Result<bool, sqlx::Error> {
    let r = sqlx::query(
        "UPDATE devices SET delivery = ?, ssh_user = ?, ssh_host = ?, ssh_port = ?, ssh_key_path = ?
         WHERE id = ?",
    )
    .bind(delivery)
    .bind(ssh.map(|s| &s.ssh_user))
    .bind(ssh.map(|s| &s.ssh_host))
    .bind(ssh.map_or(22, |s| s.ssh_port))
    .bind(ssh.map(|s| &s.ssh_key_path))
    .bind(id)
        .execute(pool)
        .await?;
    Ok(r.rows_affected() > 0)
}
