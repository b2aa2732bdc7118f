//! The agent's real server client against the real server, listening on a free port.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::StreamExt;
use kodi_tickets_agent::server::{ServerClient, ServerError};
use kodi_tickets_protocol::{
    AgentEvent, AgentStatus, DeliveryOutcome, DeliveryReport, LoggedOff, LoginRequest,
};
use kodi_tickets_server::config::AppConfig;
use kodi_tickets_server::db::deliveries::Retried;
use kodi_tickets_server::db::{
    self, tickets::Created, DeliveryId, DeviceId, Pool, ProfileId, TicketId,
};
use kodi_tickets_server::known_tokens::KnownTokens;
use kodi_tickets_server::presence::Changes;
use kodi_tickets_server::{enrol, gate};
use rocket::fairing::AdHoc;
use rocket_db_pools::Database;
use tokio::sync::oneshot;

struct Server {
    url: String,
    pool: Pool,
    changes: Changes,
    known: KnownTokens,
    _dir: tempfile::TempDir,
}

async fn start_server() -> Server {
    start_server_with(None).await
}

/// The server, on HTTPS with the given certificate chain and key files when `tls` is given.
async fn start_server_with(tls: Option<(&Path, &Path)>) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let mut figment = kodi_tickets_server::config::figment()
        .merge(("port", 0))
        .merge(("address", "127.0.0.1"))
        .merge((
            "databases.kodi_tickets.url",
            format!("sqlite://{}/kt.db", dir.path().display()),
        ))
        .merge(("data_dir", dir.path().join("data")))
        .merge((
            "template_dir",
            concat!(env!("CARGO_MANIFEST_DIR"), "/../templates"),
        ))
        .merge(("exec_log", dir.path().join("exec.log")))
        .merge(("log_level", "off"));
    if let Some((certs, key)) = tls {
        figment = figment.merge(("tls.certs", certs)).merge(("tls.key", key));
    }
    let scheme = if tls.is_some() { "https" } else { "http" };
    let (tx, rx) = oneshot::channel();
    let tx = std::sync::Mutex::new(Some(tx));
    let rocket = kodi_tickets_server::rocket_from(figment).unwrap();
    // As the server runs: behind its gate, which serves most agents' streams itself.
    let app: AppConfig = rocket.figment().extract().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (rocket, _opened) = gate::in_front_of(rocket, listener, app.gate_limits());
    let rocket = rocket.attach(AdHoc::on_liftoff("test handle", move |rocket| {
        Box::pin(async move {
            let pool = Pool::clone(db::Db::fetch(rocket).unwrap());
            let changes = rocket.state::<Changes>().unwrap().clone();
            let known = rocket.state::<KnownTokens>().unwrap().clone();
            if let Some(tx) = tx.lock().unwrap().take() {
                let _ = tx.send((pool, changes, known));
            }
        })
    }));
    tokio::spawn(rocket.launch());
    let (pool, changes, known) = rx.await.unwrap();
    Server {
        url: format!("{scheme}://127.0.0.1:{port}"),
        pool,
        changes,
        known,
        _dir: dir,
    }
}

impl Server {
    /// A pairing code for a new box named `name`, as the Devices page shows it.
    async fn pairing_code(&self, name: &str) -> String {
        enrol::pairing_code(&self.pool, name).await.unwrap().code
    }

    /// A device whose profile "Kids" gets its PINs through the agent; returns its token.
    async fn device_with_profile(&self) -> (String, DeviceId, ProfileId) {
        let enrolled = enrol::device(&self.pool, "Living room").await.unwrap();
        let (token, device) = (enrolled.token, enrolled.id);
        let profile = db::profiles::insert(&self.pool, "Kids", Some(device))
            .await
            .unwrap()
            .unwrap();
        (token, device, profile)
    }

    async fn ticket(&self, profile: ProfileId, minutes: i64) -> (TicketId, String) {
        let Created::Ticket {
            id,
            lock_code,
            device_id,
        } = db::tickets::insert(&self.pool, profile, minutes, rand_draw())
            .await
            .unwrap()
        else {
            panic!("no ticket")
        };
        assert!(device_id.is_some(), "the profile is on the agent's device");
        self.changes.notify(device_id);
        (id, lock_code)
    }

