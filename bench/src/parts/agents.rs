//! Tickets reaching agents' open event streams: one agent, then a whole fleet at once.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::bail;
use futures::StreamExt;
use kodi_tickets_agent::server::ServerClient;
use kodi_tickets_protocol::{AgentEvent, DeliveryOutcome, DeliveryReport};
use tokio::sync::mpsc;

use super::Bench;
use crate::admin::Browser;
use crate::load;
use crate::report::{self, Figure, Target};
use crate::{ms, number_plain, phase, quantiles_ms, rounded, seed, ADMIN_PASSWORD, ADMIN_USER};

/// Ticket created → the agent's `arm`, on one open stream (the agent's real client).
pub(crate) async fn ticket_to_agent(b: &Bench) -> anyhow::Result<Vec<Figure>> {
    let Bench {
        scale,
        base,
        browser,
        latency_token,
        p_latency,
        ..
    } = b;
    let p_latency = *p_latency;
    let rounds = b.scale.rounds;
    let mut f_push50 = Figure::new(
        "ticket_to_agent_p50_ms",
        "ticket created → `arm` on the agent's open stream: p50",
        "ms",
        Target::Below(200.0),
    );
    let mut f_push99 = Figure::new(
        "ticket_to_agent_p99_ms",
        "ticket created → `arm` on the agent's open stream: p99",
        "ms",
        Target::Below(1000.0),
    );
    let latency_client = ServerClient::new(base, latency_token)?;
    let stream = latency_client.events().await?;
    let (tx, mut arrivals) = mpsc::unbounded_channel();
    let reader = tokio::spawn(async move {
        let mut stream = Box::pin(stream);
        while let Some(item) = stream.next().await {
            if tx.send((Instant::now(), item)).is_err() {
                break;
            }
        }
    });
    let applied = DeliveryReport {
        outcome: DeliveryOutcome::Applied,
        exit_code: Some(0),
        message: "applied to Kodi".into(),
    };
    let mut push_max = Vec::new();
    for round in 0..rounds {
        phase(&format!("ticket → agent, round {}/{rounds}", round + 1));
        let mut latencies = Vec::new();
        for _ in 0..scale.latency_tickets {
            browser.create_ticket(p_latency, 30).await?;
            let returned = Instant::now();
            let delivery = loop {
                match tokio::time::timeout(Duration::from_secs(10), arrivals.recv()).await {
                    Ok(Some((at, Ok(AgentEvent::Arm { delivery_id, .. })))) => {
                        latencies.push(ms(at.saturating_duration_since(returned)));
                        break delivery_id;
                    }
                    Ok(Some((_, Ok(_)))) => continue,
                    Ok(Some((_, Err(e)))) => bail!("the agent's stream broke: {e}"),
                    Ok(None) => bail!("the agent's stream ended"),
                    Err(_) => bail!("no arm event within 10 s of a ticket"),
                }
            };
            latency_client.report(delivery, &applied).await?;
        }
        let (p50, p99, max) = quantiles_ms(latencies);
        f_push50.rounds.push(p50);
        f_push99.rounds.push(p99);
        push_max.push(max);
    }
    reader.abort();
    f_push99.detail("max_ms", rounded(&push_max));
    f_push50.detail("tickets_per_round", scale.latency_tickets);
    Ok(vec![f_push50, f_push99])
}

/// The figures of one size of fleet.
pub(crate) struct FleetKeys {
    max_ms: &'static str,
    issue_all_s: &'static str,
    errors: &'static str,
}

pub(crate) const FLEET: FleetKeys = FleetKeys {
    max_ms: "agents_1000_max_ms",
    issue_all_s: "agents_1000_issue_all_s",
    errors: "agents_1000_errors",
};

pub(crate) const BIG_FLEET: FleetKeys = FleetKeys {
    max_ms: "big_fleet_max_ms",
    issue_all_s: "big_fleet_issue_all_s",
    errors: "big_fleet_errors",
};

