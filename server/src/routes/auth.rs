//! Logging in and out, and changing the password.

use std::time::Duration;

use rocket::form::FromForm;
use rocket::http::{CookieJar, Status};
use rocket::response::{Flash, Redirect, Responder};
use rocket::{get, post, routes, uri, Route, State};
use rocket_dyn_templates::Template;
use serde::Serialize;

use crate::auth::{ClientAddr, CsrfForm, CsrfProtected, KnownBrowser, Session};
use crate::db::{admins, Db};
use crate::error::{retry_after_header, Result};
use crate::rate_limit::{self, Limiters, Reservation};
use crate::views::{render, Chrome, Flash as FlashView};
use crate::{password, token};

pub fn routes() -> Vec<Route> {
    routes![
        index,
        login_page,
        login,
        logout,
        password_page,
        change_password
    ]
}

#[get("/")]
fn index() -> Redirect {
    Redirect::to(uri!(super::profiles::list))
}

#[derive(Serialize)]
struct LoginPage {
    username: String,
}

#[get("/login")]
fn login_page(chrome: Chrome) -> Template {
    render(
        "auth/login",
        "Log in",
        chrome,
        LoginPage {
            username: String::new(),
        },
    )
}

#[derive(FromForm)]
struct LoginForm {
    csrf_token: String,
    #[field(validate = len(..=200))]
    username: String,
    #[field(validate = len(..=200))]
    password: String,
}

impl CsrfProtected for LoginForm {
    fn csrf_token(&self) -> &str {
        &self.csrf_token
    }
}

/// What a login form gets: on to the next page, or the login page again.
#[derive(rocket::Responder)]
enum LoginAnswer {
    LoggedIn(Redirect),
    Refused(LoginRefused),
}

/// The login page again, with an error and the right status (and `Retry-After` when throttled).
struct LoginRefused {
    page: (Status, Template),
    retry_after: Option<Duration>,
}

impl<'r> Responder<'r, 'static> for LoginRefused {
    fn respond_to(self, req: &'r rocket::Request<'_>) -> rocket::response::Result<'static> {
        let mut response = self.page.respond_to(req)?;
        if let Some(wait) = self.retry_after {
            response.set_header(retry_after_header(wait));
        }
        Ok(response)
    }
}

impl LoginRefused {
    fn new(
        mut chrome: Chrome,
        status: Status,
        message: String,
        username: String,
        retry_after: Option<Duration>,
    ) -> Self {
        chrome.flash = Some(FlashView {
            kind: "danger",
            message,
        });
        LoginRefused {
            page: (
                status,
                render("auth/login", "Log in", chrome, LoginPage { username }),
            ),
            retry_after,
        }
    }
}

#[post("/login", data = "<form>")]
async fn login(
    form: CsrfForm<LoginForm>,
    db: &Db,
    cookies: &CookieJar<'_>,
    limiters: &State<Limiters>,
    client: ClientAddr,
    chrome: Chrome,
) -> Result<LoginAnswer> {
    let LoginForm {
        username, password, ..
    } = form.0;
    let admin = admins::find_by_username(db, &username).await?;
    // NOTE: reserved before the password is checked: however many guesses arrive at once, no
    // more are checked than the limits allow.
    let reserved = match KnownBrowser::of(cookies, &username) {
        Some(browser) => reserve_known(limiters, &browser).await,
        None => reserve_login(limiters, &client.0, &user_key(&username, admin.as_ref())).await,
    };
    let guess = match reserved {
        Ok(guess) => guess,
        Err(wait) => {
            let message = format!(
                "Too many failed logins. Try again in {}.",
                rate_limit::in_minutes(wait)
            );
            return Ok(LoginAnswer::Refused(LoginRefused::new(
                chrome,
                Status::TooManyRequests,
                message,
                username,
                Some(wait),
            )));
        }
    };
    let ok = password::verify(password, admin.as_ref().map(|a| a.password_hash.clone())).await;
    let Some(admin) = admin.filter(|_| ok) else {
        // Dropping the reservations counts the miss.
        drop(guess);
        let message = "Wrong user name or password.".to_owned();
        return Ok(LoginAnswer::Refused(LoginRefused::new(
            chrome,
            Status::Unauthorized,
            message,
            username,
            None,
        )));
    };
    guess.forgive();
    KnownBrowser::remember(cookies, &admin.username);
    Session::start(db, cookies, admin.id).await?;
    tracing::info!(admin = %admin.username, "admin logged in");
    Ok(LoginAnswer::LoggedIn(if admin.must_change_password {
        Redirect::to(uri!(password_page))
    } else {
        Redirect::to(uri!(super::profiles::list))
    }))
}

