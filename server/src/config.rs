//! Settings: Rocket's own (`Rocket.toml`, `ROCKET_*`) plus the app's, read from the same figment.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use rand::RngCore;
use rocket::figment::Figment;
use serde::Deserialize;

use crate::db::sessions::Lifetimes;

/// The app's settings; every one can be set in `Rocket.toml` or as `ROCKET_<NAME>`.
#[derive(Debug, Clone, Deserialize)]
pub struct AppConfig {
    /// Folder for the generated secret key. The database has a setting of its own
    /// (`databases.kodi_tickets.url`), which by default points into `data` too.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// The Kodi script: it makes a PIN a profile's lock code, and with `--log-off` ends a
    /// session.
    #[serde(default = "default_kodi_script")]
    pub kodi_script: PathBuf,
    /// Where every run of the script is recorded.
    #[serde(default = "default_exec_log")]
    pub exec_log: PathBuf,
    /// Seconds a run of the script may take before it is killed.
    #[serde(default = "default_delivery_timeout")]
    pub delivery_timeout: u64,
    /// The Kodi script's path on boxes reached by `ssh`.
    #[serde(default = "default_ssh_remote_script")]
    pub ssh_remote_script: String,
    /// Host keys of boxes reached by `ssh` (checked strictly: unknown or changed keys fail).
    #[serde(default = "default_ssh_known_hosts")]
    pub ssh_known_hosts: PathBuf,
    /// Names this server is reached under, besides `localhost` and IP addresses (requests for
    /// any other name are refused, against DNS rebinding).
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
    /// Days an admin session lasts without being used.
    #[serde(default = "default_session_idle_days")]
    pub session_idle_days: u32,
    /// Days an admin session lasts at most, however much it is used.
    #[serde(default = "default_session_max_days")]
    pub session_max_days: u32,
    /// Connections one client address may hold open at once; 0 for no cap (behind a reverse
    /// proxy every connection comes from the proxy's address).
    #[serde(default = "default_connections_per_address")]
    pub connections_per_address: usize,
    /// Seconds a client has to send a whole request, head and body, before the server
    /// answers; 0 for no limit.
    #[serde(default = "default_request_timeout")]
    pub request_timeout: u64,
    /// Seconds a connection stays open with nothing sent either way (live pages and agents
    /// get a heartbeat every 15 s).
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout: u64,
    /// Announce the server on the LAN (mDNS), so that boxes find it and only the pairing code
    /// is typed on them.
    #[serde(default = "default_announce")]
    pub announce: bool,
}

/// How long a client (an agent's box, an open page) may leave data unacknowledged before the
/// server drops it: with the streams' 15 s heartbeat, a box unplugged from the network shows
/// offline within about 35 s.
const SILENT_CLIENT: std::time::Duration = std::time::Duration::from_secs(20);

impl AppConfig {
    pub fn session_lifetimes(&self) -> Lifetimes {
        const DAY: i64 = 24 * 60 * 60;
        Lifetimes {
            idle_secs: i64::from(self.session_idle_days) * DAY,
            absolute_secs: i64::from(self.session_max_days) * DAY,
        }
    }

    pub fn gate_limits(&self) -> crate::gate::Limits {
        crate::gate::Limits {
            per_address: self.connections_per_address,
            request: std::time::Duration::from_secs(self.request_timeout),
            idle: std::time::Duration::from_secs(self.idle_timeout.max(1)),
            silent: SILENT_CLIENT,
        }
    }
}

fn default_data_dir() -> PathBuf {
    "data".into()
}
fn default_kodi_script() -> PathBuf {
    "scripts/execute-on-kodi_set-passwd-per-profile.sh".into()
}
fn default_exec_log() -> PathBuf {
    "log/exec.log".into()
}
fn default_delivery_timeout() -> u64 {
    60
}
fn default_ssh_remote_script() -> String {
    "/usr/local/lib/kodi-tickets/execute-on-kodi_set-passwd-per-profile.sh".into()
}
fn default_ssh_known_hosts() -> PathBuf {
    "data/known_hosts".into()
}
fn default_session_idle_days() -> u32 {
    30
}
fn default_session_max_days() -> u32 {
    180
}
fn default_connections_per_address() -> usize {
    64
}
fn default_request_timeout() -> u64 {
    30
}
fn default_idle_timeout() -> u64 {
    60
}
fn default_announce() -> bool {
    true
}

