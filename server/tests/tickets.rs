//! PIN allocation: unique among live tickets, uniform among free codes, never a hang.

mod common;

use std::collections::HashSet;

use common::TestServer;
use futures::future::join_all;
use kodi_tickets_server::db::tickets::{self, Created};
use kodi_tickets_server::db::{ProfileId, TicketId};
use rocket::http::{ContentType, Status};

/// Fills every code but `keep` with live tickets of `profile`, straight into the database.
async fn fill_codes_except(s: &TestServer, profile: i64, keep: &[&str]) {
    let pool = s.pool();
    let mut tx = pool.begin().await.unwrap();
    for n in 0..10_000 {
        let code = format!("{n:04}");
        if keep.contains(&code.as_str()) {
            continue;
        }
        sqlx::query("INSERT INTO tickets (profile_id, lock_code, length, state, created_at) VALUES (?, ?, 30, 'unused', 0)")
            .bind(profile)
            .bind(code)
            .execute(&mut *tx)
            .await
            .unwrap();
    }
    tx.commit().await.unwrap();
}

#[rocket::async_test]
async fn the_last_free_code_is_found_and_the_next_ticket_gets_a_clear_error() {
    let s = TestServer::start().await;
    s.login_admin().await;
    let kids = s.create_profile("Kids").await;
    fill_codes_except(&s, kids, &["0042"]).await;
    assert_eq!(
        s.create_ticket(kids, 30).await,
        "0042",
        "the 10,000th ticket gets the one free code"
    );

    let res = s
        .post_form(&format!("/profiles/{kids}/tickets"), &[("length", "30")])
        .await;
    assert_eq!(
        res.headers().get_one("Location"),
        Some(format!("/profiles/{kids}/tickets/new").as_str())
    );
    let flash = res.cookies().get("_flash").unwrap().value().to_owned();
    assert!(flash.contains("all 10,000 PINs"), "{flash}");
}

#[rocket::async_test]
async fn expired_and_revoked_codes_become_free_again() {
    let s = TestServer::start().await;
    s.login_admin().await;
    let kids = s.create_profile("Kids").await;
    fill_codes_except(&s, kids, &[]).await;
    let pool = s.pool();
    sqlx::query("UPDATE tickets SET state = 'in_use', used_at = 0, expires_at = 1800 WHERE lock_code = '0007'")
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("UPDATE tickets SET state = 'revoked' WHERE lock_code = '0008'")
        .execute(&pool)
        .await
        .unwrap();
    let mut got = vec![
        s.create_ticket(kids, 30).await,
        s.create_ticket(kids, 30).await,
    ];
    got.sort();
    assert_eq!(got, ["0007", "0008"]);
}

#[rocket::async_test]
async fn the_draw_is_spread_over_the_free_codes() {
    let s = TestServer::start().await;
    s.login_admin().await;
    let kids = s.create_profile("Kids").await;
    let pool = s.pool();
    let free = ["0001", "2500", "5000", "9999"];
    fill_codes_except(&s, kids, &free).await;
    // Each draw modulo the free count picks a different free code.
    let mut seen = HashSet::new();
    for draw in 0..4u32 {
        let Created::Ticket { lock_code, id, .. } =
            tickets::insert(&pool, ProfileId(kids), 30, draw)
                .await
                .unwrap()
        else {
            panic!("no code");
        };
        seen.insert(lock_code);
        sqlx::query("UPDATE tickets SET state = 'revoked' WHERE id = ?")
            .bind(id)
            .execute(&pool)
            .await
            .unwrap();
    }
    assert_eq!(seen, free.iter().map(|c| c.to_string()).collect());
}

#[rocket::async_test]
async fn pins_keep_their_leading_zeros() {
    let s = TestServer::start().await;
    s.login_admin().await;
    let (token, kids) = s.local_box_with_profile("TV", "Kids").await;
    fill_codes_except(&s, kids, &["0003"]).await;
    let pin = s.create_ticket(kids, 30).await;
    assert_eq!(pin, "0003");
    let (status, t) = s.api_ticket(&token, "0003").await;
    assert_eq!(status, Status::Ok);
    assert_eq!(t["lock_code"], "0003");
}

#[rocket::async_test]
async fn two_hundred_simultaneous_creations_get_two_hundred_distinct_pins() {
    let s = TestServer::start().await;
    s.login_admin().await;
    let kids = s.create_profile("Kids").await;
    let token = s.csrf().await;
    let body = format!("csrf_token={}&length=30", common::urlencode(&token));
    let uri = format!("/profiles/{kids}/tickets");
    let calls = (0..200).map(|_| {
        s.client
            .post(uri.clone())
            .header(ContentType::Form)
            .body(body.clone())
            .dispatch()
    });
    let responses = join_all(calls).await;
    assert!(responses.iter().all(|r| r.status() == Status::SeeOther));
    let codes: Vec<String> = sqlx::query_scalar("SELECT lock_code FROM tickets")
        .fetch_all(&s.pool())
        .await
        .unwrap();
    assert_eq!(codes.len(), 200);
    assert_eq!(codes.iter().collect::<HashSet<_>>().len(), 200);
}

