//! Ending tickets on the TVs the server reaches itself (local, SSH): at the end of a ticket
//! the worker logs its profile off and replaces its PIN, so an ended ticket opens nothing.

mod common;

use common::TestServer;
use kodi_tickets_server::presence::Changes;
use rocket::http::Status;

async fn end_row(s: &TestServer, ticket: i64) -> Option<(String, i64)> {
    sqlx::query_as("SELECT status, due_at FROM ticket_ends WHERE ticket_id = ?")
        .bind(ticket)
        .fetch_optional(&s.pool())
        .await
        .unwrap()
}

async fn expires_at(s: &TestServer, ticket: i64) -> i64 {
    s.ticket_column(ticket, "expires_at").await
}

async fn wait_applied(s: &TestServer, pin: &str) {
    let want = format!("Kids:{pin}");
    s.eventually("the PIN set on the TV", |s| s.applied().contains(&want))
        .await;
}

/// What the script was asked after the first `skip` runs.
fn runs_after(s: &TestServer, skip: usize) -> Vec<String> {
    s.applied().into_iter().skip(skip).collect()
}

async fn logged_off_at(s: &TestServer, ticket: i64) -> Option<i64> {
    s.ticket_column(ticket, "logged_off_at").await
}

async fn ended(s: &TestServer, ticket: i64) -> bool {
    end_row(s, ticket)
        .await
        .is_some_and(|(status, _)| status == "done")
}

