//! The benchmark's plumbing with a tiny load: it seeds, runs one small round of every figure
//! against the real (debug) server and agent, and writes the JSON. Only the JSON's shape is
//! checked; speed is never asserted in tests.

use std::path::Path;
use std::process::Command;

/// Every figure of the benchmark, as keyed in `bench/results/*.json`.
const FIGURES: [&str; 24] = [
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

#[test]
fn a_smoke_run_writes_every_figure() {
    let bench = Path::new(env!("CARGO_BIN_EXE_kodi-tickets-bench"));
    let bin_dir = bench.parent().unwrap();
    for name in ["kodi-tickets-server", "kodi-tickets-agent"] {
        assert!(
            bin_dir.join(name).exists(),
            "{name} is not built in {}: run `cargo build -p kodi-tickets-server -p \
             kodi-tickets-agent` first (./scripts/test builds the workspace before testing)",
            bin_dir.display()
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("smoke.json");
    let run = Command::new(bench)
        .args(["--smoke", "--no-build", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "the smoke run failed ({}):\n{}\n{}",
        run.status,
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );

    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert_eq!(json["mode"], "smoke");
    assert!(json["commit"].is_string() && json["date"].is_string());
    let figures = json["figures"].as_object().unwrap();
    for key in FIGURES {
        let figure = &figures
            .get(key)
            .unwrap_or_else(|| panic!("figure {key} missing"));
        for field in ["figure", "value", "target", "pass", "rounds"] {
            assert!(figure.get(field).is_some(), "{key} has no {field}");
        }
        assert!(
            figure["value"].is_number(),
            "{key} was not measured: {figure}"
        );
    }
    assert_eq!(
        figures.len(),
        FIGURES.len(),
        "unexpected figures: {figures:?}"
    );
}
