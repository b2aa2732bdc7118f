//! Profiles: list, create, show (with tickets), rename, delete.

use rocket::form::FromForm;
use rocket::response::{Flash, Redirect};
use rocket::{get, post, routes, uri, Route};
use rocket_dyn_templates::Template;
use serde::Serialize;

use crate::auth::{Admin, CsrfForm, CsrfProtected};
use crate::db::profiles::{self, Profile, ProfileSummary, Update};
use crate::db::{self, tickets, Db};
use crate::error::{Error, Result};
use crate::validate;
use crate::views::{render, Chrome, TicketRow};

pub fn routes() -> Vec<Route> {
    routes![
        list,
        new_page,
        create,
        show,
        edit_page,
        update,
        delete_page,
        delete
    ]
}

#[derive(Serialize)]
struct ListPage {
    profiles: Vec<ProfileSummary>,
}

#[get("/profiles")]
pub async fn list(_admin: Admin, db: &Db, chrome: Chrome) -> Result<Template> {
    let profiles = profiles::list(db).await?;
    Ok(render(
        "profiles/list",
        "Profiles",
        chrome,
        ListPage { profiles },
    ))
}

#[derive(Serialize)]
struct FormPage {
    profile: Option<Profile>,
    max_chars: usize,
    devices: Vec<DeviceChoice>,
}

/// A Kodi box the profile can live on, for the form's select.
#[derive(Serialize)]
struct DeviceChoice {
    id: i64,
    name: String,
    selected: bool,
}

async fn device_choices(db: &Db, current: Option<i64>) -> Result<Vec<DeviceChoice>> {
    Ok(db::devices::list(db)
        .await?
        .into_iter()
        .filter(|d| d.revoked_at.is_none() || Some(d.id) == current)
        .map(|d| DeviceChoice {
            selected: Some(d.id) == current,
            id: d.id,
            name: d.name,
        })
        .collect())
}

/// The device a form chose: empty for "this server's machine".
async fn chosen_device(db: &Db, raw: &str) -> Result<std::result::Result<Option<i64>, String>> {
    if raw.is_empty() {
        return Ok(Ok(None));
    }
    let Ok(id) = raw.parse::<i64>() else {
        return Ok(Err("choose a device from the list".into()));
    };
    let known = db::devices::list(db).await?.iter().any(|d| d.id == id);
    Ok(if known {
        Ok(Some(id))
    } else {
        Err("that device does not exist".into())
    })
}

#[get("/profiles/new")]
pub async fn new_page(_admin: Admin, db: &Db, chrome: Chrome) -> Result<Template> {
    let page = FormPage {
        profile: None,
        max_chars: validate::NAME_MAX_CHARS,
        devices: device_choices(db, None).await?,
    };
    Ok(render("profiles/form", "New profile", chrome, page))
}

#[derive(FromForm)]
pub struct ProfileForm {
    csrf_token: String,
    #[field(validate = len(..=1000))]
    name: String,
    /// A device id, or empty for the server's own machine.
    #[field(default = String::new(), validate = len(..=20))]
    device: String,
}

impl CsrfProtected for ProfileForm {
    fn csrf_token(&self) -> &str {
        &self.csrf_token
    }
}

#[post("/profiles", data = "<form>")]
pub async fn create(
    _admin: Admin,
    form: CsrfForm<ProfileForm>,
    db: &Db,
) -> Result<Flash<Redirect>> {
    let back = |message: String| Flash::error(Redirect::to(uri!(new_page)), message);
    let name = match validate::name(&form.0.name, "profile") {
        Ok(name) => name,
        Err(why) => return Ok(back(format!("Not created: {why}."))),
    };
    let device = match chosen_device(db, &form.0.device).await? {
        Ok(device) => device,
        Err(why) => return Ok(back(format!("Not created: {why}."))),
    };
    match profiles::insert(db, &name, device).await? {
        Some(id) => Ok(Flash::success(
            Redirect::to(uri!(show(id))),
            format!("Profile “{name}” created. Make sure Kodi has a profile of the same name."),
        )),
        None => Ok(back(format!(
            "Not created: a profile named “{name}” exists already."
        ))),
    }
}