async fn wait_ended(s: &TestServer, ticket: i64) {
    for _ in 0..200 {
        if ended(s, ticket).await {
            return;
        }
        rocket::tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let rows: Vec<(i64, String, i64, Option<String>)> =
        sqlx::query_as("SELECT ticket_id, status, due_at, last_message FROM ticket_ends")
            .fetch_all(&s.pool())
            .await
            .unwrap();
    panic!("ticket {ticket} never ended: {rows:?} {:?}", s.applied());
}

fn is_secret_for(run: &str, pin: &str) -> bool {
    run.strip_prefix("Kids:")
        .is_some_and(|code| code.len() == 4 && code != pin)
}

#[rocket::async_test]
async fn a_used_ticket_ends_at_its_expiry_and_end_now_logs_off_and_relocks_at_once() {
    let s = TestServer::start().await;
    s.login_admin().await;
    let kids = s.create_profile("Kids").await;
    let pin = s.create_ticket(kids, 30).await;
    wait_applied(&s, &pin).await;
    let ticket = s.use_ticket(&pin).await;
    let (status, due) = end_row(&s, ticket).await.expect("an end is scheduled");
    assert_eq!(
        (status.as_str(), due),
        ("pending", expires_at(&s, ticket).await)
    );

    let res = s
        .post_form(&format!("/tickets/{ticket}/extend"), &[("minutes", "15")])
        .await;
    assert_eq!(res.status(), Status::SeeOther);
    assert_eq!(
        end_row(&s, ticket).await.unwrap().1,
        expires_at(&s, ticket).await,
        "+15 moves the end"
    );

    let before = s.applied().len();
    let res = s.post_form(&format!("/tickets/{ticket}/end"), &[]).await;
    assert_eq!(res.status(), Status::SeeOther);
    wait_ended(&s, ticket).await;
    let runs = runs_after(&s, before);
    assert_eq!(runs.len(), 2, "{runs:?}");
    assert_eq!(runs[0], "--log-off Kids");
    assert!(
        is_secret_for(&runs[1], &pin),
        "a new secret lock code: {runs:?}"
    );
    let log = std::fs::read_to_string(s.path("log/exec.log")).unwrap();
    assert!(
        log.contains("end exit=0") && log.contains("--log-off Kids"),
        "{log}"
    );
    assert!(
        !log.contains(&runs[1][5..]),
        "the secret never reaches the log"
    );
}

#[rocket::async_test]
async fn deleting_an_armed_or_running_ticket_relocks_at_once() {
    let s = TestServer::start().await;
    s.login_admin().await;
    let kids = s.create_profile("Kids").await;
    for running in [false, true] {
        let pin = s.create_ticket(kids, 30).await;
        wait_applied(&s, &pin).await;
        let id: i64 = sqlx::query_scalar("SELECT id FROM tickets WHERE lock_code = ?")
            .bind(&pin)
            .fetch_one(&s.pool())
            .await
            .unwrap();
        if running {
            s.use_ticket(&pin).await;
        }
        let before = s.applied().len();
        let res = s.post_form(&format!("/tickets/{id}/delete"), &[]).await;
        assert_eq!(res.status(), Status::SeeOther);
        wait_ended(&s, id).await;
        let runs = runs_after(&s, before);
        assert_eq!(runs[0], "--log-off Kids", "running: {running}");
        assert!(is_secret_for(&runs[1], &pin), "{runs:?}");
    }
}

/// "Kids" on the server's own machine, its ticket in use and the next one waiting for the
/// session to end; Kodi takes PINs again: (the server, the running ticket, the next PIN).
async fn running_with_the_next_waiting() -> (TestServer, i64, String) {
    let s = TestServer::start().await;
    s.login_admin().await;
    let kids = s.create_profile("Kids").await;
    let first = s.create_ticket(kids, 30).await;
    wait_applied(&s, &first).await;
    let ticket = s.use_ticket(&first).await;
    s.set_script_exit(75); // a session runs: the next ticket waits
    let next = s.create_ticket(kids, 30).await;
    s.eventually("the next ticket waits", |s| {
        s.applied().contains(&format!("Kids:{next}"))
    })
    .await;
    s.set_script_exit(0);
    (s, ticket, next)
}

#[rocket::async_test]
async fn the_next_ticket_takes_over_the_profile_instead_of_a_secret() {
    let (s, ticket, next) = running_with_the_next_waiting().await;
    let before = s.applied().len();
    s.post_form(&format!("/tickets/{ticket}/end"), &[]).await;
    wait_ended(&s, ticket).await;
    s.eventually("the next ticket's PIN set again", |s| {
        runs_after(s, before) == vec!["--log-off Kids".to_owned(), format!("Kids:{next}")]
    })
    .await;
}

/// The next ticket's PIN cannot be set after the log-off (Kodi refused it): the end is not
/// done, since the ended PIN still opens the profile, and it is tried again until Kodi takes
/// the next PIN.
#[rocket::async_test]
async fn an_end_is_done_only_once_the_next_pin_replaced_the_ended_one() {
    let (s, ticket, next) = running_with_the_next_waiting().await;
    s.set_pin_exit(Some(1));
    let before = s.applied().len();
    s.post_form(&format!("/tickets/{ticket}/end"), &[]).await;
    s.eventually("the log-off, then the next PIN refused", |s| {
        runs_after(s, before) == vec!["--log-off Kids".to_owned(), format!("Kids:{next}")]
    })
    .await;
    let mut row = None;
    for _ in 0..100 {
        row = end_row(&s, ticket).await;
        if row.as_ref().is_some_and(|(_, due)| *due > expires_at_now()) {
            break;
        }
        rocket::tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let (status, _) = row.expect("an end row");
    assert_eq!(status, "pending", "not done while the ended PIN opens Kids");
    assert!(logged_off_at(&s, ticket).await.is_some(), "logged off");
    let delivery: String =
        sqlx::query_scalar("SELECT d.status FROM deliveries d JOIN tickets t ON t.id = d.ticket_id WHERE t.lock_code = ?")
            .bind(&next)
            .fetch_one(&s.pool())
            .await
            .unwrap();
    assert_eq!(delivery, "failed", "the next ticket's row says so");

    // Kodi takes PINs again: the next try sets it, and the end is done.
    s.set_pin_exit(None);
    sqlx::query("UPDATE ticket_ends SET due_at = unixepoch() WHERE ticket_id = ?")
        .bind(ticket)
        .execute(&s.pool())
        .await
        .unwrap();
    s.client.rocket().state::<Changes>().unwrap().notify(None);
    wait_ended(&s, ticket).await;
    let delivery: String =
        sqlx::query_scalar("SELECT d.status FROM deliveries d JOIN tickets t ON t.id = d.ticket_id WHERE t.lock_code = ?")
            .bind(&next)
            .fetch_one(&s.pool())
            .await
            .unwrap();
    assert_eq!(delivery, "applied");
    assert_eq!(runs_after(&s, before).last(), Some(&format!("Kids:{next}")));
}

#[rocket::async_test]
async fn a_busy_kodi_is_asked_again_until_the_session_has_ended() {
    let s = TestServer::start().await;
    s.login_admin().await;
    let kids = s.create_profile("Kids").await;
    let pin = s.create_ticket(kids, 30).await;
    wait_applied(&s, &pin).await;
    let ticket = s.use_ticket(&pin).await;
    s.set_script_exit(75);
    s.post_form(&format!("/tickets/{ticket}/end"), &[]).await;
    for _ in 0..200 {
        if end_row(&s, ticket)
            .await
            .is_some_and(|(st, due)| st == "pending" && due > expires_at_now())
        {
            break;
        }
        rocket::tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let (status, due) = end_row(&s, ticket).await.unwrap();
    assert_eq!(status, "pending", "kept while Kodi is busy");
    assert!(due > expires_at_now(), "tried again later");
    assert_eq!(logged_off_at(&s, ticket).await, None, "not logged off yet");
    let (_, page) = s.page(&format!("/profiles/{kids}")).await;
    assert!(page.contains("TV not yet logged off"), "{page}");

    s.set_script_exit(0);
    sqlx::query("UPDATE ticket_ends SET due_at = unixepoch() WHERE ticket_id = ?")
        .bind(ticket)
        .execute(&s.pool())
        .await
        .unwrap();
    s.client.rocket().state::<Changes>().unwrap().notify(None);
    wait_ended(&s, ticket).await;
    assert!(
        logged_off_at(&s, ticket).await.is_some(),
        "the script saw the login screen"
    );
    let (_, page) = s.page(&format!("/profiles/{kids}")).await;
    assert!(!page.contains("TV not yet logged off"), "{page}");
}

fn expires_at_now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

#[rocket::async_test]
async fn tickets_an_agent_delivers_are_ended_by_the_agent() {
    let s = TestServer::start().await;
    s.login_admin().await;
    s.device_token("Living room").await;
    let device = s.device_id("Living room").await;
    let kids = s.create_profile_on("Kids", device).await;
    let pin = s.create_ticket(kids, 30).await;
    let ticket = s.use_ticket(&pin).await;
    assert_eq!(end_row(&s, ticket).await, None);
}

#[rocket::async_test]
async fn deleting_a_profile_in_use_ends_its_session_on_the_tv() {
    let s = TestServer::start().await;
    s.login_admin().await;
    let kids = s.create_profile("Kids").await;
    let pin = s.create_ticket(kids, 30).await;
    wait_applied(&s, &pin).await;
    let ticket = s.use_ticket(&pin).await;
    let before = s.applied().len();
    let res = s.post_form(&format!("/profiles/{kids}/delete"), &[]).await;
    assert_eq!(res.status(), Status::SeeOther);
    wait_ended(&s, ticket).await;
    let runs = runs_after(&s, before);
    assert_eq!(runs[0], "--log-off Kids");
    assert!(is_secret_for(&runs[1], &pin), "{runs:?}");
}
