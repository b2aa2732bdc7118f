//! The command line: serve (the default), or set-up and recovery commands.

use std::io::Read;

use anyhow::{bail, Context};
use rocket_db_pools::Database;

use crate::db::{admins, Db};
use crate::{password, routes};

pub const USAGE: &str = "\
usage:
  kodi-tickets-server                          run the server (settings: Rocket.toml, ROCKET_*)
  kodi-tickets-server device add NAME          add a Kodi box; prints its API token once
  kodi-tickets-server admin set-password USER  set (or create) an admin's password, read from stdin
  kodi-tickets-server --version";

pub enum Command {
    Serve,
    Version,
    DeviceAdd(String),
    AdminSetPassword(String),
}

pub fn parse(args: &[String]) -> anyhow::Result<Command> {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Ok(match args.as_slice() {
        [] => Command::Serve,
        ["--version" | "-V"] => Command::Version,
        ["device", "add", name] => Command::DeviceAdd((*name).to_owned()),
        ["admin", "set-password", user] => Command::AdminSetPassword((*user).to_owned()),
        _ => bail!("{USAGE}"),
    })
}

/// The database of the configured server, migrated, without starting to serve.
async fn database() -> anyhow::Result<crate::db::Pool> {
    let rocket = crate::rocket()?
        .ignite()
        .await
        .context("cannot open the database")?;
    let db = Db::fetch(&rocket).context("database not attached")?;
    Ok(crate::db::Pool::clone(db))
}

pub async fn device_add(name: &str) -> anyhow::Result<()> {
    let pool = database().await?;
    let (name, token) = routes::devices::add(&pool, name)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    eprintln!("device “{name}” added; its token (shown only now):");
    println!("{token}");
    Ok(())
}

pub async fn admin_set_password(username: &str) -> anyhow::Result<()> {
    let mut input = String::new();
    std::io::stdin().read_to_string(&mut input)?;
    let new = input.trim_end_matches(['\r', '\n']);
    if let Err(why) = password::check_new(new, new) {
        bail!("password not set: {why}");
    }
    let username = crate::validate::name(username, "user").map_err(|e| anyhow::anyhow!(e))?;
    let pool = database().await?;
    let hash = password::hash(new.to_owned())
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    admins::set_password(&pool, &username, &hash, false, None).await?;
    eprintln!("password of “{username}” set; their sessions were logged out");
    Ok(())
}
