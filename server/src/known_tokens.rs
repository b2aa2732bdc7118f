//! Device tokens recently found live, so that a box's every API call does not look its token
//! up in the database again.
//!
//! NOTE: the benchmark's API reads ran at 0.72× of `/healthz` with two queries each (the token,
//! then the ticket); with the token known, one. A token this server revokes or replaces (the
//! Devices page, pairing again) is forgotten at once. One revoked by the command line, another
//! process, is refused once its entry is older than [`LIFE`]: the command says so.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::db::DeviceId;

/// How long a token found live is believed without asking the database again.
pub const LIFE: Duration = Duration::from_secs(5);
/// Past this many entries, stale ones are dropped before a new one is added. Only live
/// tokens are ever added, so the count stays near the number of boxes.
const PRUNE_ABOVE: usize = 4096;

/// Shared by clones: the server manages one, and whoever revokes a token forgets it there.
#[derive(Debug, Clone, Default)]
pub struct KnownTokens(Arc<Mutex<HashMap<String, (DeviceId, Instant)>>>);

impl KnownTokens {
    /// The device whose token has this hash, if it was found live less than [`LIFE`] ago.
    pub fn device(&self, token_hash: &str) -> Option<DeviceId> {
        let known = self.lock();
        let (id, found_at) = known.get(token_hash)?;
        believed(found_at).then_some(*id)
    }

    /// Notes that the database just found this token live.
    pub fn remember(&self, token_hash: &str, id: DeviceId) {
        let mut known = self.lock();
        if known.len() >= PRUNE_ABOVE {
            known.retain(|_, (_, found_at)| believed(found_at));
        }
        known.insert(token_hash.to_owned(), (id, Instant::now()));
    }

    /// Drops the entries too old to be believed, and the room they took. The sweeper calls it:
    /// after thousands of boxes came and went, their entries would otherwise stay (until more
    /// than [`PRUNE_ABOVE`] new ones come) and, scattered among the memory their connections
    /// freed, keep much of it from going back to the system.
    pub fn forget_stale(&self) {
        let mut known = self.lock();
        known.retain(|_, (_, found_at)| believed(found_at));
        known.shrink_to_fit();
    }

    /// Forgets every token of a device: it was revoked or given a new one.
    pub fn forget(&self, id: DeviceId) {
        self.lock().retain(|_, (known, _)| *known != id);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (DeviceId, Instant)>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Whether an entry found live at `found_at` is still believed.
fn believed(found_at: &Instant) -> bool {
    found_at.elapsed() < LIFE
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_remembered_token_is_known_until_its_device_is_forgotten() {
        let tokens = KnownTokens::default();
        let (a, b) = (DeviceId(1), DeviceId(2));
        assert_eq!(tokens.device("h1"), None);
        tokens.remember("h1", a);
        tokens.remember("h2", b);
        assert_eq!(tokens.device("h1"), Some(a));
        tokens.forget(a);
        assert_eq!(tokens.device("h1"), None);
        assert_eq!(tokens.device("h2"), Some(b));
    }

    #[test]
    fn an_entry_older_than_its_life_is_not_believed_and_is_pruned() {
        let tokens = KnownTokens::default();
        let id = DeviceId(7);
        tokens.0.lock().unwrap().extend((0..PRUNE_ABOVE).map(|i| {
            let stale = Instant::now() - LIFE - Duration::from_millis(1);
            (format!("old{i}"), (id, stale))
        }));
        assert_eq!(tokens.device("old0"), None);
        tokens.remember("new", id);
        assert_eq!(tokens.0.lock().unwrap().len(), 1);
        assert_eq!(tokens.device("new"), Some(id));
    }

    #[test]
    fn the_sweep_forgets_stale_entries_and_gives_their_room_back() {
        let tokens = KnownTokens::default();
        let stale = Instant::now() - LIFE - Duration::from_millis(1);
        tokens
            .0
            .lock()
            .unwrap()
            .extend((0..10_000).map(|i| (format!("old{i}"), (DeviceId(i), stale))));
        tokens.remember("fresh", DeviceId(1));
        tokens.forget_stale();
        let known = tokens.0.lock().unwrap();
        assert_eq!(known.keys().collect::<Vec<_>>(), ["fresh"]);
        assert!(known.capacity() < 100, "{}", known.capacity());
    }
}
