//! The admin pages' live stream: each open page holds one server-sent event stream and
//! re-reads what it shows when told that something changed (a PIN used or set on the TV, a
//! session ended or its time up, a box online or offline), so nobody has to reload.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rocket::fairing::AdHoc;
use rocket::response::stream::{Event, EventStream};
use rocket::tokio::sync::watch;
use rocket::tokio::{self, time};
use rocket::{get, routes, Route, Shutdown, State};
use rocket_db_pools::Database;

use crate::auth::Admin;
use crate::db::{self, Db};

pub fn routes() -> Vec<Route> {
    routes![events]
}

/// How often an open stream checks that its admin is still logged in.
const SESSION_CHECK: Duration = Duration::from_secs(5);
/// How long a browser waits before it reconnects a broken stream.
const RECONNECT_AFTER: Duration = Duration::from_secs(2);
/// The time-up watch looks again at least this often (e.g. after a change to the clock).
const TIME_UP_LOOK: Duration = Duration::from_secs(60);

/// The line every open page listens on. A change bumps a counter: a page busy re-reading
/// when several changes come sees them as one.
#[derive(Clone)]
pub struct Pages(Arc<watch::Sender<u64>>);

impl Default for Pages {
    fn default() -> Self {
        Pages(Arc::new(watch::channel(0).0))
    }
}

impl Pages {
    /// Tells every open page that what it shows may have changed.
    pub fn announce(&self) {
        self.0.send_modify(|n| *n = n.wrapping_add(1));
    }

    pub fn listen(&self) -> watch::Receiver<u64> {
        self.0.subscribe()
    }
}

/// One stream per open page, for a logged-in admin only: a `change` event whenever something
/// changed. Ends when the admin logs out (or the session is ended elsewhere).
#[get("/events")]
fn events(
    admin: Admin,
    db: &Db,
    pages: &State<Pages>,
    mut shutdown: Shutdown,
) -> EventStream![Event + 'static] {
    let pool = db::Pool::clone(db);
    let mut changes = pages.listen();
    let session = admin.0.token_hash;
    EventStream! {
        yield Event::data("ready").event("ready").with_retry(RECONNECT_AFTER);
        let mut check = time::interval(SESSION_CHECK);
        check.tick().await;
        loop {
            tokio::select! {
                changed = changes.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    let seen = *changes.borrow_and_update();
                    yield Event::data(seen.to_string()).event("change");
                }
                _ = check.tick() => {
                    match db::sessions::exists(&pool, &session).await {
                        Ok(true) => {}
                        Ok(false) => break,
                        Err(e) => tracing::error!("page stream: {e}"),
                    }
                }
                _ = &mut shutdown => break,
            }
        }
    }
    .heartbeat(Duration::from_secs(15))
}

/// Announces each running ticket's time up the moment it comes, so open pages turn its row
/// grey and take its +15 / End now away without waiting for the expiry sweep.
pub fn stage() -> AdHoc {
    AdHoc::on_liftoff("Time-up announcer", |rocket| {
        Box::pin(async move {
            let pool = db::Pool::clone(Db::fetch(rocket).expect("database attached"));
            let pages = rocket.state::<Pages>().expect("pages managed").clone();
            let shutdown = rocket.shutdown();
            tokio::spawn(async move {
                tokio::select! {
                    _ = announce_time_up(pool, pages) => {}
                    _ = shutdown => {}
                }
            });
        })
    })
}

/// The wait from now until the start of second `unix` has passed.
fn until(unix: i64) -> Duration {
    let at = UNIX_EPOCH + Duration::from_secs(unix.max(0) as u64);
    at.duration_since(SystemTime::now()).unwrap_or_default()
}

async fn announce_time_up(pool: db::Pool, pages: Pages) {
    let mut changes = pages.listen();
    loop {
        let next = match db::tickets::next_time_up(&pool, db::now()).await {
            Ok(next) => next,
            Err(e) => {
                tracing::error!("cannot read the next time up: {e}");
                None
            }
        };
        let wait = next.map(until).unwrap_or(TIME_UP_LOOK).min(TIME_UP_LOOK);
        tokio::select! {
            // NOTE: a change (a new session, +15, End now) may move the next time up.
            _ = changes.changed() => {
                changes.borrow_and_update();
            }
            _ = time::sleep(wait) => {
                if next.is_some_and(|n| n <= db::now()) {
                    pages.announce();
                    changes.borrow_and_update();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[rocket::async_test]
    async fn changes_made_while_a_page_is_busy_come_as_one() {
        let pages = Pages::default();
        let mut page = pages.listen();
        pages.announce();
        pages.announce();
        page.changed().await.unwrap();
        assert_eq!(*page.borrow_and_update(), 2);
        let again = time::timeout(Duration::from_millis(50), page.changed()).await;
        assert!(again.is_err(), "no second wake for the same changes");
    }

    #[test]
    fn a_time_up_in_the_past_is_due_now() {
        assert_eq!(until(0), Duration::ZERO);
        assert!(until(db::now() + 10) > Duration::from_secs(8));
    }
}
