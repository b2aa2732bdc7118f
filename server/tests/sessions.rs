//! Admin sessions end on the server: after the idle and the absolute lifetime they are refused
//! and deleted; a new password and the end of the other sessions are one transaction.

mod common;

use std::io::Write;
use std::process::Stdio;

use common::{TestServer, NEW_PASSWORD};
use kodi_tickets_server::password;
use rocket::http::Status;

const DAY: i64 = 24 * 60 * 60;

async fn age_sessions(s: &TestServer, idle_days: i64, started_days_ago: i64) {
    let now = kodi_tickets_server::db::now();
    sqlx::query("UPDATE sessions SET last_seen_at = ?, created_at = ?")
        .bind(now - idle_days * DAY)
        .bind(now - started_days_ago * DAY)
        .execute(&s.pool())
        .await
        .unwrap();
}

async fn session_count(s: &TestServer) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM sessions")
        .fetch_one(&s.pool())
        .await
        .unwrap()
}

fn sent_to_login(status: Status) -> bool {
    status == Status::SeeOther || status == Status::Unauthorized
}

#[rocket::async_test]
async fn a_session_used_within_its_lifetimes_goes_on() {
    let s = TestServer::start().await;
    s.login_admin().await;
    age_sessions(&s, 29, 179).await;
    assert_eq!(s.page("/profiles").await.0, Status::Ok);
}

#[rocket::async_test]
async fn a_session_idle_for_more_than_30_days_is_refused_and_deleted() {
    let s = TestServer::start().await;
    s.login_admin().await;
    age_sessions(&s, 31, 31).await;
    let res = s.client.get("/profiles").dispatch().await;
    assert!(sent_to_login(res.status()), "{}", res.status());
    drop(res);
    // The sweeper deletes it (it runs at every start, then every few seconds).
    let s = s.restart().await;
    for _ in 0..200 {
        if session_count(&s).await == 0 {
            return;
        }
        rocket::tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("the expired session was not deleted");
}

#[rocket::async_test]
async fn a_session_older_than_180_days_is_refused_however_much_it_is_used() {
    let s = TestServer::start().await;
    s.login_admin().await;
    age_sessions(&s, 0, 181).await;
    let res = s.client.get("/profiles").dispatch().await;
    assert!(sent_to_login(res.status()), "{}", res.status());
}

#[rocket::async_test]
async fn the_lifetimes_are_configurable() {
    let dir = tempfile::tempdir().unwrap();
    let figment = common::figment(dir.path()).merge(("session_idle_days", 2));
    let rocket = kodi_tickets_server::rocket_from(figment).unwrap();
    let s = TestServer {
        client: rocket::local::asynchronous::Client::tracked(rocket)
            .await
            .unwrap(),
        dir,
    };
    s.login_admin().await;
    age_sessions(&s, 1, 1).await;
    assert_eq!(s.page("/profiles").await.0, Status::Ok);
    age_sessions(&s, 3, 3).await;
    let res = s.client.get("/profiles").dispatch().await;
    assert!(sent_to_login(res.status()), "{}", res.status());
}

/// A database that refuses to end sessions: the password change must then not happen.
async fn refuse_ending_sessions(s: &TestServer) {
    sqlx::query(
        "CREATE TRIGGER keep_sessions BEFORE DELETE ON sessions
         BEGIN SELECT RAISE(ABORT, 'sessions cannot be ended'); END",
    )
    .execute(&s.pool())
    .await
    .unwrap();
}

async fn password_is(s: &TestServer, password: &str) -> bool {
    let hash: String = sqlx::query_scalar("SELECT password_hash FROM admins")
        .fetch_one(&s.pool())
        .await
        .unwrap();
    password::verify(password.to_owned(), Some(hash)).await
}

#[rocket::async_test]
async fn a_password_change_that_cannot_end_the_other_sessions_changes_nothing() {
    let s = TestServer::start().await;
    s.login_admin().await;
    // The admin's session in another browser, which the change must end.
    let now = kodi_tickets_server::db::now();
    sqlx::query(
        "INSERT INTO sessions (token_hash, admin_id, created_at, last_seen_at)
         SELECT 'another-browser', id, ?1, ?1 FROM admins",
    )
    .bind(now)
    .execute(&s.pool())
    .await
    .unwrap();
    refuse_ending_sessions(&s).await;
    let res = s
        .post_form(
            "/password",
            &[
                ("current_password", NEW_PASSWORD),
                ("new_password", "another-pass-93"),
                ("confirm_password", "another-pass-93"),
            ],
        )
        .await;
    assert_eq!(res.status(), Status::InternalServerError);
    assert!(
        password_is(&s, NEW_PASSWORD).await,
        "the old password stands"
    );
}

#[rocket::async_test]
async fn a_password_reset_from_the_command_line_that_cannot_end_the_sessions_changes_nothing() {
    let s = TestServer::start().await;
    s.login_admin().await;
    refuse_ending_sessions(&s).await;
    let mut reset = common::server_command(s.dir.path(), &["admin", "set-password", "admin"])
        .stdin(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = reset.stdin.take().unwrap();
    stdin.write_all(b"another-pass-93").unwrap();
    drop(stdin);
    assert!(!reset.wait().unwrap().success());
    assert!(
        password_is(&s, NEW_PASSWORD).await,
        "the old password stands"
    );
}

/// Posts the password form with `current` as the current password; the page's message.
async fn change_password(s: &TestServer, current: &str, new: &str) -> String {
    let res = s
        .post_form(
            "/password",
            &[
                ("current_password", current),
                ("new_password", new),
                ("confirm_password", new),
            ],
        )
        .await;
    assert_eq!(res.status(), Status::SeeOther);
    let to = res.headers().get_one("Location").unwrap().to_owned();
    s.page(&to).await.1
}

#[rocket::async_test]
async fn guessing_the_current_password_while_logged_in_is_limited_like_a_login() {
    let s = TestServer::start().await;
    s.login_admin().await;
    for _ in 0..5 {
        let page = change_password(&s, "not-it-at-all", "another-pass-93").await;
        assert!(page.contains("The current password is wrong."), "{page}");
    }
    let page = change_password(&s, NEW_PASSWORD, "another-pass-93").await;
    assert!(
        page.contains("Too many wrong passwords. Try again in"),
        "{page}"
    );
    assert!(password_is(&s, NEW_PASSWORD).await, "the password stands");
    // The guesses were counted for this session only, not for the address or the user name:
    // logged out, the owner logs in again at once.
    let res = s.post_form("/logout", &[]).await;
    assert_eq!(res.status(), Status::SeeOther);
    let res = s
        .post_form(
            "/login",
            &[("username", "admin"), ("password", NEW_PASSWORD)],
        )
        .await;
    assert_eq!(res.status(), Status::SeeOther);
    assert_eq!(res.headers().get_one("Location"), Some("/profiles"));
}
