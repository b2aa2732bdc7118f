//! Devices: the Kodi boxes allowed to use the API, each with its own revocable token.

use rocket::form::FromForm;
use rocket::response::{Flash, Redirect};
use rocket::{get, post, routes, uri, Route};
use rocket_dyn_templates::Template;
use serde::Serialize;

use crate::auth::{Admin, CsrfForm, CsrfProtected};
use crate::db::deliveries::SshTarget;
use crate::db::{devices, Db, Delivery, DeviceId};
use crate::enrol::{self, Enrolled, PairingCode};
use crate::error::{Error, Result};
use crate::known_tokens::KnownTokens;
use crate::presence::{Changes, Presence};
use crate::rereads::{PageAnswer, Reread, View};
use crate::typed::{self, Typed};
use crate::views::{render, Chrome, Moment};
use rocket::http::CookieJar;
use rocket::State;

pub fn routes() -> Vec<Route> {
    routes![
        list,
        create,
        pair_code,
        pair_again,
        after_pairing,
        after_pairing_again,
        revoke_page,
        revoke,
        set_delivery
    ]
}

#[derive(Serialize)]
struct DeviceRow {
    id: DeviceId,
    name: String,
    delivery: Delivery,
    ssh_user: Option<String>,
    ssh_host: Option<String>,
    ssh_port: i64,
    ssh_key_path: Option<String>,
    online: bool,
    kodi_version: Option<String>,
    /// Kodi enforces profile PINs only under a master lock: warn when the agent saw none.
    master_lock_off: bool,
    kodi_unreachable: bool,
    /// The agent's last restart of Kodi to end a session: when, and what came of it.
    forced_restart: Option<ForcedRestartNote>,
    /// The SSH settings are shown open: they were just refused, with what was typed.
    ssh_open: bool,
    created_at: Moment,
    /// Unix seconds the box got its current token (added, or paired again), for the page
    /// script that sees a pairing code used.
    paired: i64,
    last_seen_at: Option<Moment>,
    revoked_at: Option<Moment>,
}

#[derive(Serialize)]
struct ForcedRestartNote {
    at: Moment,
    note: String,
}

#[derive(Serialize)]
struct ListPage {
    devices: Vec<DeviceRow>,
    /// Shown once, right after the device is added.
    new_token: Option<NewToken>,
    /// Shown once, right after it is made.
    pairing: Option<NewPairing>,
}

#[derive(Serialize)]
struct NewPairing {
    name: String,
    code: String,
    until: Moment,
    /// Unix seconds the code was made: the box has paired once its token is newer.
    since: i64,
    /// The box exists and is paired again.
    again: bool,
    /// What to run on the box.
    command: String,
}

/// The address the page was reached at, for the box's `pair` command.
pub struct ServerUrl(String);

#[rocket::async_trait]
impl<'r> rocket::request::FromRequest<'r> for ServerUrl {
    type Error = std::convert::Infallible;

    async fn from_request(
        req: &'r rocket::Request<'_>,
    ) -> rocket::request::Outcome<Self, Self::Error> {
        let scheme = if req.rocket().config().tls_enabled() {
            "https"
        } else {
            "http"
        };
        let host = req
            .host()
            .map_or_else(|| "SERVER".to_owned(), |h| h.to_string());
        rocket::request::Outcome::Success(ServerUrl(format!("{scheme}://{host}")))
    }
}

#[derive(Serialize)]
struct NewToken {
    name: String,
    token: String,
}

/// The Devices page; `typed` re-shows a refused SSH form.
async fn list_view(db: &Db, presence: &Presence, typed: Typed) -> Result<View<ListPage>> {
    let refused = typed
        .get("device")
        .and_then(|id| id.parse::<DeviceId>().ok());
    let devices = devices::list(db)
        .await?
        .into_iter()
        .map(|mut d| {
            let ssh_open = refused == Some(d.id);
            if ssh_open {
                let field = |name| typed.get(name).map(str::to_owned);
                d.ssh_user = field("ssh_user");
                d.ssh_host = field("ssh_host");
                d.ssh_port = field("ssh_port")
                    .and_then(|p| p.parse().ok())
                    .unwrap_or(d.ssh_port);
                d.ssh_key_path = field("ssh_key_path");
            }
            (d, ssh_open)
        })
        .map(|(d, ssh_open)| DeviceRow {
            ssh_open,
            online: d.revoked_at.is_none() && presence.is_online(d.id),
            master_lock_off: d.master_lock == Some(false),
            kodi_unreachable: d.kodi_reachable == Some(false),
            forced_restart: d
                .forced_restart_at
                .zip(d.forced_restart_note)
                .map(|(at, note)| ForcedRestartNote {
                    at: Moment::at(at),
                    note,
                }),
            kodi_version: d.kodi_version,
            delivery: d.delivery,
            ssh_user: d.ssh_user,
            ssh_host: d.ssh_host,
            ssh_port: d.ssh_port,
            ssh_key_path: d.ssh_key_path,
            id: d.id,
            name: d.name,
            created_at: Moment::at(d.created_at),
            paired: d.paired_at.unwrap_or(d.created_at),
            last_seen_at: d.last_seen_at.map(Moment::at),
            revoked_at: d.revoked_at.map(Moment::at),
        })
        .collect();
    Ok(View {
        name: "devices/list",
        title: "Devices".into(),
        page: ListPage {
            devices,
            new_token: None,
            pairing: None,
        },
    })
}

