//! DNS rebinding: a web page visited on the LAN cannot use the browser to reach the server
//! under the page's own name, nor post to it from another origin.

mod common;

use common::{urlencode, TestServer};
use rocket::http::{ContentType, Header, Status};

async fn status_for_host(s: &TestServer, host: &str) -> Status {
    s.client
        .get("/login")
        .header(Header::new("Host", host.to_owned()))
        .dispatch()
        .await
        .status()
}

#[rocket::async_test]
async fn only_this_servers_names_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let figment =
        common::figment(dir.path()).merge(("allowed_hosts", vec!["kodi-tickets.lan".to_owned()]));
    let rocket = kodi_tickets_server::rocket_from(figment).unwrap();
    let s = TestServer {
        client: rocket::local::asynchronous::Client::tracked(rocket)
            .await
            .unwrap(),
        dir,
    };
    for host in [
        "localhost:5000",
        "127.0.0.1:5000",
        "192.168.1.20",
        "[::1]:5000",
        "kodi-tickets.lan:5000",
        "KODI-TICKETS.LAN",
    ] {
        assert_eq!(status_for_host(&s, host).await, Status::Ok, "{host}");
    }
    for host in ["evil.example", "kodi-tickets.lan.evil.example:5000"] {
        assert_eq!(
            status_for_host(&s, host).await,
            Status::MisdirectedRequest,
            "{host}"
        );
    }
    // The API answers JSON, and a PIN is never looked up under a foreign name.
    let res = s
        .client
        .post("/api/login")
        .header(Header::new("Host", "evil.example"))
        .header(Header::new("Authorization", "Bearer kt_whatever"))
        .body(r#"{"lock_code":"1234"}"#)
        .dispatch()
        .await;
    let (status, body) = common::json_of(res).await;
    assert_eq!(status, Status::MisdirectedRequest);
    assert!(body["error"].as_str().unwrap().contains("allowed_hosts"));
}

#[rocket::async_test]
async fn a_post_from_another_origin_is_refused_before_its_handler() {
    let s = TestServer::start().await;
    let token = s.csrf().await;
    let login = |origin: &'static str| {
        s.client
            .post("/login")
            .header(ContentType::Form)
            .header(Header::new("Host", "localhost:5000"))
            .header(Header::new("Origin", origin))
            .body(format!(
                "csrf_token={}&username=admin&password=admin123",
                urlencode(&token)
            ))
            .dispatch()
    };
    for origin in ["http://evil.example", "http://localhost:5001", "null"] {
        assert_eq!(login(origin).await.status(), Status::Forbidden, "{origin}");
    }
    let sessions: i64 = sqlx::query_scalar("SELECT count(*) FROM sessions")
        .fetch_one(&s.pool())
        .await
        .unwrap();
    assert_eq!(sessions, 0, "no refused login was checked");
    let res = login("http://localhost:5000").await;
    assert_eq!(res.status(), Status::SeeOther);
}
