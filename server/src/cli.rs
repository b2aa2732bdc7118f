//! The command line: serve (the default), or set-up and recovery commands. They work on the
//! configured server's database and print no server log.

use std::io::Read;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use rocket_db_pools::Database;

use kodi_tickets_server::db::{self, admins, devices, Db};
use kodi_tickets_server::enrol::{self, Enrolled};
use kodi_tickets_server::{password, validate};

/// Kodi Tickets: time-limited PIN tickets for Kodi profiles. Settings: Rocket.toml and
/// ROCKET_* variables (README, Configuration).
#[derive(Parser)]
#[command(name = "kodi-tickets-server", version)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the server (what it does without a command).
    Serve,
    /// Kodi boxes and their API tokens.
    #[command(subcommand)]
    Device(DeviceCommand),
    /// Admin accounts.
    #[command(subcommand)]
    Admin(AdminCommand),
}

#[derive(Subcommand)]
pub enum DeviceCommand {
    /// Add a Kodi box; prints its API token, the only time it is shown.
    Add {
        /// The box's name, e.g. "Living room".
        name: String,
    },
    /// Make a code that a new box's agent exchanges for its token
    /// (`kodi-tickets-agent pair URL CODE`), valid ten minutes, once. For a box that exists
    /// already (it lost its settings), the code pairs it again: its profiles stay.
    PairCode {
        /// The box's name, e.g. "Bedroom".
        name: String,
    },
    /// List the boxes: name, how PINs reach it, when it was last seen.
    List,
    /// Revoke a box's token: it is refused at once.
    Revoke {
        /// The box's name.
        name: String,
    },
}

#[derive(Subcommand)]
pub enum AdminCommand {
    /// Set (or create) an admin's password, read from standard input; ends their sessions.
    SetPassword {
        /// The admin's user name.
        user: String,
    },
}

/// The database of the configured server, migrated, without starting to serve.
async fn database() -> anyhow::Result<db::Pool> {
    let rocket = kodi_tickets_server::rocket()?
        .ignite()
        .await
        .context("cannot open the database")?;
    let db = Db::fetch(&rocket).context("database not attached")?;
    Ok(db::Pool::clone(db))
}

pub async fn device(command: DeviceCommand) -> anyhow::Result<()> {
    let pool = database().await?;
    match command {
        DeviceCommand::Add { name } => {
            let Enrolled { name, token, .. } = enrol::device(&pool, &name)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            eprintln!("device “{name}” added; its token (shown only now):");
            println!("{token}");
        }
        DeviceCommand::PairCode { name } => {
            // NOTE: a box that exists is paired again (it lost its settings): same profiles.
            let existing = devices::list(&pool)
                .await?
                .into_iter()
                .find(|d| d.revoked_at.is_none() && d.name.eq_ignore_ascii_case(name.trim()));
            let code = match existing {
                Some(d) => enrol::pairing_code_again(&pool, d.id).await,
                None => enrol::pairing_code(&pool, &name).await,
            }
            .map_err(|e| anyhow::anyhow!("{e}"))?;
            eprintln!(
                "pairing code for “{}”, valid until {} (once); on the box: \
                 kodi-tickets-agent pair http://THIS-SERVER:PORT {}",
                code.name,
                kodi_tickets_server::views::human_time(code.expires_at),
                code.code
            );
            println!("{}", code.code);
        }
        DeviceCommand::List => {
            for d in devices::list(&pool).await? {
                let seen = match (d.revoked_at, d.last_seen_at) {
                    (Some(_), _) => "revoked".to_owned(),
                    (None, Some(at)) => {
                        format!("last seen {}", kodi_tickets_server::views::human_time(at))
                    }
                    (None, None) => "never seen".to_owned(),
                };
                println!("{}\t{}\t{seen}", d.name, d.delivery.as_str());
            }
        }
        DeviceCommand::Revoke { name } => {
            let found = devices::list(&pool)
                .await?
                .into_iter()
                .find(|d| d.name.eq_ignore_ascii_case(name.trim()) && d.revoked_at.is_none());
            let Some(device) = found else {
                bail!("no device named “{name}” with a live token");
            };
            devices::revoke(&pool, device.id).await?;
            eprintln!(
                "the token of “{}” is revoked; a running server refuses it within {} seconds",
                device.name,
                kodi_tickets_server::known_tokens::LIFE.as_secs()
            );
        }
    }
    Ok(())
}

pub async fn admin(command: AdminCommand) -> anyhow::Result<()> {
    let AdminCommand::SetPassword { user } = command;
    let mut input = String::new();
    std::io::stdin().read_to_string(&mut input)?;
    let new = input.trim_end_matches(['\r', '\n']);
    if let Err(why) = password::check_new(new, new) {
        bail!("password not set: {why}");
    }
    let username = validate::name(&user, "user").map_err(|e| anyhow::anyhow!(e))?;
    let pool = database().await?;
    let hash = password::hash(new.to_owned())
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    admins::set_password(&pool, &username, &hash, false, None).await?;
    eprintln!("password of “{username}” set; their sessions were logged out");
    Ok(())
}