    async fn delivery(&self, ticket: TicketId) -> (String, String, Option<String>) {
        sqlx::query_as("SELECT method, status, last_message FROM deliveries WHERE ticket_id = ?")
            .bind(ticket)
            .fetch_one(&self.pool)
            .await
            .unwrap()
    }
}

fn rand_draw() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos()
}

async fn next_event(
    stream: &mut (impl futures::Stream<Item = Result<AgentEvent, ServerError>> + Unpin),
) -> AgentEvent {
    tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("an event within 10 s")
        .expect("stream open")
        .expect("event parsed")
}

#[tokio::test]
async fn tickets_reach_the_agent_at_least_once_and_reports_come_back() {
    let server = start_server().await;
    let (token, device, profile) = server.device_with_profile().await;
    let client = ServerClient::new(&server.url, &token).unwrap();

    // Issued while the agent is away: delivered when it connects.
    let (first, first_pin) = server.ticket(profile, 30).await;
    assert_eq!(server.delivery(first).await.0, "agent");
    let mut events = Box::pin(client.events().await.unwrap());
    let AgentEvent::Arm {
        delivery_id,
        ticket_id,
        profile: name,
        lock_code,
    } = next_event(&mut events).await
    else {
        panic!("expected an arm event")
    };
    assert_eq!(
        (ticket_id, name.as_str(), lock_code.as_str()),
        (first.0, "Kids", first_pin.as_str())
    );

    // Issued while connected: pushed at once.
    let (second, second_pin) = server.ticket(profile, 15).await;
    let AgentEvent::Arm {
        ticket_id,
        lock_code,
        ..
    } = next_event(&mut events).await
    else {
        panic!("expected an arm event")
    };
    assert_eq!((ticket_id, lock_code), (second.0, second_pin));

    // Not acknowledged: sent again after a reconnect. Acknowledged: not again.
    let report = DeliveryReport {
        outcome: DeliveryOutcome::Applied,
        exit_code: Some(0),
        message: "applied to Kodi".into(),
    };
    client.report(delivery_id, &report).await.unwrap();
    assert_eq!(server.delivery(first).await.1, "applied");
    drop(events);
    let mut events = Box::pin(client.events().await.unwrap());
    let AgentEvent::Arm { ticket_id, .. } = next_event(&mut events).await else {
        panic!()
    };
    assert_eq!(
        ticket_id, second.0,
        "only the unacknowledged delivery is resent"
    );

    let busy = DeliveryReport {
        outcome: DeliveryOutcome::Busy,
        exit_code: Some(75),
        message: "Kodi is in use".into(),
    };
    let second_delivery: DeliveryId =
        sqlx::query_scalar("SELECT id FROM deliveries WHERE ticket_id = ?")
            .bind(second)
            .fetch_one(&server.pool)
            .await
            .unwrap();
    client.report(second_delivery.0, &busy).await.unwrap();
    assert_eq!(server.delivery(second).await.1, "pending");

    // Failed on the box (reported as the agent does), then retried from the page: sent again
    // on the open stream.
    let failed = DeliveryReport {
        outcome: DeliveryOutcome::Failed,
        exit_code: Some(1),
        message: "the Kodi script failed".into(),
    };
    client.report(second_delivery.0, &failed).await.unwrap();
    assert_eq!(server.delivery(second).await.1, "failed");
    db::deliveries::retry(&server.pool, second).await.unwrap();
    server.changes.notify(Some(device));
    let AgentEvent::Arm { ticket_id, .. } = next_event(&mut events).await else {
        panic!("expected the retried delivery")
    };
    assert_eq!(ticket_id, second.0);

    // Failed again and retried before the open stream looked at the failure (no wake-up in
    // between): still sent again.
    db::deliveries::report(
        &server.pool,
        second_delivery,
        device,
        DeliveryOutcome::Failed,
        Some(1),
        "the Kodi script failed",
    )
    .await
    .unwrap();
    assert_eq!(server.delivery(second).await.1, "failed");
    let retried = db::deliveries::retry(&server.pool, second).await.unwrap();
    assert_eq!(
        retried,
        Retried::Queued {
            device_id: Some(device)
        },
        "a failed delivery can be retried"
    );
    server.changes.notify(Some(device));
    let AgentEvent::Arm { ticket_id, .. } = next_event(&mut events).await else {
        panic!("expected the retried delivery")
    };
    assert_eq!(ticket_id, second.0);
    client.report(second_delivery.0, &busy).await.unwrap();
    assert!(matches!(
        client.report(999_999, &report).await,
        Err(ServerError::Refused { status: 404, .. })
    ));

    // A login seen on the TV while the server was away counts from when it happened (never
    // from before the ticket existed: this one was issued ten minutes ago).
    sqlx::query("UPDATE tickets SET created_at = created_at - 600")
        .execute(&server.pool)
        .await
        .unwrap();
    let used_at = kodi_tickets_agent::driver::now() - 120;
    let login = LoginRequest {
        lock_code: first_pin.clone(),
        used_at: Some(
            time::OffsetDateTime::from_unix_timestamp(used_at)
                .unwrap()
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap(),
        ),
    };
    let answer = client.login(&login).await.unwrap();
    assert_eq!(answer.profile, "Kids");
    let expires = time::OffsetDateTime::parse(
        &answer.expires_at,
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap()
    .unix_timestamp();
    assert_eq!(expires, used_at + 30 * 60);
    let AgentEvent::Session {
        ticket_id,
        expires_at,
        ..
    } = next_event(&mut events).await
    else {
        panic!("expected the running session")
    };
    assert_eq!(ticket_id, first.0);
    assert_eq!(expires_at, answer.expires_at);
    assert!(matches!(
        client.login(&login).await,
        Err(ServerError::Refused { status: 404, .. })
    ));
    assert_eq!(
        client.ticket(&first_pin).await.unwrap().state,
        kodi_tickets_protocol::TicketState::InUse
    );

    // The admin ends it early: the agent hears of it at once.
    db::tickets::end_now(&server.pool, first).await.unwrap();
    server.changes.notify(Some(device));
    let AgentEvent::Session {
        ticket_id,
        expires_at: ended,
        ..
    } = next_event(&mut events).await
    else {
        panic!()
    };
    assert_eq!(ticket_id, first.0);
    assert!(ended < answer.expires_at);

    // Kodi showed the profile logged off: the server records when.
    let seen = LoggedOff { at: ended.clone() };
    client.logged_off(first.0, &seen).await.unwrap();
    let logged_off_at: Option<i64> =
        sqlx::query_scalar("SELECT logged_off_at FROM tickets WHERE id = ?")
            .bind(first)
            .fetch_one(&server.pool)
            .await
            .unwrap();
    assert!(logged_off_at.is_some());
    assert!(
        matches!(
            client.logged_off(second.0, &seen).await,
            Err(ServerError::Refused { status: 404, .. })
        ),
        "a ticket never used"
    );

    client
        .status(&AgentStatus {
            agent_version: "test".into(),
            kodi_reachable: true,
            kodi_version: Some("20.1".into()),
            master_lock: Some(false),
            forced_restart: None,
        })
        .await
        .unwrap();
    let (version, lock): (Option<String>, Option<bool>) =
        sqlx::query_as("SELECT kodi_version, master_lock FROM devices")
            .fetch_one(&server.pool)
            .await
            .unwrap();
    assert_eq!((version.as_deref(), lock), (Some("20.1"), Some(false)));
}

/// The response head (without `date` and `server`), the `server` header and the first event
/// of an agent's stream asked with `client`, its lines as SSE reads them (comments dropped,
/// the one space after a field's colon too).
async fn stream_opening(
    client: &reqwest::Client,
    url: &str,
    token: &str,
) -> (Vec<(String, String)>, Option<String>, String) {
    let mut response = client
        .get(format!("{url}/api/agent/events"))
        .bearer_auth(token)
        .header("Accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut head: Vec<(String, String)> = response
        .headers()
        .iter()
        .filter(|(name, _)| !["date", "server"].contains(&name.as_str()))
        .map(|(name, value)| (name.to_string(), value.to_str().unwrap().to_owned()))
        .collect();
    head.sort();
    let server = response
        .headers()
        .get("server")
        .map(|v| v.to_str().unwrap().to_owned());
    let mut body = String::new();
    while !body.contains("}\n\n") {
        let chunk = tokio::time::timeout(Duration::from_secs(10), response.chunk())
            .await
            .expect("an event within 10 s")
            .unwrap()
            .expect("stream open");
        body.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    let event = body
        .lines()
        .filter(|line| !line.starts_with(':') && !line.is_empty())
        .map(|line| match line.split_once(':') {
            Some((field, value)) => format!("{field}:{}", value.strip_prefix(' ').unwrap_or(value)),
            None => line.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("\n");
    (head, server, event)
}

#[tokio::test]
async fn a_stream_is_the_same_whether_the_gate_or_rocket_serves_it() {
    let server = start_server().await;
    let (token, _, profile) = server.device_with_profile().await;
    let (_, lock_code) = server.ticket(profile, 30).await;
    // A stream asked on a new connection is served by the gate itself.
    let (fresh_head, fresh_server, fresh_event) =
        stream_opening(&reqwest::Client::new(), &server.url, &token).await;
    // One asked on a connection that carried another request first goes on to Rocket.
    let reusing = reqwest::Client::builder()
        .pool_max_idle_per_host(1)
        .build()
        .unwrap();
    let health = reusing.get(format!("{}/healthz", server.url)).send().await;
    assert!(!health.unwrap().bytes().await.unwrap().is_empty());
    let (reused_head, reused_server, reused_event) =
        stream_opening(&reusing, &server.url, &token).await;
    // Rocket names itself; the gate does not.
    assert_eq!(fresh_server, None);
    assert_eq!(reused_server.as_deref(), Some("Rocket"));
    assert_eq!(fresh_head, reused_head);
    assert!(fresh_head.contains(&("cache-control".into(), "no-store".into())));
    assert_eq!(fresh_event, reused_event);
    assert!(
        fresh_event.starts_with("event:arm\ndata:{"),
        "{fresh_event}"
    );
    assert!(fresh_event.contains(&lock_code), "{fresh_event}");
}

#[tokio::test]
async fn a_revoked_device_is_cut_off_at_once() {
    let server = start_server().await;
    let (token, device, _) = server.device_with_profile().await;
    let client = ServerClient::new(&server.url, &token).unwrap();
    let mut events = Box::pin(client.events().await.unwrap());
    // As the Devices page revokes: the row, the server's belief in the token, the stream.
    db::devices::revoke(&server.pool, device).await.unwrap();
    server.known.forget(device);
    server.changes.notify(Some(device));
    // NOTE: well within the stream's 5 s re-check: the wake-up itself ends it.
    let end = tokio::time::timeout(Duration::from_secs(3), events.next())
        .await
        .expect("stream ends");
    assert!(end.is_none(), "the open stream closes");
    assert!(matches!(
        client.events().await,
        Err(ServerError::Unauthorized)
    ));
    let wrong = ServerClient::new(&server.url, "kt_wrong-token-0000000000").unwrap();
    assert!(matches!(
        wrong.events().await,
        Err(ServerError::Unauthorized)
    ));
}

#[tokio::test]
async fn an_unreachable_server_is_reported_as_unavailable() {
    let client = ServerClient::new("http://127.0.0.1:9", "kt_whatever-token-000000").unwrap();
    assert!(matches!(
        client.events().await,
        Err(ServerError::Unavailable(_))
    ));
}

#[tokio::test]
async fn a_deleted_ticket_is_withdrawn_from_the_agent_until_it_acknowledges() {
    let server = start_server().await;
    let (token, device, profile) = server.device_with_profile().await;
    let client = ServerClient::new(&server.url, &token).unwrap();
    let (ticket, _) = server.ticket(profile, 30).await;
    let mut events = Box::pin(client.events().await.unwrap());
    let AgentEvent::Arm { delivery_id, .. } = next_event(&mut events).await else {
        panic!("expected an arm event")
    };
    let applied = DeliveryReport {
        outcome: DeliveryOutcome::Applied,
        exit_code: Some(0),
        message: "applied to Kodi".into(),
    };
    client.report(delivery_id, &applied).await.unwrap();

    // Deleted on the page: it ends and stays listed as removed.
    assert_eq!(
        db::tickets::remove(&server.pool, ticket).await.unwrap(),
        db::tickets::Removed::Ended
    );
    server.changes.notify(Some(device));
    assert_eq!(
        next_event(&mut events).await,
        AgentEvent::Withdrawn {
            ticket_id: ticket.0,
            profile: "Kids".into()
        }
    );
    // Not acknowledged: sent again after a reconnect.
    drop(events);
    let mut events = Box::pin(client.events().await.unwrap());
    assert!(matches!(
        next_event(&mut events).await,
        AgentEvent::Withdrawn { ticket_id, .. } if ticket_id == ticket.0
    ));
    client.acknowledge_withdrawal(ticket.0).await.unwrap();
    assert!(matches!(
        client.acknowledge_withdrawal(ticket.0).await,
        Err(ServerError::Refused { status: 404, .. })
    ));
    // Acknowledged: the next connect starts with the next ticket, not the deleted one.
    drop(events);
    let (next, _) = server.ticket(profile, 15).await;
    let mut events = Box::pin(client.events().await.unwrap());
    assert!(matches!(
        next_event(&mut events).await,
        AgentEvent::Arm { ticket_id, .. } if ticket_id == next.0
    ));
}

/// `kodi-tickets-agent check` against the real server, with `token`, no Kodi on the box,
/// and a script and state folder in `dir`: (exit code, its lines).
async fn check(server: &Server, token: &str, dir: &std::path::Path) -> (Option<i32>, String) {
    let out = tokio::process::Command::from(common::agent_command())
        .arg("check")
        .env_clear()
        .env("KODI_TICKETS_AGENT_SERVER_URL", &server.url)
        .env("KODI_TICKETS_AGENT_DEVICE_TOKEN", token)
        .env("KODI_TICKETS_AGENT_KODI_JSONRPC", "127.0.0.1:9")
        .env("KODI_TICKETS_AGENT_KODI_USERDATA", dir)
        .env("KODI_TICKETS_AGENT_SCRIPT", dir.join("kodi-script.sh"))
        .env("KODI_TICKETS_AGENT_STATE_FILE", dir.join("state.json"))
        .output()
        .await
        .unwrap();
    (out.status.code(), String::from_utf8(out.stdout).unwrap())
}

#[tokio::test]
async fn check_says_what_works_on_the_box_and_what_does_not() {
    let server = start_server().await;
    let (token, _, _) = server.device_with_profile().await;
    let dir = tempfile::tempdir().unwrap();
    let (code, said) = check(&server, &token, dir.path()).await;
    assert_eq!(code, Some(1), "something fails: {said}");
    let line = |start: &str| {
        said.lines()
            .find(|l| l.contains(start))
            .unwrap_or_else(|| panic!("no line about {start:?}: {said}"))
            .to_owned()
    };
    assert!(line("does not answer on its JSON-RPC").starts_with("FAIL"));
    assert!(line("accepts this box's token").starts_with("ok"));
    assert!(line("the Kodi script").contains("is missing"));
    assert!(line("state folder").starts_with("ok"));
    let (_, said) = check(&server, "kt_not-this-box-000000000000", dir.path()).await;
    assert!(
        said.contains("FAIL the server at") && said.contains("refuses this box's token"),
        "{said}"
    );
}

#[tokio::test]
async fn a_box_pairs_with_the_code_from_the_devices_page_and_its_config_works() {
    use std::os::unix::fs::PermissionsExt;
    let server = start_server().await;
    let code = server.pairing_code("Bedroom").await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("kodi-tickets").join("agent.toml");
    let out = pair_command(&config, &[&server.url, &code]).await;
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("paired as “Bedroom”"));
    let written: toml::Table = std::fs::read_to_string(&config).unwrap().parse().unwrap();
    assert_eq!(written["server_url"].as_str(), Some(server.url.as_str()));
    let token = written["device_token"].as_str().unwrap().to_owned();
    let mode = std::fs::metadata(&config).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the token is for the agent's eyes only");
    let client = ServerClient::new(&server.url, &token).unwrap();
    assert!(client.events().await.is_ok(), "the token works");

    let out = pair_command(&config, &[&server.url, &code]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("is wrong, used or expired"),
        "{out:?}"
    );
}

/// A certificate authority of its own, as a PEM file in `dir`, and a certificate it signed for
/// 127.0.0.1 (chain and key files), as a home server with HTTPS of its own would have.
fn own_certificate_authority(dir: &Path, name: &str) -> (PathBuf, PathBuf, PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, name);
    let ca = ca.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&key, &ca, &ca_key)
        .unwrap();
    let files = (
        dir.join(format!("{name}-ca.pem")),
        dir.join(format!("{name}-server.pem")),
        dir.join(format!("{name}-server.key")),
    );
    std::fs::write(&files.0, ca.pem()).unwrap();
    std::fs::write(&files.1, leaf.pem()).unwrap();
    std::fs::write(&files.2, key.serialize_pem()).unwrap();
    files
}

async fn pair_command(config: &Path, args: &[&str]) -> std::process::Output {
    tokio::process::Command::from(common::agent_command())
        .arg("--config")
        .arg(config)
        .arg("pair")
        .args(args)
        .env_clear()
        .output()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_server_with_a_certificate_of_its_own_is_trusted_only_with_its_authority() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, certs, key) = own_certificate_authority(dir.path(), "home");
    let (other_ca, _, _) = own_certificate_authority(dir.path(), "other");
    let server = start_server_with(Some((&certs, &key))).await;
    let code = server.pairing_code("Bedroom").await;
    let config = dir.path().join("agent.toml");
    std::fs::write(&config, "kodi_jsonrpc = \"127.0.0.1:9090\"\n").unwrap();
    let before = std::fs::read(&config).unwrap();

    // Not trusted: no authority given, or another one. Said plainly; the config untouched and
    // the code not used up.
    for extra in [vec![], vec!["--ca-file", other_ca.to_str().unwrap()]] {
        let mut args = vec![server.url.as_str(), &code];
        args.extend(extra);
        let out = pair_command(&config, &args).await;
        assert_eq!(out.status.code(), Some(1), "{out:?}");
        let said = String::from_utf8_lossy(&out.stderr);
        assert!(
            said.contains("the server's certificate is not trusted"),
            "{said}"
        );
        assert_eq!(said.trim().lines().count(), 1, "one plain line: {said}");
        assert_eq!(std::fs::read(&config).unwrap(), before);
    }
    // A file that holds no certificate.
    let out = pair_command(
        &config,
        &[&server.url, &code, "--ca-file", key.to_str().unwrap()],
    )
    .await;
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("holds no PEM certificate"));

    let out = pair_command(
        &config,
        &[&server.url, &code, "--ca-file", ca.to_str().unwrap()],
    )
    .await;
    assert!(out.status.success(), "{out:?}");
    let written: toml::Table = std::fs::read_to_string(&config).unwrap().parse().unwrap();
    assert_eq!(written["server_ca_file"].as_str(), ca.to_str());
    assert_eq!(
        written["kodi_jsonrpc"].as_str(),
        Some("127.0.0.1:9090"),
        "the rest kept"
    );
    let token = written["device_token"].as_str().unwrap();
    let roots = kodi_tickets_agent::server::certificates_in(&ca).unwrap();
    let client = ServerClient::trusting(&server.url, token, roots).unwrap();
    assert!(
        client.events().await.is_ok(),
        "the agent trusts it with the config"
    );
}

