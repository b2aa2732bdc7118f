//! What must survive a restart: data, admin sessions, the secret key, the CLI's work.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::TestServer;
use kodi_tickets_server::known_tokens::LIFE;
use rocket::http::Status;

#[rocket::async_test]
async fn data_and_sessions_survive_a_restart() {
    let s = TestServer::start().await;
    s.login_admin().await;
    let kids = s.create_profile("Kids").await;
    let pin = s.create_ticket(kids, 30).await;
    let cookie = s.session_cookie().unwrap();
    let key = std::fs::read_to_string(s.path("data/secret.key")).unwrap();

    let s = s.restart().await;
    assert_eq!(
        std::fs::read_to_string(s.path("data/secret.key")).unwrap(),
        key
    );
    let res = s
        .client
        .get(format!("/profiles/{kids}"))
        .private_cookie(cookie)
        .dispatch()
        .await;
    assert_eq!(res.status(), Status::Ok, "still logged in");
    assert!(res.into_string().await.unwrap().contains(&pin));
}

fn server_command(s: &TestServer, args: &[&str]) -> Command {
    common::server_command(s.dir.path(), args)
}

#[rocket::async_test]
async fn the_cli_adds_devices_and_resets_passwords() {
    let s = TestServer::start().await;
    let out = server_command(&s, &["device", "add", "Kitchen TV"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert!(token.starts_with("kt_"));
    assert_eq!(
        s.api_ticket(&token, "1234").await.0,
        Status::NotFound,
        "token accepted"
    );

    let out = server_command(&s, &["device", "add", "kitchen tv"])
        .output()
        .unwrap();
    assert!(!out.status.success(), "duplicate name refused");

    // Listed, then revoked by name: the running server, another process, believes the token
    // it found live a moment ago for at most `known_tokens::LIFE`, then refuses it.
    let out = server_command(&s, &["device", "list"]).output().unwrap();
    let listed = String::from_utf8(out.stdout).unwrap();
    assert!(
        listed.starts_with("Kitchen TV\tagent\tlast seen "),
        "{listed}"
    );
    let out = server_command(&s, &["device", "revoke", "Kitchen TV"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("refuses it within 5 seconds"));
    let revoked_at = Instant::now();
    while s.api_ticket(&token, "1234").await.0 != Status::Unauthorized {
        assert!(
            revoked_at.elapsed() < LIFE + Duration::from_secs(2),
            "the revoked token is still accepted"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let out = server_command(&s, &["device", "list"]).output().unwrap();
    assert!(String::from_utf8(out.stdout).unwrap().contains("\trevoked"));
    let out = server_command(&s, &["device", "revoke", "Kitchen TV"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "nothing left to revoke");

    let mut child = server_command(&s, &["admin", "set-password", "admin"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"recovered-pass-1\n")
        .unwrap();
    assert!(child.wait().unwrap().success());
    let res = s
        .post_form(
            "/login",
            &[("username", "admin"), ("password", "recovered-pass-1")],
        )
        .await;
    assert_eq!(
        res.headers().get_one("Location"),
        Some("/profiles"),
        "no forced change after a scripted set"
    );

    let mut child = server_command(&s, &["admin", "set-password", "admin"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"short\n").unwrap();
    assert!(!child.wait().unwrap().success(), "weak password refused");

    // Help on every command; no server log around a command's answer.
    for args in [
        &["--help"][..],
        &["device", "--help"],
        &["admin", "set-password", "--help"],
    ] {
        let out = server_command(&s, args).output().unwrap();
        assert!(out.status.success(), "{args:?}");
        assert!(String::from_utf8_lossy(&out.stdout).contains("Usage:"));
    }
    let out = server_command(&s, &["device", "list"])
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stderr), "", "no log lines");

    let out = server_command(&s, &["frobnicate"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "a usage error");
    assert!(String::from_utf8_lossy(&out.stderr).contains("Usage: kodi-tickets-server"));
}