#[get("/devices")]
pub async fn list(
    _admin: Admin,
    db: &Db,
    presence: &State<Presence>,
    typed: Typed,
    reread: Reread<'_>,
) -> Result<PageAnswer> {
    // A copy shared by every open page holds nothing one admin typed.
    let typed = if reread.is_shared() {
        Typed::default()
    } else {
        typed
    };
    reread.answer(|| list_view(db, presence, typed)).await
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

/// What adding a device answers: the list with the new token shown once, or why not.
#[derive(rocket::Responder)]
pub enum Added {
    Shown(Template),
    Refused(Flash<Redirect>),
}

#[post("/devices", data = "<form>")]
pub async fn create(
    _admin: Admin,
    form: CsrfForm<DeviceForm>,
    db: &Db,
    presence: &State<Presence>,
    mut chrome: Chrome,
) -> Result<Added> {
    match enrol::device(db, &form.0.name).await {
        Ok(Enrolled { name, token, .. }) => {
            chrome.flash = Some(crate::views::Flash {
                kind: "success",
                message: format!(
                    "Device “{name}” added. Copy its token now: it is shown only once."
                ),
            });
            let mut view = list_view(db, presence, Typed::default()).await?;
            view.page.new_token = Some(NewToken { name, token });
            Ok(shown(view, chrome))
        }
        Err(Error::BadRequest(why) | Error::Conflict(why)) => Ok(not_added(why)),
        Err(e) => Err(e),
    }
}

fn shown(view: View<ListPage>, chrome: Chrome) -> Added {
    Added::Shown(render(view.name, &view.title, chrome, view.page))
}

fn not_added(why: String) -> Added {
    Added::Refused(Flash::error(
        Redirect::to(uri!(list)),
        format!("Not added: {why}."),
    ))
}

/// A code the new box exchanges for its token (`kodi-tickets-agent pair`), so that nobody
/// types a token on a TV box.
#[post("/devices/pair", data = "<form>")]
pub async fn pair_code(
    _admin: Admin,
    form: CsrfForm<DeviceForm>,
    db: &Db,
    presence: &State<Presence>,
    server: ServerUrl,
    chrome: Chrome,
) -> Result<Added> {
    match enrol::pairing_code(db, &form.0.name).await {
        Ok(code) => show_pairing(db, presence, server, chrome, code, false).await,
        Err(Error::BadRequest(why) | Error::Conflict(why)) => Ok(not_added(why)),
        Err(e) => Err(e),
    }
}

/// A code that pairs a box that exists already again, when it lost its token (Kodi's safe
/// mode, a new SD card): its profiles, tickets and running sessions stay with it, and its
/// old token is refused once the code is used.
#[post("/devices/<id>/pair", data = "<_form>")]
pub async fn pair_again(
    _admin: Admin,
    id: DeviceId,
    _form: CsrfForm<super::PlainForm>,
    db: &Db,
    presence: &State<Presence>,
    server: ServerUrl,
    chrome: Chrome,
) -> Result<Added> {
    let code = enrol::pairing_code_again(db, id).await?;
    show_pairing(db, presence, server, chrome, code, true).await
}

/// The Devices page with a pairing code just made, shown once.
async fn show_pairing(
    db: &Db,
    presence: &Presence,
    server: ServerUrl,
    mut chrome: Chrome,
    code: PairingCode,
    again: bool,
) -> Result<Added> {
    let PairingCode {
        name,
        code,
        expires_at,
    } = code;
    let mut message = format!(
        "Pairing code for “{name}” made: enter it on the box within {} minutes.",
        enrol::PAIRING_MINUTES
    );
    if again {
        message.push_str(" Its profiles and tickets stay; its old token stops working then.");
    }
    chrome.flash = Some(crate::views::Flash {
        kind: "success",
        message,
    });
    let mut view = list_view(db, presence, Typed::default()).await?;
    view.page.pairing = Some(NewPairing {
        command: format!("kodi-tickets-agent pair {} {code}", server.0),
        name,
        code,
        until: Moment::at(expires_at),
        since: expires_at - enrol::PAIRING_MINUTES * 60,
        again,
    });
    Ok(shown(view, chrome))
}

/// The page that showed a pairing code, read again (a reload, or its live updates): the
/// Devices page, without the code.
#[get("/devices/pair")]
pub fn after_pairing(_admin: Admin) -> Redirect {
    Redirect::to(uri!(list))
}

/// The same for a page that showed a code to pair a box again.
#[get("/devices/<_id>/pair")]
pub fn after_pairing_again(_admin: Admin, _id: DeviceId) -> Redirect {
    Redirect::to(uri!(list))
}

#[get("/devices/<id>/revoke")]
pub async fn revoke_page(_admin: Admin, id: DeviceId, db: &Db, chrome: Chrome) -> Result<Template> {
    let device = devices::find(db, id)
        .await?
        .filter(|d| d.revoked_at.is_none())
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
    id: DeviceId,
    _form: CsrfForm<super::PlainForm>,
    db: &Db,
    changes: &State<Changes>,
    known: &State<KnownTokens>,
) -> Result<Flash<Redirect>> {
    if devices::revoke(db, id).await? {
        known.forget(id);
        // Its open event stream sees the revocation and closes.
        changes.notify(Some(id));
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
    #[field(default = String::new(), validate = len(..=64))]
    ssh_user: String,
    #[field(default = String::new(), validate = len(..=255))]
    ssh_host: String,
    #[field(default = String::new(), validate = len(..=10))]
    ssh_port: String,
    #[field(default = String::new(), validate = len(..=1024))]
    ssh_key_path: String,
}

impl CsrfProtected for DeliveryForm {
    fn csrf_token(&self) -> &str {
        &self.csrf_token
    }
}

/// The SSH settings of a form, or why they are refused.
fn ssh_target(form: &DeliveryForm) -> std::result::Result<SshTarget, String> {
    let user = form.ssh_user.trim();
    if user.is_empty()
        || !user
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        || user.starts_with('-')
    {
        return Err("the SSH user is a login name such as kodi".into());
    }
    let host = form.ssh_host.trim();
    if host.is_empty()
        || host.starts_with('-')
        || !host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':'))
    {
        return Err("the SSH host is a host name or IP address".into());
    }
    let port = match form.ssh_port.trim() {
        "" => 22,
        p => p
            .parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or("the SSH port is a number from 1 to 65535")?,
    };
    let key = form.ssh_key_path.trim();
    if !key.starts_with('/') || key.chars().any(char::is_control) {
        return Err("the SSH key is the absolute path of a private key file on the server".into());
    }
    Ok(SshTarget {
        ssh_user: user.to_owned(),
        ssh_host: host.to_owned(),
        ssh_port: i64::from(port),
        ssh_key_path: key.to_owned(),
    })
}