#[derive(Serialize)]
struct ShowPage {
    profile: Profile,
    tickets: Vec<TicketRow>,
    /// The PIN that opens the profile on the TV now, if an unused ticket's is armed.
    armed: Option<String>,
}

/// Kodi holds the lock code applied last; it is a ticket's PIN while that ticket is unused.
fn armed_pin(tickets: &[tickets::Ticket], now: i64) -> Option<String> {
    tickets
        .iter()
        .filter(|t| t.delivery_status.as_deref() == Some("applied"))
        .max_by_key(|t| (t.delivery_updated_at, t.id))
        .filter(|t| t.state_at(now) == kodi_tickets_protocol::TicketState::Unused)
        .map(|t| t.lock_code.clone())
}

#[get("/profiles/<id>")]
pub async fn show(_admin: Admin, id: i64, db: &Db, chrome: Chrome) -> Result<Template> {
    let profile = profiles::find(db, id).await?.ok_or(Error::NotFound)?;
    let now = db::now();
    let all = tickets::list_for_profile(db, id).await?;
    let armed = armed_pin(&all, now);
    let tickets = all.iter().map(|t| TicketRow::new(t, now)).collect();
    let title = profile.name.clone();
    Ok(render(
        "profiles/show",
        &title,
        chrome,
        ShowPage {
            profile,
            tickets,
            armed,
        },
    ))
}

#[get("/profiles/<id>/edit")]
pub async fn edit_page(_admin: Admin, id: i64, db: &Db, chrome: Chrome) -> Result<Template> {
    let profile = profiles::find(db, id).await?.ok_or(Error::NotFound)?;
    let page = FormPage {
        devices: device_choices(db, profile.device_id).await?,
        profile: Some(profile),
        max_chars: validate::NAME_MAX_CHARS,
    };
    Ok(render("profiles/form", "Edit profile", chrome, page))
}

#[post("/profiles/<id>", data = "<form>")]
pub async fn update(
    _admin: Admin,
    id: i64,
    form: CsrfForm<ProfileForm>,
    db: &Db,
) -> Result<Flash<Redirect>> {
    let back = |message: String| Flash::error(Redirect::to(uri!(edit_page(id))), message);
    let name = match validate::name(&form.0.name, "profile") {
        Ok(name) => name,
        Err(why) => return Ok(back(format!("Not saved: {why}."))),
    };
    let device = match chosen_device(db, &form.0.device).await? {
        Ok(device) => device,
        Err(why) => return Ok(back(format!("Not saved: {why}."))),
    };
    match profiles::update(db, id, &name, device).await? {
        Update::Done => Ok(Flash::success(
            Redirect::to(uri!(show(id))),
            format!("Profile “{name}” saved. If you renamed it, rename it in Kodi too."),
        )),
        Update::NameTaken => Ok(back(format!(
            "Not saved: a profile named “{name}” exists already."
        ))),
        Update::NotFound => Err(Error::NotFound),
    }
}

#[get("/profiles/<id>/delete")]
pub async fn delete_page(_admin: Admin, id: i64, db: &Db, chrome: Chrome) -> Result<Template> {
    let profile = profiles::find(db, id).await?.ok_or(Error::NotFound)?;
    let page = super::Confirm {
        question: format!("Delete the profile “{}” and all its tickets?", profile.name),
        detail: "Kodi keeps its own profile; only the tickets here are gone.".into(),
        action: uri!(delete(id)).to_string(),
        button: "Delete profile".into(),
        cancel: uri!(show(id)).to_string(),
    };
    Ok(render("confirm", "Delete profile", chrome, page))
}

#[post("/profiles/<id>/delete", data = "<_form>")]
pub async fn delete(
    _admin: Admin,
    id: i64,
    _form: CsrfForm<super::PlainForm>,
    db: &Db,
) -> Result<Flash<Redirect>> {
    let profile = profiles::find(db, id).await?.ok_or(Error::NotFound)?;
    profiles::delete(db, id).await?;
    Ok(Flash::success(
        Redirect::to(uri!(list)),
        format!("Profile “{}” deleted.", profile.name),
    ))
}
