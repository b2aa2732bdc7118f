//! Tickets: issue one for a profile, show its PIN, retry setting it on the TV, end it now, add
//! minutes, delete it.

use rocket::form::FromForm;
use rocket::response::{Flash, Redirect};
use rocket::{get, post, routes, uri, Route, State};
use rocket_dyn_templates::Template;
use serde::Serialize;

use super::profiles;
use rocket::http::CookieJar;

use crate::auth::{Admin, CsrfForm, CsrfProtected};
use crate::config::AppConfig;
use crate::db::deliveries::{self, Retried};
use crate::db::devices::Device;
use crate::db::profiles::Profile;
use crate::db::tickets::{Created, Removed, Ticket};
use crate::db::{self, Db, Delivery, ProfileId, TicketId};
use crate::error::{Error, Result};
use crate::presence::{Changes, Presence};
use crate::rereads::{PageAnswer, Reread, View};
use crate::typed::{self, Typed};
use crate::validate;
use crate::views::{Chrome, TicketRow};
use kodi_tickets_protocol::TicketState;

pub fn routes() -> Vec<Route> {
    routes![
        new_page,
        create,
        pin_page,
        delete_page,
        delete,
        retry,
        end_page,
        end_now,
        extend
    ]
}

fn back_to_profile(profile_id: ProfileId) -> Redirect {
    Redirect::to(uri!(profiles::show(profile_id, _, _)))
}

/// Lengths offered as one-click choices on the ticket form.
const QUICK_LENGTHS: [i64; 5] = [15, 30, 60, 90, 120];

#[derive(Serialize)]
struct FormPage {
    profile: Profile,
    quick_lengths: [i64; 5],
    min: i64,
    max: i64,
    /// The length in the box: what was typed before a refusal, else 30.
    length: String,
}

#[get("/profiles/<profile_id>/tickets/new")]
pub async fn new_page(
    _admin: Admin,
    profile_id: ProfileId,
    db: &Db,
    chrome: crate::views::Chrome,
    typed: Typed,
) -> Result<Template> {
    let profile = db::profiles::find(db, profile_id)
        .await?
        .ok_or(Error::NotFound)?;
    let page = FormPage {
        profile,
        quick_lengths: QUICK_LENGTHS,
        min: validate::LENGTH_MIN,
        max: validate::LENGTH_MAX,
        length: typed.get("length").unwrap_or("30").to_owned(),
    };
    Ok(crate::views::render(
        "tickets/form",
        "New ticket",
        chrome,
        page,
    ))
}

#[derive(FromForm)]
pub struct TicketForm {
    csrf_token: String,
    #[field(validate = len(..=20))]
    length: String,
}

impl CsrfProtected for TicketForm {
    fn csrf_token(&self) -> &str {
        &self.csrf_token
    }
}

#[post("/profiles/<profile_id>/tickets", data = "<form>")]
pub async fn create(
    _admin: Admin,
    profile_id: ProfileId,
    form: CsrfForm<TicketForm>,
    db: &Db,
    changes: &State<Changes>,
    cookies: &CookieJar<'_>,
) -> Result<Flash<Redirect>> {
    let back = |message: String| {
        typed::remember(cookies, &[("length", &form.0.length)]);
        Flash::error(Redirect::to(uri!(new_page(profile_id))), message)
    };
    let length = match validate::length(&form.0.length) {
        Ok(length) => length,
        Err(why) => return Ok(back(format!("No ticket issued: {why}."))),
    };
    // NOTE: a CSPRNG draw; the database maps it uniformly onto the free codes.
    let draw: u32 = rand::Rng::gen(&mut rand::rngs::OsRng);
    match db::tickets::insert(db, profile_id, length, draw).await? {
        Created::Ticket {
            lock_code,
            device_id,
            ..
        } => {
            changes.notify(device_id);
            let profile = db::profiles::find(db, profile_id).await?;
            let name = profile.map(|p| p.name).unwrap_or_default();
            Ok(Flash::success(
                back_to_profile(profile_id),
                format!(
                    "PIN {lock_code} ({}) is being set on the TV for “{name}”… \
                     Its row turns green when it works.",
                    crate::views::time_left(length * 60)
                ),
            ))
        }
        Created::NoFreeCode => Ok(back(
            "No ticket issued: all 10,000 PINs belong to unused or running tickets. \
             Delete or let some expire first."
                .into(),
        )),
        Created::ProfileNotFound => Err(Error::NotFound),
    }
}

