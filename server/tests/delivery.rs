//! Applying PINs to Kodi: the outbox, the worker, the execution log, retries.

mod common;

use common::TestServer;
use rocket::http::Status;

async fn delivery_status(s: &TestServer) -> (String, Option<String>) {
    sqlx::query_as("SELECT status, last_message FROM deliveries")
        .fetch_one(&s.pool())
        .await
        .unwrap()
}

async fn wait_for_status(s: &TestServer, want: &str) {
    for _ in 0..200 {
        if delivery_status(s).await.0 == want {
            return;
        }
        rocket::tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!(
        "delivery never became {want}: {:?}",
        delivery_status(s).await
    );
}

#[rocket::async_test]
async fn a_new_ticket_is_applied_to_kodi_and_logged() {
    let s = TestServer::start().await;
    s.login_admin().await;
    let kids = s.create_profile("Kids").await;
    let pin = s.create_ticket(kids, 30).await;
    wait_for_status(&s, "applied").await;
    assert_eq!(s.applied(), vec![format!("Kids:{pin}")]);

    let log = std::fs::read_to_string(s.path("log/exec.log")).unwrap();
    let line = log.lines().next().unwrap();
    assert!(
        line.contains("exit=0") && line.contains("duration_ms="),
        "{line}"
    );
    assert!(line.contains("Kids:****"), "{line}");
    assert!(
        !line.contains(&pin),
        "the PIN never reaches the log: {line}"
    );
    assert!(
        line.contains("fake kodi: done"),
        "output tail recorded: {line}"
    );

    let (_, body) = s.page(&format!("/profiles/{kids}")).await;
    assert!(body.contains(r#"data-status="ready""#), "{body}");
    assert!(body.contains("Ready on TV"), "{body}");
}

#[rocket::async_test]
async fn a_failed_run_shows_on_the_ticket_and_can_be_retried() {
    let s = TestServer::start().await;
    s.login_admin().await;
    s.set_script_exit(3);
    let kids = s.create_profile("Kids").await;
    let pin = s.create_ticket(kids, 30).await;
    wait_for_status(&s, "failed").await;
    let (_, message) = delivery_status(&s).await;
    assert!(message.unwrap().contains("exit 3"));
    let (_, body) = s.page(&format!("/profiles/{kids}")).await;
    assert!(
        body.contains("Not sent to the TV: Kodi refused the PIN (fake kodi: done)")
            && body.contains(">Retry<"),
        "{body}"
    );

    s.set_script_exit(0);
    let id: i64 = sqlx::query_scalar("SELECT id FROM tickets")
        .fetch_one(&s.pool())
        .await
        .unwrap();
    let res = s.post_form(&format!("/tickets/{id}/retry"), &[]).await;
    assert_eq!(res.status(), Status::SeeOther);
    wait_for_status(&s, "applied").await;
    assert_eq!(
        s.applied(),
        vec![format!("Kids:{pin}"), format!("Kids:{pin}")]
    );
    let log = std::fs::read_to_string(s.path("log/exec.log")).unwrap();
    assert_eq!(log.lines().count(), 2);
    assert!(log.lines().next().unwrap().contains("exit=3"));
}

#[rocket::async_test]
async fn a_busy_kodi_is_retried_later_not_failed() {
    let s = TestServer::start().await;
    s.login_admin().await;
    s.set_script_exit(75);
    let kids = s.create_profile("Kids").await;
    s.create_ticket(kids, 30).await;
    s.eventually("the script ran once", |s| s.applied().len() == 1)
        .await;
    wait_for_status(&s, "pending").await;
    let (_, message) = delivery_status(&s).await;
    assert!(message.unwrap().contains("in use"));
    let next: i64 = sqlx::query_scalar("SELECT next_attempt_at - updated_at FROM deliveries")
        .fetch_one(&s.pool())
        .await
        .unwrap();
    assert!(next >= 10, "retried later, not at once ({next} s)");
    let (_, body) = s.page(&format!("/profiles/{kids}")).await;
    assert!(
        body.contains("Waiting: someone is using the profile on the TV"),
        "{body}"
    );
}

#[rocket::async_test]
async fn a_hanging_script_is_killed_at_the_timeout() {
    let s = TestServer::start().await;
    s.login_admin().await;
    std::fs::write(s.path("sleep"), "30").unwrap();
    let kids = s.create_profile("Kids").await;
    s.create_ticket(kids, 30).await;
    wait_for_status(&s, "failed").await;
    let (_, message) = delivery_status(&s).await;
    assert!(message.unwrap().contains("timed out"));
    let log = std::fs::read_to_string(s.path("log/exec.log")).unwrap();
    assert!(log.contains("exit=none"), "{log}");
}

#[rocket::async_test]
async fn a_delivery_interrupted_by_a_crash_runs_after_restart() {
    let s = TestServer::start().await;
    s.login_admin().await;
    let kids = s.create_profile("Kids").await;
    let pin = s.create_ticket(kids, 30).await;
    wait_for_status(&s, "applied").await;
    // As if the process died while the script ran.
    sqlx::query("UPDATE deliveries SET status = 'running'")
        .execute(&s.pool())
        .await
        .unwrap();
    let s = s.restart().await;
    wait_for_status(&s, "applied").await;
    assert_eq!(
        s.applied(),
        vec![format!("Kids:{pin}"), format!("Kids:{pin}")]
    );
}

#[rocket::async_test]
async fn a_profile_name_cannot_forge_log_lines() {
    let s = TestServer::start().await;
    s.login_admin().await;
    s.set_script_exit(1);
    // Names cannot hold newlines (the form refuses them); the script's output can.
    std::fs::write(
        s.path("fake-kodi.sh"),
        "#!/bin/sh\nprintf 'a\\n2026-01-01T00:00:00Z ticket=9 exit=0 forged\\n'\nexit 1\n",
    )
    .unwrap();
    let kids = s.create_profile("Kids").await;
    s.create_ticket(kids, 30).await;
    wait_for_status(&s, "failed").await;
    let log = std::fs::read_to_string(s.path("log/exec.log")).unwrap();
    assert_eq!(log.lines().count(), 1, "{log}");
    assert!(!log.lines().any(|l| l.starts_with("2026-01-01")));
}
