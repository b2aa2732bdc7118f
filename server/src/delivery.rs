//! Applying PINs to Kodi: a worker drains the delivery outbox by running the Kodi script,
//! recording every run in the execution log.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kodi_tickets_protocol::script::Run;
use rocket::fairing::AdHoc;
use rocket::tokio::sync::Notify;
use rocket::tokio::{self, process::Command, time};
use rocket_db_pools::Database;

use crate::config::AppConfig;
use crate::db::deliveries::{self, Job};
use crate::db::{self, Db};
use crate::presence::Presence;
use crate::views::rfc3339;

/// The worker looks at the outbox at least this often, e.g. for busy retries.
const IDLE_POLL: Duration = Duration::from_secs(15);

/// Wakes whoever acts on a change at once: the local worker (a delivery was queued), the
/// event streams of the device concerned (a delivery or a session of its profiles changed)
/// and the open admin pages.
#[derive(Clone)]
pub struct Waker {
    local: Arc<Notify>,
    agents: Presence,
}

impl Waker {
    pub fn new(agents: Presence) -> Self {
        Waker {
            local: Arc::default(),
            agents,
        }
    }

    /// After a change to a delivery or a session of `device`'s profiles (`None`: a profile on
    /// no device).
    pub fn wake(&self, device: Option<i64>) {
        self.local.notify_one();
        if let Some(device) = device {
            self.agents.wake(device);
        }
        self.agents.pages().announce();
    }
}

pub fn stage() -> AdHoc {
    AdHoc::on_liftoff("Delivery worker", |rocket| {
        Box::pin(async move {
            let pool = db::Pool::clone(Db::fetch(rocket).expect("database attached"));
            let config = rocket.state::<AppConfig>().expect("config managed").clone();
            let waker = rocket.state::<Waker>().expect("waker managed").clone();
            let shutdown = rocket.shutdown();
            tokio::spawn(async move {
                tokio::select! {
                    _ = run_worker(pool, config, waker) => {}
                    _ = shutdown => {}
                }
            });
        })
    })
}

async fn run_worker(pool: db::Pool, config: AppConfig, waker: Waker) {
    match deliveries::requeue_interrupted(&pool).await {
        Ok(0) => {}
        Ok(n) => tracing::warn!("requeued {n} deliveries interrupted by a restart"),
        Err(e) => tracing::error!("cannot requeue interrupted deliveries: {e}"),
    }
    loop {
        match deliveries::claim_due(&pool).await {
            Ok(Some(job)) => {
                run_job(&pool, &config, job).await;
                waker.agents.pages().announce();
                continue;
            }
            Ok(None) => {}
            Err(e) => tracing::error!("cannot read the delivery outbox: {e}"),
        }
        let wait = match deliveries::next_due_at(&pool).await {
            Ok(Some(due)) => Duration::from_secs((due - db::now()).clamp(1, 15) as u64),
            _ => IDLE_POLL,
        };
        tokio::select! {
            _ = waker.local.notified() => {}
            _ = time::sleep(wait) => {}
        }
    }
}

async fn run_job(pool: &db::Pool, config: &AppConfig, job: Job) {
    let run = run_script(config, &job).await;
    let report = run.report();
    let label = format!("ticket={} delivery={}", job.ticket_id, job.id);
    append_exec_log(&config.exec_log, &run.log_line(&rfc3339(db::now()), &label));
    if let Err(e) = deliveries::finish(
        pool,
        job.id,
        report.outcome,
        report.exit_code,
        &report.message,
    )
    .await
    {
        tracing::error!("cannot record delivery {}: {e}", job.id);
    }
}

/// Quotes one word for the remote shell that `ssh` hands its command line to.
fn shell_quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', r"'\''"))
}

/// The command that applies a job, and how it is logged (PIN masked).
fn command_for(config: &AppConfig, job: &Job) -> Result<(Command, String), String> {
    let argument = format!("{}:{}", job.profile_name, job.lock_code);
    let masked = format!("{}:****", job.profile_name);
    if job.method != "ssh" {
        let mut command = Command::new(&config.kodi_script);
        command.arg(argument);
        return Ok((
            command,
            format!("{} {masked}", config.kodi_script.display()),
        ));
    }
    let Some(ssh) = &job.ssh else {
        return Err("the device has no complete SSH settings (user, host, key)".into());
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
        .arg(format!("{}@{}", ssh.ssh_user, ssh.ssh_host))
        .arg(format!(
            "{} {}",
            shell_quote(&config.ssh_remote_script),
            shell_quote(&argument)
        ));
    let shown = format!(
        "ssh -p {} {}@{} {} {masked}",
        ssh.ssh_port, ssh.ssh_user, ssh.ssh_host, config.ssh_remote_script
    );
    Ok((command, shown))
}

async fn run_script(config: &AppConfig, job: &Job) -> Run {
    let started = Instant::now();
    let (mut command, shown) = match command_for(config, job) {
        Ok(c) => c,
        Err(problem) => {
            let masked = format!("{}:****", job.profile_name);
            return Run::new(masked, started.elapsed(), Err(problem), &job.lock_code);
        }
    };
    let command_line = shown;
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn();
    let finished = match child {
        Err(e) => Err(format!("cannot run {command_line}: {e}")),
        Ok(child) => {
            match time::timeout(
                Duration::from_secs(config.delivery_timeout),
                child.wait_with_output(),
            )
            .await
            {
                Err(_) => Err(format!(
                    "the Kodi script timed out after {} s",
                    config.delivery_timeout
                )),
                Ok(Err(e)) => Err(format!("the Kodi script failed: {e}")),
                Ok(Ok(output)) => Ok(output),
            }
        }
    };
    Run::new(command_line, started.elapsed(), finished, &job.lock_code)
}

fn append_exec_log(path: &Path, line: &str) {
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let written = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .and_then(|mut f| f.write_all(line.as_bytes()));
    if let Err(e) = written {
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
