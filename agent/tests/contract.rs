//! The agent's real server client against the real server, listening on a free port.

use std::time::Duration;

use futures::StreamExt;
use kodi_tickets_agent::server::{ServerClient, ServerError};
use kodi_tickets_protocol::{
    AgentEvent, AgentStatus, DeliveryOutcome, DeliveryReport, LoginRequest,
};
use kodi_tickets_server::db::{self, tickets::Created, Pool};
use kodi_tickets_server::delivery::Waker;
use rocket::fairing::AdHoc;
use rocket_db_pools::Database;
use tokio::sync::oneshot;

struct Server {
    url: String,
    pool: Pool,
    waker: Waker,
    _dir: tempfile::TempDir,
}

async fn start_server() -> Server {
    let dir = tempfile::tempdir().unwrap();
    let figment = rocket::Config::figment()
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
    let (tx, rx) = oneshot::channel();
    let tx = std::sync::Mutex::new(Some(tx));
    let rocket = kodi_tickets_server::rocket_from(figment)
        .unwrap()
        .attach(AdHoc::on_liftoff("test handle", move |rocket| {
            Box::pin(async move {
                let pool = Pool::clone(db::Db::fetch(rocket).unwrap());
                let waker = rocket.state::<Waker>().unwrap().clone();
                let port = rocket.config().port;
                if let Some(tx) = tx.lock().unwrap().take() {
                    let _ = tx.send((port, pool, waker));
                }
            })
        }));
    tokio::spawn(rocket.launch());
    let (port, pool, waker) = rx.await.unwrap();
    Server {
        url: format!("http://127.0.0.1:{port}"),
        pool,
        waker,
        _dir: dir,
    }
}

impl Server {
    /// A device whose profile "Kids" gets its PINs through the agent; returns its token.
    async fn device_with_profile(&self) -> (String, i64, i64) {
        let (_, token) = kodi_tickets_server::routes::devices::add(&self.pool, "Living room")
            .await
            .unwrap();
        let device: i64 = sqlx::query_scalar("SELECT id FROM devices")
            .fetch_one(&self.pool)
            .await
            .unwrap();
        let profile = db::profiles::insert(&self.pool, "Kids", Some(device))
            .await
            .unwrap()
            .unwrap();
        (token, device, profile)
    }

    async fn ticket(&self, profile: i64, minutes: i64) -> (i64, String) {
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
        self.waker.wake(device_id);
        (id, lock_code)
    }

    async fn delivery(&self, ticket: i64) -> (String, String, Option<String>) {
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
        (first, "Kids", first_pin.as_str())
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
    assert_eq!((ticket_id, lock_code), (second, second_pin));

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
        ticket_id, second,
        "only the unacknowledged delivery is resent"
    );

    let busy = DeliveryReport {
        outcome: DeliveryOutcome::Busy,
        exit_code: Some(75),
        message: "Kodi is in use".into(),
    };
    let second_delivery: i64 = sqlx::query_scalar("SELECT id FROM deliveries WHERE ticket_id = ?")
        .bind(second)
        .fetch_one(&server.pool)
        .await
        .unwrap();
    client.report(second_delivery, &busy).await.unwrap();
    assert_eq!(server.delivery(second).await.1, "pending");

    // Failed on the box (reported as the agent does), then retried from the page: sent again
    // on the open stream.
    let failed = DeliveryReport {
        outcome: DeliveryOutcome::Failed,
        exit_code: Some(1),
        message: "the Kodi script failed".into(),
    };
    client.report(second_delivery, &failed).await.unwrap();
    assert_eq!(server.delivery(second).await.1, "failed");
    db::deliveries::retry(&server.pool, second).await.unwrap();
    server.waker.wake(Some(device));
    let AgentEvent::Arm { ticket_id, .. } = next_event(&mut events).await else {
        panic!("expected the retried delivery")
    };
    assert_eq!(ticket_id, second);

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
        Some(Some(device)),
        "a failed delivery can be retried"
    );
    server.waker.wake(Some(device));
    let AgentEvent::Arm { ticket_id, .. } = next_event(&mut events).await else {
        panic!("expected the retried delivery")
    };
    assert_eq!(ticket_id, second);
    client.report(second_delivery, &busy).await.unwrap();
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
    assert_eq!(ticket_id, first);
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
    server.waker.wake(Some(device));
    let AgentEvent::Session {
        ticket_id,
        expires_at: ended,
        ..
    } = next_event(&mut events).await
    else {
        panic!()
    };
    assert_eq!(ticket_id, first);
    assert!(ended < answer.expires_at);

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

#[tokio::test]
async fn a_revoked_device_is_cut_off_at_once() {
    let server = start_server().await;
    let (token, device, _) = server.device_with_profile().await;
    let client = ServerClient::new(&server.url, &token).unwrap();
    let mut events = Box::pin(client.events().await.unwrap());
    db::devices::revoke(&server.pool, device).await.unwrap();
    server.waker.wake(Some(device));
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

    assert!(db::tickets::delete(&server.pool, ticket).await.unwrap());
    server.waker.wake(Some(device));
    assert_eq!(
        next_event(&mut events).await,
        AgentEvent::Withdrawn {
            ticket_id: ticket,
            profile: "Kids".into()
        }
    );
    // Not acknowledged: sent again after a reconnect.
    drop(events);
    let mut events = Box::pin(client.events().await.unwrap());
    assert!(matches!(
        next_event(&mut events).await,
        AgentEvent::Withdrawn { ticket_id, .. } if ticket_id == ticket
    ));
    client.acknowledge_withdrawal(ticket).await.unwrap();
    assert!(matches!(
        client.acknowledge_withdrawal(ticket).await,
        Err(ServerError::Refused { status: 404, .. })
    ));
    // Acknowledged: the next connect starts with the next ticket, not the deleted one.
    drop(events);
    let (next, _) = server.ticket(profile, 15).await;
    let mut events = Box::pin(client.events().await.unwrap());
    assert!(matches!(
        next_event(&mut events).await,
        AgentEvent::Arm { ticket_id, .. } if ticket_id == next
    ));
}
