//! Running the Kodi script on this box, with a timeout, recorded in the execution log; and
//! restarting Kodi with the box's stop and start commands.

use std::path::Path;
use std::process::Stdio;
use std::time::Instant;

use kodi_tickets_protocol::script::{self, Run};
use kodi_tickets_protocol::times::{now, rfc3339};
use kodi_tickets_protocol::DeliveryReport;
use tokio::process::Command;

use crate::config::Config;

/// Makes `lock_code` the Kodi lock code of `profile`; what happened, as reported to the server.
pub async fn set_lock_code(
    config: &Config,
    profile: &str,
    lock_code: &str,
    label: &str,
) -> DeliveryReport {
    let started = Instant::now();
    let mut command = Command::new(&config.script);
    command
        .arg(format!("{profile}:{lock_code}"))
        .env("KODI_USERDATA", &config.kodi_userdata);
    if let Some((host, port)) = config.kodi_jsonrpc.rsplit_once(':') {
        command
            .env("KODI_JSONRPC_HOST", host)
            .env("KODI_JSONRPC_PORT", port);
    }
    if !config.kodi_stop_command.is_empty() {
        command.env("KODI_STOP_CMD", &config.kodi_stop_command);
    }
    if !config.kodi_start_command.is_empty() {
        command.env("KODI_START_CMD", &config.kodi_start_command);
    }
    let shown = config.script.display().to_string();
    let result = script::run_with_timeout(&mut command, config.script_timeout(), &shown).await;
    let command_line = format!("{shown} {profile}:****");
    let run = Run::new(command_line, started.elapsed(), result, lock_code);
    append_log(&config.exec_log, &run.log_line(&rfc3339(now()), label)).await;
    run.report()
}

/// Stops and starts Kodi with the configured commands (`sh -c`, as the script runs them),
/// each within the script's timeout: whether that worked, and a line for the admin.
pub async fn restart_kodi(config: &Config) -> (bool, String) {
    if config.kodi_stop_command.is_empty() || config.kodi_start_command.is_empty() {
        return (
            false,
            "cannot restart Kodi: kodi_stop_command and kodi_start_command are not set".into(),
        );
    }
    let started = Instant::now();
    let outcome = match run_command(config, &config.kodi_stop_command).await {
        Err(e) => Err(format!("stopping Kodi failed: {e}")),
        Ok(()) => run_command(config, &config.kodi_start_command)
            .await
            .map_err(|e| format!("starting Kodi failed: {e}")),
    };
    let (ok, message) = match outcome {
        Ok(()) => (true, "Kodi restarted".to_owned()),
        Err(message) => (false, message),
    };
    let at = rfc3339(now());
    let line = format!(
        "{at} restart-kodi ok={ok} {:.1}s {message}\n",
        started.elapsed().as_secs_f64()
    );
    append_log(&config.exec_log, &line).await;
    (ok, message)
}

/// Runs `command` with `sh -c` (LibreELEC has no bash), its output discarded: a start
/// command leaves Kodi running with whatever it inherited, and a pipe held open by Kodi would
/// never end.
///
/// NOTE: SIGPIPE is ignored for what the command starts, as systemd and the Kodi script do:
/// Kodi 20.1 does not ignore it itself, and dies of it when a JSON-RPC client goes away.
async fn run_command(config: &Config, command: &str) -> Result<(), String> {
    let child = Command::new("sh")
        .arg("-c")
        .arg(format!("trap '' PIPE; {command}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot run sh: {e}"))?;
    match tokio::time::timeout(config.script_timeout(), child.wait_with_output()).await {
        Err(_) => Err(format!("timed out after {} s", config.script_timeout)),
        Ok(Err(e)) => Err(e.to_string()),
        Ok(Ok(output)) if output.status.success() => Ok(()),
        Ok(Ok(output)) => Err(format!("{}", output.status)),
    }
}

async fn append_log(path: &Path, line: &str) {
    if let Err(e) = script::append_exec_log(path, line).await {
        tracing::error!("cannot write the execution log {}: {e}", path.display());
    }
}
