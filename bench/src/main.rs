//! kodi-tickets-bench: starts the real server (and a real agent) on a temporary SQLite file
//! and loopback, seeds it, loads it over HTTP with its own load generator, and prints the
//! figures of issue 5 with their targets; writes them as JSON to compare across commits.
//!
//! `cargo run --release -p kodi-tickets-bench` (see README.md, Performance); `--smoke` for a tiny
//! run of every figure in seconds (used by `tests/smoke.rs`).

mod admin;
mod load;
mod procs;
mod report;
mod seed;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures::StreamExt;
use kodi_tickets_agent::server::ServerClient;
use kodi_tickets_protocol::{AgentEvent, DeliveryOutcome, DeliveryReport};
use reqwest::header::AUTHORIZATION;
use serde_json::{json, Map, Value};
use sqlx::SqlitePool;
use tokio::sync::mpsc;

use crate::admin::Browser;
use crate::load::{closed_loop, median, Stats};
use crate::procs::Paths;
use crate::report::{Figure, Target};

const ADMIN_USER: &str = "admin";
const ADMIN_PASSWORD: &str = "bench-password-1";
/// Unused tickets the API read load cycles through: PINs 0000–0099.
const API_PINS: u32 = 100;
/// The profile page's history has this many unused tickets: PINs 0100–0109.
const PAGE_LIVE: usize = 10;
/// Fresh PINs for `POST /api/login` start here (after the two sets above).
const LOGIN_FIRST_PIN: u32 = 200;

const USAGE: &str = "\
usage: kodi-tickets-bench [--smoke] [--out FILE] [--rounds N] [--no-build]
                          [--server-bin FILE] [--agent-bin FILE] [--keep]
  --smoke       tiny load, one round of every figure (seconds); default out: bench/results/smoke.json
  --out FILE    where the JSON goes (default: bench/results/latest.json)
  --rounds N    rounds per figure (default 3; the figure is their median)
  --no-build    do not run `cargo build` for the server and agent first (default when not
                started by cargo)
  --server-bin, --agent-bin
                the binaries to start (default: next to this one, e.g. target/release/)
  --keep        keep the temporary folder (database, server and agent logs)
  --only LIST   run only these parts (comma-separated): api, stall, login, page, create,
                push, fleet, cold (memory is always measured)";

const PARTS: [&str; 8] = [
    "api", "stall", "login", "page", "create", "push", "fleet", "cold",
];

struct Options {
    smoke: bool,
    out: Option<PathBuf>,
    rounds: Option<usize>,
    build: bool,
    server_bin: Option<PathBuf>,
    agent_bin: Option<PathBuf>,
    keep: bool,
    only: Option<Vec<String>>,
}

impl Options {
    fn wants(&self, part: &str) -> bool {
        self.only
            .as_ref()
            .is_none_or(|only| only.iter().any(|p| p == part))
    }
}

fn parse_args(args: &[String]) -> anyhow::Result<Options> {
    let mut o = Options {
        smoke: false,
        out: None,
        rounds: None,
        // NOTE: `cargo run` sets CARGO; its build lock is released before this runs.
        build: std::env::var_os("CARGO").is_some(),
        server_bin: None,
        agent_bin: None,
        keep: false,
        only: None,
    };
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let mut value = || {
            args.next()
                .cloned()
                .with_context(|| format!("{arg} needs a value\n{USAGE}"))
        };
        match arg.as_str() {
            "--smoke" => o.smoke = true,
            "--out" => o.out = Some(value()?.into()),
            "--rounds" => {
                let n: usize = value()?.parse().context("--rounds needs a number")?;
                if n == 0 {
                    bail!("--rounds must be at least 1");
                }
                o.rounds = Some(n);
            }
            "--no-build" => o.build = false,
            "--server-bin" => o.server_bin = Some(value()?.into()),
            "--agent-bin" => o.agent_bin = Some(value()?.into()),
            "--keep" => o.keep = true,
            "--only" => {
                let parts: Vec<String> = value()?.split(',').map(str::to_owned).collect();
                if let Some(bad) = parts.iter().find(|p| !PARTS.contains(&p.as_str())) {
                    bail!("unknown part {bad:?}\n{USAGE}");
                }
                o.only = Some(parts);
            }
            "-h" | "--help" => bail!("{USAGE}"),
            other => bail!("unknown argument {other:?}\n{USAGE}"),
        }
    }
    Ok(o)
}

