//! The admin's pages: a profile page with a long history, and creating tickets.

use std::time::Instant;

use anyhow::bail;
use reqwest::header::COOKIE;
use sqlx::SqlitePool;

use super::Bench;
use crate::admin::Browser;
use crate::load::{self, closed_loop, median};
use crate::report::{Figure, Target};
use crate::{ms, number_plain, phase, quantiles_ms, rounded, seed};

/// Times `samples` ticket creations on a profile, each ended again right after.
async fn time_creations(
    browser: &Browser,
    db: &SqlitePool,
    profile: i64,
    samples: usize,
) -> anyhow::Result<Vec<f64>> {
    let mut times = Vec::with_capacity(samples);
    for _ in 0..samples {
        let sent = Instant::now();
        browser.create_ticket(profile, 30).await?;
        times.push(ms(sent.elapsed()));
        seed::end_live(db, Some(profile), "revoked").await?;
    }
    Ok(times)
}

/// The profile page with its history, rendered for a logged-in admin.
pub(crate) async fn profile_page(b: &Bench) -> anyhow::Result<Vec<Figure>> {
    let Bench {
        scale,
        browser,
        p_page,
        ..
    } = b;
    let p_page = *p_page;
    let rounds = b.scale.rounds;
    let mut f_page = Figure::new(
        "profile_page_p50_ms",
        format!(
            "profile page with {} tickets (live ones and the newest 50 ended): p50 render",
            number_plain(scale.page_tickets as u64)
        ),
        "ms",
        Target::Below(50.0),
    );
    let page_bytes = browser.profile_page(p_page).await?;
    let mut page_p99 = Vec::new();
    for round in 0..rounds {
        phase(&format!("profile page, round {}/{rounds}", round + 1));
        let mut times = Vec::new();
        for _ in 0..scale.page_requests {
            let sent = Instant::now();
            browser.profile_page(p_page).await?;
            times.push(ms(sent.elapsed()));
        }
        let (p50, p99, _) = quantiles_ms(times);
        f_page.rounds.push(p50);
        page_p99.push(p99);
    }
    f_page.detail("p99_ms", rounded(&page_p99));
    f_page.detail("page_bytes", page_bytes);
    Ok(vec![f_page])
}

/// A café's profile with a roll of unused vouchers, its page read by several admins at once.
pub(crate) async fn cafe_page(b: &Bench) -> anyhow::Result<Vec<Figure>> {
    let Bench {
        scale,
        base,
        db,
        browser,
        p_cafe,
        ..
    } = b;
    let p_cafe = *p_cafe;
    let rounds = b.scale.rounds;
    let codes = seed::free_codes(db, scale.cafe_tickets).await?;
    seed::tickets(db, p_cafe, codes, "unused").await?;
    let mut f_p50 = Figure::new(
        "cafe_page_p50_ms",
        format!(
            "profile page with {} live tickets (a café's vouchers), {} connections: p50",
            number_plain(scale.cafe_tickets as u64),
            scale.cafe_connections
        ),
        "ms",
        Target::Below(15.0),
    );
    let mut f_p99 = Figure::new("cafe_page_p99_ms", "same: p99", "ms", Target::Below(40.0));
    let page_bytes = browser.profile_page(p_cafe).await?;
    let (url, cookies) = (format!("{base}/profiles/{p_cafe}"), browser.cookies());
    let (mut rates, mut errors) = (Vec::new(), 0);
    for round in 0..rounds {
        phase(&format!(
            "a café's profile page, round {}/{rounds}",
            round + 1
        ));
        let (url, cookies) = (url.clone(), cookies.clone());
        let stats = closed_loop(
            base,
            scale.cafe_connections,
            scale.api(),
            None,
            move |client, _| load::ok(client.get(url.clone()).header(COOKIE, cookies.clone())),
        )
        .await;
        errors += stats.errors;
        rates.push(stats.rate());
        f_p50.rounds.push(stats.percentile_ms(0.5));
        f_p99.rounds.push(stats.percentile_ms(0.99));
    }
    seed::end_live(db, Some(p_cafe), "revoked").await?;
    f_p50.detail("page_bytes", page_bytes);
    f_p50.detail("pages_per_s", rounded(&rates));
    f_p50.detail("errors", errors);
    Ok(vec![f_p50, f_p99])
}

/// Creating the 1st live ticket, then the (filler + 1)-th: the ratio of the medians.
pub(crate) async fn creations(b: &Bench) -> anyhow::Result<Vec<Figure>> {
    let Bench {
        scale,
        db,
        browser,
        p_create,
        p_filler,
        ..
    } = b;
    let p_create = *p_create;
    let p_filler = *p_filler;
    let rounds = b.scale.rounds;
    let mut f_create = Figure::new(
        "create_nth_vs_first",
        format!(
            "creating live ticket no. {} vs the 1st (`POST /profiles/<id>/tickets`, PIN drawn among free codes)",
            number_plain(scale.filler as u64 + 1)
        ),
        "×",
        Target::AtMost(2.0),
    );
    seed::end_live(db, None, "expired").await?;
    let (mut first_ms, mut nth_ms) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        phase(&format!(
            "ticket creation 1st vs n-th, round {}/{rounds}",
            round + 1
        ));
        let first = median(&time_creations(browser, db, p_create, scale.create_samples).await?);
        seed::revive(db, p_filler).await?;
        let live = seed::live_count(db).await?;
        if live != scale.filler as i64 {
            bail!(
                "{live} live tickets before the n-th creation, not {}",
                scale.filler
            );
        }
        let nth = median(&time_creations(browser, db, p_create, scale.create_samples).await?);
        seed::end_live(db, Some(p_filler), "expired").await?;
        first_ms.push(first);
        nth_ms.push(nth);
        f_create.rounds.push(nth / first);
    }
    f_create.detail("first_ms", rounded(&first_ms));
    f_create.detail("nth_ms", rounded(&nth_ms));
    Ok(vec![f_create])
}
