//! The API for the Kodi side, and `GET /healthz` for monitoring. Every `/api` call needs a
//! device token; every error is JSON.

use kodi_tickets_protocol::times::parse_rfc3339;
use kodi_tickets_protocol::{
    Health, LoginResponse, PairRequest, PairResponse, Ticket as TicketJson, TicketState,
};
use rocket::data::{Data, Limits, ToByteUnit};
use rocket::http::Status;
use rocket::serde::json::Json;
use rocket::{get, post, routes, Route, State};
use serde_json::Value;

use crate::auth::{ClientAddr, Device};
use crate::db::tickets::Ticket;
use crate::db::{self, Db};
use crate::enrol;
use crate::error::{Error, Result};
use crate::known_tokens::KnownTokens;
use crate::logins::Logins;
use crate::presence::Changes;
use crate::rate_limit::{Limiters, Reservation};
use crate::validate;
use crate::views::rfc3339;

pub fn routes() -> Vec<Route> {
    routes![login, ticket, pair]
}

pub fn health_routes() -> Vec<Route> {
    routes![healthz]
}

/// The ticket as the API shows it (the Flask version's fields plus state and expiry).
pub fn ticket_json(t: &Ticket, now: i64) -> TicketJson {
    let state = t.state_at(now);
    TicketJson {
        id: t.id.0,
        profile_id: t.profile_id.0,
        profile_name: t.profile_name.clone(),
        lock_code: t.lock_code.clone(),
        length: t.length,
        is_active: matches!(state, TicketState::Unused | TicketState::InUse),
        used_at: t.used_at.map(rfc3339),
        created_at: rfc3339(t.created_at),
        state,
        expires_at: t.expires_at.map(rfc3339),
        remaining_seconds: t.remaining_seconds_at(now),
    }
}

/// A login as the body of `POST /api/login` asks for it.
#[derive(Debug, PartialEq, Eq)]
pub struct Login {
    pub lock_code: String,
    /// When it happened (Unix seconds), if reported late.
    pub used_at: Option<i64>,
}

/// Clock difference tolerated between a box and the server for a late-reported login.
const CLOCK_SKEW_SECS: i64 = 60;

/// The login a body asks for, or why the body is refused.
pub fn parse_login(body: &str, now: i64) -> Result<Login> {
    let value: Value = serde_json::from_str(body).map_err(|_| bad_shape())?;
    let object = value.as_object().ok_or_else(bad_shape)?;
    let lock_code = parse_lock_code(object.get("lock_code"))?;
    let used_at = match object.get("used_at") {
        None | Some(Value::Null) => None,
        Some(Value::String(text)) => {
            let at = parse_rfc3339(text).ok_or_else(|| {
                Error::BadRequest(
                    "used_at must be an RFC 3339 time, e.g. \"2026-11-27T16:00:00Z\"".into(),
                )
            })?;
            if at > now.saturating_add(CLOCK_SKEW_SECS) {
                return Err(Error::BadRequest("used_at is in the future".into()));
            }
            Some(at.min(now))
        }
        Some(_) => {
            return Err(Error::BadRequest(
                "used_at must be a string (RFC 3339 time)".into(),
            ))
        }
    };
    Ok(Login { lock_code, used_at })
}

fn bad_shape() -> Error {
    Error::BadRequest(r#"the body must be JSON like {"lock_code": "1234"}"#.into())
}

fn parse_lock_code(value: Option<&Value>) -> Result<String> {
    match value {
        None => Err(Error::BadRequest("lock_code is missing".into())),
        Some(Value::String(code)) if validate::is_lock_code(code) => Ok(code.clone()),
        Some(Value::String(_)) => Err(Error::BadRequest(
            "lock_code must be exactly four digits, e.g. \"0420\"".into(),
        )),
        Some(_) => Err(Error::BadRequest(
            "lock_code must be a string of four digits, e.g. \"0420\", not a number or other type"
                .into(),
        )),
    }
}

/// Reserves one guess for the device and the address: waits while guesses of theirs in progress
/// hold the last places, refuses once their misses are used up.
async fn reserve_guess<'l>(
    limiters: &'l Limiters,
    device: &Device,
    client: &ClientAddr,
) -> Result<Reservation<'l>> {
    let device_key = format!("device:{}", device.id);
    limiters
        .pins
        .reserve(&[device_key.as_str(), client.0.as_str()])
        .await
        .map_err(|retry_after| Error::RateLimited { retry_after })
}

/// A new box exchanges the pairing code shown on the Devices page for its token. No token
/// yet, so the code is the proof: guesses are limited per address and for all addresses
/// together, reserved before the lookup like a PIN's.
#[post("/pair", data = "<request>")]
async fn pair(
    request: Json<PairRequest>,
    client: ClientAddr,
    db: &Db,
    limiters: &State<Limiters>,
    changes: &State<Changes>,
    known: &State<KnownTokens>,
) -> Result<Json<PairResponse>> {
    let guess = limiters
        .pins
        .reserve(&[PAIRING_GUESSES, client.0.as_str()])
        .await
        .map_err(|retry_after| Error::RateLimited { retry_after })?;
    let Some(enrolled) = enrol::pair(db, &request.code).await? else {
        return Err(Error::NotFoundMessage(
            "unknown or expired pairing code".into(),
        ));
    };
    guess.give_back();
    known.forget(enrolled.id);
    tracing::info!(device = %enrolled.name, "box paired");
    // NOTE: a box paired again wakes the stream of its old token, which then ends.
    changes.notify(Some(enrolled.id));
    Ok(Json(PairResponse {
        device: enrolled.name,
        device_token: enrolled.token,
    }))
}

