//! Request guards: who is asking (an admin's session, a device) and whether a form is genuine.

use rocket::data::{self, FromData};
use rocket::form::{Form, FromForm};
use rocket::http::{Cookie, CookieJar, Status};
use rocket::outcome::{try_outcome, IntoOutcome};
use rocket::request::{self, FromRequest, Request};
use rocket::{Data, State};

use crate::config::AppConfig;
use crate::db::{self, admins, Db};
use crate::error::Error;
use crate::gate;
use crate::known_tokens::KnownTokens;
use crate::token;

const SESSION_COOKIE: &str = "kt_session";
const CSRF_COOKIE: &str = "kt_csrf";
const KNOWN_BROWSER_COOKIE: &str = "kt_known";

/// How long a browser stays known after its last successful login.
const KNOWN_BROWSER_DAYS: i64 = 365;

/// A logged-in admin, whether or not they still must change their password.
#[derive(Debug, Clone)]
pub struct Session {
    pub admin: admins::Admin,
    /// Hash of this session's token, to end every session but this one.
    pub token_hash: String,
}

impl Session {
    /// Starts a session: a random token in a private cookie, its hash in the database.
    pub async fn start(
        pool: &db::Pool,
        cookies: &CookieJar<'_>,
        admin_id: db::AdminId,
    ) -> Result<(), Error> {
        let token = token::generate();
        db::sessions::insert(pool, &token::hash(&token), admin_id).await?;
        // Rocket makes added cookies HttpOnly, SameSite=Strict and, under TLS, Secure.
        cookies.add_private(Cookie::build((SESSION_COOKIE, token)).http_only(true));
        Ok(())
    }

    pub async fn end(&self, pool: &db::Pool, cookies: &CookieJar<'_>) -> Result<(), Error> {
        db::sessions::delete(pool, &self.token_hash).await?;
        cookies.remove_private(SESSION_COOKIE);
        Ok(())
    }
}

async fn lookup_session(req: &Request<'_>) -> Result<Option<Session>, Error> {
    let Some(cookie) = req.cookies().get_private(SESSION_COOKIE) else {
        return Ok(None);
    };
    let Some(pool) = req.rocket().state::<Db>() else {
        return Err(Error::Internal("database not attached".into()));
    };
    let Some(config) = req.rocket().state::<AppConfig>() else {
        return Err(Error::Internal("configuration not attached".into()));
    };
    let token_hash = token::hash(cookie.value());
    let lifetimes = config.session_lifetimes();
    let Some(admin_id) = db::sessions::touch(pool, &token_hash, lifetimes).await? else {
        return Ok(None);
    };
    Ok(admins::find(pool, admin_id)
        .await?
        .map(|admin| Session { admin, token_hash }))
}

#[rocket::async_trait]
impl<'r> FromRequest<'r> for Session {
    type Error = Error;

    async fn from_request(req: &'r Request<'_>) -> request::Outcome<Self, Error> {
        // NOTE: cached so a page asking for the session twice reads the database once.
        let cached = req
            .local_cache_async(async {
                lookup_session(req).await.unwrap_or_else(|e| {
                    tracing::error!("session lookup failed: {e:?}");
                    None
                })
            })
            .await;
        cached
            .clone()
            .or_error((Status::Unauthorized, Error::Unauthorized))
    }
}

/// A logged-in admin who has chosen their own password: what every admin page requires.
#[derive(Debug, Clone)]
pub struct Admin(pub Session);

#[rocket::async_trait]
impl<'r> FromRequest<'r> for Admin {
    type Error = Error;

    async fn from_request(req: &'r Request<'_>) -> request::Outcome<Self, Error> {
        let session = try_outcome!(req.guard::<Session>().await);
        if session.admin.must_change_password {
            // The 428 catcher sends the admin to the change-password page.
            return request::Outcome::Error((Status::PreconditionRequired, Error::Unauthorized));
        }
        request::Outcome::Success(Admin(session))
    }
}

/// A Kodi box calling the API with its `Authorization: Bearer <token>`.
#[derive(Debug, Clone)]
pub struct Device {
    pub id: db::DeviceId,
    /// The hash of the token it came with: a box paired again gets a new one.
    pub token_hash: String,
}

#[rocket::async_trait]
impl<'r> FromRequest<'r> for Device {
    type Error = Error;

    async fn from_request(req: &'r Request<'_>) -> request::Outcome<Self, Error> {
        let unauthorized = (Status::Unauthorized, Error::Unauthorized);
        let Some(bearer) = req
            .headers()
            .get_one("Authorization")
            .and_then(|h| h.strip_prefix("Bearer "))
        else {
            return request::Outcome::Error(unauthorized);
        };
        let known = req.rocket().state::<KnownTokens>();
        let pool = try_outcome!(req.guard::<&State<Db>>().await.map_error(|_| (
            Status::InternalServerError,
            Error::Internal("no database".into())
        )));
        match Device::with_token(bearer, pool, known).await {
            Ok(Some(device)) => request::Outcome::Success(device),
            Ok(None) => request::Outcome::Error(unauthorized),
            Err(e) => request::Outcome::Error((Status::InternalServerError, e)),
        }
    }
}

