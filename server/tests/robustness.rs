//! Robustness: hostile bodies, forged sessions, several servers starting on one fresh
//! database, and servers killed with SIGKILL in the middle of their work.
//!
//! The last two drive the real `kodi-tickets-server` binary over HTTP (a small HTTP/1.0 client
//! below keeps the cookie jar), each process in a process group of its own so that a kill takes
//! its Kodi script with it, as a power cut would.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use common::{csrf_in, urlencode, TestServer, NEW_PASSWORD};
use rocket::http::{ContentType, Cookie, Header, SameSite, Status};
use rocket::local::asynchronous::Client;

// ---- hostile bodies ---------------------------------------------------------------------------

async fn server_with_device() -> (TestServer, String) {
    let s = TestServer::start().await;
    s.login_admin().await;
    let (token, kids) = s.local_box_with_profile("Living room", "Kids").await;
    s.create_ticket(kids, 30).await;
    (s, token)
}

async fn api_login_bytes(s: &TestServer, token: &str, body: &[u8]) -> (Status, serde_json::Value) {
    let res = s
        .client
        .post("/api/login")
        .header(ContentType::JSON)
        .header(Header::new("Authorization", format!("Bearer {token}")))
        .body(body)
        .dispatch()
        .await;
    common::json_of(res).await
}

