//! The loop a person feels on a real Kodi: `bench/kodi_loop.py` drives Kodi 20.1 under Xvfb
//! with the real server and agent (the binaries under test) and the real-Kodi tests' harness;
//! its rounds become figures here. Skipped, with a message, where Kodi or Xvfb is missing.

use std::process::{Command, Stdio};

use anyhow::{bail, Context};
use serde_json::Value;

use crate::procs::Paths;
use crate::report::{Figure, Target};

/// Each figure of the loop: key (as the script writes it), label, unit, target.
const FIGURES: [(&str, &str, &str, Target); 14] = [
    (
        "kodi_pinpad_ticket_to_open_s",
        "real Kodi, PIN pad: ticket created → its PIN typed at once opens the profile",
        "s",
        Target::Below(1.0),
    ),
    (
        "kodi_native_ticket_to_open_s",
        "real Kodi, native lock code: ticket created → its PIN opens the profile (Kodi restarted)",
        "s",
        Target::Info,
    ),
    (
        "kodi_start_s",
        "same: Kodi's own start in it (start command → login screen answering JSON-RPC)",
        "s",
        Target::Info,
    ),
    (
        "kodi_native_ours_s",
        "same: ours in it (total − Kodi's stop, start and profile load)",
        "s",
        Target::Info,
    ),
    (
        "kodi_pinpad_pin_to_page_s",
        "real Kodi, PIN pad: PIN typed → ticket in use on an open admin page",
        "s",
        Target::Below(1.0),
    ),
    (
        "kodi_native_pin_to_page_s",
        "real Kodi, native: PIN entered at the login screen → ticket in use on an open admin page",
        "s",
        Target::Below(1.0),
    ),
    (
        "kodi_pinpad_time_up_late_s",
        "real Kodi, PIN pad: time up → login screen, seconds late",
        "s",
        Target::Below(2.0),
    ),
    (
        "kodi_native_time_up_late_s",
        "real Kodi, native: time up → login screen, seconds late",
        "s",
        Target::Below(2.0),
    ),
    (
        "kodi_time_up_latest_s",
        "real Kodi, both modes: time up → login screen, the latest",
        "s",
        Target::Below(2.0),
    ),
    (
        "kodi_time_up_earliest_s",
        "real Kodi, both modes: time up → login screen, the earliest (never early)",
        "s",
        Target::AtLeast(0.0),
    ),
    (
        "kodi_agent_rest_cpu_pct",
        "agent at rest 60 s, a profile logged in: CPU (utime+stime)",
        "% of a core",
        Target::Below(0.1),
    ),
    (
        "kodi_agent_rest_wakeups_per_min",
        "same: wake-ups (context switches of all its threads)",
        "/min",
        Target::Info,
    ),
    (
        "kodi_agent_rest_rss_mib",
        "same: RSS (peak of samples every 5 s)",
        "MiB",
        Target::Below(15.0),
    ),
    (
        "kodi_agent_rest_writes_per_min",
        "same: write system calls (a request to Kodi or the server is one or two)",
        "/min",
        Target::Info,
    ),
];

/// Runs the loop (`rounds` rounds in each mode); its figures, or none when it was skipped.
pub(crate) fn figures(paths: &Paths, rounds: usize) -> anyhow::Result<Vec<Figure>> {
    let script = paths.root.join("bench/kodi_loop.py");
    let out = paths.tmp.join("kodi-loop.json");
    let status = Command::new("python3")
        .arg(&script)
        .arg("--server-bin")
        .arg(&paths.server_bin)
        .arg("--agent-bin")
        .arg(&paths.agent_bin)
        .args(["--rounds", &rounds.to_string(), "--out"])
        .arg(&out)
        .current_dir(&paths.root)
        .stdin(Stdio::null())
        .status();
    let status = match status {
        Ok(status) => status,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            eprintln!(
                "== real Kodi: SKIPPED: no python3 here to run {}",
                script.display()
            );
            return Ok(Vec::new());
        }
        Err(e) => return Err(e).context("cannot run python3"),
    };
    if !status.success() {
        bail!(
            "{} failed ({status}); its reason is above",
            script.display()
        );
    }
    let result: Value = serde_json::from_str(&std::fs::read_to_string(&out)?)
        .with_context(|| format!("{} wrote no JSON", script.display()))?;
    if let Some(reason) = result["skipped"].as_str() {
        eprintln!("== real Kodi: SKIPPED: {reason}");
        return Ok(Vec::new());
    }
    let measured = &result["figures"];
    let mut figures = Vec::new();
    for (key, label, unit, target) in FIGURES {
        let mut figure = Figure::new(key, label, unit, target);
        let found = &measured[key];
        figure.rounds = found["rounds"]
            .as_array()
            .with_context(|| format!("{} did not measure {key}", script.display()))?
            .iter()
            .filter_map(Value::as_f64)
            .collect();
        if let Some(details) = found["details"].as_object() {
            figure.details = details.clone();
        }
        figures.push(figure);
    }
    if let Some(first) = figures.first_mut() {
        first.detail("kodi_start_retries", result["kodi_start_retries"].clone());
        first.detail("loop_duration_s", result["duration_s"].clone());
    }
    Ok(figures)
}