/// Chooses how PINs reach a device's profiles: its agent, SSH from the server, or the
/// server's own machine.
#[post("/devices/<id>/delivery", data = "<form>")]
pub async fn set_delivery(
    _admin: Admin,
    id: DeviceId,
    form: CsrfForm<DeliveryForm>,
    db: &Db,
    cookies: &CookieJar<'_>,
) -> Result<Flash<Redirect>> {
    let form = form.0;
    let back = |message: String| Flash::error(Redirect::to(uri!(list)), message);
    let Ok(delivery) = form.delivery.parse::<Delivery>() else {
        return Ok(back("Not changed: choose agent, ssh or local.".into()));
    };
    let ssh = match delivery {
        Delivery::Agent | Delivery::Local => None,
        Delivery::Ssh => match ssh_target(&form) {
            Ok(target) => Some(target),
            Err(why) => {
                let name = devices::find(db, id).await?.ok_or(Error::NotFound)?.name;
                typed::remember(
                    cookies,
                    &[
                        ("device", &id.to_string()),
                        ("ssh_user", &form.ssh_user),
                        ("ssh_host", &form.ssh_host),
                        ("ssh_port", &form.ssh_port),
                        ("ssh_key_path", &form.ssh_key_path),
                    ],
                );
                return Ok(back(format!("Not changed for “{name}”: {why}.")));
            }
        },
    };
    if !devices::set_delivery(db, id, delivery, ssh.as_ref()).await? {
        return Err(Error::NotFound);
    }
    Ok(Flash::success(
        Redirect::to(uri!(list)),
        format!(
            "New tickets for this device's profiles go by {}.",
            delivery.as_str()
        ),
    ))
}