#[rocket::async_test]
async fn the_database_refuses_a_duplicate_live_pin() {
    let s = TestServer::start().await;
    let pool = s.pool();
    sqlx::query("INSERT INTO profiles (name, created_at, updated_at) VALUES ('Kids', 0, 0)")
        .execute(&pool)
        .await
        .unwrap();
    let insert = "INSERT INTO tickets (profile_id, lock_code, length, state, created_at) VALUES (1, '1234', 30, ?, 0)";
    sqlx::query(insert)
        .bind("unused")
        .execute(&pool)
        .await
        .unwrap();
    assert!(sqlx::query(insert)
        .bind("in_use")
        .execute(&pool)
        .await
        .is_err());
    sqlx::query(insert)
        .bind("expired")
        .execute(&pool)
        .await
        .unwrap();
    for bad in ["123", "12a4", "12345"] {
        let r = sqlx::query(
            "INSERT INTO tickets (profile_id, lock_code, length, created_at) VALUES (1, ?, 30, 0)",
        )
        .bind(bad)
        .execute(&pool)
        .await;
        assert!(r.is_err(), "{bad}");
    }
}

/// `pin_blocks` as it is, and as the live tickets say it should be.
async fn block_counts(pool: &kodi_tickets_server::db::Pool) -> (Vec<i64>, Vec<i64>) {
    let kept = sqlx::query_scalar("SELECT live FROM pin_blocks ORDER BY block")
        .fetch_all(pool)
        .await
        .unwrap();
    let actual = sqlx::query_scalar(
        "WITH RECURSIVE b(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM b WHERE n < 99)
         SELECT (SELECT count(*) FROM tickets WHERE state IN ('unused', 'in_use')
                 AND CAST(lock_code AS INTEGER) / 100 = n) FROM b ORDER BY n",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    (kept, actual)
}

async fn live_ticket(pool: &kodi_tickets_server::db::Pool, pin: &str) -> TicketId {
    sqlx::query_scalar(
        "SELECT id FROM tickets WHERE lock_code = ? AND state IN ('unused', 'in_use')",
    )
    .bind(pin)
    .fetch_one(pool)
    .await
    .unwrap()
}

#[rocket::async_test]
async fn the_block_counts_follow_every_change_to_a_ticket() {
    let s = TestServer::start().await;
    s.login_admin().await;
    let pool = s.pool();
    let (token, kids) = s.local_box_with_profile("TV", "Kids").await;
    let guests = s.create_profile("Guests").await;
    let mut kid_pins = Vec::new();
    for _ in 0..30 {
        kid_pins.push(s.create_ticket(kids, 30).await);
        s.create_ticket(guests, 30).await;
    }
    assert_eq!(block_counts(&pool).await.0.iter().sum::<i64>(), 60);

    // Logins keep the code taken; ending, expiring, revoking and deleting free it.
    for pin in &kid_pins[..10] {
        let (status, _) = s
            .api_login(&token, &format!(r#"{{"lock_code":"{pin}"}}"#))
            .await;
        assert_eq!(status, Status::Ok);
    }
    let (kept, actual) = block_counts(&pool).await;
    assert_eq!((kept.iter().sum::<i64>(), &kept), (60, &actual));
    sqlx::query("UPDATE tickets SET expires_at = 0 WHERE lock_code IN (?, ?)")
        .bind(&kid_pins[0])
        .bind(&kid_pins[1])
        .execute(&pool)
        .await
        .unwrap();
    tickets::expire_due(&pool, 1).await.unwrap();
    let running = live_ticket(&pool, &kid_pins[2]).await;
    assert!(tickets::end_now(&pool, running).await.unwrap());
    sqlx::query("UPDATE tickets SET state = 'revoked' WHERE lock_code = ?")
        .bind(&kid_pins[20])
        .execute(&pool)
        .await
        .unwrap();
    let unused = live_ticket(&pool, &kid_pins[21]).await;
    assert!(tickets::delete(&pool, unused).await.unwrap());
    let (kept, actual) = block_counts(&pool).await;
    assert_eq!((kept.iter().sum::<i64>(), &kept), (55, &actual));

    // Deleting a profile deletes its tickets through the foreign key.
    let res = s
        .post_form(&format!("/profiles/{guests}/delete"), &[])
        .await;
    assert_eq!(res.status(), Status::SeeOther);
    let (kept, actual) = block_counts(&pool).await;
    assert_eq!((kept.iter().sum::<i64>(), &kept), (25, &actual));
}

#[rocket::async_test]
async fn upgrading_an_existing_database_counts_its_live_codes() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/old.db?mode=rwc", dir.path().display());
    let pool = kodi_tickets_server::db::Pool::connect(&url).await.unwrap();
    let mut migrator = sqlx::migrate!("../migrations");
    let all = migrator.migrations.to_vec();
    migrator.migrations = all[..1].to_vec().into();
    migrator.run(&pool).await.unwrap();
    sqlx::query("INSERT INTO profiles (name, created_at, updated_at) VALUES ('Kids', 0, 0)")
        .execute(&pool)
        .await
        .unwrap();
    for (code, state) in [
        ("0000", "unused"),
        ("0099", "in_use"),
        ("0100", "unused"),
        ("0100", "expired"),
        ("9999", "revoked"),
        ("9998", "unused"),
    ] {
        sqlx::query("INSERT INTO tickets (profile_id, lock_code, length, state, created_at) VALUES (1, ?, 30, ?, 0)")
            .bind(code)
            .bind(state)
            .execute(&pool)
            .await
            .unwrap();
    }

    kodi_tickets_server::db::prepare(&pool).await.unwrap();
    let (kept, actual) = block_counts(&pool).await;
    assert_eq!(kept, actual);
    assert_eq!((kept[0], kept[1], kept[99]), (2, 1, 1));
    assert_eq!(kept.iter().sum::<i64>(), 4);
}
