//! The parts of a run, one per figure or group of figures, each against the same live server.

pub(crate) mod agents;
pub(crate) mod api;
pub(crate) mod live;
pub(crate) mod logins;
pub(crate) mod pages;

use std::sync::Arc;

use sqlx::SqlitePool;

use crate::admin::Browser;
use crate::Scale;

/// The running server and what was seeded into it, shared by every part.
pub(crate) struct Bench {
    pub(crate) scale: Scale,
    pub(crate) base: String,
    pub(crate) db: SqlitePool,
    /// Logged in as the admin.
    pub(crate) browser: Browser,
    /// The device token the login and live loads use (its profiles hold their PINs).
    pub(crate) api_token: String,
    /// The device whose open stream the ticket → `arm` latency is measured on.
    pub(crate) latency_token: String,
    /// The boxes the API reads come from: each one's `Authorization` and its live PINs.
    pub(crate) api_readers: Arc<Vec<(String, Vec<String>)>>,
    pub(crate) p_login: i64,
    pub(crate) p_page: i64,
    /// The café's profile: its roll of unused tickets is seeded by its part.
    pub(crate) p_cafe: i64,
    pub(crate) p_create: i64,
    pub(crate) p_filler: i64,
    pub(crate) p_latency: i64,
    /// The profile whose row the open pages watch turn red.
    pub(crate) p_live: i64,
    /// The simulated agents' devices (id, token) and their profiles, in the same order.
    pub(crate) sims: Vec<(i64, String)>,
    pub(crate) sim_profiles: Vec<i64>,
}
