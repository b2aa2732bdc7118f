//! A quiet server gives back the database connections a burst opened. Its own process (one
//! test file, one test): SQLite counts its memory per process, so no other test may query at
//! once.

use std::str::FromStr;

use kodi_tickets_server::db;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};

/// As many connections as a burst opens on two cores (the pool's default maximum).
const CONNECTIONS: u32 = 8;
/// What a quiet server keeps (`db::QUIET_CONNECTIONS`).
const KEPT: u32 = 3;
const ROWS: i64 = 20_000;
const MIB: i64 = 1024 * 1024;

/// Bytes SQLite holds in this process.
fn sqlite_memory() -> i64 {
    // SAFETY: a read of SQLite's own counter, under its mutex; no pointers involved.
    #[allow(unsafe_code)]
    unsafe {
        libsqlite3_sys::sqlite3_memory_used()
    }
}

#[rocket::async_test]
async fn a_quiet_server_closes_what_a_burst_opened() {
    let dir = tempfile::tempdir().unwrap();
    let options =
        SqliteConnectOptions::from_str(&format!("sqlite://{}/kt.db", dir.path().display()))
            .unwrap()
            .create_if_missing(true);
    let pool = SqlitePoolOptions::new()
        .max_connections(CONNECTIONS)
        .connect_with(options)
        .await
        .unwrap();
    sqlx::query("CREATE TABLE t (id INTEGER PRIMARY KEY, text TEXT NOT NULL)")
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)
         INSERT INTO t SELECT i, printf('%.100c', 'x') FROM n",
    )
    .bind(ROWS)
    .execute(&pool)
    .await
    .unwrap();

    // A burst: every connection reads the whole table (about 2.5 MiB), filling its cache.
    let mut held = Vec::new();
    for _ in 0..CONNECTIONS {
        let mut connection = pool.acquire().await.unwrap();
        let total: i64 = sqlx::query_scalar("SELECT sum(length(text)) FROM t")
            .fetch_one(&mut *connection)
            .await
            .unwrap();
        assert_eq!(total, ROWS * 100);
        held.push(connection);
    }
    let busy = held.pop().unwrap();
    drop(held);
    all_idle_but(&pool, 1).await;
    let before = sqlite_memory();

    // One connection still in use: the server is busy, nothing is closed or emptied.
    let sweep = db::sweep_connection(&pool).await.unwrap();
    assert_eq!(pool.size(), CONNECTIONS);
    assert!(
        sqlite_memory() > before - MIB,
        "caches were emptied while busy"
    );
    drop(sweep);
    drop(busy);
    all_idle_but(&pool, 0).await;

    // Quiet: the spare connections are closed, the caches of those kept emptied.
    let mut sweep = db::sweep_connection(&pool).await.unwrap();
    assert_eq!(pool.size(), KEPT);
    let freed = before - sqlite_memory();
    // Eight caches of up to 2 MiB each, the default size: most of it comes back.
    assert!(
        freed > 10 * MIB,
        "SQLite held {before} bytes before, {freed} fewer after"
    );
    // The connection handed out is one of those kept, and it works.
    let total: i64 = sqlx::query_scalar("SELECT count(*) FROM t")
        .fetch_one(&mut *sweep)
        .await
        .unwrap();
    assert_eq!(total, ROWS);
}

/// Returns once every connection but `held` is back in the pool: a dropped connection goes
/// back in a task of its own.
async fn all_idle_but(pool: &db::Pool, held: u32) {
    while pool.num_idle() < (pool.size() - held) as usize {
        rocket::tokio::task::yield_now().await;
    }
}
