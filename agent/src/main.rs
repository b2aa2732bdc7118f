//! kodi-tickets-agent: runs on the Kodi box. It applies ticket PINs the server sends, sees
//! profiles unlocked on the TV, reports those logins, and ends sessions when time is up.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;
use tokio::sync::mpsc;
use tracing_subscriber::EnvFilter;

use clap::{Parser, Subcommand};
use kodi_tickets_agent::config::{Config, DEFAULT_CONFIG, ENV_PREFIX};
use kodi_tickets_agent::driver::{self, Driver};
use kodi_tickets_agent::kodi;
use kodi_tickets_agent::server::ServerClient;
use kodi_tickets_agent::{check, discover, pairing};

/// Exit code for a configuration the agent cannot run with (sysexits' EX_CONFIG).
const EXIT_CONFIG: u8 = 78;

/// Runs on the Kodi box: sets ticket PINs the server sends, sees profiles opened on the TV,
/// reports those logins and ends sessions when their time is up. Settings come from the
/// config file and KODI_TICKETS_AGENT_* variables (README).
#[derive(Parser)]
#[command(name = "kodi-tickets-agent", version)]
struct Cli {
    /// The config file (default: $KODI_TICKETS_AGENT_CONFIG, else
    /// /etc/kodi-tickets/agent.toml when it exists).
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the agent (what it does without a command).
    Run,
    /// Say what works on this box and what does not: Kodi, its EventServer and master lock,
    /// the server and this box's token, the Kodi script, the state folder.
    Check,
    /// Pair this box with the server: exchange the code its Devices page shows for the box's
    /// token, and write both into the config file. Given only the code, it looks for the
    /// server on the network (the server announces itself).
    Pair {
        /// The server, e.g. http://192.168.1.10:5000, then the code; or only the code.
        #[arg(value_name = "SERVER_URL")]
        server_or_code: String,
        /// The 6-digit code from the Devices page (Pair a box).
        code: Option<String>,
        /// A certificate authority (PEM) to trust for a server with an HTTPS certificate of
        /// its own; kept in the config as server_ca_file.
        #[arg(long, value_name = "FILE")]
        ca_file: Option<PathBuf>,
    },
    /// List the Kodi Tickets servers that answer on this network: address, then name.
    Discover,
}

fn config_path(cli: &Cli, env: &HashMap<String, String>) -> Option<PathBuf> {
    cli.config.clone().or_else(|| {
        env.get(&format!("{ENV_PREFIX}CONFIG"))
            .map(PathBuf::from)
            .or_else(|| Some(PathBuf::from(DEFAULT_CONFIG)).filter(|p| p.exists()))
    })
}

fn main() -> ExitCode {
    // NOTE: `--help`, `--version` and a usage error exit here (0, 0 and 2).
    let cli = Cli::parse();
    let command = cli.command.as_ref().unwrap_or(&Command::Run);
    let default_filter = match command {
        Command::Run => "info",
        Command::Check | Command::Pair { .. } | Command::Discover => "error",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter)),
        )
        .with_writer(std::io::stderr)
        .init();
    let env: HashMap<String, String> = std::env::vars().collect();
    if matches!(command, Command::Discover) {
        return match discover::servers(discover::LISTEN) {
            Ok(found) if !found.is_empty() => {
                for server in found {
                    println!("{}\t{}", server.url, server.name);
                }
                ExitCode::SUCCESS
            }
            Ok(_) => {
                eprintln!("kodi-tickets-agent: no Kodi Tickets server answered on this network");
                ExitCode::FAILURE
            }
            Err(e) => {
                eprintln!("kodi-tickets-agent: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    if let Command::Pair {
        server_or_code,
        code,
        ca_file,
    } = command
    {
        let (server_url, code) = match code {
            Some(code) => (server_or_code.clone(), code.as_str()),
            None if pairing::looks_like_a_code(server_or_code) => {
                match discover::the_server(discover::LISTEN) {
                    Ok(found) => {
                        eprintln!("found “{}” at {}", found.name, found.url);
                        (found.url, server_or_code.as_str())
                    }
                    Err(e) => {
                        eprintln!("kodi-tickets-agent: {e:#}");
                        return ExitCode::FAILURE;
                    }
                }
            }
            None => {
                eprintln!(
                    "kodi-tickets-agent: give the 6-digit pairing code, after the server's \
                     address (or alone, to find the server on the network)\n\n\
                     Usage: kodi-tickets-agent pair [SERVER_URL] <CODE>"
                );
                return ExitCode::from(2);
            }
        };
        // The config it writes: the one the agent would read.
        let file = config_path(&cli, &env).unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG));
        let paired = tokio::runtime::Runtime::new()
            .map_err(anyhow::Error::from)
            .and_then(|runtime| {
                runtime.block_on(pairing::pair(&server_url, code, ca_file.as_deref(), &file))
            });
        return match paired {
            Ok(name) => {
                println!(
                    "paired as “{name}” with {server_url}; the server and token are in {}. \
                     Start (or restart) the agent: systemctl restart kodi-tickets-agent",
                    file.display()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("kodi-tickets-agent: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    let config = match Config::load(config_path(&cli, &env).as_deref(), &env) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("kodi-tickets-agent: configuration: {e}");
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
    if matches!(command, Command::Check) {
        let found = runtime.block_on(check::run(&config));
        for finding in &found {
            println!("{finding}");
        }
        return if found.iter().all(|f| f.ok) {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        };
    }
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
    let server = ServerClient::trusting(
        config.server_url(),
        &config.device_token,
        config.server_roots()?,
    )?;
    let driver = Driver::new(config.clone(), server.clone())?;
    let (events_tx, events) = mpsc::channel(64);
    tokio::spawn(driver::follow_server(server, events_tx));
    let kodi = kodi::watch(config.kodi_jsonrpc.clone(), Some(config.profiles_xml()));
    let heard = kodi::listen(config.kodi_jsonrpc.clone());
    driver.run(events, kodi, heard).await?;
    Ok(())
}
