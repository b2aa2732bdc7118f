//! `GET /api/ticket/<pin>` against the server's own floor, alone and beside admin logins.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::header::AUTHORIZATION;

use super::Bench;
use crate::admin::Browser;
use crate::load::{self, closed_loop, median, Stats};
use crate::report::{self, Figure, Target};
use crate::{ms, phase, rounded, ADMIN_PASSWORD, ADMIN_USER, API_READERS};

/// `GET /healthz` on `connections` connections.
async fn healthz_load(base: &str, connections: usize, duration: Duration) -> Stats {
    let url = format!("{base}/healthz");
    closed_loop(base, connections, duration, None, move |client, _| {
        load::ok(client.get(url.clone()))
    })
    .await
}

/// `GET /api/ticket/<pin>` from the reading boxes in turn, each cycling through its own live
/// PINs, on the scale's connections for the scale's time.
async fn ticket_load(b: &Bench) -> Stats {
    let (base_url, readers) = (b.base.clone(), b.api_readers.clone());
    closed_loop(
        &b.base,
        b.scale.connections,
        b.scale.api(),
        None,
        move |client, i| {
            let i = i as usize;
            let (auth, pins) = &readers[i % readers.len()];
            let pin = &pins[i / readers.len() % pins.len()];
            load::ok(
                client
                    .get(format!("{base_url}/api/ticket/{pin}"))
                    .header(AUTHORIZATION, auth.clone()),
            )
        },
    )
    .await
}

/// API reads vs `/healthz`, same server, same run: their throughput ratio and the p99.
pub(crate) async fn reads(b: &Bench) -> anyhow::Result<Vec<Figure>> {
    let Bench { scale, base, .. } = b;
    let rounds = b.scale.rounds;
    let mut f_ratio = Figure::new(
        "api_ticket_vs_healthz_throughput",
        format!(
            "`GET /api/ticket/<pin>` from {API_READERS} boxes, {} connections: throughput as a ratio of `GET /healthz`",
            scale.connections
        ),
        "×",
        Target::AtLeast(0.8),
    );
    let mut f_p99 = Figure::new(
        "api_ticket_p99_ms",
        "same: p99 latency",
        "ms",
        Target::Below(5.0),
    );
    let (mut healthz_rates, mut ticket_rates, mut ticket_p50, mut healthz_p99, mut errors) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), 0);
    for round in 0..rounds {
        phase(&format!(
            "API reads vs /healthz, round {}/{rounds}",
            round + 1
        ));
        let (health, ticket) = if round % 2 == 0 {
            let h = healthz_load(base, scale.connections, scale.api()).await;
            let t = ticket_load(b).await;
            (h, t)
        } else {
            let t = ticket_load(b).await;
            let h = healthz_load(base, scale.connections, scale.api()).await;
            (h, t)
        };
        errors += health.errors + ticket.errors;
        healthz_rates.push(health.rate());
        ticket_rates.push(ticket.rate());
        ticket_p50.push(ticket.percentile_ms(0.5));
        healthz_p99.push(health.percentile_ms(0.99));
        f_ratio.rounds.push(ticket.rate() / health.rate());
        f_p99.rounds.push(ticket.percentile_ms(0.99));
    }
    f_ratio.detail("healthz_per_s", rounded(&healthz_rates));
    f_ratio.detail("ticket_per_s", rounded(&ticket_rates));
    f_ratio.detail("errors", errors);
    f_p99.detail("p50_ms", rounded(&ticket_p50));
    f_p99.detail("healthz_p99_ms", rounded(&healthz_p99));
    Ok(vec![f_ratio, f_p99])
}

/// The API read load idle, then beside admin logins (argon2id): the ratio of the p99s.
pub(crate) async fn beside_admin_logins(b: &Bench) -> anyhow::Result<Vec<Figure>> {
    let Bench { scale, base, .. } = b;
    let rounds = b.scale.rounds;
    let mut f_stall = Figure::new(
        "admin_login_api_p99_ratio",
        format!(
            "API p99 while {} admin logins/s (argon2id) run, vs idle",
            scale.logins_per_sec
        ),
        "×",
        Target::Below(2.0),
    );
    let login_browser = Browser::open(base, load::client()).await?;
    let (mut idle_p99, mut busy_p99, mut logins_ok, mut logins_failed, mut login_ms) =
        (Vec::new(), Vec::new(), 0u64, 0u64, Vec::new());
    for round in 0..rounds {
        phase(&format!(
            "API p99 with admin logins, round {}/{rounds}",
            round + 1
        ));
        let idle = ticket_load(b).await;
        let stop = Arc::new(AtomicBool::new(false));
        let logins = {
            let (stop, browser) = (stop.clone(), login_browser.clone());
            let every = Duration::from_secs_f64(1.0 / scale.logins_per_sec);
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(every);
                let mut runs = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    tick.tick().await;
                    let browser = browser.clone();
                    runs.push(tokio::spawn(async move {
                        let sent = Instant::now();
                        let ok = browser.post_login(ADMIN_USER, ADMIN_PASSWORD).await.is_ok();
                        (ok, ms(sent.elapsed()))
                    }));
                }
                futures::future::join_all(runs).await
            })
        };
        let busy = ticket_load(b).await;
        stop.store(true, Ordering::Relaxed);
        for (ok, took) in logins.await?.into_iter().flatten() {
            if ok {
                logins_ok += 1;
                login_ms.push(took);
            } else {
                logins_failed += 1;
            }
        }
        idle_p99.push(idle.percentile_ms(0.99));
        busy_p99.push(busy.percentile_ms(0.99));
        f_stall
            .rounds
            .push(busy.percentile_ms(0.99) / idle.percentile_ms(0.99));
    }
    f_stall.detail("idle_p99_ms", rounded(&idle_p99));
    f_stall.detail("with_logins_p99_ms", rounded(&busy_p99));
    f_stall.detail("logins_ok", logins_ok);
    f_stall.detail("logins_failed", logins_failed);
    f_stall.detail("login_p50_ms", report::finite(median(&login_ms)));
    Ok(vec![f_stall])
}
