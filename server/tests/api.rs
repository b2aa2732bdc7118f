//! The API for Kodi boxes: device tokens, PIN use, errors, guessing limits, races.

mod common;

use common::TestServer;
use futures::future::join_all;
use rocket::http::{ContentType, Header, Status};

async fn server_with_ticket(minutes: i64) -> (TestServer, String, String) {
    let s = TestServer::start().await;
    s.login_admin().await;
    let (token, kids) = s.local_box_with_profile("Living room", "Kids").await;
    let pin = s.create_ticket(kids, minutes).await;
    (s, token, pin)
}

#[rocket::async_test]
async fn login_with_a_fresh_pin_starts_the_ticket() {
    let (s, token, pin) = server_with_ticket(30).await;
    let (status, body) = s
        .api_login(&token, &format!(r#"{{"lock_code":"{pin}"}}"#))
        .await;
    assert_eq!(status, Status::Ok, "{body}");
    assert_eq!(body["success"], true);
    assert_eq!(body["profile"], "Kids");
    assert_eq!(body["length"], 30);
    let used = time::OffsetDateTime::parse(
        body["used_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let expires = time::OffsetDateTime::parse(
        body["expires_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    assert_eq!((expires - used).whole_minutes(), 30);

    let (status, ticket) = s.api_ticket(&token, &pin).await;
    assert_eq!(status, Status::Ok);
    assert_eq!(ticket["state"], "in_use");
    assert_eq!(ticket["is_active"], true);
    assert_eq!(ticket["lock_code"], pin.as_str());
    assert_eq!(ticket["profile_name"], "Kids");
    let remaining = ticket["remaining_seconds"].as_i64().unwrap();
    assert!((29 * 60..=30 * 60).contains(&remaining), "{remaining}");
    for field in [
        "id",
        "profile_id",
        "length",
        "used_at",
        "created_at",
        "expires_at",
    ] {
        assert!(!ticket[field].is_null(), "{field} missing in {ticket}");
    }
}

#[rocket::async_test]
async fn a_used_pin_is_refused_the_second_time() {
    let (s, token, pin) = server_with_ticket(30).await;
    let body = format!(r#"{{"lock_code":"{pin}"}}"#);
    assert_eq!(s.api_login(&token, &body).await.0, Status::Ok);
    let (status, err) = s.api_login(&token, &body).await;
    assert_eq!(status, Status::NotFound);
    assert!(err["error"].as_str().unwrap().contains("PIN"), "{err}");
}

#[rocket::async_test]
async fn unused_ticket_json_has_the_flask_fields_and_no_expiry() {
    let (s, token, pin) = server_with_ticket(45).await;
    let (status, t) = s.api_ticket(&token, &pin).await;
    assert_eq!(status, Status::Ok);
    assert_eq!(t["state"], "unused");
    assert_eq!(t["length"], 45);
    assert!(
        t["used_at"].is_null() && t["expires_at"].is_null() && t["remaining_seconds"].is_null()
    );
    assert_eq!(s.api_ticket(&token, "99999").await.0, Status::BadRequest);
}

#[rocket::async_test]
async fn unknown_pin_is_404_json() {
    let (s, token, pin) = server_with_ticket(30).await;
    let other = if pin == "0000" { "0001" } else { "0000" };
    let (status, err) = s
        .api_login(&token, &format!(r#"{{"lock_code":"{other}"}}"#))
        .await;
    assert_eq!(status, Status::NotFound);
    assert!(err["error"].is_string());
    assert_eq!(s.api_ticket(&token, other).await.0, Status::NotFound);
}

#[rocket::async_test]
async fn malformed_bodies_are_400_json_errors() {
    let (s, token, _) = server_with_ticket(30).await;
    for body in [
        r#"{"lock_code":1234}"#,
        r#"{"lock_code":"12a4"}"#,
        r#"{"lock_code":"12345"}"#,
        r#"{"lock_code":"123"}"#,
        r#"{"lock_code":null}"#,
        r#"{"lock_code":{"a":1}}"#,
        r#"{"code":"1234"}"#,
        r#"["1234"]"#,
        r#"1234"#,
        "null",
        "not json",
        "",
        r#"{"lock_code":"1234""#,
    ] {
        let (status, err) = s.api_login(&token, body).await;
        assert_eq!(status, Status::BadRequest, "{body}");
        assert!(
            err["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{body}: {err}"
        );
    }
}

#[rocket::async_test]
async fn a_huge_body_is_refused_without_reading_it_all() {
    let (s, token, _) = server_with_ticket(30).await;
    let huge = format!(
        r#"{{"lock_code":"1234","pad":"{}"}}"#,
        "x".repeat(5 * 1024 * 1024)
    );
    let (status, err) = s.api_login(&token, &huge).await;
    assert_eq!(status, Status::PayloadTooLarge);
    assert!(err["error"].as_str().unwrap().contains("too large"));
}

#[rocket::async_test]
async fn the_api_needs_a_live_device_token() {
    let (s, token, pin) = server_with_ticket(30).await;
    let body = format!(r#"{{"lock_code":"{pin}"}}"#);
    let anonymous = s
        .client
        .post("/api/login")
        .header(ContentType::JSON)
        .body(body.clone())
        .dispatch()
        .await;
    let (status, err) = common::json_of(anonymous).await;
    assert_eq!(status, Status::Unauthorized);
    assert!(err["error"].as_str().unwrap().contains("token"));
    assert_eq!(s.api_login("kt_wrong", &body).await.0, Status::Unauthorized);
    assert_eq!(s.api_ticket("kt_wrong", &pin).await.0, Status::Unauthorized);

    // Revoke the device from the Devices page: refused at once.
    let pool = s.pool();
    let id: i64 = sqlx::query_scalar("SELECT id FROM devices")
        .fetch_one(&pool)
        .await
        .unwrap();
    let res = s.post_form(&format!("/devices/{id}/revoke"), &[]).await;
    assert_eq!(res.status(), Status::SeeOther);
    assert_eq!(s.api_login(&token, &body).await.0, Status::Unauthorized);
    // The ticket is still unused: the refused call changed nothing.
    let state: String = sqlx::query_scalar("SELECT state FROM tickets WHERE lock_code = ?")
        .bind(&pin)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(state, "unused");
}

async fn ticket_state(s: &TestServer, pin: &str) -> String {
    sqlx::query_scalar("SELECT state FROM tickets WHERE lock_code = ?")
        .bind(pin)
        .fetch_one(&s.pool())
        .await
        .unwrap()
}

#[rocket::async_test]
async fn another_boxs_pin_is_answered_like_an_unknown_one_and_counted() {
    let s = TestServer::start().await;
    s.login_admin().await;
    let (box_a, _) = s.local_box_with_profile("Room A", "Guest A").await;
    let (box_b, room_b) = s.local_box_with_profile("Room B", "Guest B").await;
    let pin = s.create_ticket(room_b, 30).await;
    let unknown = if pin == "0000" { "0001" } else { "0000" };
    let body = |code: &str| format!(r#"{{"lock_code":"{code}"}}"#);

    let as_unknown = s.api_login(&box_a, &body(unknown)).await;
    assert_eq!(s.api_login(&box_a, &body(&pin)).await, as_unknown);
    assert_eq!(as_unknown.0, Status::NotFound);
    let lookup_unknown = s.api_ticket(&box_a, unknown).await;
    assert_eq!(s.api_ticket(&box_a, &pin).await, lookup_unknown);
    assert_eq!(lookup_unknown.0, Status::NotFound);
    assert_eq!(
        ticket_state(&s, &pin).await,
        "unused",
        "box A burnt nothing"
    );

    // Each of those was a miss of box A: 4 so far, 6 more and it waits.
    for _ in 0..6 {
        assert_eq!(s.api_ticket(&box_a, &pin).await.0, Status::NotFound);
    }
    assert_eq!(
        s.api_login(&box_a, &body(&pin)).await.0,
        Status::TooManyRequests
    );

    // Box B, at its own address (the test client's address counted A's misses too).
    let res = s
        .client
        .post("/api/login")
        .remote("192.0.2.2:5000".parse().unwrap())
        .header(Header::new("Authorization", format!("Bearer {box_b}")))
        .body(body(&pin))
        .dispatch()
        .await;
    let (status, used) = common::json_of(res).await;
    assert_eq!(status, Status::Ok, "{used}");
    assert_eq!(used["profile"], "Guest B");
}

#[rocket::async_test]
async fn a_profile_on_this_servers_machine_is_used_by_no_device_token() {
    let s = TestServer::start().await;
    s.login_admin().await;
    let token = s.device_token("Living room").await;
    let kids = s.create_profile("Kids").await;
    let pin = s.create_ticket(kids, 30).await;
    let (status, _) = s
        .api_login(&token, &format!(r#"{{"lock_code":"{pin}"}}"#))
        .await;
    assert_eq!(status, Status::NotFound);
    assert_eq!(s.api_ticket(&token, &pin).await.0, Status::NotFound);
    assert_eq!(ticket_state(&s, &pin).await, "unused");
}

#[rocket::async_test]
async fn tokens_are_stored_hashed() {
    let (s, token, _) = server_with_ticket(30).await;
    let stored: String = sqlx::query_scalar("SELECT token_hash FROM devices")
        .fetch_one(&s.pool())
        .await
        .unwrap();
    assert_ne!(stored, token);
    assert!(!stored.contains(&token[3..]));
    assert_eq!(stored, kodi_tickets_server::token::hash(&token));
}

#[rocket::async_test]
async fn the_eleventh_wrong_pin_in_a_minute_gets_429() {
    let (s, token, pin) = server_with_ticket(30).await;
    let wrong: Vec<String> = (0..10_000)
        .map(|n| format!("{n:04}"))
        .filter(|c| *c != pin)
        .take(11)
        .collect();
    for code in &wrong[..10] {
        let (status, _) = s
            .api_login(&token, &format!(r#"{{"lock_code":"{code}"}}"#))
            .await;
        assert_eq!(status, Status::NotFound);
    }
    let res = s
        .client
        .post("/api/login")
        .header(Header::new("Authorization", format!("Bearer {token}")))
        .body(format!(r#"{{"lock_code":"{}"}}"#, wrong[10]))
        .dispatch()
        .await;
    let retry_after: u64 = res
        .headers()
        .get_one("Retry-After")
        .expect("Retry-After")
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry_after));
    let (status, err) = common::json_of(res).await;
    assert_eq!(status, Status::TooManyRequests);
    assert!(err["error"].as_str().unwrap().contains("try again"));
    // Even the right PIN waits: guessing it is exactly what the limit stops.
    assert_eq!(
        s.api_login(&token, &format!(r#"{{"lock_code":"{pin}"}}"#))
            .await
            .0,
        Status::TooManyRequests
    );
    // The lookup endpoint counts misses too.
    assert_eq!(
        s.api_ticket(&token, &wrong[10]).await.0,
        Status::TooManyRequests
    );
}

#[rocket::async_test]
async fn fifty_simultaneous_logins_with_one_pin_exactly_one_wins() {
    let (s, token, pin) = server_with_ticket(30).await;
    let body = format!(r#"{{"lock_code":"{pin}"}}"#);
    let calls = (0..50).map(|_| {
        s.client
            .post("/api/login")
            .header(Header::new("Authorization", format!("Bearer {token}")))
            .body(body.clone())
            .dispatch()
    });
    let statuses: Vec<Status> = join_all(calls).await.iter().map(|r| r.status()).collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == Status::Ok).count(),
        1,
        "{statuses:?}"
    );
    assert!(statuses
        .iter()
        .all(|s| *s == Status::Ok || *s == Status::NotFound || *s == Status::TooManyRequests));
    let used: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM tickets WHERE state = 'in_use'")
        .fetch_one(&s.pool())
        .await
        .unwrap();
    assert_eq!(used, 1);
}

#[rocket::async_test]
async fn healthz_answers_without_auth() {
    let s = TestServer::start().await;
    let (status, body) = common::json_of(s.client.get("/healthz").dispatch().await).await;
    assert_eq!(status, Status::Ok);
    assert_eq!(body["status"], "ok");
    let (status, err) = common::json_of(s.client.get("/api/nothing").dispatch().await).await;
    assert_eq!(status, Status::NotFound);
    assert!(err["error"].is_string());
}

/// `POST /api/agent/sessions/<id>/logged-off` from `token`, with `body`.
async fn report_logged_off(s: &TestServer, token: &str, id: i64, body: &str) -> Status {
    s.agent_post(token, &format!("/api/agent/sessions/{id}/logged-off"), body)
        .await
}

#[rocket::async_test]
async fn only_the_profiles_box_can_say_its_tv_logged_off_after_a_used_ticket() {
    let (s, token, pin) = server_with_ticket(30).await;
    let (other_token, _) = s.local_box_with_profile("Hall", "Guests").await;
    let never_used: i64 = sqlx::query_scalar("SELECT id FROM tickets WHERE lock_code = ?")
        .bind(&pin)
        .fetch_one(&s.pool())
        .await
        .unwrap();
    let at = r#"{"at":"2026-01-01T10:00:00Z"}"#;
    assert_eq!(
        report_logged_off(&s, &token, never_used, at).await,
        Status::NotFound,
        "a ticket never used had no session"
    );
    let used = s.use_ticket(&pin).await;
    assert_eq!(
        report_logged_off(&s, &other_token, used, at).await,
        Status::NotFound,
        "another box's profile"
    );
    assert_eq!(
        report_logged_off(&s, &token, used, r#"{"at":"soon"}"#).await,
        Status::BadRequest
    );
    assert_eq!(report_logged_off(&s, &token, used, at).await, Status::Ok);
    let later = r#"{"at":"2026-01-01T11:00:00Z"}"#;
    assert_eq!(report_logged_off(&s, &token, used, later).await, Status::Ok);
    let logged_off_at: Option<i64> = s.ticket_column(used, "logged_off_at").await;
    assert_eq!(
        logged_off_at,
        Some(1_767_261_600),
        "the first report counts"
    );
}

/// A pairing code made on the Devices page for a box named `name`.
async fn pairing_code(s: &TestServer, name: &str) -> String {
    let res = s.post_form("/devices/pair", &[("name", name)]).await;
    assert_eq!(res.status(), Status::Ok);
    let page = res.into_string().await.unwrap();
    let marker = r#"id="pairing-code">"#;
    let start = page.find(marker).expect("code shown") + marker.len();
    page[start..start + 6].to_owned()
}

async fn pair(s: &TestServer, body: &str) -> (Status, serde_json::Value) {
    common::json_of(
        s.client
            .post("/api/pair")
            .header(ContentType::JSON)
            .body(body)
            .dispatch()
            .await,
    )
    .await
}

#[rocket::async_test]
async fn a_pairing_code_gives_its_box_a_token_once_and_only_while_fresh() {
    let s = TestServer::start().await;
    s.login_admin().await;
    let code = pairing_code(&s, "Bedroom").await;
    assert!(code.bytes().all(|b| b.is_ascii_digit()), "{code}");
    let (status, body) = pair(&s, &format!(r#"{{"code":"{code}"}}"#)).await;
    assert_eq!(status, Status::Ok, "{body}");
    assert_eq!(body["device"], "Bedroom");
    let token = body["device_token"].as_str().unwrap().to_owned();
    assert_eq!(
        s.agent_post(
            &token,
            "/api/agent/status",
            r#"{"agent_version":"1","kodi_reachable":false}"#
        )
        .await,
        Status::Ok,
        "the token works"
    );
    let (status, body) = pair(&s, &format!(r#"{{"code":"{code}"}}"#)).await;
    assert_eq!(status, Status::NotFound, "once: {body}");
    assert_eq!(body["error"], "unknown or expired pairing code");

    // A name that is taken cannot be paired again; a stale code pairs nothing.
    let res = s.post_form("/devices/pair", &[("name", "bedroom")]).await;
    assert_eq!(res.status(), Status::SeeOther, "refused with a message");
    let code = pairing_code(&s, "Hall").await;
    sqlx::query("UPDATE pairings SET expires_at = unixepoch() - 1")
        .execute(&s.pool())
        .await
        .unwrap();
    let (status, _) = pair(&s, &format!(r#"{{"code":"{code}"}}"#)).await;
    assert_eq!(status, Status::NotFound, "expired");
    let (status, _) = pair(&s, r#"{"code":12}"#).await;
    assert!(status.code == 422 || status.code == 400, "{status}");
}

/// Kodi's safe mode (or a new SD card) loses the box's settings: "Pair again" on the Devices
/// page makes a code for the same box, whose new token replaces the old one; its profiles and
/// the session running on it stay.
#[rocket::async_test]
async fn a_box_that_lost_its_token_is_paired_again_and_keeps_its_profiles() {
    let s = TestServer::start().await;
    s.login_admin().await;
    let code = pairing_code(&s, "Den").await;
    let (_, body) = pair(&s, &format!(r#"{{"code":"{code}"}}"#)).await;
    let old_token = body["device_token"].as_str().unwrap().to_owned();
    let den = s.device_id("Den").await;
    let kids = s.create_profile_on("Kids", den).await;
    let pin = s.create_ticket(kids, 30).await;
    let ticket = s.use_ticket(&pin).await;

    let res = s.post_form(&format!("/devices/{den}/pair"), &[]).await;
    assert_eq!(res.status(), Status::Ok);
    let page = res.into_string().await.unwrap();
    assert!(
        page.contains("Its profiles and tickets stay; its old token stops working then."),
        "{page}"
    );
    let marker = r#"id="pairing-code">"#;
    let start = page.find(marker).expect("code shown") + marker.len();
    let again = page[start..start + 6].to_owned();
    // Until the code is used, the box keeps working with its old token.
    let status = r#"{"agent_version":"1","kodi_reachable":true}"#;
    assert_eq!(
        s.agent_post(&old_token, "/api/agent/status", status).await,
        Status::Ok
    );

    let (code_status, body) = pair(&s, &format!(r#"{{"code":"{again}"}}"#)).await;
    assert_eq!(code_status, Status::Ok, "{body}");
    assert_eq!(body["device"], "Den");
    let new_token = body["device_token"].as_str().unwrap().to_owned();
    assert_ne!(new_token, old_token);
    assert_eq!(
        s.agent_post(&old_token, "/api/agent/status", status).await,
        Status::Unauthorized,
        "the old token is refused"
    );
    assert_eq!(
        s.agent_post(&new_token, "/api/agent/status", status).await,
        Status::Ok
    );
    let boxes: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM devices")
        .fetch_one(&s.pool())
        .await
        .unwrap();
    assert_eq!(boxes, 1, "the same box, not a new one");
    let (_, body) = s.api_ticket(&new_token, &pin).await;
    assert_eq!(
        body["state"], "in_use",
        "the running session is still the box's: {body}"
    );
    assert_eq!(s.ticket_column::<String>(ticket, "state").await, "in_use");

    // A revoked box is not paired again, neither by a new code nor by one made before.
    let res = s.post_form(&format!("/devices/{den}/pair"), &[]).await;
    let page = res.into_string().await.unwrap();
    let start = page.find(marker).expect("code shown") + marker.len();
    let stale = page[start..start + 6].to_owned();
    let res = s.post_form(&format!("/devices/{den}/revoke"), &[]).await;
    assert_eq!(res.status(), Status::SeeOther);
    let (code_status, _) = pair(&s, &format!(r#"{{"code":"{stale}"}}"#)).await;
    assert_eq!(code_status, Status::NotFound, "revoked meanwhile");
    let res = s.post_form(&format!("/devices/{den}/pair"), &[]).await;
    assert_eq!(res.status(), Status::NotFound);
}

#[rocket::async_test]
async fn guessing_pairing_codes_is_limited_before_any_lookup() {
    let s = TestServer::start().await;
    s.login_admin().await;
    let code = pairing_code(&s, "Bedroom").await;
    let wrong = if code == "000000" { "000001" } else { "000000" };
    let body = format!(r#"{{"code":"{wrong}"}}"#);
    let guesses = (0..200).map(|_| pair(&s, &body));
    let answers = join_all(guesses).await;
    let looked_up = answers
        .iter()
        .filter(|(status, _)| *status == Status::NotFound)
        .count();
    assert!(looked_up <= 10, "{looked_up} guesses were looked up");
    assert!(answers
        .iter()
        .any(|(status, _)| *status == Status::TooManyRequests));
    let (status, _) = pair(&s, &format!(r#"{{"code":"{code}"}}"#)).await;
    assert_eq!(
        status,
        Status::TooManyRequests,
        "the right code, sent last, waits too"
    );
}
