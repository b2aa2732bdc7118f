//! `kodi-tickets-agent pair URL CODE`: a new box asks the server for its token with the code
//! the Devices page shows, and writes it into its config file, so nobody types a token.

use std::path::Path;

use crate::server::{ServerClient, ServerError};

/// Pairs with the server at `server_url` and writes `server_url` and `device_token` into the
/// config file at `config` (made if missing, other settings kept), readable by its owner
/// only. Returns the box's name on the server.
pub async fn pair(server_url: &str, code: &str, config: &Path) -> anyhow::Result<String> {
    let client = ServerClient::new(server_url, "")?;
    let paired = client.pair(code).await.map_err(|e| match e {
        ServerError::Refused { status: 404, .. } => anyhow::anyhow!(
            "the code {code} is wrong, used or expired: make a new one on the Devices page"
        ),
        ServerError::Refused { status: 429, .. } => {
            anyhow::anyhow!("too many wrong codes: wait a minute, then try again")
        }
        other => anyhow::anyhow!("cannot pair with {server_url}: {other}"),
    })?;
    write_config(config, server_url, &paired.device_token)?;
    Ok(paired.device)
}

/// Sets the server and token in the TOML file at `path`, keeping its other settings.
fn write_config(path: &Path, server_url: &str, token: &str) -> anyhow::Result<()> {
    let mut table = match std::fs::read_to_string(path) {
        Ok(text) => text
            .parse::<toml::Table>()
            .map_err(|e| anyhow::anyhow!("{}: {}", path.display(), e.message()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => toml::Table::new(),
        Err(e) => return Err(anyhow::anyhow!("cannot read {}: {e}", path.display())),
    };
    table.insert("server_url".into(), server_url.trim_end_matches('/').into());
    table.insert("device_token".into(), token.into());
    crate::state::write_private(path, toml::to_string(&table)?.as_bytes())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn the_config_gets_server_and_token_and_keeps_the_rest_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("etc").join("agent.toml");
        write_config(&path, "http://server:5000/", "kt_one").unwrap();
        let table: toml::Table = std::fs::read_to_string(&path).unwrap().parse().unwrap();
        assert_eq!(table["server_url"].as_str(), Some("http://server:5000"));
        assert_eq!(table["device_token"].as_str(), Some("kt_one"));
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!((mode(&path), mode(path.parent().unwrap())), (0o600, 0o700));

        std::fs::write(
            &path,
            "kodi_userdata = \"/storage/.kodi/userdata\"\ndevice_token = \"old\"\n",
        )
        .unwrap();
        write_config(&path, "http://server:5000", "kt_two").unwrap();
        let table: toml::Table = std::fs::read_to_string(&path).unwrap().parse().unwrap();
        assert_eq!(table["device_token"].as_str(), Some("kt_two"));
        assert_eq!(
            table["kodi_userdata"].as_str(),
            Some("/storage/.kodi/userdata"),
            "other settings kept"
        );
    }
}
