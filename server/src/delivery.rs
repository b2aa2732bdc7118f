//! Applying PINs to Kodi: a worker drains the delivery outbox by running the Kodi script, and
//! ends tickets on the TVs it reaches itself (log-off, new lock code), recording every run in
//! the execution log.

use std::path::Path;
use std::time::{Duration, Instant};

use kodi_tickets_protocol::script::{self, Run, EXIT_BUSY};
use rand::Rng;
use rocket::fairing::AdHoc;
use rocket::tokio::{self, process::Command, time};
use rocket_db_pools::Database;

use crate::config::AppConfig;
use crate::db::deliveries::{self, Job, SshTarget};
use crate::db::ticket_ends::{self, End, EndOutcome};
use crate::db::tickets;
use crate::db::{self, Db, Delivery, DeliveryId};
use crate::presence::Changes;
use crate::views::rfc3339;

/// The worker looks at the outbox at least this often, e.g. for busy retries.
const IDLE_POLL: Duration = Duration::from_secs(15);

pub fn stage() -> AdHoc {
    AdHoc::on_liftoff("Delivery worker", |rocket| {
        Box::pin(async move {
            let pool = db::Pool::clone(Db::fetch(rocket).expect("database attached"));
            let config = rocket.state::<AppConfig>().expect("config managed").clone();
            let changes = rocket.state::<Changes>().expect("changes managed").clone();
            let shutdown = rocket.shutdown();
            tokio::spawn(async move {
                tokio::select! {
                    _ = run_worker(pool, config, changes) => {}
                    _ = shutdown => {}
                }
            });
        })
    })
}

async fn run_worker(pool: db::Pool, config: AppConfig, changes: Changes) {
    match deliveries::requeue_interrupted(&pool).await {
        Ok(0) => {}
        Ok(n) => tracing::warn!("requeued {n} deliveries interrupted by a restart"),
        Err(e) => tracing::error!("cannot requeue interrupted deliveries: {e}"),
    }
    loop {
        match deliveries::claim_due(&pool).await {
            Ok(Some(job)) => {
                run_job(&pool, &config, job).await;
                changes.pages().announce();
                continue;
            }
            Ok(None) => {}
            Err(e) => tracing::error!("cannot read the delivery outbox: {e}"),
        }
        match ticket_ends::claim_due(&pool).await {
            Ok(Some(end)) => {
                run_end(&pool, &config, end).await;
                continue;
            }
            Ok(None) => {}
            Err(e) => tracing::error!("cannot read the ends of tickets: {e}"),
        }
        let next = match (
            deliveries::next_due_at(&pool).await,
            ticket_ends::next_due_at(&pool).await,
        ) {
            (Ok(a), Ok(b)) => a.into_iter().chain(b).min(),
            _ => None,
        };
        let wait = match next {
            Some(due) => Duration::from_secs((due - db::now()).clamp(1, 15) as u64),
            None => IDLE_POLL,
        };
        tokio::select! {
            _ = changes.for_worker() => {}
            _ = time::sleep(wait) => {}
        }
    }
}

async fn run_job(pool: &db::Pool, config: &AppConfig, job: Job) {
    let target = Target::of(job.method, job.ssh.as_ref());
    let label = format!("ticket={} delivery={}", job.ticket_id, job.id);
    let run = set_lock_code(config, target, &job.profile_name, &job.lock_code, &label).await;
    if let Err(e) = record_delivery(pool, job.id, &run).await {
        tracing::error!("cannot record delivery {}: {e}", job.id);
    }
}

/// Runs the Kodi script to make `code` the lock code of `profile` (the code masked in the
/// execution log, where the run is written under `label`).
async fn set_lock_code(
    config: &AppConfig,
    target: Target<'_>,
    profile: &str,
    code: &str,
    label: &str,
) -> Run {
    let masked = format!("{profile}:****");
    let argument = format!("{profile}:{code}");
    let run = run_script(config, target, &argument, &masked, code).await;
    append_exec_log(&config.exec_log, &run.log_line(&rfc3339(db::now()), label)).await;
    run
}