#[derive(Serialize)]
struct PinPage {
    profile_id: ProfileId,
    profile_name: String,
    row: TicketRow,
}

/// The PIN alone, big, for handing a phone to a child or a guest.
#[get("/tickets/<id>/pin")]
pub async fn pin_page(
    _admin: Admin,
    id: TicketId,
    db: &Db,
    presence: &State<Presence>,
    config: &State<AppConfig>,
    reread: Reread<'_>,
) -> Result<PageAnswer> {
    reread
        .answer(|| async {
            let ticket = db::tickets::find(db, id).await?.ok_or(Error::NotFound)?;
            let profile = db::profiles::find(db, ticket.profile_id)
                .await?
                .ok_or(Error::NotFound)?;
            let (reach, _) = profiles::reach_of(db, presence, config, &profile).await?;
            Ok(View {
                name: "tickets/pin",
                title: "PIN".into(),
                page: PinPage {
                    profile_id: profile.id,
                    profile_name: profile.name,
                    row: TicketRow::new(&ticket, db::now(), reach),
                },
            })
        })
        .await
}

#[get("/tickets/<id>/delete")]
pub async fn delete_page(
    _admin: Admin,
    id: TicketId,
    db: &Db,
    chrome: crate::views::Chrome,
) -> Result<Template> {
    let ticket = db::tickets::find(db, id).await?.ok_or(Error::NotFound)?;
    let page = super::Confirm {
        question: format!(
            "Delete ticket {} of “{}”?",
            ticket.lock_code, ticket.profile_name
        ),
        detail: match ticket.state_at(db::now()) {
            TicketState::InUse => "Someone is watching on this ticket right now: the TV logs \
                 the profile off, and its PIN opens nothing any more. The ticket stays listed \
                 as removed."
                .into(),
            TicketState::Unused => {
                "Its PIN opens nothing any more. The ticket stays listed as removed.".into()
            }
            TicketState::Expired | TicketState::Revoked => {
                "It leaves the list of ended tickets.".into()
            }
        },
        action: uri!(delete(id)).to_string(),
        button: "Delete ticket".into(),
        cancel: uri!(profiles::show(ticket.profile_id, _, _)).to_string(),
    };
    Ok(crate::views::render(
        "confirm",
        "Delete ticket",
        chrome,
        page,
    ))
}

#[post("/tickets/<id>/delete", data = "<_form>")]
pub async fn delete(
    _admin: Admin,
    id: TicketId,
    _form: CsrfForm<super::PlainForm>,
    db: &Db,
    changes: &State<Changes>,
) -> Result<Flash<Redirect>> {
    let ticket = db::tickets::find(db, id).await?.ok_or(Error::NotFound)?;
    let message = match db::tickets::remove(db, id).await? {
        Removed::Ended => format!(
            "Ticket {} removed: its PIN opens nothing any more. It stays listed as removed.",
            ticket.lock_code
        ),
        Removed::Deleted => format!("Ticket {} deleted from the list.", ticket.lock_code),
        Removed::NotFound => return Err(Error::NotFound),
    };
    // A ticket removed while in use, or while its PIN was set on the TV, ends there now.
    changes.notify(ticket.device_id);
    Ok(Flash::success(back_to_profile(ticket.profile_id), message))
}

#[post("/tickets/<id>/retry", data = "<_form>")]
pub async fn retry(
    _admin: Admin,
    id: TicketId,
    _form: CsrfForm<super::PlainForm>,
    db: &Db,
    changes: &State<Changes>,
) -> Result<Flash<Redirect>> {
    let ticket = db::tickets::find(db, id).await?.ok_or(Error::NotFound)?;
    let to = back_to_profile(ticket.profile_id);
    match deliveries::retry(db, id).await? {
        Retried::Queued { device_id } => {
            changes.notify(device_id);
            Ok(Flash::success(
                to,
                format!("Setting the PIN {} on the TV again.", ticket.lock_code),
            ))
        }
        Retried::NotFailed => Ok(Flash::error(
            to,
            format!("The PIN {} is not waiting for a retry.", ticket.lock_code),
        )),
    }
}