#[rocket::async_test]
async fn every_json_shape_gets_a_4xx_json_error() {
    let (s, token) = server_with_device().await;
    let deep_list = format!("{}\"1234\"{}", "[".repeat(1000), "]".repeat(1000));
    let deep_object = format!(
        "{}\"1234\"{}",
        "{\"lock_code\":".repeat(1000),
        "}".repeat(1000)
    );
    let long = "7".repeat(15 * 1024);
    let long_code = format!(r#"{{"lock_code":"{long}"}}"#);
    let long_string = format!("\"{long}\"");
    let bodies: Vec<(&str, Vec<u8>)> = vec![
        ("string", br#""1234""#.to_vec()),
        ("number", b"1234".to_vec()),
        ("huge number", "9".repeat(4000).into_bytes()),
        ("float", b"1e999999".to_vec()),
        ("list", br#"["1234"]"#.to_vec()),
        ("empty object", b"{}".to_vec()),
        ("object, code as number", br#"{"lock_code":1234}"#.to_vec()),
        (
            "object, code as list",
            br#"{"lock_code":["1234"]}"#.to_vec(),
        ),
        (
            "object, unicode digits",
            r#"{"lock_code":"١٢٣٤"}"#.as_bytes().to_vec(),
        ),
        ("null", b"null".to_vec()),
        ("true", b"true".to_vec()),
        ("empty", Vec::new()),
        ("nested list 1000 deep", deep_list.into_bytes()),
        ("nested object 1000 deep", deep_object.into_bytes()),
        ("15 KiB lock code", long_code.into_bytes()),
        ("15 KiB string", long_string.into_bytes()),
        (
            "invalid UTF-8 in a string",
            b"{\"lock_code\":\"12\xff\xfe\"}".to_vec(),
        ),
        ("invalid UTF-8 alone", b"\xc3\x28\xa0\xa1".to_vec()),
        ("UTF-16", b"\xff\xfe{\x00}\x00".to_vec()),
        ("NUL bytes", b"{\"lock_code\":\"1234\"}\0\0".to_vec()),
    ];
    for (what, body) in bodies {
        let (status, err) = api_login_bytes(&s, &token, &body).await;
        assert!(status.class().is_client_error(), "{what}: {status}");
        assert!(
            err["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{what}: {err}"
        );
    }
    // One byte over the limit: refused as too large, still JSON.
    let over = format!(
        r#"{{"lock_code":"1234","pad":"{}"}}"#,
        "x".repeat(16 * 1024)
    );
    let (status, err) = api_login_bytes(&s, &token, over.as_bytes()).await;
    assert_eq!(status, Status::PayloadTooLarge, "{err}");
}

#[rocket::async_test]
async fn an_oversized_form_gets_a_413_page() {
    let s = TestServer::start().await;
    let big = "x".repeat(20 * 1024);
    let res = s
        .post_form("/login", &[("username", "admin"), ("password", &big)])
        .await;
    assert_eq!(res.status(), Status::PayloadTooLarge);
    assert_eq!(res.content_type(), Some(ContentType::HTML));
    let page = res.into_string().await.unwrap();
    assert!(page.contains("too large"), "{page}");

    s.login_admin().await;
    let res = s.post_form("/profiles", &[("name", &big)]).await;
    assert_eq!(res.status(), Status::PayloadTooLarge);
    assert!(res.into_string().await.unwrap().contains("too large"));
}

#[rocket::async_test]
async fn bad_profile_names_get_a_clear_message() {
    let s = TestServer::start().await;
    s.login_admin().await;
    let cases = [
        ("x".repeat(51), "at most 50 characters"),
        ("é".repeat(51), "at most 50 characters"),
        ("x".repeat(1000), "at most 50 characters"),
        ("Kids\u{7}".to_owned(), "control characters"),
        ("Kids\u{1b}[31mred".to_owned(), "control characters"),
        ("a\u{0}b".to_owned(), "control characters"),
        ("a\u{85}b".to_owned(), "control characters"),
        ("Kids:1234".to_owned(), "may not contain"),
    ];
    for (name, message) in cases {
        let res = s.post_form("/profiles", &[("name", &name)]).await;
        assert_eq!(res.status(), Status::SeeOther, "{name:?}");
        assert_eq!(
            res.headers().get_one("Location"),
            Some("/profiles/new"),
            "{name:?}"
        );
        let (status, page) = s.page("/profiles/new").await;
        assert_eq!(status, Status::Ok);
        assert!(
            page.contains("Not created") && page.contains(message),
            "{name:?}: no message {message:?} on the page"
        );
    }
    // Past the form's own bound (1,000 characters) the form itself is refused: a 4xx page.
    let res = s
        .post_form("/profiles", &[("name", &"x".repeat(5000))])
        .await;
    assert!(res.status().class().is_client_error(), "{}", res.status());
    assert_eq!(res.content_type(), Some(ContentType::HTML));

    let profiles: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM profiles")
        .fetch_one(&s.pool())
        .await
        .unwrap();
    assert_eq!(profiles, 0);
}

// ---- sessions ---------------------------------------------------------------------------------

fn random_key() -> String {
    base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 32]>().repeat(2))
}

async fn status_with_session(client: &Client, value: &str) -> (Status, Option<String>) {
    let res = client
        .get("/profiles")
        .cookie(Cookie::new("kt_session", value.to_owned()))
        .dispatch()
        .await;
    (
        res.status(),
        res.headers().get_one("Location").map(str::to_owned),
    )
}

#[rocket::async_test]
async fn forged_or_foreign_session_cookies_are_refused() {
    let s = TestServer::start().await;
    s.login_admin().await;
    let genuine = s
        .client
        .cookies()
        .get("kt_session")
        .expect("session cookie")
        .value()
        .to_owned();

    // A second server on the same data (same key): the genuine cookie works there.
    let twin =
        Client::untracked(kodi_tickets_server::rocket_from(common::figment(s.dir.path())).unwrap())
            .await
            .unwrap();
    assert_eq!(
        status_with_session(&twin, &genuine).await.0,
        Status::Ok,
        "control: the genuine cookie is accepted"
    );

    let mut flipped = genuine.clone().into_bytes();
    let mid = flipped.len() / 2;
    flipped[mid] = if flipped[mid] == b'A' { b'B' } else { b'A' };
    let flipped = String::from_utf8(flipped).unwrap();
    let forged = [
        String::new(),
        "garbage".to_owned(),
        "admin".to_owned(),
        base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 32]>()),
        flipped,
        genuine[..genuine.len() - 4].to_owned(),
        format!("{genuine}AAAA"),
        "%00%ff".to_owned(),
    ];
    for value in &forged {
        assert_eq!(
            status_with_session(&twin, value).await,
            (Status::SeeOther, Some("/login".to_owned())),
            "{value:?}"
        );
    }

    // A server with another secret key, on the very same database: refused.
    let foreign = Client::untracked(
        kodi_tickets_server::rocket_from(
            common::figment(s.dir.path()).merge(("secret_key", random_key())),
        )
        .unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(
        status_with_session(&foreign, &genuine).await,
        (Status::SeeOther, Some("/login".to_owned()))
    );
}

#[rocket::async_test]
async fn the_session_cookie_is_http_only_and_same_site_strict() {
    let s = TestServer::start().await;
    let res = s
        .post_form("/login", &[("username", "admin"), ("password", "admin123")])
        .await;
    assert_eq!(res.status(), Status::SeeOther);
    let set_cookie: Vec<&str> = res
        .headers()
        .get("Set-Cookie")
        .filter(|h| h.starts_with("kt_session="))
        .collect();
    assert_eq!(set_cookie.len(), 1, "{set_cookie:?}");
    let attributes: Vec<String> = set_cookie[0]
        .split(';')
        .skip(1)
        .map(|a| a.trim().to_ascii_lowercase())
        .collect();
    assert!(attributes.contains(&"httponly".into()), "{set_cookie:?}");
    assert!(
        attributes.contains(&"samesite=strict".into()),
        "{set_cookie:?}"
    );
    let cookie = res.cookies().get("kt_session").unwrap();
    assert_eq!(cookie.http_only(), Some(true));
    assert_eq!(cookie.same_site(), Some(SameSite::Strict));
}

/// An unknown user and a wrong password must look alike, and both must pay for an argon2
/// verification (`password::verify` checks against a decoy hash when there is no user).
/// Checked by what the responses say, not by timing them.
#[rocket::async_test]
async fn unknown_users_and_wrong_passwords_get_the_same_answer() {
    let s = TestServer::start().await;
    let mut answers = Vec::new();
    for (user, password) in [
        ("admin", "wrong-password"),
        ("nobody", "wrong-password"),
        ("admin", "admin123x"),
        ("nobody", "admin123"),
    ] {
        let res = s
            .post_form("/login", &[("username", user), ("password", password)])
            .await;
        let status = res.status();
        assert!(res.cookies().get("kt_session").is_none());
        let body = res.into_string().await.unwrap();
        let body = body.replace(&format!("value=\"{user}\""), "value=\"USER\"");
        answers.push((status, body));
    }
    assert_eq!(answers[0].0, Status::Unauthorized);
    assert!(answers[0].1.contains("Wrong user name or password."));
    for answer in &answers[1..] {
        assert_eq!(answer, &answers[0]);
    }
    // And the decoy path refuses even the right password for a user that does not exist.
    assert!(!kodi_tickets_server::password::verify("admin123".into(), None).await);
}

// ---- the real binary, over HTTP -----------------------------------------------------------------

/// A Kodi script stand-in: notes its run (`pid argument`) in `runs.txt`, sleeps the seconds in
/// `sleep` (none when absent), then records its argument in `applied.txt`.
fn write_script(dir: &Path) -> PathBuf {
    let path = dir.join("kodi.sh");
    fs::write(
        &path,
        "#!/bin/sh\nd=$(dirname \"$0\")\n\
         echo \"$$ $1\" >> \"$d/runs.txt\"\n\
         [ -f \"$d/sleep\" ] && sleep \"$(cat \"$d/sleep\")\"\n\
         echo \"$1\" >> \"$d/applied.txt\"\n",
    )
    .unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
    path
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A server process (and its process group), killed with SIGKILL when dropped.
struct Server {
    child: Child,
    port: u16,
    log: PathBuf,
    dead: bool,
}

impl Server {
    fn spawn(dir: &Path, name: &str) -> Server {
        let port = free_port();
        let log = dir.join(format!("{name}-{port}.log"));
        let out = fs::File::create(&log).unwrap();
        let child = common::server_command(dir, &[])
            .env("ROCKET_ADDRESS", "127.0.0.1")
            .env("ROCKET_PORT", port.to_string())
            .env("ROCKET_KODI_SCRIPT", dir.join("kodi.sh"))
            .env("ROCKET_EXEC_LOG", dir.join("exec.log"))
            .env("ROCKET_SSH_KNOWN_HOSTS", dir.join("known_hosts"))
            .env("ROCKET_DELIVERY_TIMEOUT", "30")
            .env("ROCKET_CLI_COLORS", "false")
            .env("RUST_LOG", "warn")
            .env_remove("ROCKET_SECRET_KEY")
            .env_remove("ROCKET_PROFILE")
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .process_group(0)
            .spawn()
            .unwrap();
        Server {
            child,
            port,
            log,
            dead: false,
        }
    }

    fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits for `GET /healthz` to answer 200; panics with the server's log otherwise.
    fn wait_healthy(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(90);
        while Instant::now() < deadline {
            if let Some(exit) = self.child.try_wait().unwrap() {
                panic!(
                    "server on port {} exited ({exit}) before it was healthy:\n{}",
                    self.port,
                    self.log()
                );
            }
            if let Ok(reply) = Browser::new(self.port).request("GET", "/healthz", None) {
                assert_eq!(reply.status, 200, "{}\n{}", reply.body, self.log());
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "server on port {} never became healthy:\n{}",
            self.port,
            self.log()
        );
    }

    /// SIGKILL to the server and everything it started.
    fn kill(&mut self) {
        if self.dead {
            return;
        }
        // The group's id is the server's pid (`process_group(0)`).
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.dead = true;
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A browser in miniature: HTTP/1.0 requests (one connection each) and a cookie jar.
#[derive(Clone)]
struct Browser {
    port: u16,
    cookies: BTreeMap<String, String>,
    /// The anti-CSRF token the pages of this browser carry, once read.
    csrf: Option<String>,
}

impl Browser {
    fn new(port: u16) -> Browser {
        Browser {
            port,
            cookies: BTreeMap::new(),
            csrf: None,
        }
    }

    fn request(&mut self, method: &str, path: &str, form: Option<&str>) -> std::io::Result<Reply> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port))?;
        stream.set_read_timeout(Some(Duration::from_secs(60)))?;
        let mut head = format!(
            "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\n",
            self.port
        );
        if !self.cookies.is_empty() {
            let jar: Vec<String> = self
                .cookies
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            head.push_str(&format!("Cookie: {}\r\n", jar.join("; ")));
        }
        let body = form.unwrap_or("");
        if form.is_some() {
            head.push_str("Content-Type: application/x-www-form-urlencoded\r\n");
        }
        head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
        stream.write_all(head.as_bytes())?;
        stream.write_all(body.as_bytes())?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw)?;
        let text = String::from_utf8_lossy(&raw).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "no HTTP head")
        })?;
        let mut lines = head.lines();
        let status = lines
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("bad status line in {head:?}")))?;
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
            .collect();
        for (k, v) in &headers {
            if !k.eq_ignore_ascii_case("set-cookie") {
                continue;
            }
            let (pair, attributes) = v.split_once(';').unwrap_or((v, ""));
            let Some((name, value)) = pair.split_once('=') else {
                continue;
            };
            if value.is_empty() || attributes.to_ascii_lowercase().contains("max-age=0") {
                self.cookies.remove(name.trim());
            } else {
                self.cookies
                    .insert(name.trim().to_owned(), value.trim().to_owned());
            }
        }
        Ok(Reply {
            status,
            headers,
            body: body.to_owned(),
        })
    }

    fn get(&mut self, path: &str) -> Reply {
        self.request("GET", path, None).unwrap()
    }

    /// Posts a form with this browser's anti-CSRF token, as the pages do.
    fn post(&mut self, path: &str, fields: &[(&str, &str)]) -> std::io::Result<Reply> {
        let token = match &self.csrf {
            Some(token) if self.cookies.contains_key("kt_csrf") => token.clone(),
            _ => {
                let token = csrf_in(&self.get("/login").body);
                self.csrf = Some(token.clone());
                token
            }
        };
        let mut body = format!("csrf_token={}", urlencode(&token));
        for (k, v) in fields {
            body.push_str(&format!("&{k}={}", urlencode(v)));
        }
        self.request("POST", path, Some(&body))
    }

    /// Logs in with the default password and sets a new one.
    fn become_admin(&mut self) {
        let r = self
            .post("/login", &[("username", "admin"), ("password", "admin123")])
            .unwrap();
        assert_eq!((r.status, r.header("Location")), (303, Some("/password")));
        let r = self
            .post(
                "/password",
                &[
                    ("current_password", "admin123"),
                    ("new_password", NEW_PASSWORD),
                    ("confirm_password", NEW_PASSWORD),
                ],
            )
            .unwrap();
        assert_eq!((r.status, r.header("Location")), (303, Some("/profiles")));
    }

    fn create_profile(&mut self, name: &str) -> i64 {
        let r = self.post("/profiles", &[("name", name)]).unwrap();
        r.header("Location")
            .and_then(|l| l.strip_prefix("/profiles/"))
            .and_then(|id| id.parse().ok())
            .unwrap_or_else(|| panic!("profile not created: {} {:?}", r.status, r.headers))
    }

    fn create_ticket(&mut self, profile: i64, minutes: i64) -> std::io::Result<Reply> {
        self.post(
            &format!("/profiles/{profile}/tickets"),
            &[("length", &minutes.to_string())],
        )
    }
}

