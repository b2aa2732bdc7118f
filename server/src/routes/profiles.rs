//! Profiles: list, create, show (with tickets), rename, delete.

use rocket::form::FromForm;
use rocket::response::{Flash, Redirect};
use rocket::{get, post, routes, uri, Route};
use rocket_dyn_templates::Template;
use serde::Serialize;

use crate::auth::{Admin, CsrfForm, CsrfProtected};
use crate::db::profiles::{self, Profile, ProfileSummary, Rename};
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
}

#[get("/profiles/new")]
pub fn new_page(_admin: Admin, chrome: Chrome) -> Template {
    let page = FormPage {
        profile: None,
        max_chars: validate::NAME_MAX_CHARS,
    };
    render("profiles/form", "New profile", chrome, page)
}

#[derive(FromForm)]
pub struct ProfileForm {
    csrf_token: String,
    #[field(validate = len(..=1000))]
    name: String,
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
    match profiles::insert(db, &name).await? {
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
}

#[get("/profiles/<id>")]
pub async fn show(_admin: Admin, id: i64, db: &Db, chrome: Chrome) -> Result<Template> {
    let profile = profiles::find(db, id).await?.ok_or(Error::NotFound)?;
    let now = db::now();
    let tickets = tickets::list_for_profile(db, id)
        .await?
        .iter()
        .map(|t| TicketRow::new(t, now))
        .collect();
    let title = profile.name.clone();
    Ok(render(
        "profiles/show",
        &title,
        chrome,
        ShowPage { profile, tickets },
    ))
}

#[get("/profiles/<id>/edit")]
pub async fn edit_page(_admin: Admin, id: i64, db: &Db, chrome: Chrome) -> Result<Template> {
    let profile = profiles::find(db, id).await?.ok_or(Error::NotFound)?;
    let page = FormPage {
        profile: Some(profile),
        max_chars: validate::NAME_MAX_CHARS,
    };
    Ok(render("profiles/form", "Rename profile", chrome, page))
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
        Err(why) => return Ok(back(format!("Not renamed: {why}."))),
    };
    match profiles::rename(db, id, &name).await? {
        Rename::Done => Ok(Flash::success(
            Redirect::to(uri!(show(id))),
            format!("Profile renamed to “{name}”. Rename it in Kodi too."),
        )),
        Rename::NameTaken => Ok(back(format!(
            "Not renamed: a profile named “{name}” exists already."
        ))),
        Rename::NotFound => Err(Error::NotFound),
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
