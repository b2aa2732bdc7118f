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

/// Listens on the configured address through the gate (see `gate`), with Rocket behind it on a
/// loopback port of its own.
async fn serve() -> anyhow::Result<()> {
    use std::net::SocketAddr;

    use anyhow::Context;
    use kodi_tickets_server::config::AppConfig;
    use kodi_tickets_server::gate;

    kodi_tickets_server::process::raise_open_files_limit();
    kodi_tickets_server::memory::return_large_blocks();
    let rocket = kodi_tickets_server::rocket()?;
    let public: rocket::Config = rocket.figment().extract()?;
    let app: AppConfig = rocket.figment().extract()?;
    let public = SocketAddr::new(public.address, public.port);
    let listener = tokio::net::TcpListener::bind(public)
        .await
        .with_context(|| format!("cannot listen on {public}"))?;
    let public = listener.local_addr()?;
    let (rocket, opened) = gate::in_front_of(rocket, listener, app.gate_limits());
    let (announced, announcement) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        // NOTE: the gate does not open when Rocket fails before liftoff; its launch returns
        // the error.
        if let Ok(gate::Opened { tls }) = opened.await {
            let scheme = if tls { "https" } else { "http" };
            tracing::info!("Kodi Tickets is listening on {scheme}://{public}");
            let _ = announced.send(app.announce.then(|| announce(public, tls)).flatten());
        }
    });
    rocket.launch().await?;
    // Withdrawn from the LAN as the server stops.
    drop(announcement.await);
    Ok(())
}

/// Announces the server on the LAN; a LAN without multicast only loses the announcement.
fn announce(
    public: std::net::SocketAddr,
    tls: bool,
) -> Option<kodi_tickets_server::announce::Announcement> {
    match kodi_tickets_server::announce::start(public, tls) {
        Ok(Some(announcement)) => {
            tracing::info!("announced on the LAN as “{}”", announcement.name());
            Some(announcement)
        }
        Ok(None) => None,
        Err(e) => {
            tracing::warn!("cannot announce the server on the LAN (mDNS): {e}");
            None
        }
    }
}
