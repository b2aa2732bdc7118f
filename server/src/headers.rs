//! Security headers on every response.

use rocket::fairing::{Fairing, Info, Kind};
use rocket::http::Header;
use rocket::{Request, Response};

pub struct SecurityHeaders;

/// Scripts and styles only from this server (no inline script), never framed.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; \
                   object-src 'none'";

#[rocket::async_trait]
impl Fairing for SecurityHeaders {
    fn info(&self) -> Info {
        Info {
            name: "Security headers",
            kind: Kind::Response,
        }
    }

    async fn on_response<'r>(&self, req: &'r Request<'_>, res: &mut Response<'r>) {
        for (name, value) in for_path(req.uri().path().as_str()) {
            res.set_header(Header::new(name, value));
        }
    }
}

/// The security headers of a response to a request for `path`.
pub fn for_path(path: &str) -> impl Iterator<Item = (&'static str, &'static str)> {
    let always = [
        ("Content-Security-Policy", CSP),
        ("X-Content-Type-Options", "nosniff"),
        ("X-Frame-Options", "DENY"),
        // NOTE: `same-origin`, not `no-referrer`: under `no-referrer` browsers send
        // `Origin: null` even with this server's own forms, and the Origin check needs theirs.
        ("Referrer-Policy", "same-origin"),
    ];
    // Pages show PINs: never keep them in a shared cache or the back-button cache.
    let not_cached = (!path.starts_with("/static/")).then_some(("Cache-Control", "no-store"));
    always.into_iter().chain(not_cached)
}
