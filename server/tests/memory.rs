//! SQLite's page caches are emptied on the pool's idle connections. Its own process (one test
//! file, one test): SQLite counts its memory per process, so no other test may query at once.

use std::str::FromStr;

use kodi_tickets_server::db;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};

const CONNECTIONS: u32 = 4;
const ROWS: i64 = 20_000;

/// Bytes SQLite holds in this process.
fn sqlite_memory() -> i64 {
    // SAFETY: a read of SQLite's own counter, under its mutex; no pointers involved.
    #[allow(unsafe_code)]
    unsafe {
        libsqlite3_sys::sqlite3_memory_used()
    }
}

#[rocket::async_test]
async fn idle_connections_give_their_page_caches_back() {
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

    // Every connection reads the whole table (about 2.5 MiB), filling its cache.
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
    // One stays in use: it keeps its cache.
    let busy = held.pop().unwrap();
    drop(held);
    // A dropped connection goes back to the pool in a task of its own.
    all_idle_but_one(&pool).await;
    let before = sqlite_memory();

    db::shrink_idle_connections(&pool).await;

    let after = sqlite_memory();
    let freed = before - after;
    // Three caches of up to 2 MiB each, the default size: most of it comes back.
    assert!(
        freed > 3 * 1024 * 1024,
        "SQLite held {before} bytes before, {after} after"
    );
    // Every idle connection is back in the pool (this waits forever otherwise).
    all_idle_but_one(&pool).await;
    drop(busy);
}

/// Returns once every connection but the one held is back in the pool: a dropped connection
/// goes back in a task of its own.
async fn all_idle_but_one(pool: &db::Pool) {
    while pool.num_idle() < CONNECTIONS as usize - 1 {
        rocket::tokio::task::yield_now().await;
    }
}
