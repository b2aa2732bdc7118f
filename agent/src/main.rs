//! kodi-tickets-agent: runs on the Kodi box. It applies ticket PINs the server sends, sees
//! profiles unlocked on the TV, reports those logins, and ends sessions when time is up.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;
use tokio::sync::mpsc;
use tracing_subscriber::EnvFilter;

use kodi_tickets_agent::config::{Config, DEFAULT_CONFIG, ENV_PREFIX};
use kodi_tickets_agent::driver::{self, Driver};
use kodi_tickets_agent::kodi;
use kodi_tickets_agent::server::ServerClient;

/// Exit code for a configuration the agent cannot run with (sysexits' EX_CONFIG).
const EXIT_CONFIG: u8 = 78;
const USAGE: &str = "usage: kodi-tickets-agent [--config FILE] | --version\n\
    Settings come from FILE (default: $KODI_TICKETS_AGENT_CONFIG, else /etc/kodi-tickets/agent.toml\n\
    when it exists) and KODI_TICKETS_AGENT_* variables; see README.md.";

fn config_path(args: &[String], env: &HashMap<String, String>) -> Result<Option<PathBuf>, String> {
    match args {
        [] => Ok(env
            .get(&format!("{ENV_PREFIX}CONFIG"))
            .map(PathBuf::from)
            .or_else(|| Some(PathBuf::from(DEFAULT_CONFIG)).filter(|p| p.exists()))),
        [flag, file] if flag == "--config" => Ok(Some(PathBuf::from(file))),
        _ => Err(USAGE.to_owned()),
    }
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--version") {
        println!("kodi-tickets-agent {}", env!("CARGO_PKG_VERSION"));
        return ExitCode::SUCCESS;
    }
    let env: HashMap<String, String> = std::env::vars().collect();
    let config = match config_path(&args, &env).and_then(|path| {
        Config::load(path.as_deref(), &env).map_err(|e| format!("configuration: {e}"))
    }) {
        Ok(config) => config,
        Err(message) => {
            eprintln!("kodi-tickets-agent: {message}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("kodi-tickets-agent: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kodi-tickets-agent: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(config: Config) -> anyhow::Result<()> {
    tracing::info!(?config, "starting");
    let server = ServerClient::new(config.server_url(), &config.device_token)?;
    let driver = Driver::new(config.clone(), server.clone())?;
    let (events_tx, events) = mpsc::channel(64);
    tokio::spawn(driver::follow_server(server, events_tx));
    let kodi = kodi::watch(config.kodi_jsonrpc.clone(), Some(config.profiles_xml()));
    let addon = kodi::listen(config.kodi_jsonrpc.clone());
    driver.run(events, kodi, addon).await?;
    Ok(())
}
