//! Tickets: issue one for a profile, delete it, retry applying it to Kodi.

use rocket::form::FromForm;
use rocket::response::{Flash, Redirect};
use rocket::{get, post, routes, uri, Route, State};
use rocket_dyn_templates::Template;
use serde::Serialize;

use super::profiles;
use crate::auth::{Admin, CsrfForm, CsrfProtected};
use crate::db::profiles::Profile;
use crate::db::tickets::Created;
use crate::db::{self, deliveries, Db};
use crate::delivery::Waker;
use crate::error::{Error, Result};
use crate::validate;

pub fn routes() -> Vec<Route> {
    routes![
        new_page,
        create,
        delete_page,
        delete,
        retry,
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
}

#[get("/profiles/<profile_id>/tickets/new")]
pub async fn new_page(
    _admin: Admin,
    profile_id: i64,
    db: &Db,
    chrome: crate::views::Chrome,
) -> Result<Template> {
    let profile = db::profiles::find(db, profile_id)
        .await?
        .ok_or(Error::NotFound)?;
    let page = FormPage {
        profile,
        quick_lengths: QUICK_LENGTHS,
        min: validate::LENGTH_MIN,
        max: validate::LENGTH_MAX,
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
) -> Result<Flash<Redirect>> {
    let back = |message: String| Flash::error(Redirect::to(uri!(new_page(profile_id))), message);
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
            Ok(Flash::success(
                back_to_profile(profile_id),
                format!("Ticket {lock_code} issued for {length} minutes."),
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
        detail: "Its PIN will no longer be accepted by the server.".into(),
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

#[post("/tickets/<id>/end", data = "<_form>")]
pub async fn end_now(
    _admin: Admin,
    id: i64,
    _form: CsrfForm<super::PlainForm>,
    db: &Db,
    waker: &State<Waker>,
) -> Result<Flash<Redirect>> {
    let ticket = db::tickets::find(db, id).await?.ok_or(Error::NotFound)?;
    let to = back_to_profile(ticket.profile_id);
    if db::tickets::end_now(db, id).await? {
        waker.wake(ticket.device_id);
        Ok(Flash::success(
            to,
            format!(
                "Ticket {} ended; the Kodi box logs the profile off.",
                ticket.lock_code
            ),
        ))
    } else {
        Ok(Flash::error(
            to,
            format!("Ticket {} is not running.", ticket.lock_code),
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
