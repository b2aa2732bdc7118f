//! Which devices' agents are connected right now.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

#[derive(Default, Clone)]
pub struct Presence(Arc<Mutex<HashMap<i64, usize>>>);

/// Held by an open event stream; the device counts as online while one exists.
pub struct Connected {
    presence: Presence,
    device_id: i64,
}

impl Presence {
    pub fn connect(&self, device_id: i64) -> Connected {
        *self.lock().entry(device_id).or_default() += 1;
        Connected {
            presence: self.clone(),
            device_id,
        }
    }

    pub fn is_online(&self, device_id: i64) -> bool {
        self.lock().get(&device_id).is_some_and(|n| *n > 0)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<i64, usize>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for Connected {
    fn drop(&mut self) {
        let mut map = self.presence.lock();
        if let Some(n) = map.get_mut(&self.device_id) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.device_id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn online_while_a_stream_is_open() {
        let presence = Presence::default();
        let first = presence.connect(1);
        let second = presence.connect(1);
        assert!(presence.is_online(1) && !presence.is_online(2));
        drop(first);
        assert!(presence.is_online(1));
        drop(second);
        assert!(!presence.is_online(1));
    }
}
