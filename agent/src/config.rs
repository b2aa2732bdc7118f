//! Settings: defaults, then a TOML file, then `KODI_TICKETS_AGENT_*` environment variables.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// The environment prefix of every setting, e.g. `KODI_TICKETS_AGENT_SERVER_URL`.
pub const ENV_PREFIX: &str = "KODI_TICKETS_AGENT_";
/// Where the config file is looked for when neither `--config` nor the environment names one.
pub const DEFAULT_CONFIG: &str = "/etc/kodi-tickets/agent.toml";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{0}")]
    Invalid(String),
}

/// Everything the agent needs to know about its box and its server.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The server, e.g. `http://192.168.1.10:5000`.
    pub server_url: String,
    /// This box's device token (Devices page, or `kodi-tickets-server device add NAME`).
    pub device_token: String,
    /// Certificate authorities (a PEM file) trusted for the server's HTTPS certificate besides
    /// the public ones: for a server with a certificate of its own.
    #[serde(default)]
    pub server_ca_file: Option<PathBuf>,
    /// Kodi's JSON-RPC (WebSocket on the TCP port).
    #[serde(default = "default_jsonrpc")]
    pub kodi_jsonrpc: String,
    /// Kodi's EventServer (UDP), used to log a profile off.
    #[serde(default = "default_eventserver")]
    pub kodi_eventserver: String,
    /// Kodi's userdata folder (holds `profiles.xml`).
    #[serde(default = "default_userdata")]
    pub kodi_userdata: PathBuf,
    /// The script that makes a PIN a profile's lock code.
    #[serde(default = "default_script")]
    pub script: PathBuf,
    /// Seconds a run of the script may take.
    #[serde(default = "default_script_timeout")]
    pub script_timeout: u64,
    /// Commands that stop and start Kodi on this box: passed to the script (empty: its
    /// defaults), and run by the agent itself to restart a Kodi whose control services do not
    /// answer when a session must end (empty: it cannot).
    #[serde(default)]
    pub kodi_stop_command: String,
    #[serde(default)]
    pub kodi_start_command: String,
    /// PIN-pad mode: the unlocked profile the box shows the add-on's PIN pad in (e.g.
    /// "Tickets"). Empty: lock-code mode, where a ticket's PIN becomes the profile's lock code.
    #[serde(default)]
    pub pin_pad_profile: String,
    /// Where the agent keeps armed PINs, running sessions and unsent reports across restarts.
    #[serde(default = "default_state_file")]
    pub state_file: PathBuf,
    /// Every run of the script is appended here.
    #[serde(default = "default_exec_log")]
    pub exec_log: PathBuf,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("server_url", &self.server_url)
            .field("device_token", &"<secret>")
            .field("server_ca_file", &self.server_ca_file)
            .field("kodi_jsonrpc", &self.kodi_jsonrpc)
            .field("kodi_eventserver", &self.kodi_eventserver)
            .field("kodi_userdata", &self.kodi_userdata)
            .field("script", &self.script)
            .field("state_file", &self.state_file)
            .finish_non_exhaustive()
    }
}

fn default_jsonrpc() -> String {
    "127.0.0.1:9090".into()
}
fn default_eventserver() -> String {
    "127.0.0.1:9777".into()
}
fn default_userdata() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/root"))
        .join(".kodi/userdata")
}
/// The script where this agent's installation put it: the Debian package in
/// `/usr/lib/kodi-tickets-agent/` beside `/usr/bin`, the LibreELEC add-on in its flat `bin/`
/// beside the agent, an install from source in `/usr/local/lib/kodi-tickets/`. The first that
/// exists; else the package's place, which `check` then reports as missing.
fn default_script() -> PathBuf {
    let exe = std::env::current_exe().ok();
    let bin = exe.as_deref().and_then(Path::parent);
    let package = bin
        .and_then(Path::parent)
        .map(|prefix| prefix.join("lib/kodi-tickets-agent").join(SCRIPT_NAME));
    let addon = bin.map(|bin| bin.join(SCRIPT_NAME));
    let from_source = Path::new("/usr/local/lib/kodi-tickets").join(SCRIPT_NAME);
    let candidates: Vec<PathBuf> = package
        .into_iter()
        .chain(addon)
        .chain([from_source])
        .collect();
    candidates
        .iter()
        .find(|path| path.is_file())
        .unwrap_or(&candidates[0])
        .clone()
}
const SCRIPT_NAME: &str = "execute-on-kodi_set-passwd-per-profile.sh";
fn default_script_timeout() -> u64 {
    90
}
fn default_state_file() -> PathBuf {
    "/var/lib/kodi-tickets-agent/state.json".into()
}
fn default_exec_log() -> PathBuf {
    "/var/log/kodi-tickets-agent/exec.log".into()
}

impl Config {
    /// Reads the file (if any) and the environment, then checks the result.
    pub fn load(file: Option<&Path>, env: &HashMap<String, String>) -> Result<Config, ConfigError> {
        let mut table = match file {
            Some(path) => read_table(path)?,
            None => toml::Table::new(),
        };
        for (key, value) in env {
            let Some(name) = key.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            if name == "CONFIG" {
                continue;
            }
            let name = name.to_ascii_lowercase();
            let value = match name.as_str() {
                "script_timeout" => toml::Value::Integer(value.parse().map_err(|_| {
                    ConfigError::Invalid(format!("{key} must be a whole number of seconds"))
                })?),
                _ => toml::Value::String(value.clone()),
            };
            table.insert(name, value);
        }
        let source = file
            .map(Path::to_path_buf)
            .unwrap_or_else(|| "environment".into());
        let config: Config =
            toml::Value::Table(table)
                .try_into()
                .map_err(|e: toml::de::Error| ConfigError::Parse {
                    path: source,
                    message: e.message().to_owned(),
                })?;
        config.check()?;
        Ok(config)
    }