/// Records what a run of the script came to as the outcome of delivery `id`.
async fn record_delivery(pool: &db::Pool, id: DeliveryId, run: &Run) -> Result<(), sqlx::Error> {
    let report = run.report();
    deliveries::finish(pool, id, report.outcome, report.exit_code, &report.message).await
}

/// How soon an end that Kodi could not take yet (busy, unreachable) is tried again.
const END_RETRY_SECS: i64 = 10;
/// How soon an end whose run failed otherwise (SSH down, a timeout) is tried again.
const END_FAILED_RETRY_SECS: i64 = 60;

/// Ends a ticket on its TV: logs its profile's session off, then replaces its PIN with the
/// profile's next ticket's or a random secret. Tried again until Kodi confirms both.
async fn run_end(pool: &db::Pool, config: &AppConfig, end: End) {
    let target = Target::of(end.method, end.ssh.as_ref());
    let label = format!("ticket={} end", end.ticket_id);
    let name = &end.profile_name;
    let shown = format!("--log-off {name}");
    let log_off = run_words(config, target, &["--log-off", name], &shown, "").await;
    append_exec_log(
        &config.exec_log,
        &log_off.log_line(&rfc3339(db::now()), &label),
    )
    .await;
    let (outcome, exit_code, message) = match end_outcome(&log_off) {
        EndOutcome::Done => {
            // The script saw Kodi at its login screen.
            if let Err(e) = tickets::mark_logged_off(pool, end.ticket_id, None, db::now()).await {
                tracing::error!("cannot record ticket {}'s log-off: {e}", end.ticket_id);
            }
            relock(pool, config, &end, target, &label).await
        }
        not_yet => (not_yet, log_off.exit_code, log_off.report().message),
    };
    if let Err(e) = ticket_ends::finish(pool, end.ticket_id, outcome, exit_code, &message).await {
        tracing::error!("cannot record the end of ticket {}: {e}", end.ticket_id);
    }
}

/// After the log-off: the profile's next ticket's PIN is set on the TV in place of the ended
/// one, or a secret. Done only once Kodi took it: until then the ended PIN would still open
/// the profile, so the end is tried again (a run of the next ticket's own delivery that
/// fails meanwhile shows on its row).
async fn relock(
    pool: &db::Pool,
    config: &AppConfig,
    end: &End,
    target: Target<'_>,
    label: &str,
) -> (EndOutcome, Option<i32>, String) {
    if let Some(profile) = end.profile_id {
        match ticket_ends::next_ticket(pool, profile).await {
            Ok(Some(next)) => return set_next(pool, config, end, target, label, next).await,
            Ok(None) => {}
            Err(e) => return (EndOutcome::RetryIn(END_RETRY_SECS), None, e.to_string()),
        }
    }
    let secret = format!("{:04}", rand::thread_rng().gen_range(0..10_000));
    let run = set_lock_code(config, target, &end.profile_name, &secret, label).await;
    let outcome = end_outcome(&run);
    let message = match outcome {
        EndOutcome::Done => "logged off; the profile has a new secret lock code".to_owned(),
        _ => run.report().message,
    };
    (outcome, run.exit_code, message)
}

/// Sets the next ticket's PIN as the profile's lock code, recording it as that ticket's
/// delivery.
async fn set_next(
    pool: &db::Pool,
    config: &AppConfig,
    end: &End,
    target: Target<'_>,
    label: &str,
    next: ticket_ends::NextTicket,
) -> (EndOutcome, Option<i32>, String) {
    let label = format!("{label} delivery={}", next.delivery_id);
    let run = set_lock_code(config, target, &end.profile_name, &next.lock_code, &label).await;
    if let Err(e) = record_delivery(pool, next.delivery_id, &run).await {
        return (EndOutcome::RetryIn(END_RETRY_SECS), None, e.to_string());
    }
    match end_outcome(&run) {
        EndOutcome::Done => (
            EndOutcome::Done,
            run.exit_code,
            format!("logged off; ticket {}'s PIN is set now", next.ticket_id),
        ),
        not_yet => (not_yet, run.exit_code, run.report().message),
    }
}

