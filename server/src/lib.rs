//! Kodi Tickets server: the admin web pages, the tickets' database, the API for Kodi boxes and
//! the worker that applies PINs to Kodi.

pub mod agent_events;
pub mod announce;
pub mod auth;
pub mod config;
pub mod db;
pub mod delivery;
pub mod enrol;
pub mod error;
pub mod gate;
pub mod headers;
pub mod known_tokens;
pub mod live;
pub mod logins;
pub mod memory;
pub mod origin;
pub mod password;
pub mod presence;
pub mod process;
pub mod rate_limit;
pub mod rereads;
pub mod routes;
pub mod sweeper;
pub mod token;
pub mod typed;
pub mod validate;
pub mod views;

use rocket::fairing::AdHoc;
use rocket::figment::Figment;
use rocket::{Build, Rocket};
use rocket_dyn_templates::Template;

use crate::config::{AppConfig, ConfigError};

/// The server as configured by `Rocket.toml` (or the file `ROCKET_CONFIG` names) and
/// `ROCKET_*` variables.
pub fn rocket() -> Result<Rocket<Build>, ConfigError> {
    rocket_from(config::figment())
}

/// The server built from a given figment (tests pass their own database and paths).
pub fn rocket_from(figment: Figment) -> Result<Rocket<Build>, ConfigError> {
    let figment = config::prepare(figment)?;
    let pages = live::Pages::default();
    let presence = presence::Presence::new(pages.clone());
    let rocket = rocket::custom(figment)
        .attach(AdHoc::config::<AppConfig>())
        .attach(Template::custom(|engines| {
            engines.handlebars.set_strict_mode(true);
        }))
        .attach(headers::SecurityHeaders)
        .attach(origin::HostCheck)
        .attach(db::stage())
        .attach(delivery::stage())
        .attach(sweeper::stage())
        .attach(live::stage())
        .manage(rate_limit::Limiters::default())
        .manage(gate::Peers::default())
        .manage(known_tokens::KnownTokens::default())
        .manage(rereads::Rereads::default())
        .manage(presence::Changes::new(presence.clone()))
        .manage(presence)
        .manage(pages)
        .mount("/", routes::auth::routes())
        .mount("/", routes::profiles::routes())
        .mount("/", routes::tickets::routes())
        .mount("/", routes::devices::routes())
        .mount("/", routes::assets::routes())
        .mount("/", live::routes())
        .mount("/", routes::api::health_routes())
        .mount("/api", routes::api::routes())
        .mount("/api", routes::agent::routes())
        .mount("/", origin::routes())
        .mount("/api", origin::routes());
    Ok(routes::register_catchers(rocket))
}
