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
use rocket::{catch, catchers, Build, Request, Rocket};
use rocket_dyn_templates::{context, Template};

use crate::auth::CsrfProtected;
use crate::error::{json_error, status_message};

/// A form with nothing but the anti-CSRF token (delete, revoke, end now, log out, retry).
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

/// Where the API lives: under these paths every answer, errors included, is JSON; everywhere
/// else it is a page. Both the catchers and [`crate::error::Error`]'s responder go by it.
const JSON_PATHS: [&str; 2] = ["/api", "/healthz"];

/// Whether the request is answered with JSON rather than a page.
pub fn answers_json(req: &Request<'_>) -> bool {
    let path = req.uri().path();
    JSON_PATHS.iter().any(|base| {
        path.as_str()
            .strip_prefix(base)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    })
}

/// Registers the catchers: pages by default, JSON under [`JSON_PATHS`].
pub fn register_catchers(rocket: Rocket<Build>) -> Rocket<Build> {
    JSON_PATHS.iter().fold(
        rocket.register(
            "/",
            catchers![login_required, password_change_required, page_error],
        ),
        |rocket, base| rocket.register(*base, catchers![api_error]),
    )
}

#[cfg(test)]
mod tests {
    use rocket::local::blocking::Client;

    #[test]
    fn only_the_api_paths_answer_json() {
        let client = Client::debug_with(Vec::new()).unwrap();
        let json = |path: &str| super::answers_json(client.get(path).inner());
        assert!(json("/api") && json("/api/ticket/1234") && json("/healthz"));
        assert!(!json("/") && !json("/apiary") && !json("/profiles/1") && !json("/healthz2"));
    }
}
