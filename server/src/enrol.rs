//! Enrolling a Kodi box: its name checked, its API token made, shown once and stored only as
//! a hash. The Devices page and the `device add` command both enrol through here.

use crate::db::{devices, pairings, DeviceId, Pool};
use crate::error::{Error, Result};
use crate::{token, validate};

/// A box just enrolled, with the only copy of its token.
#[derive(Debug)]
pub struct Enrolled {
    pub id: DeviceId,
    pub name: String,
    pub token: String,
}

/// Adds a device named `raw_name` (trimmed and checked like every name).
pub async fn device(pool: &Pool, raw_name: &str) -> Result<Enrolled> {
    let name = validate::name(raw_name, "device").map_err(Error::BadRequest)?;
    let token = format!("kt_{}", token::generate());
    match devices::insert(pool, &name, &token::hash(&token)).await? {
        Some(id) => Ok(Enrolled { id, name, token }),
        None => Err(Error::Conflict(format!(
            "a device named “{name}” exists already"
        ))),
    }
}

/// Minutes a pairing code is valid.
pub const PAIRING_MINUTES: i64 = 10;
/// Digits of a pairing code.
const PAIRING_DIGITS: usize = 6;

/// A code to pair the box `name` with, shown once.
#[derive(Debug)]
pub struct PairingCode {
    pub name: String,
    pub code: String,
    pub expires_at: i64,
}

/// Makes a pairing code for a new box named `raw_name`, replacing one it had.
pub async fn pairing_code(pool: &Pool, raw_name: &str) -> Result<PairingCode> {
    let name = validate::name(raw_name, "device").map_err(Error::BadRequest)?;
    if devices::list(pool)
        .await?
        .iter()
        .any(|d| d.name.eq_ignore_ascii_case(&name))
    {
        return Err(Error::Conflict(format!(
            "a device named “{name}” exists already"
        )));
    }
    new_code(pool, name, None).await
}

/// Makes a pairing code for the box `id` that exists already (its token lost: Kodi's safe
/// mode, a new SD card): pairing gives it a new token, and its profiles, tickets and running
/// sessions stay with it.
pub async fn pairing_code_again(pool: &Pool, id: DeviceId) -> Result<PairingCode> {
    let device = devices::find(pool, id)
        .await?
        .filter(|d| d.revoked_at.is_none())
        .ok_or(Error::NotFound)?;
    new_code(pool, device.name, Some(id)).await
}

async fn new_code(pool: &Pool, name: String, device: Option<DeviceId>) -> Result<PairingCode> {
    use rand::Rng;
    let code = format!(
        "{:0width$}",
        rand::rngs::OsRng.gen_range(0..10u32.pow(PAIRING_DIGITS as u32)),
        width = PAIRING_DIGITS
    );
    let expires_at = crate::db::now() + PAIRING_MINUTES * 60;
    pairings::insert(pool, &token::hash(&code), &name, device, expires_at).await?;
    Ok(PairingCode {
        name,
        code,
        expires_at,
    })
}

/// Exchanges a pairing code for its box, enrolled now; `None` for a wrong or stale code.
pub async fn pair(pool: &Pool, code: &str) -> Result<Option<Enrolled>> {
    let code = code.trim();
    if code.len() != PAIRING_DIGITS || !code.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(None);
    }
    match pairings::take(pool, &token::hash(code)).await? {
        Some((name, None)) => device(pool, &name).await.map(Some),
        Some((name, Some(id))) => {
            let token = format!("kt_{}", token::generate());
            // NOTE: a box revoked since its code was made is not brought back.
            Ok(devices::replace_token(pool, id, &token::hash(&token))
                .await?
                .then_some(Enrolled { id, name, token }))
        }
        None => Ok(None),
    }
}