impl Device {
    /// The live device whose token this is (`Authorization: Bearer <token>`), if any; found
    /// among the tokens recently found live, else in the database.
    pub async fn with_token(
        bearer: &str,
        pool: &db::Pool,
        known: Option<&KnownTokens>,
    ) -> Result<Option<Device>, Error> {
        // NOTE: looked up by hash, so the comparison never touches the secret itself.
        let token_hash = token::hash(bearer.trim());
        if let Some(id) = known.and_then(|k| k.device(&token_hash)) {
            return Ok(Some(Device { id, token_hash }));
        }
        let found = db::devices::authenticate(pool, &token_hash).await?;
        if let (Some(id), Some(known)) = (found, known) {
            known.remember(&token_hash, id);
        }
        Ok(found.map(|id| Device { id, token_hash }))
    }
}

/// The anti-CSRF token of this browser, kept in a private cookie and echoed by every form.
#[derive(Debug, Clone)]
pub struct CsrfToken(pub String);

#[rocket::async_trait]
impl<'r> FromRequest<'r> for CsrfToken {
    type Error = std::convert::Infallible;

    async fn from_request(req: &'r Request<'_>) -> request::Outcome<Self, Self::Error> {
        let cookies = req.cookies();
        let token = match cookies.get_private(CSRF_COOKIE) {
            Some(cookie) => cookie.value().to_owned(),
            None => {
                let token = token::generate();
                cookies.add_private(Cookie::build((CSRF_COOKIE, token.clone())).http_only(true));
                token
            }
        };
        request::Outcome::Success(CsrfToken(token))
    }
}

/// A form that carries the anti-CSRF token.
pub trait CsrfProtected {
    fn csrf_token(&self) -> &str;
}

/// A form accepted only when its token matches this browser's private CSRF cookie.
pub struct CsrfForm<T>(pub T);

#[rocket::async_trait]
impl<'r, T: FromForm<'r> + CsrfProtected + 'r> FromData<'r> for CsrfForm<T> {
    type Error = Error;

    async fn from_data(req: &'r Request<'_>, data: Data<'r>) -> data::Outcome<'r, Self> {
        let form = match Form::<T>::from_data(req, data).await {
            data::Outcome::Success(form) => form.into_inner(),
            data::Outcome::Error((status, errors)) => {
                let message = errors
                    .iter()
                    .map(|e| e.to_string())
                    .collect::<Vec<_>>()
                    .join("; ");
                return data::Outcome::Error((status, Error::BadRequest(message)));
            }
            data::Outcome::Forward(f) => return data::Outcome::Forward(f),
        };
        let expected = req.cookies().get_private(CSRF_COOKIE);
        match expected {
            Some(cookie) if token::constant_time_eq(cookie.value(), form.csrf_token()) => {
                data::Outcome::Success(CsrfForm(form))
            }
            _ => data::Outcome::Error((Status::Forbidden, Error::Csrf)),
        }
    }
}

/// A browser that has logged in successfully as this user before: it carries a private
/// (encrypted, so unforgeable) cookie naming the user and a random id of its own. Guesses
/// elsewhere never lock it out; its own wrong passwords are counted under its id.
#[derive(Debug, Clone)]
pub struct KnownBrowser {
    id: String,
}

impl KnownBrowser {
    /// This browser, if it logged in as `username` before.
    pub fn of(cookies: &CookieJar<'_>, username: &str) -> Option<KnownBrowser> {
        let cookie = cookies.get_private(KNOWN_BROWSER_COOKIE)?;
        let (id, user) = cookie.value().split_once(':')?;
        (user == username.to_lowercase()).then(|| KnownBrowser { id: id.to_owned() })
    }

    /// Remembers (again) that this browser logged in as `username`.
    pub fn remember(cookies: &CookieJar<'_>, username: &str) {
        let id = KnownBrowser::of(cookies, username).map_or_else(token::generate, |k| k.id);
        let value = format!("{id}:{}", username.to_lowercase());
        cookies.add_private(
            Cookie::build((KNOWN_BROWSER_COOKIE, value))
                .http_only(true)
                .max_age(rocket::time::Duration::days(KNOWN_BROWSER_DAYS)),
        );
    }

    /// The key its wrong passwords are counted under.
    pub fn key(&self) -> String {
        format!("browser:{}", self.id)
    }
}

/// The address failures are counted against: the header a reverse proxy sets when `ip_header`
/// is configured (off by default, so a client on the LAN cannot pick its own with
/// `X-Real-IP`), else the client the gate relayed the connection for, else the connection's
/// own peer (requests that did not come through the gate, as in tests).
pub fn client_key(req: &Request<'_>) -> String {
    let relayed_for = || {
        let peers = req.rocket().state::<gate::Peers>()?;
        peers.client_of(req.remote()?)
    };
    req.real_ip()
        .or_else(relayed_for)
        .or_else(|| req.remote().map(|peer| peer.ip()))
        .map(|ip| format!("ip:{ip}"))
        .unwrap_or_else(|| "ip:unknown".into())
}

/// The client address as a request guard, for handlers.
pub struct ClientAddr(pub String);

#[rocket::async_trait]
impl<'r> FromRequest<'r> for ClientAddr {
    type Error = std::convert::Infallible;

    async fn from_request(req: &'r Request<'_>) -> request::Outcome<Self, Self::Error> {
        request::Outcome::Success(ClientAddr(client_key(req)))
    }
}