/// The key every address's pairing guesses also count under.
const PAIRING_GUESSES: &str = "pairing";

#[post("/login", data = "<body>")]
async fn login(
    device: Device,
    client: ClientAddr,
    body: Data<'_>,
    limits: &Limits,
    limiters: &State<Limiters>,
    logins: &State<Logins>,
    changes: &State<Changes>,
) -> Result<Json<LoginResponse>> {
    let limit = limits.get("json").unwrap_or(16.kibibytes());
    let body = body
        .open(limit)
        .into_string()
        .await
        .map_err(|e| Error::BadRequest(format!("the body could not be read: {e}")))?;
    if !body.is_complete() {
        return Err(Error::PayloadTooLarge);
    }
    let now = db::now();
    let login = parse_login(&body, now)?;
    let at = login.used_at.unwrap_or(now);
    // NOTE: reserved before the lookup: however many guesses arrive at once, no more are
    // looked up than the limit allows.
    let guess = reserve_guess(limiters, &device, &client).await?;
    let Some(t) = logins.mark_used(&login.lock_code, device.id, at).await? else {
        return Err(Error::NotFoundMessage("unknown or already used PIN".into()));
    };
    guess.give_back();
    tracing::info!(ticket = %t.id, profile = %t.profile_name, "ticket used");
    changes.notify(t.device_id);
    let (used_at, expires_at) = (t.used_at.unwrap_or(now), t.expires_at.unwrap_or(now));
    Ok(Json(LoginResponse {
        success: true,
        message: format!(
            "Ticket accepted: {} minutes on {}",
            t.length, t.profile_name
        ),
        profile: t.profile_name,
        length: t.length,
        used_at: rfc3339(used_at),
        expires_at: rfc3339(expires_at),
    }))
}

#[get("/ticket/<lock_code>")]
async fn ticket(
    device: Device,
    client: ClientAddr,
    lock_code: &str,
    limiters: &State<Limiters>,
    db: &Db,
) -> Result<Json<TicketJson>> {
    if !validate::is_lock_code(lock_code) {
        return Err(Error::BadRequest(
            "a PIN is exactly four digits, e.g. 0420".into(),
        ));
    }
    let guess = reserve_guess(limiters, &device, &client).await?;
    let now = db::now();
    // NOTE: only a live ticket of this device's profiles answers: ended tickets' PINs would
    // tell which codes are issued, other boxes' PINs would open other rooms.
    match db::tickets::find_live_by_code(db, lock_code, device.id).await? {
        Some(t) if matches!(t.state_at(now), TicketState::Unused | TicketState::InUse) => {
            guess.give_back();
            Ok(Json(ticket_json(&t, now)))
        }
        _ => Err(Error::NotFoundMessage(
            "no unused or running ticket has this PIN".into(),
        )),
    }
}

#[get("/healthz")]
async fn healthz(db: &Db) -> (Status, Json<Health>) {
    let ok = sqlx::query("SELECT 1").execute(&**db).await.is_ok();
    let health = Health {
        status: if ok { "ok" } else { "database unavailable" }.into(),
        version: env!("CARGO_PKG_VERSION").into(),
    };
    let status = if ok {
        Status::Ok
    } else {
        Status::ServiceUnavailable
    };
    (status, Json(health))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_bodies() {
        let code = |body: &str| parse_login(body, 1_000_000).map(|l| l.lock_code);
        assert_eq!(code(r#"{"lock_code":"0420"}"#).unwrap(), "0420");
        assert_eq!(code(r#"{"lock_code":"1234","extra":1}"#).unwrap(), "1234");
        for bad in [
            r#"{"lock_code":1234}"#,
            r#"{"lock_code":"12a4"}"#,
            r#"{"lock_code":"12345"}"#,
            r#"{"lock_code":null}"#,
            r#"{"lock_code":["1234"]}"#,
            r#"{}"#,
            r#"["1234"]"#,
            r#""1234""#,
            "lock_code=1234",
            "",
        ] {
            assert!(matches!(code(bad), Err(Error::BadRequest(_))), "{bad}");
        }
    }

    #[test]
    fn late_logins_carry_their_time() {
        let now = 1_800_000_000;
        let login = parse_login(
            r#"{"lock_code":"0420","used_at":"2027-01-15T07:00:00Z"}"#,
            now,
        )
        .unwrap();
        assert_eq!(login.used_at, Some(now - 3_600));
        assert_eq!(
            parse_login(r#"{"lock_code":"0420","used_at":null}"#, now)
                .unwrap()
                .used_at,
            None
        );
        for bad in [
            r#"{"lock_code":"0420","used_at":"yesterday"}"#,
            r#"{"lock_code":"0420","used_at":1700000000}"#,
            r#"{"lock_code":"0420","used_at":"2099-01-01T00:00:00Z"}"#,
        ] {
            assert!(
                matches!(parse_login(bad, now), Err(Error::BadRequest(_))),
                "{bad}"
            );
        }
    }
}
