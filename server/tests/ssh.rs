//! The SSH fallback against a real `sshd` on loopback, started here with its own keys.

mod common;

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::TestServer;
use rocket::local::asynchronous::Client;

struct Sshd {
    child: Child,
    port: u16,
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn keygen(path: &Path) {
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(path)
        .status()
        .expect("ssh-keygen (openssh-client) is installed");
    assert!(status.success());
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts sshd on 127.0.0.1 accepting `client_key` for the current user; the "Kodi script"
/// on this box records its arguments in `applied.txt`, a line per run.
fn start_sshd(dir: &Path) -> Sshd {
    keygen(&dir.join("host_key"));
    keygen(&dir.join("client_key"));
    std::fs::copy(dir.join("client_key.pub"), dir.join("authorized_keys")).unwrap();
    let script = dir.join("remote-kodi.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nprintf '%s\\n' \"$*\" >> {}/applied.txt\necho \"remote kodi: done\"\n",
            dir.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let port = free_port();
    let config = dir.join("sshd_config");
    std::fs::write(
        &config,
        format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/host_key\nPidFile {d}/sshd.pid\n\
             AuthorizedKeysFile {d}/authorized_keys\nStrictModes no\nPasswordAuthentication no\n\
             KbdInteractiveAuthentication no\nUsePAM no\nPermitRootLogin prohibit-password\n",
            d = dir.display()
        ),
    )
    .unwrap();
    // sshd wants its privilege-separation folder even for one connection.
    let _ = std::fs::create_dir_all("/run/sshd");
    let mut child = Command::new("/usr/sbin/sshd")
        .args(["-D", "-e", "-f"])
        .arg(&config)
        .stderr(Stdio::null())
        .spawn()
        .expect("sshd (openssh-server) is installed");
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Sshd { child, port };
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("sshd did not start");
}

fn known_hosts(dir: &Path, port: u16, key_file: &str) {
    let key = std::fs::read_to_string(dir.join(key_file)).unwrap();
    let mut fields = key.split_whitespace();
    let line = format!(
        "[127.0.0.1]:{port} {} {}\n",
        fields.next().unwrap(),
        fields.next().unwrap()
    );
    std::fs::write(dir.join("known_hosts"), line).unwrap();
}

fn current_user() -> String {
    let out = Command::new("id").arg("-un").output().unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

async fn server_using_ssh(sshd_dir: &Path) -> TestServer {
    let dir = tempfile::tempdir().unwrap();
    let figment = common::figment(dir.path())
        .merge((
            "ssh_remote_script",
            sshd_dir.join("remote-kodi.sh").display().to_string(),
        ))
        .merge(("ssh_known_hosts", sshd_dir.join("known_hosts")))
        .merge(("delivery_timeout", 20));
    let client = Client::tracked(kodi_tickets_server::rocket_from(figment).unwrap())
        .await
        .unwrap();
    TestServer { client, dir }
}

/// A device delivered by SSH with profile `name` on it; returns the profile id.
async fn ssh_profile(s: &TestServer, sshd: &Sshd, sshd_dir: &Path, name: &str) -> i64 {
    s.login_admin().await;
    s.device_token("Bedroom TV").await;
    let device = s.device_id("Bedroom TV").await;
    let res = s
        .post_form(
            &format!("/devices/{device}/delivery"),
            &[
                ("delivery", "ssh"),
                ("ssh_user", &current_user()),
                ("ssh_host", "127.0.0.1"),
                ("ssh_port", &sshd.port.to_string()),
                (
                    "ssh_key_path",
                    &sshd_dir.join("client_key").display().to_string(),
                ),
            ],
        )
        .await;
    let flash = res.cookies().get("_flash").unwrap().value().to_owned();
    assert!(flash.contains("go by ssh"), "{flash}");
    let res = s
        .post_form(
            "/profiles",
            &[("name", name), ("device", &device.to_string())],
        )
        .await;
    res.headers()
        .get_one("Location")
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

async fn delivery(s: &TestServer) -> (String, String, Option<String>) {
    for _ in 0..300 {
        let row: (String, String, Option<String>) =
            sqlx::query_as("SELECT method, status, last_message FROM deliveries")
                .fetch_one(&s.pool())
                .await
                .unwrap();
        if row.1 == "applied" || row.1 == "failed" {
            return row;
        }
        rocket::tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the SSH delivery never finished");
}

#[rocket::async_test]
async fn pins_reach_a_box_without_agent_over_ssh() {
    let sshd_dir = tempfile::tempdir().unwrap();
    let sshd = start_sshd(sshd_dir.path());
    known_hosts(sshd_dir.path(), sshd.port, "host_key.pub");
    let s = server_using_ssh(sshd_dir.path()).await;
    let profile = ssh_profile(&s, &sshd, sshd_dir.path(), "Bob's room").await;
    let pin = s.create_ticket(profile, 30).await;
    let (method, status, message) = delivery(&s).await;
    assert_eq!(
        (method.as_str(), status.as_str()),
        ("ssh", "applied"),
        "{message:?}"
    );
    let applied = std::fs::read_to_string(sshd_dir.path().join("applied.txt")).unwrap();
    assert_eq!(
        applied,
        format!("Bob's room:{pin}\n"),
        "the argument survives the remote shell intact"
    );
    assert!(s.applied().is_empty(), "nothing ran locally");
    let log = std::fs::read_to_string(s.path("log/exec.log")).unwrap();
    assert!(
        log.contains(&format!("ssh -p {}", sshd.port)) && log.contains("exit=0"),
        "{log}"
    );
    assert!(
        log.contains("remote kodi: done") && !log.contains(&pin),
        "{log}"
    );
}

#[rocket::async_test]
async fn an_unknown_host_key_is_refused() {
    let sshd_dir = tempfile::tempdir().unwrap();
    let sshd = start_sshd(sshd_dir.path());
    // The known-hosts file names another key for this address: a man in the middle.
    known_hosts(sshd_dir.path(), sshd.port, "client_key.pub");
    let s = server_using_ssh(sshd_dir.path()).await;
    let profile = ssh_profile(&s, &sshd, sshd_dir.path(), "Kids").await;
    s.create_ticket(profile, 30).await;
    let (_, status, message) = delivery(&s).await;
    assert_eq!(status, "failed");
    assert!(message.unwrap().contains("exit 255"));
    assert!(
        !sshd_dir.path().join("applied.txt").exists(),
        "the script never ran"
    );
    let log = std::fs::read_to_string(s.path("log/exec.log")).unwrap();
    assert!(log.contains("Host key verification failed"), "{log}");
}

#[rocket::async_test]
async fn incomplete_ssh_settings_are_refused_by_the_form() {
    let s = TestServer::start().await;
    s.login_admin().await;
    s.device_token("TV").await;
    let device = s.device_id("TV").await;
    for (user, host, port, key) in [
        ("", "127.0.0.1", "22", "/k"),
        ("kodi", "-oProxyCommand=x", "22", "/k"),
        ("kodi", "box", "70000", "/k"),
        ("kodi", "box", "22", "relative/key"),
        ("-x", "box", "22", "/k"),
    ] {
        let res = s
            .post_form(
                &format!("/devices/{device}/delivery"),
                &[
                    ("delivery", "ssh"),
                    ("ssh_user", user),
                    ("ssh_host", host),
                    ("ssh_port", port),
                    ("ssh_key_path", key),
                ],
            )
            .await;
        let flash = res.cookies().get("_flash").unwrap().value().to_owned();
        assert!(
            flash.contains("Not changed"),
            "{user} {host} {port} {key}: {flash}"
        );
    }
    let delivery: String = sqlx::query_scalar("SELECT delivery FROM devices")
        .fetch_one(&s.pool())
        .await
        .unwrap();
    assert_eq!(delivery, "agent");
}

#[rocket::async_test]
async fn a_ticket_ends_on_a_box_reached_by_ssh() {
    let sshd_dir = tempfile::tempdir().unwrap();
    let sshd = start_sshd(sshd_dir.path());
    known_hosts(sshd_dir.path(), sshd.port, "host_key.pub");
    let s = server_using_ssh(sshd_dir.path()).await;
    let profile = ssh_profile(&s, &sshd, sshd_dir.path(), "Bob's room").await;
    let pin = s.create_ticket(profile, 30).await;
    assert_eq!(delivery(&s).await.1, "applied");
    let ticket = s.use_ticket(&pin).await;
    s.post_form(&format!("/tickets/{ticket}/end"), &[]).await;
    let remote = sshd_dir.path().join("applied.txt");
    for _ in 0..300 {
        if std::fs::read_to_string(&remote).unwrap().lines().count() >= 3 {
            break;
        }
        rocket::tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let runs: Vec<String> = std::fs::read_to_string(&remote)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(runs.len(), 3, "{runs:?}");
    assert_eq!(runs[1], "--log-off Bob's room", "the log-off, over SSH");
    let secret = runs[2]
        .strip_prefix("Bob's room:")
        .expect("a new lock code");
    assert!(secret.len() == 4 && secret != pin, "{runs:?}");
    assert!(s.applied().is_empty(), "nothing ran locally");
}
