//! Profiles: list, create, show (with tickets), rename, delete.

use std::collections::HashMap;

use rocket::form::FromForm;
use rocket::http::CookieJar;
use rocket::response::{Flash, Redirect};
use rocket::{get, post, routes, uri, Route, State};
use rocket_dyn_templates::Template;
use serde::Serialize;

use crate::auth::{Admin, CsrfForm, CsrfProtected};
use crate::config::AppConfig;
use crate::db::devices::Device;
use crate::db::profiles::{self, Profile, Update};
use crate::db::{self, tickets, Db};
use crate::delivery::Waker;
use crate::error::{Error, Result};
use crate::presence::Presence;
use crate::typed::{self, Typed};
use crate::validate;
use crate::views::{render, Chrome, Reach, TicketRow};

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

/// A profile at a glance on the start page: what its TV is doing and the ticket that matters
/// now (the one in use, else the one ready on the TV, else the newest waiting one).
#[derive(Serialize)]
struct ProfileCard {
    id: i64,
    name: String,
    device_name: Option<String>,
    tv_offline: bool,
    current: Option<TicketRow>,
    /// Further unused tickets, waiting behind the current one.
    more_unused: usize,
}

#[derive(Serialize)]
struct ListPage {
    profiles: Vec<ProfileCard>,
}

#[get("/profiles")]
pub async fn list(
    _admin: Admin,
    db: &Db,
    presence: &State<Presence>,
    chrome: Chrome,
) -> Result<Template> {
    let now = db::now();
    let mut all = profiles::list(db).await?;
    all.sort_by(|a, b| crate::views::natural_cmp(&a.name, &b.name));
    let offline: HashMap<i64, bool> = db::devices::list(db)
        .await?
        .into_iter()
        .map(|d| (d.id, d.delivery == "agent" && !presence.is_online(d.id)))
        .collect();
    let armed: HashMap<i64, i64> = tickets::armed_all(db).await?.into_iter().collect();
    let mut live: HashMap<i64, Vec<tickets::Ticket>> = HashMap::new();
    for t in tickets::live_all(db).await? {
        live.entry(t.profile_id).or_default().push(t);
    }
    let profiles = all
        .into_iter()
        .map(|p| {
            let tv_offline = p
                .device_id
                .is_some_and(|d| offline.get(&d).copied().unwrap_or(false));
            let reach = Reach {
                armed: armed.get(&p.id).copied(),
                tv_offline,
            };
            let tickets = live.remove(&p.id).unwrap_or_default();
            let unused = tickets
                .iter()
                .filter(|t| t.state_at(now) == kodi_tickets_protocol::TicketState::Unused)
                .count();
            let current = tickets
                .iter()
                .find(|t| t.state_at(now) == kodi_tickets_protocol::TicketState::InUse)
                .or_else(|| tickets.iter().find(|t| Some(t.id) == reach.armed))
                .or_else(|| {
                    tickets
                        .iter()
                        .find(|t| t.state_at(now) == kodi_tickets_protocol::TicketState::Unused)
                })
                .map(|t| TicketRow::new(t, now, reach));
            let shown_unused = current
                .as_ref()
                .is_some_and(|c| c.state == kodi_tickets_protocol::TicketState::Unused);
            ProfileCard {
                id: p.id,
                name: p.name,
                device_name: p.device_name,
                tv_offline,
                more_unused: unused - usize::from(shown_unused),
                current,
            }
        })
        .collect();
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
    /// The name in the box: what was typed before a refusal, else the profile's.
    name: String,
    max_chars: usize,
    devices: Vec<DeviceChoice>,
    /// "This server's own machine" is the chosen way.
    server_chosen: bool,
}

/// The way chosen on a form: a device id, `Some(None)` for the server's machine, `None` when
/// nothing is chosen yet.
fn choice(typed: &Typed, current: Option<Option<i64>>) -> Option<Option<i64>> {
    match typed.get("device") {
        Some("") => Some(None),
        Some(id) => Some(id.parse().ok()),
        None => current,
    }
}

/// A Kodi box the profile can live on, for the form's choice, with how PINs reach it.
#[derive(Serialize)]
struct DeviceChoice {
    id: i64,
    name: String,
    how: String,
    selected: bool,
}

/// How PINs reach a box's profiles, in one sentence.
fn how_pins_reach(device: &Device, online: bool) -> String {
    match device.delivery.as_str() {
        "agent" => format!(
            "Its agent on the box sets each PIN and ends sessions on time (it is {} now).",
            if online { "online" } else { "offline" }
        ),
        "ssh" => format!(
            "This server logs in to it by SSH ({}) and sets each PIN; sessions are not ended.",
            device.ssh_host.as_deref().unwrap_or("no host set yet")
        ),
        _ => "This server runs the Kodi script on its own machine for it (the box must be this machine)."
            .into(),
    }
}