#[tokio::test]
async fn a_config_with_a_typo_or_a_silent_server_stop_pairing_before_the_code_is_used() {
    let server = start_server().await;
    let code = server.pairing_code("Bedroom").await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("agent.toml");
    std::fs::write(&config, "kodi_userdata = /storage/.kodi/userdata\n").unwrap();
    let before = std::fs::read(&config).unwrap();
    let out = pair_command(&config, &[&server.url, &code]).await;
    assert_eq!(out.status.code(), Some(1));
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("agent.toml is not valid TOML"), "{said}");
    assert_eq!(
        std::fs::read(&config).unwrap(),
        before,
        "the config untouched"
    );

    assert_eq!(said.trim().lines().count(), 1, "one plain line: {said}");

    std::fs::write(&config, "kodi_userdata = \"/storage/.kodi/userdata\"\n").unwrap();
    let before = std::fs::read(&config).unwrap();
    let out = pair_command(&config, &["http://127.0.0.1:9", &code]).await;
    assert_eq!(out.status.code(), Some(1));
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("cannot connect to the server"), "{said}");
    assert_eq!(said.trim().lines().count(), 1, "one plain line: {said}");
    assert_eq!(
        std::fs::read(&config).unwrap(),
        before,
        "the config untouched"
    );

    // The same code still pairs: neither failure used it up.
    let out = pair_command(&config, &[&server.url, &code]).await;
    assert!(out.status.success(), "{out:?}");
}
