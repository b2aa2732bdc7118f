//! Guessing never locks the owner out: wrong passwords are counted per address (with
//! back-off) and per user name, a browser that logged in before is let through the user
//! name's limit, and resetting the password from the command line lifts it.

mod common;

use std::net::SocketAddr;
use std::process::Stdio;

use common::{csrf_in, urlencode, NEW_PASSWORD};
use rocket::http::{ContentType, Cookie, Status};
use rocket::local::asynchronous::{Client, LocalResponse};

/// A browser of its own (its cookies) at an address of its own, on an untracked client.
struct Browser<'c> {
    client: &'c Client,
    address: SocketAddr,
    cookies: Vec<Cookie<'static>>,
}

impl<'c> Browser<'c> {
    fn new(client: &'c Client, address: &str) -> Self {
        Browser {
            client,
            address: address.parse().unwrap(),
            cookies: Vec::new(),
        }
    }

    fn keep(&mut self, res: &LocalResponse<'_>) {
        for cookie in res.cookies().iter() {
            self.cookies.retain(|c| c.name() != cookie.name());
            self.cookies.push(cookie.clone().into_owned());
        }
    }

    /// Posts the login form; the response's status.
    async fn log_in(&mut self, username: &str, password: &str) -> (Status, Option<String>) {
        let page = self
            .client
            .get("/login")
            .remote(self.address)
            .cookies(self.cookies.clone())
            .dispatch()
            .await;
        self.keep(&page);
        let token = csrf_in(&page.into_string().await.unwrap());
        let res = self
            .client
            .post("/login")
            .remote(self.address)
            .cookies(self.cookies.clone())
            .header(ContentType::Form)
            .body(format!(
                "csrf_token={}&username={}&password={}",
                urlencode(&token),
                urlencode(username),
                urlencode(password)
            ))
            .dispatch()
            .await;
        self.keep(&res);
        let retry_after = res.headers().get_one("Retry-After").map(str::to_owned);
        (res.status(), retry_after)
    }
}

async fn untracked_server() -> (Client, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let rocket = kodi_tickets_server::rocket_from(common::figment(dir.path())).unwrap();
    (Client::untracked(rocket).await.unwrap(), dir)
}

async fn guess_five_times(browser: &mut Browser<'_>, username: &str) {
    for n in 0..5 {
        let (status, _) = browser.log_in(username, &format!("guess-{n}")).await;
        assert_eq!(status, Status::Unauthorized);
    }
}

#[rocket::async_test]
async fn a_browser_that_logged_in_before_gets_through_the_user_names_limit() {
    let (client, _dir) = untracked_server().await;
    let mut owner = Browser::new(&client, "192.0.2.10:40000");
    assert_eq!(owner.log_in("admin", "admin123").await.0, Status::SeeOther);

    let mut child = Browser::new(&client, "192.0.2.66:40000");
    guess_five_times(&mut child, "admin").await;
    assert_eq!(
        child.log_in("admin", "admin123").await.0,
        Status::TooManyRequests
    );
    // A fresh browser at another address: the user name's limit holds for it.
    let mut stranger = Browser::new(&client, "192.0.2.67:40000");
    assert_eq!(
        stranger.log_in("admin", "admin123").await.0,
        Status::TooManyRequests
    );

    assert_eq!(
        owner.log_in("admin", "admin123").await.0,
        Status::SeeOther,
        "the owner's browser is not locked out"
    );
}

#[rocket::async_test]
async fn a_known_browsers_own_wrong_passwords_are_limited() {
    let (client, _dir) = untracked_server().await;
    let mut owner = Browser::new(&client, "192.0.2.10:40000");
    assert_eq!(owner.log_in("admin", "admin123").await.0, Status::SeeOther);
    guess_five_times(&mut owner, "admin").await;
    let (status, retry_after) = owner.log_in("admin", "admin123").await;
    assert_eq!(status, Status::TooManyRequests);
    let seconds: u64 = retry_after.unwrap().parse().unwrap();
    assert!((1..=60).contains(&seconds), "{seconds}");
}

#[rocket::async_test]
async fn guessing_from_one_address_does_not_lock_out_another() {
    let (client, _dir) = untracked_server().await;
    let mut child = Browser::new(&client, "192.0.2.66:40000");
    guess_five_times(&mut child, "nobody").await;
    let (status, retry_after) = child.log_in("admin", "admin123").await;
    assert_eq!(status, Status::TooManyRequests);
    let seconds: u64 = retry_after.unwrap().parse().unwrap();
    assert!(
        (1..=60).contains(&seconds),
        "first wait at most a minute: {seconds}"
    );

    let mut owner = Browser::new(&client, "192.0.2.10:40000");
    assert_eq!(owner.log_in("admin", "admin123").await.0, Status::SeeOther);
}

#[rocket::async_test]
async fn a_password_reset_from_the_command_line_lifts_the_user_names_limit() {
    let (client, dir) = untracked_server().await;
    let mut child = Browser::new(&client, "192.0.2.66:40000");
    guess_five_times(&mut child, "admin").await;
    let mut stranger = Browser::new(&client, "192.0.2.67:40000");
    assert_eq!(
        stranger.log_in("admin", "admin123").await.0,
        Status::TooManyRequests
    );

    let mut reset = common::server_command(dir.path(), &["admin", "set-password", "admin"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    let mut stdin = reset.stdin.take().unwrap();
    stdin.write_all(NEW_PASSWORD.as_bytes()).unwrap();
    drop(stdin);
    assert!(reset.wait().unwrap().success());

    let mut owner = Browser::new(&client, "192.0.2.10:40000");
    assert_eq!(
        owner.log_in("admin", NEW_PASSWORD).await.0,
        Status::SeeOther
    );
}

#[rocket::async_test]
async fn a_browser_is_known_only_for_the_user_it_logged_in_as() {
    let (client, _dir) = untracked_server().await;
    let mut owner = Browser::new(&client, "192.0.2.10:40000");
    assert_eq!(owner.log_in("admin", "admin123").await.0, Status::SeeOther);
    let mut child = Browser::new(&client, "192.0.2.66:40000");
    guess_five_times(&mut child, "alice").await;
    assert_eq!(
        owner.log_in("alice", "whatever").await.0,
        Status::TooManyRequests,
        "alice's limit holds for a browser known as admin's"
    );
}
