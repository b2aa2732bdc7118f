mod cli;

use std::process::ExitCode;

use clap::Parser;
use cli::{Cli, Command};
use tracing_subscriber::EnvFilter;

#[rocket::main]
async fn main() -> ExitCode {
    kodi_tickets_server::process::restrict_new_files();
    // NOTE: `--help`, `--version` and a usage error exit here (0, 0 and 2).
    let command = Cli::parse().command.unwrap_or(Command::Serve);
    // Rocket logs through `log`; this subscriber takes both, filtered by RUST_LOG. A command
    // prints its answer, warnings and errors, not the server's start-up log.
    let default_filter = match command {
        Command::Serve => "info",
        Command::Device(_) | Command::Admin(_) => "warn,rocket=off",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter)),
        )
        .with_writer(std::io::stderr)
        .init();
    let result = match command {
        Command::Serve => serve().await,
        Command::Device(command) => cli::device(command).await,
        Command::Admin(command) => cli::admin(command).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kodi-tickets-server: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve() -> anyhow::Result<()> {
    kodi_tickets_server::process::raise_open_files_limit();
    kodi_tickets_server::rocket()?.launch().await?;
    Ok(())
}
