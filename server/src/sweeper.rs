//! Marks running tickets expired when their time is up, so their PINs become free again,
//! deletes admin sessions past their lifetimes, and hands memory a burst left behind back to
//! the kernel.

use std::time::Duration;

use rocket::fairing::AdHoc;
use rocket::tokio::{self, time};
use rocket_db_pools::Database;

use crate::config::AppConfig;
use crate::db::sessions::Lifetimes;
use crate::db::{self, Db};
use crate::known_tokens::KnownTokens;

const PERIOD: Duration = Duration::from_secs(15);

pub fn stage() -> AdHoc {
    AdHoc::on_liftoff("Expiry sweeper", |rocket| {
        Box::pin(async move {
            let pool = db::Pool::clone(Db::fetch(rocket).expect("database attached"));
            let lifetimes = rocket
                .state::<AppConfig>()
                .expect("configuration attached")
                .session_lifetimes();
            let known = rocket.state::<KnownTokens>().cloned().unwrap_or_default();
            let shutdown = rocket.shutdown();
            tokio::spawn(async move {
                tokio::select! {
                    _ = sweep_forever(pool, lifetimes, known) => {}
                    _ = shutdown => {}
                }
            });
        })
    })
}

async fn sweep_forever(pool: db::Pool, lifetimes: Lifetimes, known: KnownTokens) {
    let mut ticks = time::interval(PERIOD);
    loop {
        ticks.tick().await;
        // NOTE: the sweep runs on one connection it holds: on the pool, its statements run
        // back to back would open a connection each (sqlx returns one in a task of its own).
        let mut connection = match db::sweep_connection(&pool).await {
            Ok(connection) => connection,
            Err(e) => {
                tracing::error!("cannot reach the database to sweep it: {e}");
                continue;
            }
        };
        match db::tickets::expire_due(&mut *connection, db::now()).await {
            Ok(0) => {}
            Ok(n) => tracing::info!("{n} ticket(s) expired"),
            Err(e) => tracing::error!("cannot expire tickets: {e}"),
        }
        match db::sessions::delete_expired(&mut *connection, db::now(), lifetimes).await {
            Ok(0) => {}
            Ok(n) => tracing::info!("{n} expired admin session(s) deleted"),
            Err(e) => tracing::error!("cannot delete expired sessions: {e}"),
        }
        drop(connection);
        known.forget_stale();
        crate::memory::give_back();
    }
}
