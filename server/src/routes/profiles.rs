//! Profiles: list, create, show (with tickets), edit (name and box), delete.

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
use crate::db::{self, tickets, Db, Delivery, DeviceId, ProfileId, TicketId};
use crate::error::{Error, Result};
use crate::presence::{Changes, Presence};
use crate::rereads::{PageAnswer, Reread, View};
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
/// now (the one in use, else one ended whose TV was not yet seen logged off, else the one
/// ready on the TV, else the newest waiting one).
#[derive(Serialize)]
struct ProfileCard {
    id: ProfileId,
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
    reread: Reread<'_>,
) -> Result<PageAnswer> {
    reread.answer(|| list_view(db, presence)).await
}

/// Every profile at a glance.
async fn list_view(db: &Db, presence: &Presence) -> Result<View<ListPage>> {
    let now = db::now();
    let mut all = profiles::list(db).await?;
    all.sort_by(|a, b| crate::views::natural_cmp(&a.name, &b.name));
    let offline: HashMap<DeviceId, bool> = db::devices::list(db)
        .await?
        .into_iter()
        .map(|d| {
            (
                d.id,
                d.delivery == Delivery::Agent && !presence.is_online(d.id),
            )
        })
        .collect();
    let armed: HashMap<ProfileId, TicketId> = tickets::armed_all(db).await?.into_iter().collect();
    let mut live: HashMap<ProfileId, Vec<tickets::Ticket>> = HashMap::new();
    for t in tickets::live_all(db)
        .await?
        .into_iter()
        .chain(tickets::not_logged_off_all(db).await?)
    {
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
                .or_else(|| tickets.iter().find(|t| t.awaits_log_off(now)))
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
    Ok(View {
        name: "profiles/list",
        title: "Profiles".into(),
        page: ListPage { profiles },
    })
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

/// Where a profile form says the profile lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chosen {
    /// Nothing chosen yet (a new profile's first form).
    Nothing,
    /// This server's own machine.
    ThisServer,
    Device(DeviceId),
}

impl Chosen {
    fn of(device_id: Option<DeviceId>) -> Self {
        device_id.map_or(Chosen::ThisServer, Chosen::Device)
    }

    fn device(self) -> Option<DeviceId> {
        match self {
            Chosen::Device(id) => Some(id),
            Chosen::Nothing | Chosen::ThisServer => None,
        }
    }
}

/// The choice to show on a form: what was sent before a refusal, else `current`.
fn choice(typed: &Typed, current: Chosen) -> Chosen {
    match typed.get("device") {
        Some("") => Chosen::ThisServer,
        Some(id) => id.parse().map_or(Chosen::Nothing, Chosen::Device),
        None => current,
    }
}

/// A Kodi box the profile can live on, for the form's choice, with how PINs reach it.
#[derive(Serialize)]
struct DeviceChoice {
    id: DeviceId,
    name: String,
    how: String,
    selected: bool,
}

/// How PINs reach a box's profiles, in one sentence.
fn how_pins_reach(device: &Device, online: bool) -> String {
    match device.delivery {
        Delivery::Agent => format!(
            "Its agent on the box sets each PIN and ends sessions on time (it is {} now).",
            if online { "online" } else { "offline" }
        ),
        Delivery::Ssh => format!(
            "This server logs in to it by SSH ({}) to set each PIN and to log the profile off when its time is up.",
            device.ssh_host.as_deref().unwrap_or("no host set yet")
        ),
        Delivery::Local => "This server runs the Kodi script on its own machine for it (the box must be this machine)."
            .into(),
    }
}

async fn device_choices(
    db: &Db,
    presence: &Presence,
    current: Option<DeviceId>,
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

/// Where a submitted form puts the profile, or why it cannot.
enum Placement {
    /// On this box (none: this server's machine).
    On(Option<DeviceId>),
    Refused(&'static str),
}

/// The device a form chose: empty for "this server's machine".
async fn chosen_device(db: &Db, raw: &str) -> Result<Placement> {
    if raw.is_empty() {
        return Ok(Placement::On(None));
    }
    let Ok(id) = raw.parse::<DeviceId>() else {
        return Ok(Placement::Refused("choose a device from the list"));
    };
    let known = db::devices::find(db, id).await?.is_some();
    Ok(if known {
        Placement::On(Some(id))
    } else {
        Placement::Refused("that device does not exist")
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
    let chosen = choice(&typed, Chosen::Nothing);
    let page = FormPage {
        profile: None,
        name: typed.get("name").unwrap_or_default().to_owned(),
        max_chars: validate::NAME_MAX_CHARS,
        devices: device_choices(db, presence, chosen.device()).await?,
        server_chosen: chosen == Chosen::ThisServer,
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
        Placement::On(device) => device,
        Placement::Refused(why) => return Ok(back(format!("Not created: {why}."))),
    };
    match profiles::insert(db, &name, device).await? {
        Some(id) => Ok(Flash::success(
            Redirect::to(uri!(show(id, _, _))),
            format!("Profile “{name}” created. Make sure Kodi has a profile of the same name."),
        )),
        None => Ok(back(format!(
            "Not created: a profile named “{name}” exists already."
        ))),
    }
}

/// Ended tickets shown per page of a profile.
const ENDED_PER_PAGE: i64 = 50;
/// Live tickets a profile's page shows unless all are asked for: a café's roll of vouchers is
/// hundreds, and rendering them all made the page slow for everyone who keeps it open. A
/// running ticket and the one ready on the TV are shown wherever they fall.
const LIVE_SHOWN: i64 = 50;

#[derive(Serialize)]
struct ShowPage {
    profile: Profile,
    /// Unused and running tickets, newest first: the newest [`LIVE_SHOWN`] unless all asked.
    live: Vec<TicketRow>,
    /// All of the profile's unused and running tickets, shown or not.
    live_total: i64,
    /// Those shown, and those not.
    live_shown: usize,
    live_hidden: i64,
    /// Every live ticket is shown because the admin asked (`?live=all`).
    all_live: bool,
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
    let device = db::devices::find(db, device_id)
        .await?
        .ok_or(Error::NotFound)?;
    let online = presence.is_online(device_id);
    let by_agent = device.delivery == Delivery::Agent;
    let name = &device.name;
    let warning = if device.revoked_at.is_some() {
        Some(format!(
            "PINs cannot reach “{name}”: its access was revoked. Choose another box under Edit."
        ))
    } else if by_agent && !online {
        Some(format!(
            "“{name}” is offline: its agent is not connected, so new PINs wait until it is."
        ))
    } else if device.delivery == Delivery::Ssh
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

// NOTE: a handler's request guards are its arguments; this page needs them all.
#[allow(clippy::too_many_arguments)]
#[get("/profiles/<id>?<page>&<live>")]
pub async fn show(
    _admin: Admin,
    id: ProfileId,
    page: Option<i64>,
    live: Option<&str>,
    db: &Db,
    presence: &State<Presence>,
    config: &State<AppConfig>,
    reread: Reread<'_>,
) -> Result<PageAnswer> {
    reread
        .answer(|| show_view(db, presence, config, id, page, live == Some("all")))
        .await
}

/// A profile's page: its live tickets, then a page of its ended ones.
async fn show_view(
    db: &Db,
    presence: &Presence,
    config: &AppConfig,
    id: ProfileId,
    page: Option<i64>,
    all_live: bool,
) -> Result<View<ShowPage>> {
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
    let shown = if all_live { -1 } else { LIVE_SHOWN };
    let live = rows(tickets::live_for_profile(db, id, shown, reach.armed).await?);
    let live_total = tickets::count_live_for_profile(db, id).await?;
    let warning = match &profile.device_name {
        Some(box_name) if reach.tv_offline && live.iter().any(|t| t.is_running) => Some(format!(
            "“{box_name}” went offline while someone uses this profile. If its agent still runs \
             there, it ends the session on time by itself, network or not; if someone stopped \
             it (for example by disabling the add-on), the session does not end: check the TV."
        )),
        _ => warning,
    };
    let armed = live
        .iter()
        .find(|t| Some(t.id) == reach.armed)
        .map(|t| t.lock_code.clone());
    let ended = rows(tickets::ended_for_profile(db, id, ENDED_PER_PAGE, history.offset()).await?);
    Ok(View {
        name: "profiles/show",
        title: profile.name.clone(),
        page: ShowPage {
            profile,
            live_shown: live.len(),
            live_hidden: live_total - live.len() as i64,
            live,
            live_total,
            all_live: all_live && live_total > LIVE_SHOWN,
            ended,
            history,
            armed,
            warning,
        },
    })
}

#[get("/profiles/<id>/edit")]
pub async fn edit_page(
    _admin: Admin,
    id: ProfileId,
    db: &Db,
    presence: &State<Presence>,
    chrome: Chrome,
    typed: Typed,
) -> Result<Template> {
    let profile = profiles::find(db, id).await?.ok_or(Error::NotFound)?;
    let chosen = choice(&typed, Chosen::of(profile.device_id));
    let page = FormPage {
        devices: device_choices(db, presence, chosen.device()).await?,
        server_chosen: chosen == Chosen::ThisServer,
        name: typed.get("name").unwrap_or(&profile.name).to_owned(),
        profile: Some(profile),
        max_chars: validate::NAME_MAX_CHARS,
    };
    Ok(render("profiles/form", "Edit profile", chrome, page))
}

#[post("/profiles/<id>", data = "<form>")]
pub async fn update(
    _admin: Admin,
    id: ProfileId,
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
        Placement::On(device) => device,
        Placement::Refused(why) => return Ok(back(format!("Not saved: {why}."))),
    };
    match profiles::update(db, id, &name, device).await? {
        Update::Done => Ok(Flash::success(
            Redirect::to(uri!(show(id, _, _))),
            format!("Profile “{name}” saved. If you renamed it, rename it in Kodi too."),
        )),
        Update::NameTaken => Ok(back(format!(
            "Not saved: a profile named “{name}” exists already."
        ))),
        Update::NotFound => Err(Error::NotFound),
    }
}

#[get("/profiles/<id>/delete")]
pub async fn delete_page(
    _admin: Admin,
    id: ProfileId,
    db: &Db,
    chrome: Chrome,
) -> Result<Template> {
    let profile = profiles::find(db, id).await?.ok_or(Error::NotFound)?;
    let now = db::now();
    // The running tickets alone: none of the unused ones.
    let watching = tickets::live_for_profile(db, id, 0, None)
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
        cancel: uri!(show(id, _, _)).to_string(),
    };
    Ok(render("confirm", "Delete profile", chrome, page))
}

#[post("/profiles/<id>/delete", data = "<_form>")]
pub async fn delete(
    _admin: Admin,
    id: ProfileId,
    _form: CsrfForm<super::PlainForm>,
    db: &Db,
    changes: &State<Changes>,
) -> Result<Flash<Redirect>> {
    let profile = profiles::find(db, id).await?.ok_or(Error::NotFound)?;
    profiles::delete(db, id).await?;
    // Its tickets in use, or whose PIN was set on the TV, end there now.
    changes.notify(profile.device_id);
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
