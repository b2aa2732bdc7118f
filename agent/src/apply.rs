//! Running the Kodi script on this box, with a timeout, recorded in the execution log.

use std::path::Path;
use std::process::Stdio;
use std::time::Instant;

use kodi_tickets_protocol::script::Run;
use kodi_tickets_protocol::DeliveryReport;
use tokio::io::AsyncWriteExt;
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
    let command_line = format!("{} {profile}:****", config.script.display());
    let run = Run::new(command_line, started.elapsed(), result, lock_code);
    let at = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    append_log(&config.exec_log, &run.log_line(&at, label)).await;
    run.report()
}

async fn append_log(path: &Path, line: &str) {
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