async fn device_choices(
    db: &Db,
    presence: &Presence,
    current: Option<i64>,
) -> Result<Vec<DeviceChoice>> {
    Ok(db::devices::list(db)
        .await?
        .into_iter()
        .filter(|d| d.revoked_at.is_none() || Some(d.id) == current)
        .map(|d| DeviceChoice {
            selected: Some(d.id) == current,
            how: how_pins_reach(&d, presence.is_online(d.id)),
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
pub async fn new_page(
    _admin: Admin,
    db: &Db,
    presence: &State<Presence>,
    chrome: Chrome,
    typed: Typed,
) -> Result<Template> {
    let chosen = choice(&typed, None);
    let page = FormPage {
        profile: None,
        name: typed.get("name").unwrap_or_default().to_owned(),
        max_chars: validate::NAME_MAX_CHARS,
        devices: device_choices(db, presence, chosen.flatten()).await?,
        server_chosen: chosen == Some(None),
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

impl ProfileForm {
    /// Keeps what was typed for the form shown again after a refusal.
    fn remember(&self, cookies: &CookieJar<'_>) {
        typed::remember(cookies, &[("name", &self.name), ("device", &self.device)]);
    }
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
    cookies: &CookieJar<'_>,
) -> Result<Flash<Redirect>> {
    let back = |message: String| {
        form.0.remember(cookies);
        Flash::error(Redirect::to(uri!(new_page)), message)
    };
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
            Redirect::to(uri!(show(id, _))),
            format!("Profile “{name}” created. Make sure Kodi has a profile of the same name."),
        )),
        None => Ok(back(format!(
            "Not created: a profile named “{name}” exists already."
        ))),
    }
}

/// Ended tickets shown per page of a profile; its live tickets are always all shown.
const ENDED_PER_PAGE: i64 = 50;

#[derive(Serialize)]
struct ShowPage {
    profile: Profile,
    /// Unused and running tickets, newest first.
    live: Vec<TicketRow>,
    /// One page of the ended tickets, newest first.
    ended: Vec<TicketRow>,
    history: History,
    /// The PIN that opens the profile on the TV now, if an unused ticket's is armed.
    armed: Option<String>,
    /// Why PINs cannot reach the profile's Kodi now, if they cannot.
    warning: Option<String>,
}

/// Where the shown page of ended tickets lies among all of them.
#[derive(Debug, PartialEq, Eq, Serialize)]
struct History {
    total: i64,
    page: i64,
    pages: i64,
    /// The numbers of the first and last ticket shown (1-based), 0 when none is.
    first: i64,
    last: i64,
    newer: Option<i64>,
    older: Option<i64>,
}

impl History {
    /// Page `asked` (1 when absent, the last one when beyond it) of `total` ended tickets.
    fn new(total: i64, asked: Option<i64>) -> Self {
        let pages = (total + ENDED_PER_PAGE - 1) / ENDED_PER_PAGE;
        let page = asked.unwrap_or(1).clamp(1, pages.max(1));
        let offset = (page - 1) * ENDED_PER_PAGE;
        History {
            total,
            page,
            pages,
            first: if total > 0 { offset + 1 } else { 0 },
            last: (offset + ENDED_PER_PAGE).min(total),
            newer: (page > 1).then(|| page - 1),
            older: (page < pages).then(|| page + 1),
        }
    }

    fn offset(&self) -> i64 {
        (self.page - 1) * ENDED_PER_PAGE
    }
}

/// How the profile's PINs reach its TV, and a warning when they cannot.
pub async fn reach_of(
    db: &Db,
    presence: &Presence,
    config: &AppConfig,
    profile: &Profile,
) -> Result<(Reach, Option<String>)> {
    // NOTE: Kodi holds the lock code applied last; it is a ticket's PIN while that ticket is
    // unused.
    let armed = tickets::last_applied(db, profile.id)
        .await?
        .filter(|t| t.state_at(db::now()) == kodi_tickets_protocol::TicketState::Unused)
        .map(|t| t.id);
    let Some(device_id) = profile.device_id else {
        let warning = (!config.kodi_script.is_file()).then(|| {
            format!(
                "PINs cannot reach a Kodi: this server has no Kodi script at {}. \
                 If Kodi runs on another machine, choose its box under Edit.",
                config.kodi_script.display()
            )
        });
        return Ok((
            Reach {
                armed,
                tv_offline: false,
            },
            warning,
        ));
    };
    let device = db::devices::list(db)
        .await?
        .into_iter()
        .find(|d| d.id == device_id)
        .ok_or(Error::NotFound)?;
    let online = presence.is_online(device_id);
    let by_agent = device.delivery == "agent";
    let name = &device.name;
    let warning = if device.revoked_at.is_some() {
        Some(format!(
            "PINs cannot reach “{name}”: its access was revoked. Choose another box under Edit."
        ))
    } else if by_agent && !online {
        Some(format!(
            "“{name}” is offline: its agent is not connected, so new PINs wait until it is."
        ))
    } else if device.delivery == "ssh"
        && (device.ssh_host.is_none() || device.ssh_key_path.is_none())
    {
        Some(format!(
            "PINs cannot reach “{name}”: its SSH settings are incomplete (Devices page)."
        ))
    } else if device.kodi_reachable == Some(false) {
        Some(format!(
            "Kodi on “{name}” does not answer its agent: PINs cannot be set until it does."
        ))
    } else if device.master_lock == Some(false) {
        Some(format!("Kodi on “{name}” has no master lock, so it does not ask for PINs. Set one in Kodi's profile settings."))
    } else {
        None
    };
    Ok((
        Reach {
            armed,
            tv_offline: by_agent && !online,
        },
        warning,
    ))
}

#[get("/profiles/<id>?<page>")]
pub async fn show(
    _admin: Admin,
    id: i64,
    page: Option<i64>,
    db: &Db,
    presence: &State<Presence>,
    config: &State<AppConfig>,
    chrome: Chrome,
) -> Result<Template> {
    let profile = profiles::find(db, id).await?.ok_or(Error::NotFound)?;
    let now = db::now();
    let history = History::new(tickets::count_ended_for_profile(db, id).await?, page);
    let (reach, warning) = reach_of(db, presence, config, &profile).await?;
    let rows = |tickets: Vec<tickets::Ticket>| -> Vec<TicketRow> {
        tickets
            .iter()
            .map(|t| TicketRow::new(t, now, reach))
            .collect()
    };
    let live = rows(tickets::live_for_profile(db, id).await?);
    let armed = live
        .iter()
        .find(|t| Some(t.id) == reach.armed)
        .map(|t| t.lock_code.clone());
    let ended = rows(tickets::ended_for_profile(db, id, ENDED_PER_PAGE, history.offset()).await?);
    let title = profile.name.clone();
    Ok(render(
        "profiles/show",
        &title,
        chrome,
        ShowPage {
            profile,
            live,
            ended,
            history,
            armed,
            warning,
        },
    ))
}

#[get("/profiles/<id>/edit")]
pub async fn edit_page(
    _admin: Admin,
    id: i64,
    db: &Db,
    presence: &State<Presence>,
    chrome: Chrome,
    typed: Typed,
) -> Result<Template> {
    let profile = profiles::find(db, id).await?.ok_or(Error::NotFound)?;
    let chosen = choice(&typed, Some(profile.device_id));
    let page = FormPage {
        devices: device_choices(db, presence, chosen.flatten()).await?,
        server_chosen: chosen == Some(None),
        name: typed.get("name").unwrap_or(&profile.name).to_owned(),
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
    cookies: &CookieJar<'_>,
) -> Result<Flash<Redirect>> {
    let back = |message: String| {
        form.0.remember(cookies);
        Flash::error(Redirect::to(uri!(edit_page(id))), message)
    };
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
            Redirect::to(uri!(show(id, _))),
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
    let now = db::now();
    let watching = tickets::live_for_profile(db, id)
        .await?
        .iter()
        .any(|t| t.state_at(now) == kodi_tickets_protocol::TicketState::InUse);
    let page = super::Confirm {
        question: format!("Delete the profile “{}” and all its tickets?", profile.name),
        detail: if watching {
            format!(
                "Someone is watching “{}” right now. Kodi keeps its own profile; only the \
                 tickets here are gone.",
                profile.name
            )
        } else {
            "Kodi keeps its own profile; only the tickets here are gone.".into()
        },
        action: uri!(delete(id)).to_string(),
        button: "Delete profile".into(),
        cancel: uri!(show(id, _)).to_string(),
    };
    Ok(render("confirm", "Delete profile", chrome, page))
}

#[post("/profiles/<id>/delete", data = "<_form>")]
pub async fn delete(
    _admin: Admin,
    id: i64,
    _form: CsrfForm<super::PlainForm>,
    db: &Db,
    waker: &State<Waker>,
) -> Result<Flash<Redirect>> {
    let profile = profiles::find(db, id).await?.ok_or(Error::NotFound)?;
    profiles::delete(db, id).await?;
    // Its tickets in use, or whose PIN was set on the TV, end there now.
    waker.wake(profile.device_id);
    Ok(Flash::success(
        Redirect::to(uri!(list)),
        format!("Profile “{}” deleted.", profile.name),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_pages_are_clamped_to_those_that_exist() {
        let h = History::new(120, None);
        assert_eq!((h.page, h.pages, h.first, h.last), (1, 3, 1, 50));
        assert_eq!((h.newer, h.older), (None, Some(2)));
        let h = History::new(120, Some(3));
        assert_eq!((h.first, h.last, h.offset()), (101, 120, 100));
        assert_eq!((h.newer, h.older), (Some(2), None));
        assert_eq!(History::new(120, Some(99)).page, 3);
        assert_eq!(History::new(120, Some(-4)).page, 1);
        let none = History::new(0, Some(5));
        assert_eq!((none.page, none.pages, none.first, none.last), (1, 0, 0, 0));
        assert_eq!((none.newer, none.older), (None, None));
    }
}
