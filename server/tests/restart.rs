//! What must survive a restart: data, admin sessions, the secret key, the CLI's work.

mod common;

use std::process::{Command, Stdio};

use common::TestServer;
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
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kodi-tickets-server"));
    cmd.args(args)
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .env(
            "ROCKET_DATABASES",
            format!(
                "{{kodi_tickets={{url=\"sqlite://{}/data/kt.db\"}}}}",
                s.dir.path().display()
            ),
        )
        .env("ROCKET_DATA_DIR", s.path("data"))
        .env("RUST_LOG", "error");
    cmd
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

    let out = server_command(&s, &["frobnicate"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("usage"));
}
