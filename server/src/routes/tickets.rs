//! Tickets: issue one for a profile, delete it, retry applying it to Kodi.

use rocket::form::FromForm;
use rocket::response::{Flash, Redirect};
use rocket::{get, post, routes, uri, Route, State};
use rocket_dyn_templates::Template;
use serde::Serialize;

use super::profiles;
use rocket::http::CookieJar;

use crate::auth::{Admin, CsrfForm, CsrfProtected};
use crate::config::AppConfig;
use crate::db::devices::Device;
use crate::db::profiles::Profile;
use crate::db::tickets::{Created, Ticket};
use crate::db::{self, deliveries, Db};
use crate::delivery::Waker;
use crate::error::{Error, Result};
use crate::presence::Presence;
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

fn back_to_profile(profile_id: i64) -> Redirect {
    Redirect::to(uri!(profiles::show(profile_id, _)))
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
    profile_id: i64,
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
    profile_id: i64,
    form: CsrfForm<TicketForm>,
    db: &Db,
    waker: &State<Waker>,
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
            waker.wake(device_id);
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
    profile_id: i64,
    profile_name: String,
    row: TicketRow,
}

/// The PIN alone, big, for handing a phone to a child or a guest.
#[get("/tickets/<id>/pin")]
pub async fn pin_page(
    _admin: Admin,
    id: i64,
    db: &Db,
    presence: &State<Presence>,
    config: &State<AppConfig>,
    chrome: Chrome,
) -> Result<Template> {
    let ticket = db::tickets::find(db, id).await?.ok_or(Error::NotFound)?;
    let profile = db::profiles::find(db, ticket.profile_id)
        .await?
        .ok_or(Error::NotFound)?;
    let (reach, _) = profiles::reach_of(db, presence, config, &profile).await?;
    let page = PinPage {
        profile_id: profile.id,
        profile_name: profile.name,
        row: TicketRow::new(&ticket, db::now(), reach),
    };
    Ok(crate::views::render("tickets/pin", "PIN", chrome, page))
}

#[get("/tickets/<id>/delete")]
pub async fn delete_page(
    _admin: Admin,
    id: i64,
    db: &Db,
    chrome: crate::views::Chrome,
) -> Result<Template> {
    let ticket = db::tickets::find(db, id).await?.ok_or(Error::NotFound)?;
    let page = super::Confirm {
        question: format!(
            "Delete ticket {} of “{}”?",
            ticket.lock_code, ticket.profile_name
        ),
        detail: if ticket.state_at(db::now()) == TicketState::InUse {
            "Someone is watching on this ticket right now. Its PIN will no longer be accepted \
             by the server."
                .into()
        } else {
            "Its PIN will no longer be accepted by the server.".into()
        },
        action: uri!(delete(id)).to_string(),
        button: "Delete ticket".into(),
        cancel: uri!(profiles::show(ticket.profile_id, _)).to_string(),
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
    id: i64,
    _form: CsrfForm<super::PlainForm>,
    db: &Db,
    waker: &State<Waker>,
) -> Result<Flash<Redirect>> {
    let ticket = db::tickets::find(db, id).await?.ok_or(Error::NotFound)?;
    db::tickets::delete(db, id).await?;
    // A deleted ticket that was in use, or whose PIN was set on the TV, ends there now.
    waker.wake(ticket.device_id);
    Ok(Flash::success(
        back_to_profile(ticket.profile_id),
        format!("Ticket {} deleted.", ticket.lock_code),
    ))
}

#[post("/tickets/<id>/retry", data = "<_form>")]
pub async fn retry(
    _admin: Admin,
    id: i64,
    _form: CsrfForm<super::PlainForm>,
    db: &Db,
    waker: &State<Waker>,
) -> Result<Flash<Redirect>> {
    let ticket = db::tickets::find(db, id).await?.ok_or(Error::NotFound)?;
    let to = back_to_profile(ticket.profile_id);
    if let Some(device) = deliveries::retry(db, id).await? {
        waker.wake(device);
        Ok(Flash::success(
            to,
            format!("Applying ticket {} to Kodi again.", ticket.lock_code),
        ))
    } else {
        Ok(Flash::error(
            to,
            format!("Ticket {} is not waiting for a retry.", ticket.lock_code),
        ))
    }
}

/// What ending a session does on the TV, said truthfully for the profile's box.
fn what_the_tv_does(ticket: &Ticket, device: Option<&Device>, online: bool) -> String {
    match device {
        Some(d) if d.delivery == "agent" && online => {
            "The TV logs the profile off within seconds.".into()
        }
        Some(d) if d.delivery == "agent" => format!(
            "“{}” is offline: the TV logs the profile off when it is back online.",
            d.name
        ),
        Some(d) if d.delivery == "ssh" => format!(
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
        Some(id) => db::devices::list(db)
            .await?
            .into_iter()
            .find(|d| d.id == id),
        None => None,
    })
}

/// Ending a session is asked first: it stops someone who is watching.
#[get("/tickets/<id>/end")]
pub async fn end_page(
    _admin: Admin,
    id: i64,
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
        cancel: uri!(profiles::show(ticket.profile_id, _)).to_string(),
    };
    Ok(crate::views::render("confirm", "End ticket", chrome, page))
}

#[post("/tickets/<id>/end", data = "<_form>")]
pub async fn end_now(
    _admin: Admin,
    id: i64,
    _form: CsrfForm<super::PlainForm>,
    db: &Db,
    waker: &State<Waker>,
    presence: &State<Presence>,
) -> Result<Flash<Redirect>> {
    let ticket = db::tickets::find(db, id).await?.ok_or(Error::NotFound)?;
    let to = back_to_profile(ticket.profile_id);
    if db::tickets::end_now(db, id).await? {
        waker.wake(ticket.device_id);
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
    id: i64,
    form: CsrfForm<ExtendForm>,
    db: &Db,
    waker: &State<Waker>,
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
        waker.wake(ticket.device_id);
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
