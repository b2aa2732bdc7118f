//! kodi-tickets-bench: starts the real server (and a real agent) on a temporary SQLite file
//! and loopback, seeds it, loads it over HTTP with its own load generator, and prints the
//! figures with their targets; writes them as JSON to compare across commits.
//!
//! `cargo run --release -p kodi-tickets-bench` (see README.md, Benchmark, and bench/README.md);
//! `--smoke` for a tiny run of every figure in seconds (used by `tests/smoke.rs`).

mod admin;
mod kodi;
mod load;
mod parts;
mod procs;
mod report;
mod seed;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::{json, Map, Value};

use crate::admin::Browser;
use crate::parts::agents::{BIG_FLEET, FLEET};
use crate::parts::Bench;
use crate::procs::Paths;
use crate::report::{Figure, Target};

const ADMIN_USER: &str = "admin";
const ADMIN_PASSWORD: &str = "bench-password-1";
/// Unused tickets the API read load cycles through: PINs 0000–0099.
const API_PINS: u32 = 100;
/// Boxes the API read load comes from (a hotel's), each reading its own profile's PINs.
const API_READERS: u32 = 8;
/// The profile page's history has this many unused tickets: PINs 0100–0109.
const PAGE_LIVE: usize = 10;
/// Fresh PINs for `POST /api/login` start here (after the two sets above).
const LOGIN_FIRST_PIN: u32 = 200;
/// Rounds of each real-Kodi figure unless `--rounds` says otherwise.
const KODI_ROUNDS: usize = 5;

/// The order of the figures in the table and the JSON, whatever order they ran in.
const REPORT_ORDER: [&str; 24] = [
    "api_ticket_vs_healthz_throughput",
    "api_ticket_p99_ms",
    "api_login_per_s",
    "create_nth_vs_first",
    "profile_page_p50_ms",
    "cafe_page_p50_ms",
    "cafe_page_p99_ms",
    "admin_login_api_p99_ratio",
    "ticket_to_agent_p50_ms",
    "ticket_to_agent_p99_ms",
    "pin_used_to_page_p50_ms",
    "pin_used_to_page_p99_ms",
    "agents_1000_max_ms",
    "agents_1000_issue_all_s",
    "agents_1000_errors",
    "big_fleet_max_ms",
    "big_fleet_issue_all_s",
    "big_fleet_errors",
    "server_rss_big_fleet_mib",
    "server_rss_idle_mib",
    "server_rss_load_mib",
    "server_rss_after_vs_idle",
    "agent_rss_idle_mib",
    "cold_start_ms",
];

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
  --only LIST   run only these parts (comma-separated): api, stall, login, page, cafe,
                create, push, live, fleet, fleet10k, cold, kodi (memory is always measured)
  fleet10k: 10,000 agents at once; needs `ulimit -n 10256` (fewer, loudly, below it)
  kodi: the loop on a real Kodi 20.1 under Xvfb (bench/kodi_loop.py), 5 rounds unless
  --rounds; skipped where Kodi or Xvfb is missing, and in --smoke";