/// The server's SQLite file, read from the test.
struct Database {
    rt: rocket::tokio::runtime::Runtime,
    pool: sqlx::SqlitePool,
}

impl Database {
    fn open(dir: &Path) -> Database {
        let rt = rocket::tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let options = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(dir.join("data/kt.db"))
            .busy_timeout(Duration::from_secs(10));
        let pool = rt
            .block_on(
                sqlx::sqlite::SqlitePoolOptions::new()
                    .max_connections(1)
                    .connect_with(options),
            )
            .unwrap();
        Database { rt, pool }
    }

    fn int(&self, sql: &str) -> i64 {
        self.rt
            .block_on(sqlx::query_scalar(sql).fetch_one(&self.pool))
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    fn text(&self, sql: &str) -> String {
        self.rt
            .block_on(sqlx::query_scalar(sql).fetch_one(&self.pool))
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    fn integrity_ok(&self) {
        assert_eq!(self.text("PRAGMA integrity_check"), "ok");
        assert_eq!(self.int("SELECT COUNT(*) FROM pragma_foreign_key_check"), 0);
    }

    fn close(self) {
        self.rt.block_on(self.pool.close());
    }
}

fn wait_for(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if check() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out waiting for: {what}");
}

fn lines(path: &Path) -> Vec<String> {
    fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn several_servers_starting_at_once_share_one_fresh_database() {
    for round in 0..3 {
        let dir = tempfile::tempdir().unwrap();
        write_script(dir.path());
        let mut servers: Vec<Server> = (0..4)
            .map(|i| Server::spawn(dir.path(), &format!("race{round}-{i}")))
            .collect();
        for server in &mut servers {
            server.wait_healthy();
        }

        let db = Database::open(dir.path());
        assert_eq!(db.int("SELECT COUNT(*) FROM admins"), 1, "round {round}");
        assert_eq!(
            db.int("SELECT COUNT(*) FROM _sqlx_migrations WHERE success"),
            fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../migrations"))
                .unwrap()
                .count() as i64
        );
        db.integrity_ok();
        db.close();
        let mut data: Vec<String> = fs::read_dir(dir.path().join("data"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| !name.starts_with("kt.db"))
            .collect();
        data.sort();
        assert_eq!(data, ["secret.key"], "round {round}");
        let key = fs::read_to_string(dir.path().join("data/secret.key")).unwrap();
        assert_eq!(
            base64::engine::general_purpose::STANDARD
                .decode(key.trim())
                .map(|k| k.len()),
            Ok(64)
        );

        // One key for all: a session started on one server is good on every other.
        let mut browser = Browser::new(servers[0].port);
        let r = browser
            .post("/login", &[("username", "admin"), ("password", "admin123")])
            .unwrap();
        assert_eq!(r.header("Location"), Some("/password"));
        for server in &servers[1..] {
            let mut other = browser.clone();
            other.port = server.port;
            assert_eq!(other.get("/password").status, 200, "port {}", server.port);
        }
    }
}

#[test]
fn a_delivery_killed_mid_run_runs_again_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    write_script(dir.path());
    fs::write(dir.path().join("sleep"), "5").unwrap();
    let mut server = Server::spawn(dir.path(), "first");
    server.wait_healthy();
    let mut browser = Browser::new(server.port);
    browser.become_admin();
    let kids = browser.create_profile("Kids");
    let r = browser.create_ticket(kids, 30).unwrap();
    assert_eq!(r.status, 303);

    let db = Database::open(dir.path());
    let pin = db.text("SELECT lock_code FROM tickets");
    wait_for("the script to start", Duration::from_secs(20), || {
        !lines(&dir.path().join("runs.txt")).is_empty()
    });
    assert_eq!(db.text("SELECT status FROM deliveries"), "running");
    db.close();
    server.kill();
    assert!(lines(&dir.path().join("applied.txt")).is_empty());

    fs::remove_file(dir.path().join("sleep")).unwrap();
    let mut server = Server::spawn(dir.path(), "second");
    server.wait_healthy();
    let applied = dir.path().join("applied.txt");
    wait_for("the delivery to run again", Duration::from_secs(30), || {
        !lines(&applied).is_empty()
    });
    let db = Database::open(dir.path());
    wait_for(
        "the delivery to be recorded",
        Duration::from_secs(10),
        || db.text("SELECT status FROM deliveries") == "applied",
    );
    assert_eq!(lines(&applied), [format!("Kids:{pin}")]);
    assert_eq!(lines(&dir.path().join("runs.txt")).len(), 2);
    assert_eq!(db.int("SELECT attempts FROM deliveries"), 2);
    assert_eq!(db.int("SELECT COUNT(*) FROM tickets"), 1);
    assert_eq!(db.int("SELECT COUNT(*) FROM deliveries"), 1);
    db.integrity_ok();
    db.close();
    drop(server);
}

#[test]
fn a_server_killed_while_creating_tickets_keeps_each_with_one_delivery() {
    let dir = tempfile::tempdir().unwrap();
    write_script(dir.path());
    let mut server = Server::spawn(dir.path(), "first");
    server.wait_healthy();
    let mut browser = Browser::new(server.port);
    browser.become_admin();
    let kids = browser.create_profile("Kids");

    let created = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let hammers: Vec<_> = (0..2)
        .map(|_| {
            let mut browser = browser.clone();
            let (created, stop) = (created.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    match browser.create_ticket(kids, 5) {
                        Ok(r) if r.status == 303 => {
                            created.fetch_add(1, Ordering::SeqCst);
                        }
                        Ok(r) => panic!("ticket refused: {} {}", r.status, r.body),
                        Err(_) => return, // the server is gone
                    }
                }
            })
        })
        .collect();
    wait_for("tickets to be created", Duration::from_secs(60), || {
        created.load(Ordering::SeqCst) >= 30
    });
    server.kill();
    stop.store(true, Ordering::SeqCst);
    for hammer in hammers {
        hammer.join().unwrap();
    }
    let acknowledged = created.load(Ordering::SeqCst) as i64;

    let mut server = Server::spawn(dir.path(), "second");
    server.wait_healthy();
    let db = Database::open(dir.path());
    db.integrity_ok();
    let tickets = db.int("SELECT COUNT(*) FROM tickets");
    assert!(
        tickets >= acknowledged,
        "{tickets} tickets, {acknowledged} acknowledged"
    );
    assert_eq!(
        db.int(
            "SELECT COUNT(*) FROM tickets t
             WHERE (SELECT COUNT(*) FROM deliveries d WHERE d.ticket_id = t.id) != 1"
        ),
        0,
        "every ticket has exactly one delivery"
    );
    assert_eq!(
        db.int("SELECT COUNT(*) FROM deliveries WHERE ticket_id NOT IN (SELECT id FROM tickets)"),
        0
    );
    assert_eq!(
        db.int("SELECT COUNT(DISTINCT lock_code) FROM tickets"),
        tickets
    );
    wait_for(
        "every delivery to be applied",
        Duration::from_secs(60),
        || db.int("SELECT COUNT(*) FROM deliveries WHERE status != 'applied'") == 0,
    );
    // Each PIN reached Kodi (a run cut off by the kill may have recorded its line before the
    // kill, and runs again).
    let applied: std::collections::BTreeSet<String> =
        lines(&dir.path().join("applied.txt")).into_iter().collect();
    let pins: Vec<String> = db
        .rt
        .block_on(sqlx::query_scalar("SELECT lock_code FROM tickets").fetch_all(&db.pool))
        .unwrap();
    for pin in pins {
        assert!(
            applied.contains(&format!("Kids:{pin}")),
            "{pin} not applied"
        );
    }

    // New tickets still work after the restart.
    let mut browser = Browser::new(server.port);
    let r = browser
        .post(
            "/login",
            &[("username", "admin"), ("password", NEW_PASSWORD)],
        )
        .unwrap();
    assert_eq!(r.header("Location"), Some("/profiles"));
    assert_eq!(browser.create_ticket(kids, 5).unwrap().status, 303);
    assert_eq!(db.int("SELECT COUNT(*) FROM tickets"), tickets + 1);
    db.close();
}
