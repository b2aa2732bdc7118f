//! A real server (its SQLite file, templates, delivery worker) per test, driven through
//! Rocket's local client, with a fake Kodi script that records what it is asked to apply.

#![allow(dead_code)] // each test file uses its own part of this harness

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use kodi_tickets_server::db::{Db, Pool};
use rocket::figment::Figment;
use rocket::http::{ContentType, Cookie, Header, Status};
use rocket::local::asynchronous::{Client, LocalResponse};
use rocket_db_pools::Database;

pub const NEW_PASSWORD: &str = "correct-horse-42";

pub struct TestServer {
    pub client: Client,
    pub dir: tempfile::TempDir,
}

pub fn figment(dir: &Path) -> Figment {
    kodi_tickets_server::config::figment()
        .merge((
            "databases.kodi_tickets.url",
            format!("sqlite://{}/data/kt.db", dir.display()),
        ))
        .merge(("data_dir", dir.join("data")))
        .merge((
            "template_dir",
            concat!(env!("CARGO_MANIFEST_DIR"), "/../templates"),
        ))
        .merge(("kodi_script", dir.join("fake-kodi.sh")))
        .merge(("exec_log", dir.join("log/exec.log")))
        .merge(("delivery_timeout", 3))
        .merge(("log_level", "off"))
}

