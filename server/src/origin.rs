//! Requests must name this server: against DNS rebinding, where a web page visited on the LAN
//! makes the browser send requests here under the page's own name.
//!
//! The `Host` must be `localhost`, an IP address or one of `allowed_hosts`; a POST that
//! carries an `Origin` (every browser form does) must come from that same host. A refused
//! request is answered by [`routes`] without reaching any other handler.

use std::net::IpAddr;

use rocket::fairing::{Fairing, Info, Kind};
use rocket::http::uri::Origin;
use rocket::http::Method;
use rocket::{get, routes, Data, Request, Route};

use crate::config::AppConfig;
use crate::error::Error;

pub struct HostCheck;

/// Why a request is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    /// The `Host` names a server other than this one.
    Host,
    /// A POST from a page of another origin.
    Origin,
}

/// Whether a request's `Host` (without its port) names this server.
fn host_allowed(domain: &str, allowed: &[String]) -> bool {
    let name = domain.trim_end_matches('.');
    let bare = name.trim_start_matches('[').trim_end_matches(']');
    name.eq_ignore_ascii_case("localhost")
        || bare.parse::<IpAddr>().is_ok()
        || allowed
            .iter()
            .any(|a| a.trim_end_matches('.').eq_ignore_ascii_case(name))
}

/// Whether a `Host` header's value names this server.
pub fn names_this_server(host: &str, allowed: &[String]) -> bool {
    host_allowed(domain_of(host), allowed)
}

/// A `Host` header without its port: `[::1]:5000` → `[::1]`, `kodi.lan:5000` → `kodi.lan`.
fn domain_of(host: &str) -> &str {
    let host = host.trim();
    if host.starts_with('[') {
        return host.split_inclusive(']').next().unwrap_or(host);
    }
    host.split(':').next().unwrap_or(host)
}

/// Whether an `Origin` header (`scheme://host[:port]`) is the `Host` the request was sent to.
fn same_origin(origin: &str, host: Option<&str>) -> bool {
    let Some((_, authority)) = origin.split_once("://") else {
        return false;
    };
    host.is_some_and(|host| authority.eq_ignore_ascii_case(host))
}

fn refusal(req: &Request<'_>, allowed: &[String]) -> Option<Refusal> {
    // NOTE: a request without `Host` is not a browser's (browsers always send it), so it
    // cannot be rebound.
    let host = req.headers().get_one("Host");
    if host.is_some_and(|h| !names_this_server(h, allowed)) {
        return Some(Refusal::Host);
    }
    let origin = req.headers().get_one("Origin");
    match (req.method(), origin) {
        (Method::Post, Some(origin)) if !same_origin(origin, host) => Some(Refusal::Origin),
        _ => None,
    }
}

#[rocket::async_trait]
impl Fairing for HostCheck {
    fn info(&self) -> Info {
        Info {
            name: "Host and Origin check",
            kind: Kind::Request,
        }
    }

    async fn on_request(&self, req: &mut Request<'_>, _: &mut Data<'_>) {
        let allowed = req
            .rocket()
            .state::<AppConfig>()
            .map(|c| c.allowed_hosts.clone())
            .unwrap_or_default();
        let Some(refusal) = refusal(req, &allowed) else {
            return;
        };
        tracing::warn!(
            host = req.headers().get_one("Host").unwrap_or_default(),
            origin = req.headers().get_one("Origin").unwrap_or_default(),
            path = %req.uri().path(),
            "refused: {refusal:?} (add the name to allowed_hosts if it is this server's)"
        );
        // NOTE: Rocket has no way to answer from a fairing: the request is sent to the route
        // that refuses it instead (under /api, so that the answer is JSON there).
        let to = match (refusal, crate::routes::answers_json(req)) {
            (Refusal::Host, false) => "/refused/host",
            (Refusal::Host, true) => "/api/refused/host",
            (Refusal::Origin, false) => "/refused/origin",
            (Refusal::Origin, true) => "/api/refused/origin",
        };
        req.set_method(Method::Get);
        req.set_uri(Origin::parse(to).expect("a valid path"));
    }
}

#[get("/refused/host")]
fn refused_host() -> Error {
    Error::MisdirectedHost
}

#[get("/refused/origin")]
fn refused_origin() -> Error {
    Error::Csrf
}

/// The answers to refused requests; mounted at `/` and `/api`.
pub fn routes() -> Vec<Route> {
    routes![refused_host, refused_origin]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_servers_names() {
        let allowed = ["kodi-tickets.lan".to_owned()];
        for name in [
            "localhost",
            "LOCALHOST",
            "192.168.1.5",
            "[::1]",
            "kodi-tickets.lan",
            "Kodi-Tickets.LAN.",
        ] {
            assert!(host_allowed(name, &allowed), "{name}");
        }
        for name in [
            "evil.example",
            "kodi-tickets.lan.evil.example",
            "localhost.evil.example",
            "1.2.3.4.nip.io",
        ] {
            assert!(!host_allowed(name, &allowed), "{name}");
        }
    }

    #[test]
    fn hosts_lose_their_ports() {
        assert_eq!(domain_of("kodi.lan:5000"), "kodi.lan");
        assert_eq!(domain_of("kodi.lan"), "kodi.lan");
        assert_eq!(domain_of("[::1]:5000"), "[::1]");
        assert_eq!(domain_of("192.168.1.2:80"), "192.168.1.2");
    }

    #[test]
    fn origins() {
        assert!(same_origin("http://localhost:5000", Some("localhost:5000")));
        assert!(same_origin("https://kodi.lan", Some("KODI.lan")));
        assert!(!same_origin("http://evil.example", Some("localhost:5000")));
        assert!(!same_origin(
            "http://localhost:5001",
            Some("localhost:5000")
        ));
        assert!(!same_origin("null", Some("localhost:5000")));
        assert!(!same_origin("http://localhost:5000", None));
    }
}
