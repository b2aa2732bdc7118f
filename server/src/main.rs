use std::process::ExitCode;

use kodi_tickets_server::cli::{self, Command};
use tracing_subscriber::EnvFilter;

#[rocket::main]
async fn main() -> ExitCode {
    kodi_tickets_server::process::restrict_new_files();
    // Rocket logs through `log`; this subscriber takes both, filtered by RUST_LOG.
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match cli::parse(&args) {
        Ok(Command::Serve) => serve().await,
        Ok(Command::Version) => {
            println!("kodi-tickets-server {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
        Ok(Command::DeviceAdd(name)) => cli::device_add(&name).await,
        Ok(Command::AdminSetPassword(user)) => cli::admin_set_password(&user).await,
        Err(e) => Err(e),
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
