//! The real server and agent as child processes: their settings, start, stop and memory.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// Where everything of one benchmark run lives.
pub struct Paths {
    /// The workspace (the server reads `Rocket.toml` and `templates/` from here).
    pub root: PathBuf,
    /// The run's temporary folder: database, secret key, logs, agent state.
    pub tmp: PathBuf,
    pub server_bin: PathBuf,
    pub agent_bin: PathBuf,
}

impl Paths {
    pub fn db(&self) -> PathBuf {
        self.tmp.join("kodi-tickets.db")
    }

    pub fn server_log(&self) -> PathBuf {
        self.tmp.join("server.log")
    }
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// The server binary with the repository's `Rocket.toml`, overridden so that it listens on
/// loopback only and keeps everything (database, key, logs) in the run's folder. The Kodi
/// script is `/bin/true`: no benchmark ticket may ever touch a real Kodi.
fn server_command(paths: &Paths, port: u16) -> Command {
    let mut command = Command::new(&paths.server_bin);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("ROCKET_") {
            command.env_remove(key);
        }
    }
    command
        .current_dir(&paths.root)
        .env("ROCKET_PROFILE", "release")
        .env("ROCKET_ADDRESS", "127.0.0.1")
        .env("ROCKET_PORT", port.to_string())
        .env(
            "ROCKET_DATABASES",
            format!(
                "{{kodi_tickets={{url=\"sqlite://{}\"}}}}",
                paths.db().display()
            ),
        )
        .env("ROCKET_DATA_DIR", paths.tmp.join("data"))
        .env("ROCKET_EXEC_LOG", paths.tmp.join("exec.log"))
        .env("ROCKET_KODI_SCRIPT", "/bin/true")
        .env("ROCKET_SSH_KNOWN_HOSTS", paths.tmp.join("known_hosts"))
        // Every simulated page and agent connects from 127.0.0.1: no per-address cap.
        .env("ROCKET_CONNECTIONS_PER_ADDRESS", "0")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null());
    command
}

fn log_file(path: &Path) -> anyhow::Result<File> {
    Ok(File::options().create(true).append(true).open(path)?)
}

/// Runs a server command-line command (`admin set-password`, `device add`); its stdout.
pub fn server_cli(paths: &Paths, args: &[&str], stdin: Option<&str>) -> anyhow::Result<String> {
    let mut child = server_command(paths, 0)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(log_file(&paths.server_log())?)
        .spawn()
        .with_context(|| format!("cannot run {}", paths.server_bin.display()))?;
    if let (Some(text), Some(mut input)) = (stdin, child.stdin.take()) {
        input.write_all(text.as_bytes())?;
    }
    let output = child.wait_with_output()?;
    if !output.status.success() {
        bail!(
            "kodi-tickets-server {} failed ({}); see {}",
            args.join(" "),
            output.status,
            paths.server_log().display()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// A running child process, stopped (SIGTERM, then SIGKILL) when dropped.
pub struct Proc {
    pub child: Child,
}

impl Proc {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM and up to 10 s to exit, then SIGKILL.
    pub fn stop(&mut self) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Starts the server on `port` and waits for its first `/healthz` 200; returns it with the
/// time from spawning the process to that answer.
pub async fn start_server(paths: &Paths, port: u16) -> anyhow::Result<(Proc, Duration)> {
    let log = log_file(&paths.server_log())?;
    let started = Instant::now();
    let child = server_command(paths, port)
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("cannot run {}", paths.server_bin.display()))?;
    let mut server = Proc { child };
    let url = format!("http://127.0.0.1:{port}/healthz");
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(2))
        .build()?;
    let deadline = started + Duration::from_secs(60);
    loop {
        if let Ok(response) = http.get(&url).send().await {
            if response.status() == reqwest::StatusCode::OK {
                return Ok((server, started.elapsed()));
            }
        }
        if let Ok(Some(status)) = server.child.try_wait() {
            bail!(
                "the server exited ({status}) before answering; see {}",
                paths.server_log().display()
            );
        }
        if Instant::now() > deadline {
            bail!(
                "the server did not answer /healthz within 60 s; see {}",
                paths.server_log().display()
            );
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Starts the real agent for `token`, with every Kodi address on a port nobody listens on:
/// it runs without Kodi, holding its event stream to the server open.
pub fn start_agent(paths: &Paths, server_url: &str, token: &str) -> anyhow::Result<Proc> {
    let userdata = paths.tmp.join("kodi-userdata");
    std::fs::create_dir_all(&userdata)?;
    let config = paths.tmp.join("agent.toml");
    let quote = |p: PathBuf| format!("{:?}", p.display().to_string());
    std::fs::write(
        &config,
        format!(
            "server_url = {:?}\ndevice_token = {:?}\nkodi_jsonrpc = \"127.0.0.1:{}\"\n\
             kodi_eventserver = \"127.0.0.1:{}\"\nkodi_userdata = {}\nscript = \"/bin/true\"\n\
             state_file = {}\nexec_log = {}\n",
            server_url,
            token,
            free_port()?,
            free_port()?,
            quote(userdata),
            quote(paths.tmp.join("agent-state.json")),
            quote(paths.tmp.join("agent-exec.log")),
        ),
    )?;
    let log = log_file(&paths.tmp.join("agent.log"))?;
    let mut command = Command::new(&paths.agent_bin);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("KODI_TICKETS_AGENT_") {
            command.env_remove(key);
        }
    }
    let child = command
        .arg("--config")
        .arg(&config)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("cannot run {}", paths.agent_bin.display()))?;
    Ok(Proc { child })
}

/// Resident memory of a process now and at its peak (VmRSS, VmHWM), in MiB.
pub fn memory_mib(pid: u32) -> Option<(f64, f64)> {
    Some((status_mib(pid, "VmRSS:")?, status_mib(pid, "VmHWM:")?))
}

/// Of the resident memory now: the process's own (RssAnon) and the pages of its files
/// (RssFile: the binary's code, shared with every process that runs it), in MiB.
pub fn memory_split_mib(pid: u32) -> Option<(f64, f64)> {
    Some((status_mib(pid, "RssAnon:")?, status_mib(pid, "RssFile:")?))
}

fn status_mib(pid: u32, field: &str) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}