/// What ending a session does on the TV, said truthfully for the profile's box.
fn what_the_tv_does(ticket: &Ticket, device: Option<&Device>, online: bool) -> String {
    match device.map(|d| (d, d.delivery)) {
        Some((_, Delivery::Agent)) if online => {
            "The TV logs the profile off within seconds.".into()
        }
        Some((d, Delivery::Agent)) => format!(
            "“{}” is offline: the TV logs the profile off when it is back online.",
            d.name
        ),
        Some((_, Delivery::Ssh)) => format!(
            "The server logs “{}” off on the TV within seconds, over SSH.",
            ticket.profile_name
        ),
        _ => format!(
            "The server logs “{}” off on this machine within seconds.",
            ticket.profile_name
        ),
    }
}

async fn device_of(db: &Db, ticket: &Ticket) -> Result<Option<Device>> {
    Ok(match ticket.device_id {
        Some(id) => db::devices::find(db, id).await?,
        None => None,
    })
}

/// Ending a session is asked first: it stops someone who is watching.
#[get("/tickets/<id>/end")]
pub async fn end_page(
    _admin: Admin,
    id: TicketId,
    db: &Db,
    presence: &State<Presence>,
    chrome: Chrome,
) -> Result<Template> {
    let ticket = db::tickets::find(db, id).await?.ok_or(Error::NotFound)?;
    let device = device_of(db, &ticket).await?;
    let online = ticket.device_id.is_some_and(|d| presence.is_online(d));
    let page = super::Confirm {
        question: format!(
            "End ticket {} of “{}” now?",
            ticket.lock_code, ticket.profile_name
        ),
        detail: format!(
            "Someone may be watching right now. {}",
            what_the_tv_does(&ticket, device.as_ref(), online)
        ),
        action: uri!(end_now(id)).to_string(),
        button: format!("End ticket {} now", ticket.lock_code),
        cancel: uri!(profiles::show(ticket.profile_id, _, _)).to_string(),
    };
    Ok(crate::views::render("confirm", "End ticket", chrome, page))
}

#[post("/tickets/<id>/end", data = "<_form>")]
pub async fn end_now(
    _admin: Admin,
    id: TicketId,
    _form: CsrfForm<super::PlainForm>,
    db: &Db,
    changes: &State<Changes>,
    presence: &State<Presence>,
) -> Result<Flash<Redirect>> {
    let ticket = db::tickets::find(db, id).await?.ok_or(Error::NotFound)?;
    let to = back_to_profile(ticket.profile_id);
    if db::tickets::end_now(db, id).await? {
        changes.notify(ticket.device_id);
        let device = device_of(db, &ticket).await?;
        let online = ticket.device_id.is_some_and(|d| presence.is_online(d));
        Ok(Flash::success(
            to,
            format!(
                "Ticket {} ended. {}",
                ticket.lock_code,
                what_the_tv_does(&ticket, device.as_ref(), online)
            ),
        ))
    } else {
        Ok(Flash::error(
            to,
            format!("Ticket {} is not running any more.", ticket.lock_code),
        ))
    }
}

#[derive(FromForm)]
pub struct ExtendForm {
    csrf_token: String,
    #[field(validate = len(..=20))]
    minutes: String,
}

impl CsrfProtected for ExtendForm {
    fn csrf_token(&self) -> &str {
        &self.csrf_token
    }
}

#[post("/tickets/<id>/extend", data = "<form>")]
pub async fn extend(
    _admin: Admin,
    id: TicketId,
    form: CsrfForm<ExtendForm>,
    db: &Db,
    changes: &State<Changes>,
) -> Result<Flash<Redirect>> {
    let ticket = db::tickets::find(db, id).await?.ok_or(Error::NotFound)?;
    let to = back_to_profile(ticket.profile_id);
    let minutes = match validate::length(&form.0.minutes) {
        Ok(m) if m + ticket.length <= validate::LENGTH_MAX => m,
        _ => {
            return Ok(Flash::error(
                to,
                format!(
                    "Not extended: a ticket lasts at most {} minutes.",
                    validate::LENGTH_MAX
                ),
            ))
        }
    };
    if db::tickets::extend(db, id, minutes).await? {
        changes.notify(ticket.device_id);
        Ok(Flash::success(
            to,
            format!("Added {minutes} minutes to ticket {}.", ticket.lock_code),
        ))
    } else {
        Ok(Flash::error(
            to,
            format!("Ticket {} is not running.", ticket.lock_code),
        ))
    }
}