/// A Kodi script stand-in: appends its arguments to `applied.txt`, exits with the code in
/// `exit_code` (0 when absent; a PIN's run, `pin_exit_code` when present), after sleeping the seconds in `sleep` (none when absent).
fn write_fake_script(dir: &Path) {
    let path = dir.join("fake-kodi.sh");
    std::fs::write(
        &path,
        "#!/bin/sh\nd=$(dirname \"$0\")\n\
         [ -f \"$d/sleep\" ] && sleep \"$(cat \"$d/sleep\")\"\n\
         echo \"$*\" >> \"$d/applied.txt\"\necho \"fake kodi: done\"\n\
         [ \"$1\" != --log-off ] && [ -f \"$d/pin_exit_code\" ] && exit \"$(cat \"$d/pin_exit_code\")\"\n\
         exit \"$(cat \"$d/exit_code\" 2>/dev/null || echo 0)\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

impl TestServer {
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        write_fake_script(dir.path());
        let client = Self::client_for(dir.path()).await;
        TestServer { client, dir }
    }

    /// A fresh server process on the same data folder, as after a restart.
    pub async fn restart(self) -> Self {
        let TestServer { client, dir } = self;
        client.rocket().shutdown().notify();
        drop(client);
        let client = Self::client_for(dir.path()).await;
        TestServer { client, dir }
    }

    pub async fn client_for(dir: &Path) -> Client {
        let rocket = kodi_tickets_server::rocket_from(figment(dir)).unwrap();
        Client::tracked(rocket).await.unwrap()
    }

    pub fn pool(&self) -> Pool {
        Pool::clone(Db::fetch(self.client.rocket()).unwrap())
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn set_script_exit(&self, code: i32) {
        std::fs::write(self.path("exit_code"), code.to_string()).unwrap();
    }

    /// The exit code of the script's runs that set a PIN (not its log-offs), overriding
    /// `set_script_exit`'s; `None` for the same as those.
    pub fn set_pin_exit(&self, code: Option<i32>) {
        match code {
            Some(code) => std::fs::write(self.path("pin_exit_code"), code.to_string()).unwrap(),
            None => std::fs::remove_file(self.path("pin_exit_code")).unwrap(),
        }
    }

    pub fn applied(&self) -> Vec<String> {
        std::fs::read_to_string(self.path("applied.txt"))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// The CSRF token the pages of this browser carry.
    pub async fn csrf(&self) -> String {
        let body = self
            .client
            .get("/login")
            .dispatch()
            .await
            .into_string()
            .await
            .unwrap();
        csrf_in(&body)
    }

    pub async fn post_form(&self, path: &str, fields: &[(&str, &str)]) -> LocalResponse<'_> {
        let token = self.csrf().await;
        let mut body = format!("csrf_token={}", urlencode(&token));
        for (k, v) in fields {
            body.push_str(&format!("&{k}={}", urlencode(v)));
        }
        self.client
            .post(path.to_owned())
            .header(ContentType::Form)
            .body(body)
            .dispatch()
            .await
    }

    /// Logs in with the default password (lands on the change-password page).
    pub async fn login_default(&self) {
        let res = self
            .post_form("/login", &[("username", "admin"), ("password", "admin123")])
            .await;
        assert_eq!(res.status(), Status::SeeOther);
        assert_eq!(res.headers().get_one("Location"), Some("/password"));
    }

    /// Logs in and replaces the default password: an admin ready to work.
    pub async fn login_admin(&self) {
        self.login_default().await;
        let res = self
            .post_form(
                "/password",
                &[
                    ("current_password", "admin123"),
                    ("new_password", NEW_PASSWORD),
                    ("confirm_password", NEW_PASSWORD),
                ],
            )
            .await;
        assert_eq!(res.headers().get_one("Location"), Some("/profiles"));
    }

    pub async fn create_profile(&self, name: &str) -> i64 {
        let res = self.post_form("/profiles", &[("name", name)]).await;
        let location = res.headers().get_one("Location").unwrap().to_owned();
        location
            .strip_prefix("/profiles/")
            .and_then(|id| id.parse().ok())
            .unwrap_or_else(|| panic!("profile not created, went to {location}"))
    }

    /// Issues a ticket through the page and returns its PIN (from the flash message).
    pub async fn create_ticket(&self, profile_id: i64, minutes: i64) -> String {
        let res = self
            .post_form(
                &format!("/profiles/{profile_id}/tickets"),
                &[("length", &minutes.to_string())],
            )
            .await;
        assert_eq!(res.status(), Status::SeeOther);
        let flash = res
            .cookies()
            .get("_flash")
            .expect("flash")
            .value()
            .to_owned();
        let pin: String = flash
            .split("PIN ")
            .nth(1)
            .expect("ticket issued")
            .chars()
            .take(4)
            .collect();
        assert!(pin.chars().all(|c| c.is_ascii_digit()), "{flash}");
        pin
    }

    /// Adds a device through the page and returns its token.
    pub async fn device_token(&self, name: &str) -> String {
        let res = self.post_form("/devices", &[("name", name)]).await;
        assert_eq!(res.status(), Status::Ok);
        let body = res.into_string().await.unwrap();
        let start =
            body.find("id=\"new-token\">").expect("token shown") + "id=\"new-token\">".len();
        body[start..].split('<').next().unwrap().to_owned()
    }

    pub async fn device_id(&self, name: &str) -> i64 {
        sqlx::query_scalar("SELECT id FROM devices WHERE name = ?")
            .bind(name)
            .fetch_one(&self.pool())
            .await
            .unwrap()
    }

    /// A profile on a given Kodi box, through the profile form.
    pub async fn create_profile_on(&self, name: &str, device_id: i64) -> i64 {
        let res = self
            .post_form(
                "/profiles",
                &[("name", name), ("device", &device_id.to_string())],
            )
            .await;
        let location = res.headers().get_one("Location").unwrap().to_owned();
        location
            .strip_prefix("/profiles/")
            .and_then(|id| id.parse().ok())
            .unwrap_or_else(|| panic!("profile not created, went to {location}"))
    }

    /// A Kodi box on this server's machine (its PINs applied by the fake script) with one
    /// profile: the box's token and the profile's id. Only that box's token may use the
    /// profile's tickets.
    pub async fn local_box_with_profile(&self, device: &str, profile: &str) -> (String, i64) {
        let token = self.device_token(device).await;
        let id = self.device_id(device).await;
        let res = self
            .post_form(&format!("/devices/{id}/delivery"), &[("delivery", "local")])
            .await;
        assert_eq!(res.status(), Status::SeeOther);
        (token, self.create_profile_on(profile, id).await)
    }

    pub async fn api_login(&self, token: &str, body: &str) -> (Status, serde_json::Value) {
        let res = self
            .client
            .post("/api/login")
            .header(ContentType::JSON)
            .header(Header::new("Authorization", format!("Bearer {token}")))
            .body(body)
            .dispatch()
            .await;
        json_of(res).await
    }

    /// A JSON `POST` to `path` as the device of `token` (its agent); the answer's status.
    pub async fn agent_post(&self, token: &str, path: &str, body: &str) -> Status {
        self.client
            .post(path.to_owned())
            .header(ContentType::JSON)
            .header(Header::new("Authorization", format!("Bearer {token}")))
            .body(body)
            .dispatch()
            .await
            .status()
    }

    pub async fn api_ticket(&self, token: &str, code: &str) -> (Status, serde_json::Value) {
        let res = self
            .client
            .get(format!("/api/ticket/{code}"))
            .header(Header::new("Authorization", format!("Bearer {token}")))
            .dispatch()
            .await;
        json_of(res).await
    }

    /// The ticket with this PIN is used on the TV now, as a report from the Kodi side would
    /// mark it (whatever device reports it); its id.
    pub async fn use_ticket(&self, pin: &str) -> i64 {
        sqlx::query_scalar::<_, i64>(
            "UPDATE tickets SET state = 'in_use', used_at = unixepoch(),
                    expires_at = unixepoch() + length * 60
             WHERE lock_code = ? AND state = 'unused' RETURNING id",
        )
        .bind(pin)
        .fetch_all(&self.pool())
        .await
        .unwrap()[0]
    }

    /// One column of the ticket `id`, as stored.
    pub async fn ticket_column<T>(&self, id: i64, column: &str) -> T
    where
        T: for<'r> sqlx::Decode<'r, sqlx::Sqlite> + sqlx::Type<sqlx::Sqlite> + Send + Unpin,
    {
        sqlx::query_scalar(&format!("SELECT {column} FROM tickets WHERE id = ?"))
            .bind(id)
            .fetch_one(&self.pool())
            .await
            .unwrap()
    }

    pub async fn page(&self, path: &str) -> (Status, String) {
        let res = self.client.get(path.to_owned()).dispatch().await;
        (res.status(), res.into_string().await.unwrap_or_default())
    }

    /// Waits until `check` holds, polling; panics with `what` after 10 s.
    pub async fn eventually<F: Fn(&Self) -> bool>(&self, what: &str, check: F) {
        for _ in 0..200 {
            if check(self) {
                return;
            }
            rocket::tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("timed out waiting for: {what}");
    }

    pub fn session_cookie(&self) -> Option<Cookie<'static>> {
        self.client.cookies().get_private("kt_session")
    }
}

pub async fn json_of(res: LocalResponse<'_>) -> (Status, serde_json::Value) {
    let status = res.status();
    assert_eq!(
        res.content_type(),
        Some(ContentType::JSON),
        "status {status}"
    );
    let body = res.into_string().await.unwrap();
    (
        status,
        serde_json::from_str(&body).unwrap_or_else(|_| panic!("not JSON: {body}")),
    )
}

pub fn csrf_in(html: &str) -> String {
    let marker = "name=\"csrf_token\" value=\"";
    let start = html.find(marker).expect("page has a CSRF field") + marker.len();
    html[start..].split('"').next().unwrap().to_owned()
}

pub fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The server binary as a command on the data folder of the test server in `dir`.
pub fn server_command(dir: &Path, args: &[&str]) -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_kodi-tickets-server"));
    on_data_folder(cmd.args(args), dir).env("RUST_LOG", "error");
    cmd
}

/// Runs `cmd` from the repository (its templates) on the database and data folder in `dir`.
pub fn on_data_folder<'c>(
    cmd: &'c mut std::process::Command,
    dir: &Path,
) -> &'c mut std::process::Command {
    cmd.current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .env(
            "ROCKET_DATABASES",
            format!(
                "{{kodi_tickets={{url=\"sqlite://{}/data/kt.db\"}}}}",
                dir.display()
            ),
        )
        .env("ROCKET_DATA_DIR", dir.join("data"))
}
