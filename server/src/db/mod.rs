//! The SQLite database: the pool, migrations and one module of queries per table.

pub mod admins;
pub mod deliveries;
pub mod devices;
pub mod pairings;
pub mod profiles;
pub mod sessions;
pub mod ticket_ends;
pub mod tickets;
pub mod values;
pub mod withdrawals;

pub use values::{AdminId, Delivery, DeliveryId, DeliveryStatus, DeviceId, ProfileId, TicketId};

use rocket::fairing::{self, AdHoc};
use rocket::{Build, Rocket};
use rocket_db_pools::Database;

use crate::error::Error;

pub use sqlx::SqlitePool as Pool;

#[derive(Database)]
#[database("kodi_tickets")]
pub struct Db(Pool);

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

/// The first row of a statement with `RETURNING`, read with `fetch_all`.
///
/// NOTE: `fetch_optional`/`fetch_one` stop stepping after the first row, and SQLite commits an
/// implicit transaction only when the statement completes: until then other connections of
/// the pool do not see the write. Reading every row completes the statement.
pub fn first<T>(rows: Vec<T>) -> Option<T> {
    rows.into_iter().next()
}

/// The one row of a statement with `RETURNING` that always returns one; see [`first`].
pub fn only<T>(rows: Vec<T>) -> Result<T, sqlx::Error> {
    first(rows).ok_or(sqlx::Error::RowNotFound)
}

/// Current time in Unix seconds: the one clock of the server.
pub fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// Attempts at [`prepare`] before giving up, and the pause before the first retry (doubled
/// each time): about 6 s in all, beyond SQLite's own busy timeout per statement.
const PREPARE_ATTEMPTS: u32 = 8;
const PREPARE_FIRST_PAUSE_MS: u64 = 50;

/// Brings a (possibly brand-new) database up to date: WAL journal, migrations, first admin.
///
/// Several processes may start at once on a fresh file (a service restarted while the CLI
/// runs, two units on one data folder). sqlx's migration lock does nothing on SQLite, so two of
/// them can both see a migration missing and both apply it: the second then fails ("table
/// already exists") or runs out of SQLite's busy timeout. Each migration is one transaction, so
/// such a failure leaves nothing behind, and the next attempt finds the winner's work done:
/// preparing is retried a few times before the error counts.
pub async fn prepare(pool: &Pool) -> Result<(), Error> {
    let mut pause = std::time::Duration::from_millis(PREPARE_FIRST_PAUSE_MS);
    let mut attempt = 1;
    loop {
        match prepare_once(pool).await {
            Ok(()) => return Ok(()),
            Err(e) if attempt < PREPARE_ATTEMPTS => {
                tracing::warn!("preparing the database (attempt {attempt}): {e}; retrying");
                tokio::time::sleep(pause).await;
                pause *= 2;
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

async fn prepare_once(pool: &Pool) -> Result<(), Error> {
    // NOTE: WAL lets pages read while a ticket is being written; it persists in the file.
    sqlx::query("PRAGMA journal_mode = WAL")
        .execute(pool)
        .await?;
    MIGRATOR.run(pool).await.map_err(sqlx::Error::from)?;
    admins::ensure_default(pool).await
}

/// Empties the page caches of the pool's idle connections (`PRAGMA shrink_memory`).
///
/// Each of the pool's connections keeps up to 2 MiB of pages read, allocated by the thread
/// that ran the query: after a burst, several MiB of them pin glibc's arenas (see
/// [`crate::memory`]). Connections in use are skipped (they are shrunk next time); the rest
/// are held all at once so that each is visited once, for the microseconds it takes.
pub async fn shrink_idle_connections(pool: &Pool) {
    let mut idle = Vec::new();
    while let Some(connection) = pool.try_acquire() {
        idle.push(connection);
    }
    for connection in &mut idle {
        if let Err(e) = sqlx::query("PRAGMA shrink_memory")
            .execute(&mut **connection)
            .await
        {
            tracing::warn!("cannot shrink a database connection's caches: {e}");
        }
    }
}

/// Connects the pool, then prepares the database before the server takes requests.
pub fn stage() -> AdHoc {
    AdHoc::on_ignite("SQLite", |rocket| async {
        rocket
            .attach(Db::init())
            .attach(AdHoc::try_on_ignite("SQLite migrations", migrate))
    })
}

async fn migrate(rocket: Rocket<Build>) -> fairing::Result {
    let Some(db) = Db::fetch(&rocket) else {
        return Err(rocket);
    };
    match prepare(db).await {
        Ok(()) => {
            let logins = crate::logins::Logins::new(Pool::clone(db));
            Ok(rocket.manage(logins))
        }
        Err(e) => {
            tracing::error!("cannot prepare the database: {e}");
            Err(rocket)
        }
    }
}