/// `agents` agents connected at once, a ticket issued for each.
pub(crate) async fn fleet(
    b: &Bench,
    agents: usize,
    keys: &FleetKeys,
) -> anyhow::Result<Vec<Figure>> {
    let Bench {
        scale, base, db, ..
    } = b;
    let sims = &b.sims[..agents];
    let sim_profiles = &b.sim_profiles[..agents];
    let rounds = b.scale.rounds;
    let mut f_fleet = Figure::new(
        keys.max_ms,
        format!(
            "{} agents connected at once, a ticket each: slowest ticket → `arm`",
            number_plain(agents as u64)
        ),
        "ms",
        Target::Below(2000.0),
    );
    let mut f_fleet_wall = Figure::new(
        keys.issue_all_s,
        format!(
            "same: issuing the {} tickets over HTTP ({} at a time), first POST → last `arm`",
            number_plain(agents as u64),
            scale.posters
        ),
        "s",
        Target::Info,
    );
    let mut f_fleet_errors = Figure::new(
        keys.errors,
        "same: errors (failed connections, broken streams, missing `arm`s)",
        "",
        Target::Exactly(0.0),
    );
    phase(&format!("connecting {agents} agents"));
    let mut poster = Browser::open(base, load::pooled_client(scale.posters)).await?;
    poster.login(ADMIN_USER, ADMIN_PASSWORD).await?;
    let connected = Arc::new(AtomicUsize::new(0));
    let (tx, mut fleet) = mpsc::unbounded_channel::<(usize, Instant, Result<i64, String>)>();
    let connecting = Instant::now();
    let mut streams = Vec::with_capacity(agents);
    for (i, (_, token)) in sims.iter().enumerate() {
        let client = ServerClient::new(base, token)?;
        let (tx, connected) = (tx.clone(), connected.clone());
        streams.push(tokio::spawn(async move {
            let stream = match client.events().await {
                Ok(stream) => stream,
                Err(e) => {
                    let _ = tx.send((i, Instant::now(), Err(format!("connect: {e}"))));
                    return;
                }
            };
            connected.fetch_add(1, Ordering::Relaxed);
            let mut stream = Box::pin(stream);
            while let Some(item) = stream.next().await {
                let at = Instant::now();
                let event = match item {
                    Ok(AgentEvent::Arm { ticket_id, .. }) => Ok(ticket_id),
                    Ok(_) => continue,
                    Err(e) => Err(format!("stream: {e}")),
                };
                if tx.send((i, at, event)).is_err() {
                    return;
                }
            }
            let _ = tx.send((i, Instant::now(), Err("stream ended".into())));
        }));
    }
    drop(tx);
    let mut fleet_errors: Vec<String> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while connected.load(Ordering::Relaxed) + fleet_errors.len() < agents
        && Instant::now() < deadline
    {
        if let Ok(Some((_, _, Err(e)))) =
            tokio::time::timeout(Duration::from_millis(20), fleet.recv()).await
        {
            fleet_errors.push(e);
        }
    }
    let connect_ms = ms(connecting.elapsed());
    let open = connected.load(Ordering::Relaxed);
    if open < agents {
        fleet_errors.push(format!("{} of {} agents connected", open, agents));
    }
    let (mut fleet_p50, mut fleet_wall, mut fleet_issue, mut fleet_issued) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        phase(&format!(
            "{} agents, a ticket each, round {}/{rounds}",
            agents,
            round + 1
        ));
        let before = seed::max_ticket_id(db).await?;
        let first_post = Instant::now();
        let posted: Vec<(usize, anyhow::Result<Instant>)> =
            futures::stream::iter(sim_profiles.iter().copied().enumerate())
                .map(|(i, profile)| {
                    let browser = poster.clone();
                    let budget = first_post + scale.issue_budget;
                    async move {
                        if Instant::now() > budget {
                            return (i, Err(anyhow::anyhow!("not issued within the budget")));
                        }
                        let result = browser.create_ticket(profile, 30).await;
                        (i, result.map(|_| Instant::now()))
                    }
                })
                .buffer_unordered(scale.posters)
                .collect()
                .await;
        fleet_issue.push(ms(first_post.elapsed()));
        let mut returned = vec![None; agents];
        for (i, result) in posted {
            match result {
                Ok(at) => returned[i] = Some(at),
                Err(e) => fleet_errors.push(format!("creating a ticket: {e}")),
            }
        }
        let expected = returned.iter().filter(|r| r.is_some()).count();
        fleet_issued.push(expected as f64);
        let mut arrived: Vec<Option<Instant>> = vec![None; agents];
        let mut count = 0;
        let deadline = Instant::now() + scale.arm_timeout;
        while count < expected {
            match tokio::time::timeout_at(deadline.into(), fleet.recv()).await {
                Ok(Some((i, at, Ok(ticket)))) if ticket > before => {
                    if arrived[i].is_none() {
                        arrived[i] = Some(at);
                        count += 1;
                    }
                }
                Ok(Some((_, _, Ok(_)))) => {}
                Ok(Some((i, _, Err(e)))) => fleet_errors.push(format!("agent {i}: {e}")),
                Ok(None) | Err(_) => break,
            }
        }
        let mut latencies = Vec::new();
        let mut last = first_post;
        for (ret, arr) in returned.iter().zip(&arrived) {
            match (ret, arr) {
                (Some(ret), Some(arr)) => {
                    latencies.push(ms(arr.saturating_duration_since(*ret)));
                    last = last.max(*arr);
                }
                (Some(_), None) => fleet_errors.push("an arm never arrived".into()),
                _ => {}
            }
        }
        let (p50, _, max) = quantiles_ms(latencies);
        f_fleet.rounds.push(max);
        fleet_p50.push(p50);
        fleet_wall.push(ms(last.duration_since(first_post)));
        seed::settle_deliveries(db, before).await?;
        seed::end_after(db, before).await?;
    }
    for stream in &streams {
        stream.abort();
    }
    f_fleet.detail("connect_all_ms", report::finite(connect_ms));
    f_fleet.detail("p50_ms", rounded(&fleet_p50));
    f_fleet.detail("issue_all_ms", rounded(&fleet_issue));
    f_fleet.detail("tickets_issued", rounded(&fleet_issued));
    f_fleet_wall.rounds = fleet_wall.iter().map(|ms| ms / 1000.0).collect();
    f_fleet.detail("concurrent_posts", scale.posters);
    f_fleet_errors.rounds.push(fleet_errors.len() as f64);
    fleet_errors.truncate(10);
    f_fleet_errors.detail("first_errors", fleet_errors);
    Ok(vec![f_fleet, f_fleet_wall, f_fleet_errors])
}