/// How much load each figure gets.
#[derive(Debug, Clone)]
struct Scale {
    rounds: usize,
    /// Connections of the API loads (the issue's 32).
    connections: usize,
    /// Seconds of each API load run.
    api_secs: f64,
    /// Fresh PINs per round of `POST /api/login` (the run stops when they are used up).
    login_pins: u32,
    page_tickets: usize,
    page_requests: usize,
    /// Live tickets before the timed creation of the "n-th" one.
    filler: u32,
    create_samples: usize,
    latency_tickets: usize,
    agents: usize,
    /// Tickets issued at once for the simulated agents.
    posters: usize,
    logins_per_sec: f64,
    idle_samples: usize,
    settle: Duration,
    arm_timeout: Duration,
    /// Tickets for the simulated agents not issued within this are errors.
    issue_budget: Duration,
}

impl Scale {
    fn full() -> Scale {
        Scale {
            rounds: 3,
            connections: 32,
            api_secs: 3.0,
            login_pins: 9_000,
            page_tickets: 1_000,
            page_requests: 20,
            filler: 9_998,
            create_samples: 15,
            latency_tickets: 50,
            agents: 1_000,
            posters: 8,
            logins_per_sec: 4.0,
            idle_samples: 3,
            settle: Duration::from_secs(2),
            arm_timeout: Duration::from_secs(30),
            issue_budget: Duration::from_secs(80),
        }
    }

    fn smoke() -> Scale {
        Scale {
            rounds: 1,
            connections: 4,
            api_secs: 0.3,
            login_pins: 100,
            page_tickets: 1_000,
            page_requests: 2,
            filler: 300,
            create_samples: 2,
            latency_tickets: 3,
            agents: 20,
            posters: 4,
            logins_per_sec: 4.0,
            idle_samples: 1,
            settle: Duration::from_millis(300),
            arm_timeout: Duration::from_secs(20),
            issue_budget: Duration::from_secs(20),
        }
    }

    fn api(&self) -> Duration {
        Duration::from_secs_f64(self.api_secs)
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("bench/ is inside the workspace")
        .to_path_buf()
}

/// Builds the real server and agent (same profile as this binary), so they are never stale.
fn build_binaries(root: &Path) -> anyhow::Result<()> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = std::process::Command::new(cargo);
    command.current_dir(root).args([
        "build",
        "-p",
        "kodi-tickets-server",
        "-p",
        "kodi-tickets-agent",
    ]);
    if !cfg!(debug_assertions) {
        command.arg("--release");
    }
    eprintln!("== building the server and agent: {command:?}");
    let status = command.status().context("cannot run cargo")?;
    if !status.success() {
        bail!("cargo build failed ({status})");
    }
    Ok(())
}

