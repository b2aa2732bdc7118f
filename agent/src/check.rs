//! `kodi-tickets-agent check`: what works on this box and what does not, in plain lines, for
//! the person setting it up.

use std::fmt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use kodi_tickets_protocol::AgentStatus;

use crate::config::Config;
use crate::kodi::Kodi;
use crate::server::{ServerClient, ServerError};

/// One line of the answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub ok: bool,
    pub what: String,
}

impl Finding {
    fn ok(what: impl Into<String>) -> Self {
        Finding {
            ok: true,
            what: what.into(),
        }
    }

    fn not(what: impl Into<String>) -> Self {
        Finding {
            ok: false,
            what: what.into(),
        }
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", if self.ok { "ok  " } else { "FAIL" }, self.what)
    }
}

/// Checks everything the agent relies on, in the order a person would fix them.
pub async fn run(config: &Config) -> Vec<Finding> {
    let mut found = Vec::new();
    let kodi = Kodi::connect(&config.kodi_jsonrpc).await;
    let mut status = AgentStatus {
        agent_version: env!("CARGO_PKG_VERSION").into(),
        kodi_reachable: kodi.is_ok(),
        kodi_version: None,
        master_lock: None,
        forced_restart: None,
    };
    match &kodi {
        Ok(kodi) => {
            status.kodi_version = kodi.version().await.ok();
            found.push(Finding::ok(format!(
                "Kodi {} answers on its JSON-RPC at {}",
                status
                    .kodi_version
                    .as_deref()
                    .unwrap_or("(version unknown)"),
                config.kodi_jsonrpc
            )));
            found.push(match kodi.eventserver_on().await {
                Ok(true) => Finding::ok(format!(
                    "Kodi's EventServer is on (the agent logs profiles off through {})",
                    config.kodi_eventserver
                )),
                Ok(false) => Finding::not(
                    "Kodi's EventServer is off: switch on Settings › Services › Control › \
                     Allow remote control by programs, or sessions cannot end on time",
                ),
                Err(e) => Finding::not(format!("cannot ask Kodi about its EventServer: {e}")),
            });
            status.master_lock = kodi.master_lock_on().await.ok();
            found.push(match status.master_lock {
                Some(true) => Finding::ok("Kodi has a master lock, so it asks for profile PINs"),
                Some(false) => Finding::not(
                    "Kodi has no master lock, so it asks for no profile PIN: set one in \
                     Settings › Profiles › General",
                ),
                None => Finding::not("cannot ask Kodi about its master lock"),
            });
        }
        Err(e) => found.push(Finding::not(format!(
            "Kodi does not answer on its JSON-RPC at {}: {e} (is Kodi running, with \
             Settings › Services › Control › Allow remote control by programs on?)",
            config.kodi_jsonrpc
        ))),
    }
    found.push(server(config, &status).await);
    found.push(readable(&config.profiles_xml(), "Kodi's profiles"));
    found.push(runnable(&config.script));
    found.push(writable_folder(&config.state_file));
    found
}

/// Sends this box's status: it shows the server answers and takes the token.
async fn server(config: &Config, status: &AgentStatus) -> Finding {
    let roots = match config.server_roots() {
        Ok(roots) => roots,
        Err(e) => return Finding::not(e.to_string()),
    };
    let client = match ServerClient::trusting(config.server_url(), &config.device_token, roots) {
        Ok(client) => client,
        Err(e) => return Finding::not(format!("the server address is not usable: {e}")),
    };
    match client.status(status).await {
        Ok(()) => Finding::ok(format!(
            "the server at {} answers and accepts this box's token",
            config.server_url()
        )),
        Err(ServerError::Unauthorized) => Finding::not(format!(
            "the server at {} refuses this box's token: add the box again on its Devices page",
            config.server_url()
        )),
        Err(e) => Finding::not(format!(
            "the server at {} cannot be reached: {e}",
            config.server_url()
        )),
    }
}

fn readable(path: &Path, what: &str) -> Finding {
    match std::fs::read(path) {
        Ok(_) => Finding::ok(format!("{what} file {} can be read", path.display())),
        Err(e) => Finding::not(format!(
            "{what} file {} cannot be read: {e}",
            path.display()
        )),
    }
}

fn runnable(script: &Path) -> Finding {
    match std::fs::metadata(script) {
        Ok(meta) if meta.is_file() && meta.permissions().mode() & 0o111 != 0 => Finding::ok(
            format!("the Kodi script {} is there and runnable", script.display()),
        ),
        Ok(_) => Finding::not(format!(
            "the Kodi script {} is not a runnable file (chmod +x?)",
            script.display()
        )),
        Err(e) => Finding::not(format!(
            "the Kodi script {} is missing: {e}",
            script.display()
        )),
    }
}

/// The state file's folder takes a new file (the agent writes its state beside it, then
/// renames it into place).
fn writable_folder(state_file: &Path) -> Finding {
    let folder = state_file
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let probe = folder.join(format!(".kodi-tickets-check-{}", std::process::id()));
    let written = std::fs::write(&probe, b"");
    let _ = std::fs::remove_file(&probe);
    match written {
        Ok(()) => Finding::ok(format!(
            "the state folder {} can be written",
            folder.display()
        )),
        Err(e) => Finding::not(format!(
            "the state folder {} cannot be written: {e}",
            folder.display()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_the_agent_needs_are_named_with_what_is_wrong() {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("script.sh");
        assert!(!runnable(&script).ok && runnable(&script).what.contains("missing"));
        std::fs::write(&script, "#!/bin/sh\n").unwrap();
        assert!(runnable(&script).what.contains("chmod +x"));
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert!(runnable(&script).ok);
        assert!(writable_folder(&dir.path().join("state.json")).ok);
        let missing = dir.path().join("nowhere").join("state.json");
        assert!(!writable_folder(&missing).ok);
        assert!(!readable(&dir.path().join("profiles.xml"), "Kodi's profiles").ok);
        assert_eq!(
            Finding::not("x").to_string(),
            "FAIL x",
            "a failure stands out"
        );
    }
}