/// What a run of the script means for an end: usage errors and unknown profiles cannot get
/// better; anything else is tried again.
fn end_outcome(run: &Run) -> EndOutcome {
    match (run.problem.is_some(), run.exit_code) {
        (false, Some(0)) => EndOutcome::Done,
        (false, Some(EXIT_BUSY)) => EndOutcome::RetryIn(END_RETRY_SECS),
        (false, Some(2 | 3)) => EndOutcome::Failed,
        _ => EndOutcome::RetryIn(END_FAILED_RETRY_SECS),
    }
}

/// Where the script runs: on this machine, or on a box over SSH (`None`: its settings are
/// incomplete).
#[derive(Clone, Copy)]
enum Target<'a> {
    Local,
    Ssh(Option<&'a SshTarget>),
}

impl<'a> Target<'a> {
    fn of(method: Delivery, ssh: Option<&'a SshTarget>) -> Self {
        if method == Delivery::Ssh {
            Target::Ssh(ssh)
        } else {
            Target::Local
        }
    }
}

/// Quotes one word for the remote shell that `ssh` hands its command line to.
fn shell_quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', r"'\''"))
}

/// The command that runs the Kodi script with `words`; `shown` is how its arguments are
/// logged (PIN masked).
fn command_for(
    config: &AppConfig,
    target: Target<'_>,
    words: &[&str],
    shown: &str,
) -> Result<(Command, String), String> {
    let ssh = match target {
        Target::Local => {
            let mut command = Command::new(&config.kodi_script);
            command.args(words);
            return Ok((command, format!("{} {shown}", config.kodi_script.display())));
        }
        Target::Ssh(None) => {
            return Err("the device has no complete SSH settings (user, host, key)".into())
        }
        Target::Ssh(Some(ssh)) => ssh,
    };
    let mut command = Command::new("ssh");
    command
        .args(["-i", &ssh.ssh_key_path, "-p", &ssh.ssh_port.to_string()])
        .args([
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "ConnectTimeout=10",
        ])
        .arg("-o")
        .arg(format!(
            "UserKnownHostsFile={}",
            config.ssh_known_hosts.display()
        ))
        .arg("--")
        .arg(format!("{}@{}", ssh.ssh_user, ssh.ssh_host));
    let remote: Vec<String> = std::iter::once(config.ssh_remote_script.as_str())
        .chain(words.iter().copied())
        .map(shell_quote)
        .collect();
    command.arg(remote.join(" "));
    let shown = format!(
        "ssh -p {} {}@{} {} {shown}",
        ssh.ssh_port, ssh.ssh_user, ssh.ssh_host, config.ssh_remote_script
    );
    Ok((command, shown))
}

/// Runs the script with `PROFILE:PIN` (`argument`), logged as `masked`.
async fn run_script(
    config: &AppConfig,
    target: Target<'_>,
    argument: &str,
    masked: &str,
    lock_code: &str,
) -> Run {
    run_words(config, target, &[argument], masked, lock_code).await
}

async fn run_words(
    config: &AppConfig,
    target: Target<'_>,
    words: &[&str],
    shown: &str,
    lock_code: &str,
) -> Run {
    let started = Instant::now();
    let finished = match command_for(config, target, words, shown) {
        Ok((mut command, command_line)) => {
            let timeout = Duration::from_secs(config.delivery_timeout);
            let output = script::run_with_timeout(&mut command, timeout, &command_line).await;
            return Run::new(command_line, started.elapsed(), output, lock_code);
        }
        Err(problem) => Err(problem),
    };
    Run::new(shown.to_owned(), started.elapsed(), finished, lock_code)
}

async fn append_exec_log(path: &Path, line: &str) {
    if let Err(e) = script::append_exec_log(path, line).await {
        tracing::error!("cannot write the execution log {}: {e}", path.display());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_words_are_quoted_for_the_shell() {
        assert_eq!(shell_quote("Kids:0420"), "'Kids:0420'");
        assert_eq!(shell_quote("Bob's room:1234"), r"'Bob'\''s room:1234'");
        assert_eq!(shell_quote("$(reboot);`x`"), "'$(reboot);`x`'");
    }
}