fn main() -> ExitCode {
    // Loopback only: no request of the benchmark (nor of the agent it starts) may take a proxy.
    for var in [
        "http_proxy",
        "https_proxy",
        "all_proxy",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
    ] {
        std::env::remove_var(var);
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    let options = match parse_args(&args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let root = workspace_root();
    if options.build {
        if let Err(e) = build_binaries(&root) {
            eprintln!("kodi-tickets-bench: {e:#}");
            return ExitCode::FAILURE;
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    match runtime.block_on(run(options, root)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kodi-tickets-bench: {e:#}\n(--keep keeps the server's and agent's logs)");
            ExitCode::FAILURE
        }
    }
}

fn open_files_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

fn git(root: &Path, args: &[&str]) -> Option<String> {
    let out = std::process::Command::new("git")
        .current_dir(root)
        .args(args)
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

fn machine() -> Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_owned())
        })
        .unwrap_or_default();
    json!({
        "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "cpu_model": cpu,
        "kernel": std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim(),
    })
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn phase(name: &str) {
    eprintln!("== {name}");
}

/// `GET /healthz` on `connections` connections.
async fn healthz_load(base: &str, connections: usize, duration: Duration) -> Stats {
    let url = format!("{base}/healthz");
    closed_loop(base, connections, duration, None, move |client, _| {
        load::ok(client.get(url.clone()))
    })
    .await
}

/// `GET /api/ticket/<pin>` with a device token, cycling through `pins`.
async fn ticket_load(
    base: &str,
    token: &str,
    pins: Arc<Vec<String>>,
    connections: usize,
    duration: Duration,
) -> Stats {
    let (base_url, auth) = (base.to_owned(), format!("Bearer {token}"));
    closed_loop(base, connections, duration, None, move |client, i| {
        let pin = &pins[i as usize % pins.len()];
        load::ok(
            client
                .get(format!("{base_url}/api/ticket/{pin}"))
                .header(AUTHORIZATION, auth.clone()),
        )
    })
    .await
}

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

fn quantiles_ms(mut values: Vec<f64>) -> (f64, f64, f64) {
    values.sort_by(|a, b| a.total_cmp(b));
    let us: Vec<u64> = values.iter().map(|v| (v * 1000.0) as u64).collect();
    (
        load::percentile_us(&us, 0.5) / 1000.0,
        load::percentile_us(&us, 0.99) / 1000.0,
        values.last().copied().unwrap_or(f64::NAN),
    )
}

/// Samples a process's VmRSS every 100 ms until stopped; the peak in MiB.
fn rss_sampler(pid: u32) -> (Arc<AtomicBool>, tokio::task::JoinHandle<f64>) {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let task = tokio::spawn(async move {
        let mut peak = 0.0f64;
        while !flag.load(Ordering::Relaxed) {
            if let Some((rss, _)) = procs::memory_mib(pid) {
                peak = peak.max(rss);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        peak
    });
    (stop, task)
}

async fn run(o: Options, root: PathBuf) -> anyhow::Result<()> {
    let mut scale = if o.smoke {
        Scale::smoke()
    } else {
        Scale::full()
    };
    if let Some(rounds) = o.rounds {
        scale.rounds = rounds;
    }
    let rounds = scale.rounds;
    let exe_dir = std::env::current_exe()?
        .parent()
        .context("no folder of this binary")?
        .to_path_buf();
    let tmp = tempfile::Builder::new()
        .prefix("kodi-tickets-bench-")
        .tempdir()?;
    let paths = Paths {
        root: root.clone(),
        tmp: tmp.path().to_path_buf(),
        server_bin: o
            .server_bin
            .clone()
            .unwrap_or_else(|| exe_dir.join("kodi-tickets-server")),
        agent_bin: o
            .agent_bin
            .clone()
            .unwrap_or_else(|| exe_dir.join("kodi-tickets-agent")),
    };
    for bin in [&paths.server_bin, &paths.agent_bin] {
        if !bin.exists() {
            bail!(
                "{} is missing: build it (cargo build --release -p kodi-tickets-server -p \
                 kodi-tickets-agent) or run the benchmark with cargo run",
                bin.display()
            );
        }
    }
    let needed = 2 * scale.agents as u64 + 256;
    if let Some(limit) = open_files_limit().filter(|l| *l < needed) {
        bail!("{limit} open files allowed; {needed} needed for the simulated agents: `ulimit -n 4096` first");
    }
    let out = o.out.clone().unwrap_or_else(|| {
        root.join("bench/results")
            .join(if o.smoke { "smoke.json" } else { "latest.json" })
    });
    let started = Instant::now();
    eprintln!(
        "kodi-tickets-bench: {} run, {rounds} round(s), server {}, data in {}",
        if o.smoke { "smoke" } else { "full" },
        paths.server_bin.display(),
        paths.tmp.display()
    );

    // ---- Set-up: the database through the server's command line, then seeded directly.
    phase("seeding");
    procs::server_cli(
        &paths,
        &["admin", "set-password", ADMIN_USER],
        Some(ADMIN_PASSWORD),
    )?;
    let api_token = procs::server_cli(&paths, &["device", "add", "Bench API"], None)?;
    let agent_token = procs::server_cli(&paths, &["device", "add", "Bench agent"], None)?;
    let db = seed::open(&paths.db()).await?;
    let api_device = seed::device_id(&db, "Bench API").await?;
    let agent_device = seed::device_id(&db, "Bench agent").await?;
    let own = seed::devices(&db, &["Bench latency".into(), "Bench sink".into()]).await?;
    let (latency_device, latency_token) = own[0].clone();
    let sink_device = own[1].0;
    let sim_names: Vec<String> = (1..=scale.agents).map(|i| format!("sim-{i:04}")).collect();
    let sims = seed::devices(&db, &sim_names).await?;
    let p_api = seed::profile(&db, "Bench API", Some(api_device)).await?;
    let p_login = seed::profile(&db, "Bench login", Some(api_device)).await?;
    let p_page = seed::profile(&db, "Bench page", None).await?;
    let p_create = seed::profile(&db, "Bench create", Some(sink_device)).await?;
    let p_latency = seed::profile(&db, "Bench latency", Some(latency_device)).await?;
    let p_filler = seed::profile(&db, "Bench filler", None).await?;
    let sim_profiles = seed::profiles(
        &db,
        &sim_names
            .iter()
            .zip(&sims)
            .map(|(name, (device, _))| (name.clone(), Some(*device)))
            .collect::<Vec<_>>(),
    )
    .await?;
    seed::tickets(&db, p_api, 0..API_PINS, "unused").await?;
    seed::history(&db, p_page, scale.page_tickets, PAGE_LIVE, API_PINS).await?;
    seed::tickets(&db, p_filler, 0..scale.filler, "expired").await?;

    // ---- The server and one real agent.
    phase("starting the server and the agent");
    let port = procs::free_port()?;
    let (mut server, _) = procs::start_server(&paths, port).await?;
    let base = format!("http://127.0.0.1:{port}");
    let mut agent = procs::start_agent(&paths, &base, &agent_token)?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while !seed::seen(&db, agent_device).await? {
        if Instant::now() > deadline {
            bail!(
                "the agent did not connect within 30 s; see {}",
                paths.tmp.join("agent.log").display()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(scale.settle).await;

    let mut f_ratio = Figure::new(
        "api_ticket_vs_healthz_throughput",
        format!(
            "`GET /api/ticket/<pin>` with a device token, {} connections: throughput as a ratio of `GET /healthz`",
            scale.connections
        ),
        "×",
        Target::AtLeast(0.5),
    );
    let mut f_p99 = Figure::new(
        "api_ticket_p99_ms",
        "same: p99 latency",
        "ms",
        Target::Below(10.0),
    );
    let mut f_login = Figure::new(
        "api_login_per_s",
        format!(
            "`POST /api/login` on fresh PINs (each used once), {} connections: throughput",
            scale.connections
        ),
        "/s",
        Target::AtLeast(2000.0),
    );
    let mut f_create = Figure::new(
        "create_nth_vs_first",
        format!(
            "creating live ticket no. {} vs the 1st (`POST /profiles/<id>/tickets`, PIN drawn among free codes)",
            number_plain(scale.filler as u64 + 1)
        ),
        "×",
        Target::AtMost(2.0),
    );
    let mut f_page = Figure::new(
        "profile_page_p50_ms",
        format!(
            "profile page with {} tickets (live ones and the newest 50 ended): p50 render",
            number_plain(scale.page_tickets as u64)
        ),
        "ms",
        Target::Below(50.0),
    );
    let mut f_stall = Figure::new(
        "admin_login_api_p99_ratio",
        format!(
            "API p99 while {} admin logins/s (argon2id) run, vs idle",
            scale.logins_per_sec
        ),
        "×",
        Target::Below(2.0),
    );
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
    let mut f_fleet = Figure::new(
        "agents_1000_max_ms",
        format!(
            "{} agents connected at once, a ticket each: slowest ticket → `arm`",
            number_plain(scale.agents as u64)
        ),
        "ms",
        Target::Below(2000.0),
    );
    let mut f_fleet_wall = Figure::new(
        "agents_1000_issue_all_s",
        format!(
            "same: issuing the {} tickets over HTTP ({} at a time), first POST → last `arm`",
            number_plain(scale.agents as u64),
            scale.posters
        ),
        "s",
        Target::Info,
    );
    let mut f_fleet_errors = Figure::new(
        "agents_1000_errors",
        "same: errors (failed connections, broken streams, missing `arm`s)",
        "",
        Target::Exactly(0.0),
    );
    let mut f_rss_idle = Figure::new(
        "server_rss_idle_mib",
        "server RSS idle (seeded)",
        "MiB",
        Target::Below(50.0),
    );
    let mut f_rss_load = Figure::new(
        "server_rss_load_mib",
        "server RSS under the load above (peak VmRSS)",
        "MiB",
        Target::Below(150.0),
    );
    let mut f_agent_rss = Figure::new(
        "agent_rss_idle_mib",
        "agent RSS idle (connected, no Kodi)",
        "MiB",
        Target::Below(20.0),
    );
    let mut f_cold = Figure::new(
        "cold_start_ms",
        "cold start of the server to first `/healthz` 200 on the existing DB",
        "ms",
        Target::Below(1000.0),
    );

    // ---- Memory at rest.
    for _ in 0..scale.idle_samples {
        if let Some((rss, _)) = procs::memory_mib(server.pid()) {
            f_rss_idle.rounds.push(rss);
        }
        if let Some((rss, _)) = procs::memory_mib(agent.pid()) {
            f_agent_rss.rounds.push(rss);
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let (sampling, sampler) = rss_sampler(server.pid());

    let pins: Arc<Vec<String>> = Arc::new((0..API_PINS).map(|c| format!("{c:04}")).collect());
    let mut browser = Browser::open(&base, load::client()).await?;
    browser.login(ADMIN_USER, ADMIN_PASSWORD).await?;

    // ---- API reads vs /healthz, same server, same run.
    if o.wants("api") {
        let (mut healthz_rates, mut ticket_rates, mut ticket_p50, mut errors) =
            (Vec::new(), Vec::new(), Vec::new(), 0);
        for round in 0..rounds {
            phase(&format!(
                "API reads vs /healthz, round {}/{rounds}",
                round + 1
            ));
            let (health, ticket) = if round % 2 == 0 {
                let h = healthz_load(&base, scale.connections, scale.api()).await;
                let t = ticket_load(
                    &base,
                    &api_token,
                    pins.clone(),
                    scale.connections,
                    scale.api(),
                )
                .await;
                (h, t)
            } else {
                let t = ticket_load(
                    &base,
                    &api_token,
                    pins.clone(),
                    scale.connections,
                    scale.api(),
                )
                .await;
                let h = healthz_load(&base, scale.connections, scale.api()).await;
                (h, t)
            };
            errors += health.errors + ticket.errors;
            healthz_rates.push(health.rate());
            ticket_rates.push(ticket.rate());
            ticket_p50.push(ticket.percentile_ms(0.5));
            f_ratio.rounds.push(ticket.rate() / health.rate());
            f_p99.rounds.push(ticket.percentile_ms(0.99));
        }
        f_ratio.detail("healthz_per_s", rounded(&healthz_rates));
        f_ratio.detail("ticket_per_s", rounded(&ticket_rates));
        f_ratio.detail("errors", errors);
        f_p99.detail("p50_ms", rounded(&ticket_p50));
    }
    // ---- Admin logins (argon2id) next to the same API load.
    if o.wants("stall") {
        let login_browser = Browser::open(&base, load::client()).await?;
        let (mut idle_p99, mut busy_p99, mut logins_ok, mut logins_failed, mut login_ms) =
            (Vec::new(), Vec::new(), 0u64, 0u64, Vec::new());
        for round in 0..rounds {
            phase(&format!(
                "API p99 with admin logins, round {}/{rounds}",
                round + 1
            ));
            let idle = ticket_load(
                &base,
                &api_token,
                pins.clone(),
                scale.connections,
                scale.api(),
            )
            .await;
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
            let busy = ticket_load(
                &base,
                &api_token,
                pins.clone(),
                scale.connections,
                scale.api(),
            )
            .await;
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
    }
    // ---- POST /api/login on fresh PINs.
    if o.wants("login") {
        let (mut login_p99, mut login_errors, mut login_counts) = (Vec::new(), 0, Vec::new());
        for round in 0..rounds {
            phase(&format!("POST /api/login, round {}/{rounds}", round + 1));
            let codes: Vec<u32> = (LOGIN_FIRST_PIN..LOGIN_FIRST_PIN + scale.login_pins).collect();
            seed::tickets(&db, p_login, codes.iter().copied(), "unused").await?;
            let fresh: Arc<Vec<String>> =
                Arc::new(codes.iter().map(|c| format!("{c:04}")).collect());
            let (url, auth) = (format!("{base}/api/login"), format!("Bearer {api_token}"));
            let stats = closed_loop(
                &base,
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
            seed::end_live(&db, Some(p_login), "expired").await?;
            login_errors += stats.errors;
            login_counts.push(stats.ok as f64);
            login_p99.push(stats.percentile_ms(0.99));
            f_login.rounds.push(stats.rate());
        }
        f_login.detail("logins", rounded(&login_counts));
        f_login.detail("p99_ms", rounded(&login_p99));
        f_login.detail("errors", login_errors);
    }
    // ---- The profile page with its history.
    if o.wants("page") {
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
    }
    // ---- Creating the 1st live ticket, then the (filler + 1)-th.
    if o.wants("create") {
        seed::end_live(&db, None, "expired").await?;
        let (mut first_ms, mut nth_ms) = (Vec::new(), Vec::new());
        for round in 0..rounds {
            phase(&format!(
                "ticket creation 1st vs n-th, round {}/{rounds}",
                round + 1
            ));
            let first =
                median(&time_creations(&browser, &db, p_create, scale.create_samples).await?);
            seed::revive(&db, p_filler).await?;
            let live = seed::live_count(&db).await?;
            if live != scale.filler as i64 {
                bail!(
                    "{live} live tickets before the n-th creation, not {}",
                    scale.filler
                );
            }
            let nth = median(&time_creations(&browser, &db, p_create, scale.create_samples).await?);
            seed::end_live(&db, Some(p_filler), "expired").await?;
            first_ms.push(first);
            nth_ms.push(nth);
            f_create.rounds.push(nth / first);
        }
        f_create.detail("first_ms", rounded(&first_ms));
        f_create.detail("nth_ms", rounded(&nth_ms));
    }
    // ---- Ticket created → the agent's `arm`, on one open stream (the agent's real client).
    if o.wants("push") {
        let latency_client = ServerClient::new(&base, &latency_token)?;
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
    }
    // ---- Many agents at once.
    if o.wants("fleet") {
        phase(&format!("connecting {} agents", scale.agents));
        let mut poster = Browser::open(&base, load::pooled_client(scale.posters)).await?;
        poster.login(ADMIN_USER, ADMIN_PASSWORD).await?;
        let connected = Arc::new(AtomicUsize::new(0));
        let (tx, mut fleet) = mpsc::unbounded_channel::<(usize, Instant, Result<i64, String>)>();
        let connecting = Instant::now();
        let mut streams = Vec::with_capacity(scale.agents);
        for (i, (_, token)) in sims.iter().enumerate() {
            let client = ServerClient::new(&base, token)?;
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
        while connected.load(Ordering::Relaxed) + fleet_errors.len() < scale.agents
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
        if open < scale.agents {
            fleet_errors.push(format!("{} of {} agents connected", open, scale.agents));
        }
        let (mut fleet_p50, mut fleet_wall, mut fleet_issue, mut fleet_issued) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for round in 0..rounds {
            phase(&format!(
                "{} agents, a ticket each, round {}/{rounds}",
                scale.agents,
                round + 1
            ));
            let before = seed::max_ticket_id(&db).await?;
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
            let mut returned = vec![None; scale.agents];
            for (i, result) in posted {
                match result {
                    Ok(at) => returned[i] = Some(at),
                    Err(e) => fleet_errors.push(format!("creating a ticket: {e}")),
                }
            }
            let expected = returned.iter().filter(|r| r.is_some()).count();
            fleet_issued.push(expected as f64);
            let mut arrived: Vec<Option<Instant>> = vec![None; scale.agents];
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
            seed::settle_deliveries(&db, before).await?;
            seed::end_after(&db, before).await?;
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
    }
    // ---- Memory after the load.
    tokio::time::sleep(Duration::from_millis(300)).await;
    sampling.store(true, Ordering::Relaxed);
    let peak = sampler.await?;
    let hwm = procs::memory_mib(server.pid()).map_or(f64::NAN, |m| m.1);
    f_rss_load.rounds.push(peak.max(hwm));
    f_rss_load.detail("sampled_peak_mib", report::finite(peak));
    f_rss_load.detail("vmhwm_mib", report::finite(hwm));
    if let Some((rss, hwm)) = procs::memory_mib(agent.pid()) {
        f_agent_rss.detail("after_run_mib", report::finite(rss));
        f_agent_rss.detail("vmhwm_mib", report::finite(hwm));
    }

    // ---- Cold starts on the database as the run left it.
    agent.stop();
    server.stop();
    db.close().await;
    let db_size = std::fs::metadata(paths.db()).map(|m| m.len()).unwrap_or(0);
    for round in 0..rounds {
        if !o.wants("cold") {
            break;
        }
        phase(&format!("cold start, round {}/{rounds}", round + 1));
        let (mut again, took) = procs::start_server(&paths, procs::free_port()?).await?;
        again.stop();
        f_cold.rounds.push(ms(took));
    }
    f_cold.detail("db_mib", report::finite(db_size as f64 / 1048576.0));

    // ---- The report.
    let mut figures = vec![
        f_ratio,
        f_p99,
        f_login,
        f_create,
        f_page,
        f_stall,
        f_push50,
        f_push99,
        f_fleet,
        f_fleet_wall,
        f_fleet_errors,
        f_rss_idle,
        f_rss_load,
        f_agent_rss,
        f_cold,
    ];
    if o.only.is_some() {
        figures.retain(|f| !f.rounds.is_empty());
    }
    let dirty = git(&root, &["status", "--porcelain"]).is_none_or(|s| !s.is_empty());
    let mut run = Map::new();
    run.insert("schema".into(), json!(1));
    run.insert(
        "commit".into(),
        json!(git(&root, &["rev-parse", "HEAD"]).unwrap_or_else(|| "unknown".into())),
    );
    run.insert("commit_dirty".into(), json!(dirty));
    run.insert(
        "date".into(),
        json!(time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)?),
    );
    run.insert("mode".into(), json!(if o.smoke { "smoke" } else { "full" }));
    run.insert("rounds".into(), json!(rounds));
    run.insert(
        "duration_s".into(),
        report::finite(started.elapsed().as_secs_f64()),
    );
    run.insert("machine".into(), machine());
    run.insert(
        "scale".into(),
        json!({
            "connections": scale.connections,
            "api_secs": scale.api_secs,
            "login_pins": scale.login_pins,
            "page_tickets": scale.page_tickets,
            "filler": scale.filler,
            "create_samples": scale.create_samples,
            "latency_tickets": scale.latency_tickets,
            "agents": scale.agents,
        }),
    );
    let value = report::json(&figures, run);
    report::write(&out, &value)?;
    println!("{}", report::table(&figures));
    println!(
        "{} of {} figures meet their target; {:.0} s; JSON: {}",
        figures.iter().filter(|f| f.pass()).count(),
        figures.len(),
        started.elapsed().as_secs_f64(),
        out.display()
    );
    if o.keep {
        let kept = tmp.keep();
        eprintln!("kept {}", kept.display());
    }
    Ok(())
}

fn rounded(values: &[f64]) -> Value {
    Value::Array(values.iter().map(|v| report::finite(*v)).collect())
}

fn number_plain(n: u64) -> String {
    report::number(n as f64)
}
