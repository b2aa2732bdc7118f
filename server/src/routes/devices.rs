//! Devices: the Kodi boxes allowed to use the API, each with its own revocable token.

use rocket::form::FromForm;
use rocket::response::{Flash, Redirect};
use rocket::{get, post, routes, uri, Route};
use rocket_dyn_templates::Template;
use serde::Serialize;

use crate::auth::{Admin, CsrfForm, CsrfProtected};
use crate::db::{devices, Db};
use crate::error::{Error, Result};
use crate::presence::Presence;
use crate::views::{human_time, render, Chrome};
use crate::{token, validate};
use rocket::State;

pub fn routes() -> Vec<Route> {
    routes![list, create, revoke_page, revoke, set_delivery]
}

#[derive(Serialize)]
struct DeviceRow {
    id: i64,
    name: String,
    delivery: String,
    online: bool,
    kodi_version: Option<String>,
    /// Kodi enforces profile PINs only under a master lock: warn when the agent saw none.
    master_lock_off: bool,
    kodi_unreachable: bool,
    created_at: String,
    last_seen_at: Option<String>,
    revoked_at: Option<String>,
}

#[derive(Serialize)]
struct ListPage {
    devices: Vec<DeviceRow>,
    /// Shown once, right after the device is added.
    new_token: Option<NewToken>,
}

#[derive(Serialize)]
struct NewToken {
    name: String,
    token: String,
}

async fn list_page(
    db: &Db,
    presence: &Presence,
    chrome: Chrome,
    new_token: Option<NewToken>,
) -> Result<Template> {
    let devices = devices::list(db)
        .await?
        .into_iter()
        .map(|d| DeviceRow {
            online: d.revoked_at.is_none() && presence.is_online(d.id),
            master_lock_off: d.master_lock == Some(false),
            kodi_unreachable: d.kodi_reachable == Some(false),
            kodi_version: d.kodi_version,
            delivery: d.delivery,
            id: d.id,
            name: d.name,
            created_at: human_time(d.created_at),
            last_seen_at: d.last_seen_at.map(human_time),
            revoked_at: d.revoked_at.map(human_time),
        })
        .collect();
    Ok(render(
        "devices/list",
        "Devices",
        chrome,
        ListPage { devices, new_token },
    ))
}

#[get("/devices")]
pub async fn list(
    _admin: Admin,
    db: &Db,
    presence: &State<Presence>,
    chrome: Chrome,
) -> Result<Template> {
    list_page(db, presence, chrome, None).await
}

#[derive(FromForm)]
pub struct DeviceForm {
    csrf_token: String,
    #[field(validate = len(..=1000))]
    name: String,
}

impl CsrfProtected for DeviceForm {
    fn csrf_token(&self) -> &str {
        &self.csrf_token
    }
}

/// Adds a device and returns its token, which only ever exists outside the database here.
pub async fn add(db: &crate::db::Pool, raw_name: &str) -> Result<(String, String)> {
    let name = validate::name(raw_name, "device").map_err(Error::BadRequest)?;
    let token = format!("kt_{}", token::generate());
    match devices::insert(db, &name, &token::hash(&token)).await? {
        Some(_) => Ok((name, token)),
        None => Err(Error::Conflict(format!(
            "a device named “{name}” exists already"
        ))),
    }
}

#[post("/devices", data = "<form>")]
pub async fn create(
    _admin: Admin,
    form: CsrfForm<DeviceForm>,
    db: &Db,
    presence: &State<Presence>,
    mut chrome: Chrome,
) -> Result<std::result::Result<Template, Flash<Redirect>>> {
    match add(db, &form.0.name).await {
        Ok((name, token)) => {
            chrome.flash = Some(crate::views::Flash {
                kind: "success",
                message: format!(
                    "Device “{name}” added. Copy its token now: it is shown only once."
                ),
            });
            Ok(Ok(list_page(
                db,
                presence,
                chrome,
                Some(NewToken { name, token }),
            )
            .await?))
        }
        Err(Error::BadRequest(why) | Error::Conflict(why)) => Ok(Err(Flash::error(
            Redirect::to(uri!(list)),
            format!("Not added: {why}."),
        ))),
        Err(e) => Err(e),
    }
}

#[get("/devices/<id>/revoke")]
pub async fn revoke_page(_admin: Admin, id: i64, db: &Db, chrome: Chrome) -> Result<Template> {
    let device = devices::list(db)
        .await?
        .into_iter()
        .find(|d| d.id == id && d.revoked_at.is_none())
        .ok_or(Error::NotFound)?;
    let page = super::Confirm {
        question: format!("Revoke the token of “{}”?", device.name),
        detail: "The box is refused at once and needs a new device to connect again.".into(),
        action: uri!(revoke(id)).to_string(),
        button: "Revoke".into(),
        cancel: uri!(list).to_string(),
    };
    Ok(render("confirm", "Revoke device", chrome, page))
}

#[post("/devices/<id>/revoke", data = "<_form>")]
pub async fn revoke(
    _admin: Admin,
    id: i64,
    _form: CsrfForm<super::PlainForm>,
    db: &Db,
) -> Result<Flash<Redirect>> {
    if devices::revoke(db, id).await? {
        Ok(Flash::success(Redirect::to(uri!(list)), "Device revoked."))
    } else {
        Err(Error::NotFound)
    }
}

#[derive(FromForm)]
pub struct DeliveryForm {
    csrf_token: String,
    #[field(validate = len(..=10))]
    delivery: String,
}

impl CsrfProtected for DeliveryForm {
    fn csrf_token(&self) -> &str {
        &self.csrf_token
    }
}

/// Chooses how PINs reach a device's profiles: its agent, or the server's own machine.
#[post("/devices/<id>/delivery", data = "<form>")]
pub async fn set_delivery(
    _admin: Admin,
    id: i64,
    form: CsrfForm<DeliveryForm>,
    db: &Db,
) -> Result<Flash<Redirect>> {
    let delivery = form.0.delivery;
    if !matches!(delivery.as_str(), "agent" | "local") {
        return Ok(Flash::error(
            Redirect::to(uri!(list)),
            "Choose agent or local.",
        ));
    }
    if !devices::set_delivery(db, id, &delivery).await? {
        return Err(Error::NotFound);
    }
    Ok(Flash::success(
        Redirect::to(uri!(list)),
        format!("New tickets for this device's profiles go by {delivery}."),
    ))
}
