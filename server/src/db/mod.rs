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
use sqlx::pool::PoolConnection;

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

/// Connections a quiet server keeps: the delivery worker's look at its queues, four statements
/// run back to back every 15 s, takes up to three, because sqlx hands a connection back to the
/// pool in a task of its own (measured at rest: with two kept, a third was opened between every
/// two sweeps and closed by the next; with three, a fourth now and then).
const QUIET_CONNECTIONS: usize = 3;

/// A connection for the sweeper's periodic work, taken after giving back what a burst left:
/// when the server is quiet (no connection in use), the pool's connections beyond
/// [`QUIET_CONNECTIONS`] are closed and the page caches of those kept emptied (`PRAGMA
/// shrink_memory`); while any connection is in use, all are kept as they are.
///
/// Each connection runs on a thread of its own and keeps what SQLite allocated there: its
/// prepared statements (~0.6 MiB for this app's queries), up to 2 MiB of pages read, and the
/// glibc arena around them (see [`crate::memory`]). A burst opens up to the pool's maximum
/// (eight on two cores); measured after the benchmark, each kept 1.1–1.5 MiB resident. Closing
/// one ends its thread and frees all of it; reopening costs about a millisecond, once per
/// burst.
pub async fn sweep_connection(pool: &Pool) -> Result<PoolConnection<sqlx::Sqlite>, sqlx::Error> {
    let mut idle = Vec::new();
    while let Some(connection) = pool.try_acquire() {
        idle.push(connection);
    }
    if idle.len() as u32 == pool.size() {
        for spare in idle.split_off(QUIET_CONNECTIONS.min(idle.len())) {
            if let Err(e) = spare.close().await {
                tracing::warn!("cannot close a spare database connection: {e}");
            }
        }
        for kept in &mut idle {
            if let Err(e) = sqlx::query("PRAGMA shrink_memory")
                .execute(&mut **kept)
                .await
            {
                tracing::warn!("cannot shrink a database connection's caches: {e}");
            }
        }
    }
    match idle.into_iter().next() {
        Some(connection) => Ok(connection),
        None => pool.acquire().await,
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
