//! What was typed into a form the server refused, kept for the one page that shows the form
//! again, so nothing has to be typed twice (POST-redirect-GET loses the request body).

use std::collections::HashMap;

use rocket::http::{Cookie, CookieJar};
use rocket::request::{self, FromRequest, Request};

const COOKIE: &str = "kt_typed";

/// Keeps `fields` (name, value) for the next page that shows their form.
pub fn remember(cookies: &CookieJar<'_>, fields: &[(&str, &str)]) {
    let map: HashMap<&str, &str> = fields.iter().copied().collect();
    if let Ok(json) = serde_json::to_string(&map) {
        cookies.add_private(Cookie::build((COOKIE, json)).http_only(true));
    }
}

/// The fields kept by [`remember`], handed out once; empty when there are none.
#[derive(Debug, Default)]
pub struct Typed(HashMap<String, String>);

impl Typed {
    pub fn get(&self, field: &str) -> Option<&str> {
        self.0.get(field).map(String::as_str)
    }
}

#[rocket::async_trait]
impl<'r> FromRequest<'r> for Typed {
    type Error = std::convert::Infallible;

    async fn from_request(req: &'r Request<'_>) -> request::Outcome<Self, Self::Error> {
        let cookies = req.cookies();
        let Some(cookie) = cookies.get_private(COOKIE) else {
            return request::Outcome::Success(Typed::default());
        };
        cookies.remove_private(COOKIE);
        request::Outcome::Success(Typed(
            serde_json::from_str(cookie.value()).unwrap_or_default(),
        ))
    }
}
