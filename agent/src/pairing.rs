//! `kodi-tickets-agent pair URL CODE`: a new box asks the server for its token with the code
//! the Devices page shows, and writes it into its config file, so nobody types a token.

use std::path::Path;

use crate::server::{ServerClient, ServerError};

/// Pairs with the server at `server_url` (trusting the certificate authorities in `ca_file`
/// for its HTTPS certificate, if given) and writes `server_url`, `device_token` and
/// `server_ca_file` into the config file at `config` (made if missing, other settings kept),
/// readable by its owner only. Returns the box's name on the server. The config is read
/// first, so that a config that cannot be kept stops the pairing before the code is used up;
/// nothing is written unless the server paired the box.
pub async fn pair(
    server_url: &str,
    code: &str,
    ca_file: Option<&Path>,
    config: &Path,
) -> anyhow::Result<String> {
    let ca_file = ca_file
        .map(std::path::absolute)
        .transpose()
        .map_err(|e| anyhow::anyhow!("the CA file: {e}"))?;
    let roots = match &ca_file {
        Some(path) => crate::server::certificates_in(path).map_err(anyhow::Error::msg)?,
        None => Vec::new(),
    };
    let mut table = read_config(config)?;
    let client = ServerClient::trusting(server_url, "", roots)?;
    let paired = client.pair(code).await.map_err(|e| match e {
        ServerError::Refused { status: 404, .. } => anyhow::anyhow!(
            "the code {code} is wrong, used or expired: make a new one on the Devices page"
        ),
        ServerError::Refused { status: 429, .. } => {
            anyhow::anyhow!("too many wrong codes: wait a minute, then try again")
        }
        ServerError::Unavailable(why) => anyhow::anyhow!("cannot pair with {server_url}: {why}"),
        other => anyhow::anyhow!("cannot pair with {server_url}: {other}"),
    })?;
    set_server(
        &mut table,
        server_url,
        &paired.device_token,
        ca_file.as_deref(),
    );
    crate::state::write_private(config, toml::to_string(&table)?.as_bytes())?;
    Ok(paired.device)
}

/// Whether `text` has the shape of a pairing code (6 digits), not of a server's address.
pub fn looks_like_a_code(text: &str) -> bool {
    let text = text.trim();
    text.len() == 6 && text.bytes().all(|b| b.is_ascii_digit())
}

/// The settings in the TOML file at `path`; none when it does not exist yet.
fn read_config(path: &Path) -> anyhow::Result<toml::Table> {
    match std::fs::read_to_string(path) {
        Ok(text) => text.parse::<toml::Table>().map_err(|e| {
            anyhow::anyhow!(
                "{} is not valid TOML ({}): fix it first",
                path.display(),
                e.message().trim().replace('\n', "; ")
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(toml::Table::new()),
        Err(e) => Err(anyhow::anyhow!("cannot read {}: {e}", path.display())),
    }
}

/// Sets the server, token and CA file in `table`, keeping its other settings.
fn set_server(table: &mut toml::Table, server_url: &str, token: &str, ca_file: Option<&Path>) {
    table.insert("server_url".into(), server_url.trim_end_matches('/').into());
    table.insert("device_token".into(), token.into());
    if let Some(ca_file) = ca_file {
        table.insert(
            "server_ca_file".into(),
            ca_file.to_string_lossy().into_owned().into(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn write_config(path: &Path, server_url: &str, token: &str) {
        let mut table = read_config(path).unwrap();
        set_server(&mut table, server_url, token, None);
        crate::state::write_private(path, toml::to_string(&table).unwrap().as_bytes()).unwrap();
    }

    #[test]
    fn a_config_that_is_not_toml_is_refused_with_its_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.toml");
        std::fs::write(
            &path,
            "server_url = \"http://x\"\nkodi_userdata = /storage\n",
        )
        .unwrap();
        let refused = read_config(&path).unwrap_err().to_string();
        assert!(
            refused.contains("agent.toml is not valid TOML"),
            "{refused}"
        );
    }

    #[test]
    fn the_config_gets_server_and_token_and_keeps_the_rest_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("etc").join("agent.toml");
        write_config(&path, "http://server:5000/", "kt_one");
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
        write_config(&path, "http://server:5000", "kt_two");
        let table: toml::Table = std::fs::read_to_string(&path).unwrap().parse().unwrap();
        assert_eq!(table["device_token"].as_str(), Some("kt_two"));
        assert_eq!(
            table["kodi_userdata"].as_str(),
            Some("/storage/.kodi/userdata"),
            "other settings kept"
        );
    }
}