const PARTS: [&str; 12] = [
    "api", "stall", "login", "page", "cafe", "create", "push", "live", "fleet", "fleet10k", "cold",
    "kodi",
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
    /// Connections of the API loads.
    connections: usize,
    /// Seconds of each API load run.
    api_secs: f64,
    /// Fresh PINs per round of `POST /api/login` (the run stops when they are used up).
    login_pins: u32,
    page_tickets: usize,
    page_requests: usize,
    /// Live tickets of the café's profile, and the connections reading its page.
    cafe_tickets: usize,
    cafe_connections: usize,
    /// Live tickets before the timed creation of the "n-th" one.
    filler: u32,
    create_samples: usize,
    latency_tickets: usize,
    /// Admin pages open (each with its live stream) while a PIN is used.
    live_pages: usize,
    /// PIN uses per round, each awaited in every open page.
    live_samples: usize,
    agents: usize,
    /// Agents of the big fleet (the `fleet10k` part).
    big_fleet: usize,
    /// Tickets issued at once for the simulated agents.
    posters: usize,
    logins_per_sec: f64,
    idle_samples: usize,
    settle: Duration,
    /// Time the server is left alone after the loads before its memory is read again: more
    /// than one period of its sweeper, which hands freed memory back (`server/src/memory.rs`).
    rest: Duration,
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
            cafe_tickets: 1_000,
            cafe_connections: 8,
            filler: 9_998,
            create_samples: 15,
            latency_tickets: 50,
            live_pages: 100,
            live_samples: 20,
            agents: 1_000,
            big_fleet: 10_000,
            posters: 8,
            logins_per_sec: 4.0,
            idle_samples: 3,
            settle: Duration::from_secs(2),
            rest: Duration::from_secs(20),
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
            cafe_tickets: 100,
            cafe_connections: 2,
            filler: 300,
            create_samples: 2,
            latency_tickets: 3,
            live_pages: 10,
            live_samples: 2,
            agents: 20,
            big_fleet: 40,
            posters: 4,
            logins_per_sec: 4.0,
            idle_samples: 1,
            settle: Duration::from_millis(300),
            rest: Duration::from_millis(300),
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

fn quantiles_ms(mut values: Vec<f64>) -> (f64, f64, f64) {
    values.sort_by(|a, b| a.total_cmp(b));
    let us: Vec<u64> = values.iter().map(|v| (v * 1000.0) as u64).collect();
    (
        load::percentile_us(&us, 0.5) / 1000.0,
        load::percentile_us(&us, 0.99) / 1000.0,
        values.last().copied().unwrap_or(f64::NAN),
    )
}

/// Samples a process's VmRSS every 100 ms while the loads run: the peak of each part and of all.
struct RssWatch {
    pid: u32,
    /// The peak since the last [`RssWatch::part_peak`], in KiB.
    part: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<f64>,
}

impl RssWatch {
    fn start(pid: u32) -> RssWatch {
        let stop = Arc::new(AtomicBool::new(false));
        let part = Arc::new(AtomicU64::new(0));
        let (flag, part_peak) = (stop.clone(), part.clone());
        let task = tokio::spawn(async move {
            let mut peak = 0.0f64;
            while !flag.load(Ordering::Relaxed) {
                if let Some((rss, _)) = procs::memory_mib(pid) {
                    peak = peak.max(rss);
                    part_peak.fetch_max((rss * 1024.0) as u64, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            peak
        });
        RssWatch {
            pid,
            part,
            stop,
            task,
        }
    }

    /// The peak since the last call and the RSS now, in MiB: where the memory of one part went.
    fn part_peak(&self) -> (f64, f64) {
        let now = procs::memory_mib(self.pid).map_or(f64::NAN, |m| m.0);
        let peak = self.part.swap(0, Ordering::Relaxed) as f64 / 1024.0;
        (peak.max(now), now)
    }

    async fn finish(self) -> anyhow::Result<f64> {
        self.stop.store(true, Ordering::Relaxed);
        Ok(self.task.await?)
    }
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
    // NOTE: the server holds one descriptor per agent (the gate serves its stream itself), as
    // does this process; the server inherits this process's limit as its own.
    let needed = |agents: usize| agents as u64 + 256;
    let limit = open_files_limit();
    if let Some(limit) = limit.filter(|l| *l < needed(scale.agents)) {
        bail!(
            "{limit} open files allowed; {} needed for the simulated agents: `ulimit -n 4096` first",
            needed(scale.agents)
        );
    }
    // As many agents as asked for, or as the open-files limit allows, in whole hundreds.
    let big_fleet = match limit.filter(|l| *l < needed(scale.big_fleet)) {
        _ if !o.wants("fleet10k") => 0,
        None => scale.big_fleet,
        Some(limit) => {
            let fits = (limit.saturating_sub(256) / 100 * 100) as usize;
            phase(&format!(
                "big fleet: {} agents need {} open files, {limit} are allowed: {fits} agents \
                 (`ulimit -n 10256` first where the hard limit allows it)",
                scale.big_fleet,
                needed(scale.big_fleet)
            ));
            fits
        }
    };
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
    let sims_needed = scale.agents.max(big_fleet);
    let sim_names: Vec<String> = (1..=sims_needed).map(|i| format!("sim-{i:05}")).collect();
    let sims = seed::devices(&db, &sim_names).await?;
    let p_login = seed::profile(&db, "Bench login", Some(api_device)).await?;
    let p_page = seed::profile(&db, "Bench page", None).await?;
    let p_cafe = seed::profile(&db, "Bench café", None).await?;
    let p_create = seed::profile(&db, "Bench create", Some(sink_device)).await?;
    let p_latency = seed::profile(&db, "Bench latency", Some(latency_device)).await?;
    let p_filler = seed::profile(&db, "Bench filler", None).await?;
    let p_live = seed::profile(&db, "Bench live", Some(api_device)).await?;
    let sim_profiles = seed::profiles(
        &db,
        &sim_names
            .iter()
            .zip(&sims)
            .map(|(name, (device, _))| (name.clone(), Some(*device)))
            .collect::<Vec<_>>(),
    )
    .await?;
    let reader_names: Vec<String> = (1..=API_READERS)
        .map(|i| format!("Bench reader {i}"))
        .collect();
    let readers = seed::devices(&db, &reader_names).await?;
    let reader_profiles = seed::profiles(
        &db,
        &reader_names
            .iter()
            .zip(&readers)
            .map(|(name, (device, _))| (name.clone(), Some(*device)))
            .collect::<Vec<_>>(),
    )
    .await?;
    let mut api_readers = Vec::new();
    for (r, ((_, token), profile)) in readers.iter().zip(&reader_profiles).enumerate() {
        let codes: Vec<u32> = (0..API_PINS)
            .filter(|c| c % API_READERS == r as u32)
            .collect();
        seed::tickets(&db, *profile, codes.iter().copied(), "unused").await?;
        let pins = codes.iter().map(|c| format!("{c:04}")).collect();
        api_readers.push((format!("Bearer {token}"), pins));
    }
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

    let mut f_rss_idle = Figure::new(
        "server_rss_idle_mib",
        "server RSS idle (seeded)",
        "MiB",
        Target::Below(50.0),
    );
    let mut f_rss_load = Figure::new(
        "server_rss_load_mib",
        "server RSS under the loads above, the big fleet aside (peak VmRSS)",
        "MiB",
        Target::Below(60.0),
    );
    let mut f_rss_after = Figure::new(
        "server_rss_after_vs_idle",
        "server RSS idle after the load, as a ratio of idle before it",
        "×",
        Target::AtMost(1.5),
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
        if let Some((anon, file)) = procs::memory_split_mib(server.pid()) {
            f_rss_idle.detail("anon_mib", report::finite(anon));
            f_rss_idle.detail("file_mib", report::finite(file));
        }
        if let Some((rss, _)) = procs::memory_mib(agent.pid()) {
            f_agent_rss.rounds.push(rss);
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let watch = RssWatch::start(server.pid());

    let mut browser = Browser::open(&base, load::client()).await?;
    browser.login(ADMIN_USER, ADMIN_PASSWORD).await?;

    let bench = Bench {
        scale,
        base,
        db,
        browser,
        api_token,
        latency_token,
        api_readers: Arc::new(api_readers),
        p_login,
        p_page,
        p_cafe,
        p_create,
        p_filler,
        p_latency,
        p_live,
        sims,
        sim_profiles,
    };
    let mut figures = Vec::new();
    let mut rss_by_part = Map::new();
    // The peak of every part but the big fleet, which has a figure of its own.
    let mut load_peak: Option<f64> = None;
    for part in PARTS
        .into_iter()
        .filter(|p| !["cold", "kodi"].contains(p) && o.wants(p))
    {
        figures.extend(match part {
            "api" => parts::api::reads(&bench).await?,
            "stall" => parts::api::beside_admin_logins(&bench).await?,
            "login" => parts::logins::pin_logins(&bench).await?,
            "page" => parts::pages::profile_page(&bench).await?,
            "cafe" => parts::pages::cafe_page(&bench).await?,
            "create" => parts::pages::creations(&bench).await?,
            "push" => parts::agents::ticket_to_agent(&bench).await?,
            "live" => parts::live::pin_used_to_page(&bench).await?,
            "fleet" => parts::agents::fleet(&bench, bench.scale.agents, &FLEET).await?,
            "fleet10k" if big_fleet <= bench.scale.agents => {
                phase("big fleet: skipped, no more agents fit than in the fleet above");
                Vec::new()
            }
            "fleet10k" => {
                // NOTE: a ticket each for 10,000 boxes takes the whole 4-digit PIN space, so
                // the live tickets the other parts left are ended first.
                seed::end_live(&bench.db, None, "expired").await?;
                parts::agents::fleet(&bench, big_fleet, &BIG_FLEET).await?
            }
            other => unreachable!("part {other} has no run"),
        });
        let (peak, now) = watch.part_peak();
        if part != "fleet10k" {
            load_peak = Some(load_peak.map_or(peak, |p| p.max(peak)));
        }
        rss_by_part.insert(
            part.into(),
            json!({"peak_mib": report::finite(peak), "after_mib": report::finite(now)}),
        );
        if part == "fleet10k" && big_fleet > bench.scale.agents {
            let mut f_rss = Figure::new(
                "server_rss_big_fleet_mib",
                format!(
                    "same: server RSS with the {} agents (peak VmRSS)",
                    number_plain(big_fleet as u64)
                ),
                "MiB",
                Target::Below(200.0),
            );
            f_rss.rounds.push(peak);
            figures.push(f_rss);
        }
    }
    let Bench { scale, db, .. } = bench;
    // ---- Memory after the load, once it has gone and the server has been left alone.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let peak = watch.finish().await?;
    let hwm = procs::memory_mib(server.pid()).map_or(f64::NAN, |m| m.1);
    // NOTE: unmeasured (n/a) when the big fleet ran alone.
    f_rss_load.rounds.extend(load_peak);
    f_rss_load.detail("sampled_peak_mib", report::finite(peak));
    f_rss_load.detail("vmhwm_mib", report::finite(hwm));
    f_rss_load.detail("by_part", Value::Object(rss_by_part));
    phase("the server left alone after the load");
    tokio::time::sleep(scale.rest).await;
    let idle_before = load::median(&f_rss_idle.rounds);
    for _ in 0..scale.idle_samples {
        if let Some((rss, _)) = procs::memory_mib(server.pid()) {
            f_rss_after.rounds.push(rss / idle_before);
            f_rss_after.detail("rss_mib", report::finite(rss));
        }
        if let Some((anon, file)) = procs::memory_split_mib(server.pid()) {
            f_rss_after.detail("anon_mib", report::finite(anon));
            f_rss_after.detail("file_mib", report::finite(file));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
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
    figures.extend([f_rss_idle, f_rss_load, f_rss_after, f_agent_rss, f_cold]);
    figures.sort_by_key(|f| REPORT_ORDER.iter().position(|key| *key == f.key));
    // ---- The real Kodi, last: it starts servers of its own.
    if o.wants("kodi") && o.smoke {
        phase("real Kodi: skipped in --smoke (minutes, and it needs Kodi)");
    } else if o.wants("kodi") {
        phase("real Kodi (bench/kodi_loop.py)");
        figures.extend(kodi::figures(&paths, o.rounds.unwrap_or(KODI_ROUNDS))?);
    }
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
            "cafe_tickets": scale.cafe_tickets,
            "filler": scale.filler,
            "create_samples": scale.create_samples,
            "latency_tickets": scale.latency_tickets,
            "live_pages": scale.live_pages,
            "agents": scale.agents,
            "big_fleet": big_fleet,
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
