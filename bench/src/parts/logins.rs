//! `POST /api/login` on fresh PINs, each used once.

use std::sync::Arc;

use reqwest::header::AUTHORIZATION;
use serde_json::json;

use super::Bench;
use crate::load::{self, closed_loop};
use crate::report::{Figure, Target};
use crate::{phase, rounded, seed, LOGIN_FIRST_PIN};

/// Logins per second, each a real use of a fresh PIN.
pub(crate) async fn pin_logins(b: &Bench) -> anyhow::Result<Vec<Figure>> {
    let Bench {
        scale,
        base,
        db,
        api_token,
        p_login,
        ..
    } = b;
    let p_login = *p_login;
    let rounds = b.scale.rounds;
    let mut f_login = Figure::new(
        "api_login_per_s",
        format!(
            "`POST /api/login` on fresh PINs (each used once), {} connections: throughput",
            scale.connections
        ),
        "/s",
        Target::AtLeast(2000.0),
    );
    let (mut login_p99, mut login_errors, mut login_counts) = (Vec::new(), 0, Vec::new());
    for round in 0..rounds {
        phase(&format!("POST /api/login, round {}/{rounds}", round + 1));
        let codes: Vec<u32> = (LOGIN_FIRST_PIN..LOGIN_FIRST_PIN + scale.login_pins).collect();
        seed::tickets(db, p_login, codes.iter().copied(), "unused").await?;
        let fresh: Arc<Vec<String>> = Arc::new(codes.iter().map(|c| format!("{c:04}")).collect());
        let (url, auth) = (format!("{base}/api/login"), format!("Bearer {api_token}"));
        let stats = closed_loop(
            base,
            scale.connections,
            scale.api(),
            Some(scale.login_pins as u64),
            move |client, i| {
                let body = json!({ "lock_code": fresh[i as usize] });
                load::ok(
                    client
                        .post(url.clone())
                        .header(AUTHORIZATION, auth.clone())
                        .json(&body),
                )
            },
        )
        .await;
        seed::end_live(db, Some(p_login), "expired").await?;
        login_errors += stats.errors;
        login_counts.push(stats.ok as f64);
        login_p99.push(stats.percentile_ms(0.99));
        f_login.rounds.push(stats.rate());
    }
    f_login.detail("logins", rounded(&login_counts));
    f_login.detail("p99_ms", rounded(&login_p99));
    f_login.detail("errors", login_errors);
    Ok(vec![f_login])
}
