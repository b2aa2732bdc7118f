//! Running the Kodi script on this box, with a timeout, recorded in the execution log.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use kodi_tickets_protocol::{DeliveryOutcome, DeliveryReport};
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use crate::config::Config;

/// Exit code with which the script says "a profile session is in use, try later".
pub const EXIT_BUSY: i32 = 75;
const OUTPUT_TAIL: usize = 600;

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
        .env("KODI_USERDATA", &config.kodi_userdata)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
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
    let result = match command.spawn() {
        Err(e) => Err(format!("cannot run {}: {e}", config.script.display())),
        Ok(child) => {
            match tokio::time::timeout(config.script_timeout(), child.wait_with_output()).await {
                Err(_) => Err(format!(
                    "the Kodi script timed out after {} s",
                    config.script_timeout
                )),
                Ok(Err(e)) => Err(format!("the Kodi script failed: {e}")),
                Ok(Ok(output)) => Ok(output),
            }
        }
    };
    let duration = started.elapsed();
    let (exit_code, output) = match &result {
        Ok(output) => {
            let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
            text.push_str(&String::from_utf8_lossy(&output.stderr));
            (output.status.code(), tail(&text).replace(lock_code, "****"))
        }
        Err(problem) => (None, problem.clone()),
    };
    let command_line = format!("{} {profile}:****", config.script.display());
    append_log(
        &config.exec_log,
        label,
        &command_line,
        exit_code,
        duration,
        &output,
    )
    .await;
    let last_line = output.lines().last().unwrap_or("").trim().to_owned();
    let (outcome, message) = match exit_code {
        Some(0) => (DeliveryOutcome::Applied, "applied to Kodi".to_owned()),
        Some(EXIT_BUSY) => (
            DeliveryOutcome::Busy,
            "Kodi is in use; waiting for the session to end".to_owned(),
        ),
        Some(code) => (
            DeliveryOutcome::Failed,
            format!("the Kodi script failed (exit {code}): {last_line}"),
        ),
        None => (DeliveryOutcome::Failed, last_line),
    };
    DeliveryReport {
        outcome,
        exit_code,
        message,
    }
}

fn tail(text: &str) -> String {
    let text = text.trim_end();
    let mut start = text.len().saturating_sub(OUTPUT_TAIL);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    text[start..].to_owned()
}

/// One line per run; `{:?}` escapes newlines so no name or output can forge a line.
async fn append_log(
    path: &Path,
    label: &str,
    command: &str,
    exit: Option<i32>,
    duration: Duration,
    output: &str,
) {
    let at = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    let exit = exit.map(|c| c.to_string()).unwrap_or_else(|| "none".into());
    let line = format!(
        "{at} {label} exit={exit} duration_ms={} command={command:?} output={output:?}\n",
        duration.as_millis()
    );
    if let Some(dir) = path.parent() {
        let _ = tokio::fs::create_dir_all(dir).await;
    }
    let written = async {
        let mut file = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .await?;
        file.write_all(line.as_bytes()).await
    };
    if let Err(e) = written.await {
        tracing::error!("cannot write the execution log {}: {e}", path.display());
    }
}