/// Rocket's figment (defaults, then `Rocket.toml` or the file `ROCKET_CONFIG` names, then
/// `ROCKET_*` variables), with defaults of ours that hold wherever a settings file leaves them
/// out: no `ip_header` (Rocket's own default trusts `X-Real-IP`, so a LAN client could pick the
/// address its guesses are counted against) and 16 KiB bodies.
pub fn figment() -> Figment {
    use rocket::data::{Limits, ToByteUnit};
    use rocket::figment::providers::{Env, Format, Serialized, Toml};
    let body = 16.kibibytes();
    let limits = Limits::default()
        .limit("json", body)
        .limit("form", body)
        .limit("string", body)
        .limit("bytes", body)
        .limit("data-form", 64.kibibytes())
        .limit("file", 64.kibibytes());
    Figment::from(rocket::Config::default())
        .merge(Serialized::default("ip_header", false))
        .merge(Serialized::default("limits", limits))
        .merge(Toml::file(Env::var_or("ROCKET_CONFIG", "Rocket.toml")).nested())
        .merge(Env::prefixed("ROCKET_").ignore(&["PROFILE"]).global())
}

/// Why the server cannot start with its configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{0}")]
    Invalid(#[from] Box<rocket::figment::Error>),
    #[error("{}", path.display())]
    File {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl From<rocket::figment::Error> for ConfigError {
    fn from(e: rocket::figment::Error) -> Self {
        ConfigError::Invalid(Box::new(e))
    }
}

/// The error of a file operation on `path`, for `map_err`.
fn on(path: &Path) -> impl FnOnce(std::io::Error) -> ConfigError + '_ {
    move |source| ConfigError::File {
        path: path.to_owned(),
        source,
    }
}

/// Rocket's figment with what the app must settle before launch: the secret key (generated
/// once into the data folder when none is configured, so sessions survive restarts) and the
/// folder of the SQLite file (which SQLite will not create).
pub fn prepare(figment: Figment) -> Result<Figment, ConfigError> {
    let app: AppConfig = figment.extract()?;
    let secret = app.data_dir.join(SECRET_KEY_FILE);
    fs::create_dir_all(&app.data_dir).map_err(on(&app.data_dir))?;
    restrict(&app.data_dir, 0o700).map_err(on(&app.data_dir))?;
    restrict(&secret, 0o600).map_err(on(&secret))?;
    if let Ok(url) = figment.extract_inner::<String>("databases.kodi_tickets.url") {
        if let Some(database) = sqlite_path(&url) {
            if let Some(dir) = database.parent().filter(|d| !d.as_os_str().is_empty()) {
                fs::create_dir_all(dir).map_err(on(dir))?;
            }
            for suffix in ["", "-wal", "-shm"] {
                let mut file = database.clone().into_os_string();
                file.push(suffix);
                let file = PathBuf::from(file);
                restrict(&file, 0o600).map_err(on(&file))?;
            }
        }
    }
    // NOTE: Rocket's defaults hold an all-zero key (random per start in debug, refused in
    // release); only a key someone set counts as configured.
    let rocket_config: rocket::Config = figment.extract()?;
    if !rocket_config.secret_key.is_zero() {
        return Ok(figment);
    }
    let key = load_or_create_secret(&secret).map_err(on(&secret))?;
    Ok(figment.merge(("secret_key", key)))
}

const SECRET_KEY_FILE: &str = "secret.key";

/// Takes group and other permissions away from an existing file or folder (one made before
/// the server restricted new files). A folder with the sticky bit is shared (like `/tmp`)
/// and left alone.
#[cfg(unix)]
fn restrict(path: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let permissions = match fs::metadata(path) {
        Ok(metadata) => metadata.permissions(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    let current = permissions.mode() & 0o7777;
    if current & 0o1000 != 0 || current & 0o077 == 0 {
        return Ok(());
    }
    fs::set_permissions(path, fs::Permissions::from_mode(current & mode))
}

#[cfg(not(unix))]
fn restrict(_path: &Path, _mode: u32) -> std::io::Result<()> {
    Ok(())
}

/// The file behind a `sqlite:` URL, if it names one.
fn sqlite_path(url: &str) -> Option<PathBuf> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next()?;
    (!path.is_empty() && path != ":memory:").then(|| PathBuf::from(path))
}

fn load_or_create_secret(path: &Path) -> std::io::Result<String> {
    if let Ok(existing) = fs::read_to_string(path) {
        return Ok(existing.trim().to_owned());
    }
    let mut bytes = [0u8; 64];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let key = STANDARD.encode(bytes);
    // NOTE: written in full under a name of this call's own, then linked into place. The link
    // fails if the file exists, so of processes starting at once exactly one key wins, and no
    // process (nor a start after a crash) ever reads a half-written key.
    let file_name = path.file_name().unwrap_or_default().to_string_lossy();
    let nonce: u64 = rand::random();
    let partial = path.with_file_name(format!(".{file_name}.{nonce:016x}.partial"));
    write_key(&partial, &key)?;
    let linked = fs::hard_link(&partial, path);
    let _ = fs::remove_file(&partial);
    let created = match linked {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Err(e),
        // A file system without hard links: create the file directly instead.
        Err(_) => write_key(path, &key),
    };
    match created {
        Ok(()) => {
            tracing::info!("generated a new secret key in {}", path.display());
            Ok(key)
        }
        // Another process created it first: use theirs.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            Ok(fs::read_to_string(path)?.trim().to_owned())
        }
        Err(e) => Err(e),
    }
}

/// Writes a new file readable by its owner only; fails if the file exists.
fn write_key(path: &Path, key: &str) -> std::io::Result<()> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(key.as_bytes())?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(clippy::result_large_err)] // figment's `Jail` closure returns its own error type
    fn safe_defaults_hold_without_a_settings_file_saying_so() {
        use rocket::data::ToByteUnit;
        rocket::figment::Jail::expect_with(|jail| {
            jail.create_file("Rocket.toml", "[default]\nport = 5001\n")?;
            let config: rocket::Config = figment().extract()?;
            assert_eq!(config.port, 5001);
            assert_eq!(config.ip_header, None);
            assert_eq!(config.limits.get("json"), Some(16.kibibytes()));
            jail.set_env("ROCKET_IP_HEADER", "X-Forwarded-For");
            let config: rocket::Config = figment().extract()?;
            assert_eq!(config.ip_header.unwrap().as_str(), "X-Forwarded-For");
            Ok(())
        });
    }

    #[test]
    fn sqlite_urls_name_their_file() {
        assert_eq!(sqlite_path("sqlite://data/k.db"), Some("data/k.db".into()));
        assert_eq!(
            sqlite_path("sqlite:/tmp/x.db?mode=rwc"),
            Some("/tmp/x.db".into())
        );
        assert_eq!(sqlite_path("sqlite::memory:"), None);
        assert_eq!(sqlite_path("postgres://x"), None);
    }

    #[test]
    fn a_data_folder_that_cannot_be_made_is_named_in_the_error() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a-file");
        fs::write(&file, "").unwrap();
        let figment = rocket::Config::figment().merge(("data_dir", file.join("data")));
        match prepare(figment) {
            Err(ConfigError::File { path, .. }) => assert_eq!(path, file.join("data")),
            other => panic!("expected a file error, got {other:?}"),
        }
    }

    #[test]
    fn secret_is_created_once_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret.key");
        let first = load_or_create_secret(&path).unwrap();
        let second = load_or_create_secret(&path).unwrap();
        assert_eq!(first, second);
        assert_eq!(STANDARD.decode(first).unwrap().len(), 64);
    }

    #[test]
    fn racing_creators_agree_on_one_complete_key() {
        for _ in 0..20 {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("secret.key");
            let barrier = std::sync::Barrier::new(8);
            let keys: Vec<String> = std::thread::scope(|s| {
                let handles: Vec<_> = (0..8)
                    .map(|_| {
                        s.spawn(|| {
                            barrier.wait();
                            load_or_create_secret(&path).unwrap()
                        })
                    })
                    .collect();
                handles.into_iter().map(|h| h.join().unwrap()).collect()
            });
            assert!(keys.iter().all(|k| *k == keys[0]));
            assert_eq!(STANDARD.decode(&keys[0]).unwrap().len(), 64);
            let names: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
            assert_eq!(names.len(), 1, "no partial files left: {names:?}");
        }
    }
}
