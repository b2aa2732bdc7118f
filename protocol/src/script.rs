//! The Kodi script (`execute-on-kodi_set-passwd-per-profile.sh PROFILE:PIN`) as the server
//! and the agent both run it: what its exit codes mean, what of its output is kept, and the
//! line each run adds to the execution log.

use std::path::Path;
use std::process::{Output, Stdio};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use crate::{DeliveryOutcome, DeliveryReport};

/// Exit code with which the script says "a profile session is in use, try later"
/// (EX_TEMPFAIL).
pub const EXIT_BUSY: i32 = 75;

/// Runs the Kodi script as `command` for at most `timeout`, its output captured: the output,
/// or why there is none. `shown` names the command in that message.
pub async fn run_with_timeout(
    command: &mut Command,
    timeout: Duration,
    shown: &str,
) -> Result<Output, String> {
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot run {shown}: {e}"))?;
    match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Err(_) => Err(format!(
            "the Kodi script timed out after {} s",
            timeout.as_secs()
        )),
        Ok(Err(e)) => Err(format!("the Kodi script failed: {e}")),
        Ok(Ok(output)) => Ok(output),
    }
}

/// Appends `line` to the execution log at `path`, making its folder if needed.
pub async fn append_exec_log(path: &Path, line: &str) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        tokio::fs::create_dir_all(dir).await?;
    }
    tokio::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .await?
        .write_all(line.as_bytes())
        .await
}

/// How much of the script's output is kept, from its end.
pub const OUTPUT_TAIL: usize = 600;

/// One run of the script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    /// The command as logged, with the PIN masked.
    pub command: String,
    /// `None` when it did not run to the end (see `problem`) or was killed by a signal.
    pub exit_code: Option<i32>,
    pub duration: Duration,
    /// The tail of what it printed, PIN masked ([`output_tail`]).
    pub output: String,
    /// Why it could not run or finish (not found, timed out), if so.
    pub problem: Option<String>,
}

/// What of a run's output is kept: the end of stdout then stderr, at most [`OUTPUT_TAIL`]
/// bytes, with the PIN masked should the script ever print it (`""`: a run without a PIN).
pub fn output_tail(stdout: &[u8], stderr: &[u8], lock_code: &str) -> String {
    let mut text = String::from_utf8_lossy(stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(stderr));
    let text = text.trim_end();
    let mut start = text.len().saturating_sub(OUTPUT_TAIL);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    let tail = &text[start..];
    if lock_code.is_empty() {
        return tail.to_owned();
    }
    tail.replace(lock_code, "****")
}

impl Run {
    /// A run that took `duration` and ended with the script's output, or without it for the
    /// reason given; `command` as logged, `lock_code` to mask in the output.
    pub fn new(
        command: String,
        duration: Duration,
        ended: Result<Output, String>,
        lock_code: &str,
    ) -> Run {
        match ended {
            Ok(output) => Run {
                command,
                exit_code: output.status.code(),
                duration,
                output: output_tail(&output.stdout, &output.stderr, lock_code),
                problem: None,
            },
            Err(problem) => Run {
                command,
                exit_code: None,
                duration,
                output: String::new(),
                problem: Some(problem),
            },
        }
    }

    /// What the run means for the delivery, with a one-line message for the admin.
    pub fn report(&self) -> DeliveryReport {
        let (outcome, message) = match (&self.problem, self.exit_code) {
            (Some(problem), _) => (DeliveryOutcome::Failed, problem.clone()),
            (None, Some(0)) => (DeliveryOutcome::Applied, "applied to Kodi".to_owned()),
            (None, Some(EXIT_BUSY)) => (
                DeliveryOutcome::Busy,
                "Kodi is in use; waiting for the session to end".to_owned(),
            ),
            (None, Some(code)) => {
                let last = self.output.lines().last().unwrap_or("").trim();
                (
                    DeliveryOutcome::Failed,
                    format!("the Kodi script failed (exit {code}): {last}"),
                )
            }
            (None, None) => (
                DeliveryOutcome::Failed,
                "the Kodi script was killed".to_owned(),
            ),
        };
        DeliveryReport {
            outcome,
            exit_code: self.exit_code,
            message,
        }
    }

    /// The execution log's line for this run, which happened at `at` (RFC 3339); `label`
    /// says what it was for (e.g. `ticket=3 delivery=7`). Every field written with `{:?}`
    /// escapes newlines and quotes, so no profile name or output can forge a line.
    pub fn log_line(&self, at: &str, label: &str) -> String {
        let exit = self
            .exit_code
            .map(|c| c.to_string())
            .unwrap_or_else(|| "none".into());
        let output = self.problem.as_deref().unwrap_or(&self.output);
        format!(
            "{at} {label} exit={exit} duration_ms={} command={:?} output={output:?}\n",
            self.duration.as_millis(),
            self.command,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(exit_code: Option<i32>, output: &str, problem: Option<&str>) -> Run {
        Run {
            command: "script Kids:****".into(),
            exit_code,
            duration: Duration::from_millis(5),
            output: output.into(),
            problem: problem.map(str::to_owned),
        }
    }

    #[test]
    fn exit_codes_mean_applied_busy_or_failed() {
        let outcome = |r: Run| r.report().outcome;
        assert_eq!(outcome(run(Some(0), "", None)), DeliveryOutcome::Applied);
        assert_eq!(outcome(run(Some(75), "", None)), DeliveryOutcome::Busy);
        let failed = run(Some(3), "checking\nno such profile", None).report();
        assert_eq!(failed.outcome, DeliveryOutcome::Failed);
        assert_eq!(
            failed.message,
            "the Kodi script failed (exit 3): no such profile"
        );
        let timed_out = run(None, "", Some("the Kodi script timed out after 60 s")).report();
        assert_eq!(
            (timed_out.outcome, timed_out.message.as_str()),
            (
                DeliveryOutcome::Failed,
                "the Kodi script timed out after 60 s"
            )
        );
        assert_eq!(
            run(None, "", None).report().message,
            "the Kodi script was killed"
        );
    }

    #[test]
    fn log_lines_cannot_be_forged_by_names_or_output() {
        let mut forged = run(Some(1), "line one\nline two \"quoted\"", None);
        forged.command = "script Kids\n2026-01-01T00:00:00Z ticket=1 exit=0:****".into();
        let line = forged.log_line("2026-12-02T00:00:00Z", "ticket=3 delivery=7");
        assert_eq!(line.matches('\n').count(), 1, "{line}");
        assert!(line.starts_with("2026-12-02T00:00:00Z ticket=3 delivery=7 exit=1 "));
        assert!(line.ends_with('\n'));
        let failed = run(None, "", Some("cannot run script: not found"));
        assert!(failed
            .log_line("t", "relock")
            .contains("exit=none duration_ms=5 command=\"script Kids:****\" output=\"cannot run script: not found\""));
    }

    #[test]
    fn output_keeps_its_tail_and_hides_the_pin() {
        let long = "x".repeat(2000) + "the end 0420\n";
        let kept = output_tail(long.as_bytes(), b"", "0420");
        assert!(kept.len() <= OUTPUT_TAIL);
        assert!(kept.ends_with("the end ****"), "{kept}");
        assert_eq!(output_tail(b"out ", b"err 0420", "0420"), "out err ****");
        let wide = "é".repeat(400);
        assert!(output_tail(wide.as_bytes(), b"", "0420").len() <= OUTPUT_TAIL);
    }
}
