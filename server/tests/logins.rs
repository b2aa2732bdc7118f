//! Logins written in batches: racing calls, many PINs at once, callers that go away.

mod common;

use std::time::Duration;

use common::TestServer;
use futures::future::join_all;
use kodi_tickets_server::db::{DeviceId, Pool};
use kodi_tickets_server::logins::Logins;

/// The Kodi box the profile of [`unused_tickets`] is on, and another one.
const BOX: DeviceId = DeviceId(1);
const OTHER_BOX: DeviceId = DeviceId(2);

/// Unused tickets with the PINs "1000", "1001", … of a new profile on [`BOX`], created an hour
/// ago (so that the server's sweeper leaves tickets used since then running).
async fn unused_tickets(s: &TestServer, n: usize) -> (Vec<String>, i64) {
    let pool = s.pool();
    let created_at = kodi_tickets_server::db::now() - 3_600;
    for (id, name) in [(BOX, "Box"), (OTHER_BOX, "Other box")] {
        sqlx::query("INSERT INTO devices (id, name, token_hash, created_at) VALUES (?, ?, ?, 0)")
            .bind(id)
            .bind(name)
            .bind(format!("hash-{id}"))
            .execute(&pool)
            .await
            .unwrap();
    }
    sqlx::query(
        "INSERT INTO profiles (name, device_id, created_at, updated_at) VALUES ('Kids', ?, 0, 0)",
    )
    .bind(BOX)
    .execute(&pool)
    .await
    .unwrap();
    let pins: Vec<String> = (0..n).map(|i| format!("{}", 1000 + i)).collect();
    for pin in &pins {
        sqlx::query("INSERT INTO tickets (profile_id, lock_code, length, state, created_at) VALUES (1, ?, 30, 'unused', ?)")
            .bind(pin)
            .bind(created_at)
            .execute(&pool)
            .await
            .unwrap();
    }
    (pins, created_at)
}

async fn used_at(pool: &Pool, pin: &str) -> Option<i64> {
    sqlx::query_scalar("SELECT used_at FROM tickets WHERE lock_code = ?")
        .bind(pin)
        .fetch_optional(pool)
        .await
        .unwrap()
        .flatten()
}

#[rocket::async_test]
async fn racing_logins_on_many_pins_each_win_once_with_their_own_time() {
    let s = TestServer::start().await;
    let (pins, created_at) = unused_tickets(&s, 40).await;
    let logins = Logins::new(s.pool());
    // Three calls per PIN at different times, and PINs no ticket holds, all at once.
    let mut calls = Vec::new();
    for round in 0..3 {
        for (i, pin) in pins.iter().enumerate() {
            calls.push((pin.clone(), created_at + (i * 10 + round) as i64));
        }
    }
    calls.extend((0..10).map(|i| (format!("{}", 5000 + i), created_at)));
    let answers = join_all(
        calls
            .iter()
            .map(|(pin, at)| logins.mark_used(pin, BOX, *at)),
    )
    .await;

    let mut winners = std::collections::HashMap::new();
    for ((pin, at), answer) in calls.iter().zip(answers) {
        if let Some(ticket) = answer.unwrap() {
            assert_eq!(&ticket.lock_code, pin);
            assert_eq!(ticket.used_at, Some(*at), "the winner's own time counts");
            assert_eq!(ticket.expires_at, Some(at + 30 * 60));
            assert!(
                winners.insert(pin.clone(), *at).is_none(),
                "{pin} won twice"
            );
        }
    }
    assert_eq!(
        winners.len(),
        pins.len(),
        "every ticket's PIN won exactly once"
    );
    for (pin, at) in &winners {
        assert_eq!(used_at(&s.pool(), pin).await, Some(*at));
    }
}

#[rocket::async_test]
async fn a_login_before_the_ticket_was_created_counts_from_its_creation() {
    let s = TestServer::start().await;
    let (pins, created_at) = unused_tickets(&s, 1).await;
    let logins = Logins::new(s.pool());
    let ticket = logins
        .mark_used(&pins[0], BOX, created_at - 60)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ticket.used_at, Some(created_at));
    assert!(logins
        .mark_used(&pins[0], BOX, created_at)
        .await
        .unwrap()
        .is_none());
}

#[rocket::async_test]
async fn callers_that_go_away_do_not_hold_up_the_others() {
    let s = TestServer::start().await;
    let (pins, created_at) = unused_tickets(&s, 60).await;
    let logins = std::sync::Arc::new(Logins::new(s.pool()));
    let tasks: Vec<_> = pins
        .iter()
        .map(|pin| {
            let (logins, pin) = (logins.clone(), pin.clone());
            rocket::tokio::spawn(async move { logins.mark_used(&pin, BOX, created_at).await })
        })
        .collect();
    rocket::tokio::task::yield_now().await;
    for task in tasks.iter().step_by(3) {
        task.abort();
    }
    let finished = rocket::tokio::time::timeout(Duration::from_secs(20), join_all(tasks))
        .await
        .expect("every remaining login is answered");
    let mut answered = 0;
    for (pin, result) in pins.iter().zip(finished) {
        match result {
            Ok(answer) => {
                let ticket = answer.unwrap().expect("its own unused ticket");
                assert_eq!(&ticket.lock_code, pin);
                answered += 1;
            }
            Err(e) => assert!(e.is_cancelled(), "{e}"),
        }
    }
    assert!(answered >= 40, "{answered}");
    // Nothing is stuck: a later call is answered too.
    assert!(logins
        .mark_used("0000", BOX, created_at)
        .await
        .unwrap()
        .is_none());
    assert!(used_at(&s.pool(), &pins[1]).await.is_some());
}

#[rocket::async_test]
async fn only_the_box_of_the_tickets_profile_can_use_its_pin() {
    let s = TestServer::start().await;
    let (pins, created_at) = unused_tickets(&s, 1).await;
    let logins = Logins::new(s.pool());
    let pin = &pins[0];
    assert!(logins
        .mark_used(pin, OTHER_BOX, created_at)
        .await
        .unwrap()
        .is_none());
    assert_eq!(used_at(&s.pool(), pin).await, None, "still unused");
    // The other box's login first in one batch does not keep the right box's out.
    let (other, own) = futures::join!(
        logins.mark_used(pin, OTHER_BOX, created_at),
        logins.mark_used(pin, BOX, created_at + 5),
    );
    assert!(other.unwrap().is_none());
    assert_eq!(
        own.unwrap().expect("its own box wins").used_at,
        Some(created_at + 5)
    );
}
