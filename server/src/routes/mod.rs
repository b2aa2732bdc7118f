//! HTTP routes, one module per area, and the catchers.

pub mod agent;
pub mod api;
pub mod assets;
pub mod auth;
pub mod devices;
pub mod profiles;
pub mod tickets;

use rocket::http::Status;
use rocket::response::{Flash, Redirect};
use rocket::{catch, catchers, Catcher, Request};
use rocket_dyn_templates::{context, Template};

use crate::auth::CsrfProtected;
use crate::error::{json_error, status_message};

/// A form with nothing but the anti-CSRF token (delete, revoke, log out, retry).
#[derive(rocket::FromForm)]
pub struct PlainForm {
    csrf_token: String,
}

impl CsrfProtected for PlainForm {
    fn csrf_token(&self) -> &str {
        &self.csrf_token
    }
}

/// The page that asks before something is deleted; its button posts to `action`.
#[derive(serde::Serialize)]
pub struct Confirm {
    pub question: String,
    pub detail: String,
    pub action: String,
    pub button: String,
    pub cancel: String,
}

/// Not logged in: to the login page.
#[catch(401)]
fn login_required() -> Redirect {
    Redirect::to(rocket::uri!(auth::login_page))
}

/// Logged in with the default password: to the change-password page first.
#[catch(428)]
fn password_change_required() -> Flash<Redirect> {
    Flash::error(
        Redirect::to(rocket::uri!(auth::password_page)),
        "Choose a new password before you go on.",
    )
}

#[catch(default)]
fn page_error(status: Status, _req: &Request<'_>) -> Template {
    Template::render(
        "error",
        context! { status: status.code, reason: status.reason(), message: status_message(status) },
    )
}

#[catch(default)]
fn api_error(status: Status, _req: &Request<'_>) -> (Status, (rocket::http::ContentType, String)) {
    json_error(status, status_message(status))
}

pub fn page_catchers() -> Vec<Catcher> {
    catchers![login_required, password_change_required, page_error]
}

/// Mounted under `/api` (and `/healthz`): every error there is JSON.
pub fn api_catchers() -> Vec<Catcher> {
    catchers![api_error]
}
