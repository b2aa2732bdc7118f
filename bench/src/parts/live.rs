//! Open admin pages following the TV: a PIN used on a box → its row red in every open page
//! (the page's stream announces the change, the page re-reads itself naming the change, as
//! the page script does), with many pages open.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures::StreamExt;
use reqwest::header::AUTHORIZATION;
use serde_json::json;
use tokio::sync::{mpsc, watch};

use super::Bench;
use crate::admin::Browser;
use crate::report::{Figure, Target};
use crate::{load, ms, phase, quantiles_ms, rounded, seed, ADMIN_PASSWORD, ADMIN_USER};

/// The use being waited for: its number and when the box sent it.
type Awaited = Option<(usize, Instant)>;

/// One open page: holds its stream; at each `change` re-reads the profile page and reports
/// (use number, latency) the first time it shows the awaited use's row red.
async fn open_page(
    browser: Browser,
    profile: i64,
    awaited: watch::Receiver<Awaited>,
    reports: mpsc::UnboundedSender<(usize, f64)>,
) -> anyhow::Result<()> {
    let mut stream = browser.page_stream().await?.bytes_stream();
    let mut reported = None;
    let mut pending = String::new();
    while let Some(chunk) = stream.next().await {
        pending.push_str(&String::from_utf8_lossy(&chunk?));
        // NOTE: events end with a blank line; only whole ones count.
        while let Some(end) = pending.find("\n\n") {
            let event: String = pending.drain(..end + 2).collect();
            if !event.contains("event:change") {
                continue;
            }
            let change = event
                .lines()
                .find_map(|line| line.strip_prefix("data:"))
                .unwrap_or_default()
                .trim();
            let html = browser.profile_html_after(profile, change).await?;
            let current = *awaited.borrow();
            if let Some((use_no, sent)) = current {
                if reported != Some(use_no) && html.contains(r#"data-state="in_use""#) {
                    reported = Some(use_no);
                    if reports.send((use_no, ms(sent.elapsed()))).is_err() {
                        return Ok(());
                    }
                }
            }
        }
    }
    Ok(())
}

/// PIN used (`POST /api/login` from the box) → the ticket's row red in each open page.
pub(crate) async fn pin_used_to_page(b: &Bench) -> anyhow::Result<Vec<Figure>> {
    let Bench {
        scale,
        base,
        db,
        browser,
        api_token,
        p_live,
        ..
    } = b;
    let p_live = *p_live;
    let rounds = scale.rounds;
    let mut f_p50 = Figure::new(
        "pin_used_to_page_p50_ms",
        format!(
            "PIN used on a box → its row red in each of {} open pages (event stream + re-read): p50",
            scale.live_pages
        ),
        "ms",
        Target::Below(500.0),
    );
    let mut f_p99 = Figure::new(
        "pin_used_to_page_p99_ms",
        format!(
            "PIN used on a box → its row red in each of {} open pages: p99",
            scale.live_pages
        ),
        "ms",
        Target::Below(1000.0),
    );
    let (awaiting, awaited) = watch::channel(None);
    let (reports_tx, mut reports) = mpsc::unbounded_channel();
    // NOTE: a client without the loads' 30 s limit per request: a page's stream stays open.
    let streaming = reqwest::Client::builder()
        .no_proxy()
        .tcp_nodelay(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let mut viewer = Browser::open(base, streaming).await?;
    viewer.login(ADMIN_USER, ADMIN_PASSWORD).await?;
    let mut pages = Vec::new();
    for _ in 0..scale.live_pages {
        let page = open_page(viewer.clone(), p_live, awaited.clone(), reports_tx.clone());
        pages.push(tokio::spawn(async move {
            if let Err(e) = page.await {
                eprintln!("an open page failed: {e:#}");
            }
        }));
    }
    drop(reports_tx);
    let http = load::client();
    let mut maxima = Vec::new();
    let mut use_no = 0;
    for round in 0..rounds {
        phase(&format!(
            "PIN used → row red in {} open pages, round {}/{rounds}",
            scale.live_pages,
            round + 1
        ));
        let mut latencies = Vec::new();
        for _ in 0..scale.live_samples {
            use_no += 1;
            seed::end_live(db, Some(p_live), "expired").await?;
            browser.create_ticket(p_live, 30).await?;
            let pin: String = sqlx::query_scalar(
                "SELECT lock_code FROM tickets WHERE profile_id = ? ORDER BY id DESC LIMIT 1",
            )
            .bind(p_live)
            .fetch_one(db)
            .await?;
            // The pages' re-reads of the new ticket are not part of the figure.
            tokio::time::sleep(scale.settle).await;
            awaiting.send_replace(Some((use_no, Instant::now())));
            let response = http
                .post(format!("{base}/api/login"))
                .header(AUTHORIZATION, format!("Bearer {api_token}"))
                .json(&json!({ "lock_code": pin }))
                .send()
                .await?;
            if !response.status().is_success() {
                bail!(
                    "the box's login with PIN {pin} answered {}",
                    response.status()
                );
            }
            let mut seen = 0;
            while seen < scale.live_pages {
                let (no, latency) = tokio::time::timeout(Duration::from_secs(10), reports.recv())
                    .await
                    .context("an open page did not show the row red within 10 s")?
                    .context("every open page's stream ended")?;
                if no == use_no {
                    latencies.push(latency);
                    seen += 1;
                }
            }
        }
        let (p50, p99, max) = quantiles_ms(latencies);
        f_p50.rounds.push(p50);
        f_p99.rounds.push(p99);
        maxima.push(max);
    }
    for page in pages {
        page.abort();
    }
    f_p99.detail("max_ms", rounded(&maxima));
    f_p50.detail("pages", scale.live_pages);
    f_p50.detail("uses_per_round", scale.live_samples);
    Ok(vec![f_p50, f_p99])
}
