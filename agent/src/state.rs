//! What the agent must not forget across restarts, kept as JSON and replaced atomically.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// A ticket's PIN to make a profile's lock code (an `arm` event from the server).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Arm {
    pub delivery_id: i64,
    pub ticket_id: i64,
    pub profile: String,
    pub lock_code: String,
}

/// A ticket running on this box.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    pub profile: String,
    /// Unix seconds, from the server: the source of truth.
    pub expires_at: i64,
    /// Minutes-left warnings already shown (5, 1).
    pub warned: BTreeSet<i64>,
    /// Opened from the PIN pad: the ticket's PIN never was the profile's lock code, so
    /// nothing needs re-locking when it ends.
    #[serde(default)]
    pub via_pin_pad: bool,
}

impl Session {
    pub fn new(profile: String, expires_at: i64) -> Session {
        Session {
            profile,
            expires_at,
            warned: BTreeSet::new(),
            via_pin_pad: false,
        }
    }
}

/// A login seen on the TV that the server has not yet accepted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnreportedLogin {
    pub ticket_id: i64,
    pub profile: String,
    pub lock_code: String,
    /// Unix seconds: when it happened; the ticket's minutes count from then.
    pub used_at: i64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct State {
    /// Per profile (key: lowercase name, as Kodi compares them): the ticket whose PIN is
    /// the profile's lock code now.
    pub armed: BTreeMap<String, Arm>,
    /// Tickets waiting their turn, oldest first: Kodi holds one lock code per profile.
    pub queued: Vec<Arm>,
    /// Running sessions by ticket id.
    pub sessions: BTreeMap<i64, Session>,
    pub unreported: Vec<UnreportedLogin>,
    /// Sessions whose end Kodi showed (ticket id → when), until the server has it: the page
    /// says "TV not yet logged off" until then.
    #[serde(default)]
    pub logged_off: BTreeMap<i64, i64>,
    /// Profiles whose lock code (a used PIN, or a deleted ticket's) must be replaced with a
    /// secret once nobody is logged in (key as `armed`).
    pub relock: BTreeSet<String>,
}

pub use kodi_tickets_protocol::profile_key as key;

impl State {
    /// The saved state, or a fresh one when there is none yet.
    pub fn load(path: &Path) -> std::io::Result<State> {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{}: {e}", path.display()),
                )
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(State::default()),
            Err(e) => Err(e),
        }
    }

    /// Writes the state to a temporary file, syncs it and renames it over the old one, so a
    /// crash leaves either the old state or the new, never half of one.
    ///
    /// The state holds armed PINs: the file is readable by the agent's user only (0600), and
    /// so is its folder (0700) when the agent creates it or it holds nothing but the state.
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        write_private(path, &serde_json::to_vec_pretty(self)?)
    }

    /// Queues a ticket unless this box knows it already: armed, queued, running or used
    /// (deliveries come at least once).
    pub fn enqueue(&mut self, arm: Arm) -> bool {
        let known = self.armed.values().any(|a| a.ticket_id == arm.ticket_id)
            || self.queued.iter().any(|a| a.ticket_id == arm.ticket_id)
            || self.sessions.contains_key(&arm.ticket_id)
            || self.unreported.iter().any(|u| u.ticket_id == arm.ticket_id);
        if !known {
            self.queued.push(arm);
        }
        !known
    }
}

/// Writes `bytes` to `path` for its owner's eyes only: beside it first, synced, then renamed
/// into place, so a crash leaves the old file or the new one, never half of it. A new folder
/// is made 0700, and one that holds nothing else is tightened.
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = PathBuf::from(format!("{}.tmp", path.display()));
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
        restrict_own_folder(dir, &[path, &tmp])?;
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    // A temporary file left by a crash keeps the mode it was created with.
    file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// Takes group and other permissions away from the state's folder if it holds nothing but
/// the state: a folder shared with other files (`/var/lib`, `/tmp`) is not the agent's own.
fn restrict_own_folder(dir: &Path, own_files: &[&Path]) -> std::io::Result<()> {
    let mode = std::fs::metadata(dir)?.permissions().mode() & 0o7777;
    if mode & 0o077 == 0 {
        return Ok(());
    }
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name();
        if !own_files
            .iter()
            .any(|f| f.file_name() == Some(name.as_os_str()))
        {
            return Ok(());
        }
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode & 0o700))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arm(ticket_id: i64) -> Arm {
        Arm {
            delivery_id: ticket_id * 10,
            ticket_id,
            profile: "Kids".into(),
            lock_code: format!("{ticket_id:04}"),
        }
    }

    #[test]
    fn saves_and_loads_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/state.json");
        assert!(State::load(&path).unwrap().queued.is_empty());
        let mut state = State::default();
        state.enqueue(arm(1));
        state.relock.insert("kids".into());
        state.save(&path).unwrap();
        let loaded = State::load(&path).unwrap();
        assert_eq!(loaded.queued, vec![arm(1)]);
        assert!(loaded.relock.contains("kids"));
        assert_eq!(
            std::fs::read_dir(path.parent().unwrap()).unwrap().count(),
            1,
            "no temp file left"
        );
        std::fs::write(&path, "{broken").unwrap();
        assert!(State::load(&path).is_err());
    }

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn the_state_and_its_folder_are_the_agents_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("new/state.json");
        State::default().save(&path).unwrap();
        assert_eq!(mode(path.parent().unwrap()), 0o700);
        assert_eq!(mode(&path), 0o600);

        // A folder made before (0755), with a state file from before (0644): both tightened.
        let own = dir.path().join("own");
        std::fs::create_dir(&own).unwrap();
        std::fs::set_permissions(&own, std::fs::Permissions::from_mode(0o755)).unwrap();
        let path = own.join("state.json");
        std::fs::write(&path, "{}").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        State::default().save(&path).unwrap();
        assert_eq!((mode(&own), mode(&path)), (0o700, 0o600));

        // A folder shared with other files keeps its mode; the state file is still 0600.
        let shared = dir.path().join("shared");
        std::fs::create_dir(&shared).unwrap();
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::write(shared.join("other"), "").unwrap();
        let path = shared.join("state.json");
        State::default().save(&path).unwrap();
        assert_eq!((mode(&shared), mode(&path)), (0o755, 0o600));
    }

    #[test]
    fn a_delivery_seen_twice_is_queued_once() {
        let mut state = State::default();
        assert!(state.enqueue(arm(1)));
        assert!(!state.enqueue(arm(1)));
        state.armed.insert("kids".into(), state.queued.remove(0));
        assert!(!state.enqueue(arm(1)), "armed already");
        assert!(state.enqueue(arm(2)));
    }
}
