//! Guessing limits hold under any concurrency: a burst gets no more guesses checked than the
//! limit allows, whatever arrives at once, and the right answer sent after it is refused.

mod common;

use common::{urlencode, TestServer};
use futures::future::join_all;
use rocket::http::{ContentType, Header, Status};

const BURST: usize = 500;

fn count(statuses: &[Status], status: Status) -> usize {
    statuses.iter().filter(|s| **s == status).count()
}

async fn login_statuses(s: &TestServer, passwords: &[String]) -> Vec<Status> {
    let token = s.csrf().await;
    let calls = passwords.iter().map(|password| {
        s.client
            .post("/login")
            .header(ContentType::Form)
            .body(format!(
                "csrf_token={}&username=admin&password={}",
                urlencode(&token),
                urlencode(password)
            ))
            .dispatch()
    });
    join_all(calls).await.iter().map(|r| r.status()).collect()
}

#[rocket::async_test]
async fn a_burst_of_wrong_passwords_gets_five_checked_and_the_right_one_then_waits() {
    let s = TestServer::start().await;
    s.login_admin().await;
    let wrong: Vec<String> = (0..BURST).map(|n| format!("guess-{n}")).collect();
    let statuses = login_statuses(&s, &wrong).await;
    // Every checked wrong password answers 401; every other guess was refused unchecked.
    assert_eq!(count(&statuses, Status::Unauthorized), 5, "{statuses:?}");
    assert_eq!(count(&statuses, Status::TooManyRequests), BURST - 5);

    let right = login_statuses(&s, &[common::NEW_PASSWORD.to_owned()]).await;
    assert_eq!(right, [Status::TooManyRequests]);
}

#[rocket::async_test]
async fn the_login_page_says_the_wait_in_minutes_with_retry_after_in_seconds() {
    let s = TestServer::start().await;
    for n in 0..5 {
        let res = s
            .post_form(
                "/login",
                &[("username", "admin"), ("password", &format!("x{n}"))],
            )
            .await;
        assert_eq!(res.status(), Status::Unauthorized);
    }
    let res = s
        .post_form("/login", &[("username", "admin"), ("password", "admin123")])
        .await;
    assert_eq!(res.status(), Status::TooManyRequests);
    let retry_after: u64 = res
        .headers()
        .get_one("Retry-After")
        .expect("Retry-After")
        .parse()
        .unwrap();
    assert!((1..=15 * 60).contains(&retry_after), "{retry_after}");
    let page = res.into_string().await.unwrap();
    assert!(
        page.contains("Try again in 1 minute.") || page.contains("Try again in 15 minutes."),
        "{page}"
    );
    assert!(!page.contains("seconds"), "{page}");
}

async fn server_with_device_ticket() -> (TestServer, String, String) {
    let s = TestServer::start().await;
    s.login_admin().await;
    let (token, kids) = s.local_box_with_profile("Living room", "Kids").await;
    let pin = s.create_ticket(kids, 30).await;
    (s, token, pin)
}

fn wrong_pins(right: &str, n: usize) -> Vec<String> {
    (0..10_000)
        .map(|c| format!("{c:04}"))
        .filter(|c| c != right)
        .take(n)
        .collect()
}

async fn api_login_statuses(s: &TestServer, token: &str, pins: &[String]) -> Vec<Status> {
    let calls = pins.iter().map(|pin| {
        s.client
            .post("/api/login")
            .header(ContentType::JSON)
            .header(Header::new("Authorization", format!("Bearer {token}")))
            .body(format!(r#"{{"lock_code":"{pin}"}}"#))
            .dispatch()
    });
    join_all(calls).await.iter().map(|r| r.status()).collect()
}

#[rocket::async_test]
async fn a_burst_of_wrong_pins_gets_ten_looked_up_and_the_right_one_then_waits() {
    let (s, token, pin) = server_with_device_ticket().await;
    let statuses = api_login_statuses(&s, &token, &wrong_pins(&pin, BURST)).await;
    assert_eq!(count(&statuses, Status::NotFound), 10, "{statuses:?}");
    assert_eq!(count(&statuses, Status::TooManyRequests), BURST - 10);

    let (status, err) = s
        .api_login(&token, &format!(r#"{{"lock_code":"{pin}"}}"#))
        .await;
    assert_eq!(status, Status::TooManyRequests);
    assert_eq!(err["error"], "too many attempts; try again in 1 minute");
    let unused: i64 = sqlx::query_scalar("SELECT count(*) FROM tickets WHERE state = 'unused'")
        .fetch_one(&s.pool())
        .await
        .unwrap();
    assert_eq!(unused, 1, "the right PIN was not used");
}

#[rocket::async_test]
async fn a_burst_of_ticket_lookups_gets_ten_answered() {
    let (s, token, pin) = server_with_device_ticket().await;
    let calls = wrong_pins(&pin, BURST).into_iter().map(|code| {
        s.client
            .get(format!("/api/ticket/{code}"))
            .header(Header::new("Authorization", format!("Bearer {token}")))
            .dispatch()
    });
    let statuses: Vec<Status> = join_all(calls).await.iter().map(|r| r.status()).collect();
    assert_eq!(count(&statuses, Status::NotFound), 10, "{statuses:?}");
    assert_eq!(count(&statuses, Status::TooManyRequests), BURST - 10);
    assert_eq!(s.api_ticket(&token, &pin).await.0, Status::TooManyRequests);
}

#[rocket::async_test]
async fn right_pins_at_once_are_all_answered() {
    let s = TestServer::start().await;
    s.login_admin().await;
    let (token, kids) = s.local_box_with_profile("Living room", "Kids").await;
    let mut pins = Vec::new();
    for _ in 0..40 {
        pins.push(s.create_ticket(kids, 30).await);
    }
    let statuses = api_login_statuses(&s, &token, &pins).await;
    assert_eq!(count(&statuses, Status::Ok), pins.len(), "{statuses:?}");
}

#[rocket::async_test]
async fn an_ended_tickets_pin_is_a_miss_for_the_ticket_lookup() {
    let (s, token, pin) = server_with_device_ticket().await;
    let body = format!(r#"{{"lock_code":"{pin}"}}"#);
    assert_eq!(s.api_login(&token, &body).await.0, Status::Ok);
    assert_eq!(s.api_ticket(&token, &pin).await.0, Status::Ok, "running");
    let id: i64 = sqlx::query_scalar("SELECT id FROM tickets")
        .fetch_one(&s.pool())
        .await
        .unwrap();
    let res = s.post_form(&format!("/tickets/{id}/end"), &[]).await;
    assert_eq!(res.status(), Status::SeeOther);
    for _ in 0..10 {
        let (status, err) = s.api_ticket(&token, &pin).await;
        assert_eq!(status, Status::NotFound, "{err}");
    }
    assert_eq!(s.api_ticket(&token, &pin).await.0, Status::TooManyRequests);
}