/// The places one password guess takes: under its address and its user name, or under its
/// known browser.
struct LoginGuess<'l>(Vec<Reservation<'l>>);

impl LoginGuess<'_> {
    /// The password was right: its keys' misses are forgotten.
    fn forgive(self) {
        self.0.into_iter().for_each(Reservation::forgive);
    }
}

/// The key a user name's wrong passwords are counted under. It changes with the password, so
/// setting a new one (`admin set-password`, from another process) lifts the user's limit.
fn user_key(username: &str, admin: Option<&admins::Admin>) -> String {
    let version = admin.map_or_else(String::new, |a| token::hash(&a.password_hash));
    format!(
        "user:{}:{}",
        username.to_lowercase(),
        &version[..version.len().min(16)]
    )
}

/// A known browser's guess: counted under its own id only, so that guessing from elsewhere
/// never locks the owner out.
async fn reserve_known<'l>(
    limiters: &'l Limiters,
    browser: &KnownBrowser,
) -> std::result::Result<LoginGuess<'l>, Duration> {
    let guess = limiters.clients.reserve(&[&browser.key()]).await?;
    Ok(LoginGuess(vec![guess]))
}

async fn reserve_login<'l>(
    limiters: &'l Limiters,
    address: &str,
    user_key: &str,
) -> std::result::Result<LoginGuess<'l>, Duration> {
    // NOTE: always the address first, then the user name: guesses waiting on both never wait
    // on each other in a circle.
    let by_address = limiters.clients.reserve(&[address]).await?;
    match limiters.users.reserve(&[user_key]).await {
        Ok(by_user) => Ok(LoginGuess(vec![by_address, by_user])),
        Err(wait) => {
            by_address.give_back();
            Err(wait)
        }
    }
}

#[post("/logout", data = "<_form>")]
async fn logout(
    _form: CsrfForm<super::PlainForm>,
    session: Session,
    db: &Db,
    cookies: &CookieJar<'_>,
) -> Result<Flash<Redirect>> {
    session.end(db, cookies).await?;
    Ok(Flash::success(
        Redirect::to(uri!(login_page)),
        "You are logged out.",
    ))
}

#[derive(Serialize)]
struct PasswordPage {
    must_change: bool,
    min_length: usize,
}

#[get("/password")]
fn password_page(session: Session, chrome: Chrome) -> Template {
    let page = PasswordPage {
        must_change: session.admin.must_change_password,
        min_length: password::MIN_LENGTH,
    };
    render("auth/password", "Change password", chrome, page)
}

#[derive(FromForm)]
struct PasswordForm {
    csrf_token: String,
    #[field(validate = len(..=200))]
    current_password: String,
    #[field(validate = len(..=200))]
    new_password: String,
    #[field(validate = len(..=200))]
    confirm_password: String,
}

impl CsrfProtected for PasswordForm {
    fn csrf_token(&self) -> &str {
        &self.csrf_token
    }
}

#[post("/password", data = "<form>")]
async fn change_password(
    form: CsrfForm<PasswordForm>,
    session: Session,
    db: &Db,
    limiters: &State<Limiters>,
) -> Result<Flash<Redirect>> {
    let form = form.0;
    let back = |message: String| Flash::error(Redirect::to(uri!(password_page)), message);
    // NOTE: whoever holds a session may guess the current password here: counted per session
    // like a login's guesses, and reserved before the check in the same way. Not under the
    // user name, so that guessing here never keeps the owner from logging in.
    let key = format!("session:{}", session.token_hash);
    let guess = match limiters.clients.reserve(&[&key]).await {
        Ok(guess) => guess,
        Err(wait) => {
            return Ok(back(format!(
                "Too many wrong passwords. Try again in {}.",
                rate_limit::in_minutes(wait)
            )))
        }
    };
    if !password::verify(
        form.current_password,
        Some(session.admin.password_hash.clone()),
    )
    .await
    {
        // Dropping the reservation counts the miss.
        drop(guess);
        return Ok(back("The current password is wrong.".into()));
    }
    guess.forgive();
    if let Err(why) = password::check_new(&form.new_password, &form.confirm_password) {
        return Ok(back(format!("Not changed: {why}.")));
    }
    let hash = password::hash(form.new_password).await?;
    admins::set_password(
        db,
        &session.admin.username,
        &hash,
        false,
        Some(&session.token_hash),
    )
    .await?;
    tracing::info!(admin = %session.admin.username, "admin changed their password");
    Ok(Flash::success(
        Redirect::to(uri!(super::profiles::list)),
        "Password changed. Every other session of yours has been logged out.",
    ))
}