    fn check(&self) -> Result<(), ConfigError> {
        let url = self.server_url.trim_end_matches('/');
        if !(url.starts_with("http://") || url.starts_with("https://"))
            || reqwest::Url::parse(url).is_err()
        {
            return Err(ConfigError::Invalid(format!(
                "server_url must be an http:// or https:// URL, not {:?}",
                self.server_url
            )));
        }
        if !self.device_token.starts_with("kt_") || self.device_token.len() < 20 {
            return Err(ConfigError::Invalid(
                "device_token must be a token from the server's Devices page (it starts with kt_)"
                    .into(),
            ));
        }
        for (name, addr) in [
            ("kodi_jsonrpc", &self.kodi_jsonrpc),
            ("kodi_eventserver", &self.kodi_eventserver),
        ] {
            if addr.parse::<std::net::SocketAddr>().is_err() {
                return Err(ConfigError::Invalid(format!(
                    "{name} must be IP:PORT, e.g. 127.0.0.1:9090, not {addr:?}"
                )));
            }
        }
        if self.script_timeout == 0 || self.script_timeout > 3600 {
            return Err(ConfigError::Invalid(
                "script_timeout must be 1 to 3600 seconds".into(),
            ));
        }
        self.server_roots()?;
        Ok(())
    }

    /// The certificates of `server_ca_file`; none when it is not set.
    pub fn server_roots(&self) -> Result<Vec<reqwest::Certificate>, ConfigError> {
        match &self.server_ca_file {
            None => Ok(Vec::new()),
            Some(path) => crate::server::certificates_in(path)
                .map_err(|e| ConfigError::Invalid(format!("server_ca_file: {e}"))),
        }
    }

    pub fn server_url(&self) -> &str {
        self.server_url.trim_end_matches('/')
    }

    pub fn script_timeout(&self) -> Duration {
        Duration::from_secs(self.script_timeout)
    }

    pub fn profiles_xml(&self) -> PathBuf {
        self.kodi_userdata.join("profiles.xml")
    }
}

fn read_table(path: &Path) -> Result<toml::Table, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    text.parse::<toml::Table>().map_err(|e| ConfigError::Parse {
        path: path.to_owned(),
        message: e.message().to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "kt_abcdefghijklmnopqrstuvwxyz";

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn file_then_environment() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("agent.toml");
        std::fs::write(
            &file,
            format!("server_url = \"http://file:5000\"\ndevice_token = \"{TOKEN}\"\nscript_timeout = 30\n"),
        )
        .unwrap();
        let config = Config::load(
            Some(&file),
            &env(&[
                ("KODI_TICKETS_AGENT_SERVER_URL", "http://env:5000/"),
                ("OTHER", "x"),
            ]),
        )
        .unwrap();
        assert_eq!(config.server_url(), "http://env:5000");
        assert_eq!(config.script_timeout, 30);
        assert_eq!(config.kodi_jsonrpc, "127.0.0.1:9090");
        assert!(
            !format!("{config:?}").contains(TOKEN),
            "the token never shows in logs"
        );
    }

    #[test]
    fn clear_errors() {
        let missing = Config::load(None, &env(&[])).unwrap_err().to_string();
        assert!(missing.contains("server_url"), "{missing}");
        let bad_url = Config::load(
            None,
            &env(&[
                ("KODI_TICKETS_AGENT_SERVER_URL", "ftp://x"),
                ("KODI_TICKETS_AGENT_DEVICE_TOKEN", TOKEN),
            ]),
        )
        .unwrap_err()
        .to_string();
        assert!(bad_url.contains("http://"), "{bad_url}");
        let bad_token = Config::load(
            None,
            &env(&[
                ("KODI_TICKETS_AGENT_SERVER_URL", "http://x:5000"),
                ("KODI_TICKETS_AGENT_DEVICE_TOKEN", "secret"),
            ]),
        )
        .unwrap_err()
        .to_string();
        assert!(bad_token.contains("kt_"), "{bad_token}");
        let bad_timeout =
            Config::load(None, &env(&[("KODI_TICKETS_AGENT_SCRIPT_TIMEOUT", "soon")]))
                .unwrap_err()
                .to_string();
        assert!(bad_timeout.contains("SCRIPT_TIMEOUT"), "{bad_timeout}");
        let dir = tempfile::tempdir().unwrap();
        let unknown = dir.path().join("a.toml");
        std::fs::write(&unknown, "server_url = \"http://x\"\ndevice_token = \"kt_abcdefghijklmnopqrstu\"\nsurprise = 1\n").unwrap();
        assert!(Config::load(Some(&unknown), &env(&[]))
            .unwrap_err()
            .to_string()
            .contains("surprise"));
        assert!(Config::load(Some(&dir.path().join("none.toml")), &env(&[]))
            .unwrap_err()
            .to_string()
            .contains("cannot read"));
    }
}
