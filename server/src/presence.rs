//! Which devices' agents are connected right now, a wake-up line to each, and [`Changes`],
//! which tells everyone who acts on a change.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use rocket::tokio::sync::{watch, Notify};

use crate::db::DeviceId;
use crate::live::Pages;

/// Tells whoever acts on a change at once: the server's own delivery worker (a delivery or
/// an end was queued), the event streams of the device concerned (a delivery or a session of
/// its profiles changed) and the open admin pages.
#[derive(Clone)]
pub struct Changes {
    worker: Arc<Notify>,
    agents: Presence,
}

impl Changes {
    pub fn new(agents: Presence) -> Self {
        Changes {
            worker: Arc::default(),
            agents,
        }
    }

    /// After a change to a delivery or a session of `device`'s profiles (`None`: a profile on
    /// this server's machine).
    pub fn notify(&self, device: Option<DeviceId>) {
        self.worker.notify_one();
        if let Some(device) = device {
            self.agents.wake(device);
        }
        self.agents.pages().announce();
    }

    /// The open admin pages, for changes no device hears of.
    pub fn pages(&self) -> &Pages {
        self.agents.pages()
    }

    /// Returns at the worker's next notification (one given while it was busy is kept).
    pub async fn for_worker(&self) {
        self.worker.notified().await;
    }
}

/// Per connected device, the wake-up line its open event streams listen on; a device is in
/// the map while it has a stream. Open admin pages hear when a device comes or goes.
#[derive(Default, Clone)]
pub struct Presence {
    lines: Arc<Mutex<HashMap<DeviceId, watch::Sender<()>>>>,
    pages: Pages,
}

/// Held by an open event stream; the device counts as online while one exists.
pub struct Connected {
    presence: Presence,
    device_id: DeviceId,
    changes: watch::Receiver<()>,
}

impl Presence {
    pub fn new(pages: Pages) -> Self {
        Presence {
            lines: Arc::default(),
            pages,
        }
    }

    /// The open admin pages, told when a device comes or goes (and, through [`Changes`], of
    /// every other change).
    pub fn pages(&self) -> &Pages {
        &self.pages
    }

    pub fn connect(&self, device_id: DeviceId) -> Connected {
        let (changes, came_online) = {
            let mut map = self.lock();
            let came_online = !map.contains_key(&device_id);
            let line = map.entry(device_id).or_insert_with(|| watch::channel(()).0);
            (line.subscribe(), came_online)
        };
        if came_online {
            self.pages.announce();
        }
        Connected {
            presence: self.clone(),
            device_id,
            changes,
        }
    }

    pub fn is_online(&self, device_id: DeviceId) -> bool {
        self.lock().contains_key(&device_id)
    }

    /// Tells the device's open streams (if any) that something of theirs changed. Only those
    /// wake up: with many boxes connected, a change costs the same as with one.
    pub fn wake(&self, device_id: DeviceId) {
        if let Some(line) = self.lock().get(&device_id) {
            line.send_replace(());
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<DeviceId, watch::Sender<()>>> {
        self.lines.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Connected {
    /// Returns once the device was woken since this stream connected or last returned here.
    pub async fn changed(&mut self) {
        // NOTE: the line's sender is dropped only with its last stream, so this cannot fail.
        let _ = self.changes.changed().await;
    }
}

impl Drop for Connected {
    fn drop(&mut self) {
        let went_offline = {
            let mut map = self.presence.lock();
            // NOTE: this stream's own receiver is still counted: it is dropped after this.
            let last = map
                .get(&self.device_id)
                .is_some_and(|line| line.receiver_count() <= 1);
            if last {
                map.remove(&self.device_id);
            }
            last
        };
        if went_offline {
            self.presence.pages.announce();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn online_while_a_stream_is_open() {
        let presence = Presence::default();
        let first = presence.connect(DeviceId(1));
        let second = presence.connect(DeviceId(1));
        assert!(presence.is_online(DeviceId(1)) && !presence.is_online(DeviceId(2)));
        drop(first);
        assert!(presence.is_online(DeviceId(1)));
        drop(second);
        assert!(!presence.is_online(DeviceId(1)));
    }

    #[test]
    fn pages_hear_a_device_come_and_go_not_its_extra_streams() {
        let presence = Presence::default();
        let mut page = presence.pages().listen();
        let first = presence.connect(DeviceId(1));
        assert!(page.has_changed().unwrap(), "online");
        page.borrow_and_update();
        let second = presence.connect(DeviceId(1));
        drop(first);
        assert!(!page.has_changed().unwrap(), "still online");
        drop(second);
        assert!(page.has_changed().unwrap(), "offline");
    }

    async fn woken(stream: &mut Connected) -> bool {
        rocket::tokio::time::timeout(Duration::from_millis(50), stream.changed())
            .await
            .is_ok()
    }

    #[rocket::async_test]
    async fn a_wake_reaches_only_the_devices_own_streams_and_is_never_lost() {
        let presence = Presence::default();
        let (mut tv, mut tv_again, mut other) = (
            presence.connect(DeviceId(1)),
            presence.connect(DeviceId(1)),
            presence.connect(DeviceId(2)),
        );
        presence.wake(DeviceId(1));
        presence.wake(DeviceId(3));
        assert!(woken(&mut tv).await && woken(&mut tv_again).await);
        assert!(!woken(&mut other).await, "another device's change");
        assert!(!woken(&mut tv).await, "one wake, one return");
        // A wake while the stream is busy elsewhere is there when it next waits.
        presence.wake(DeviceId(2));
        rocket::tokio::task::yield_now().await;
        assert!(woken(&mut other).await);
    }
}
