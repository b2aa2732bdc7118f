//! Announces the server on the LAN with mDNS/DNS-SD, so that a box's agent (and the add-on's
//! settings dialog on a TV) finds it, and the person types only the pairing code.

use std::net::SocketAddr;

use kodi_tickets_protocol::DISCOVERY_SERVICE;
use mdns_sd::{ServiceDaemon, ServiceInfo};

/// The server's announcement; withdrawn (a "goodbye" to the LAN) when dropped.
pub struct Announcement {
    daemon: ServiceDaemon,
    fullname: String,
}

/// Announces the server listening on `listen` as "Kodi Tickets on <host name>". `None` when
/// there is nothing to announce: a server on a loopback address is out of the LAN's reach.
pub fn start(listen: SocketAddr, tls: bool) -> Result<Option<Announcement>, mdns_sd::Error> {
    if listen.ip().is_loopback() {
        return Ok(None);
    }
    let host = rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned();
    let scheme = if tls { "https" } else { "http" };
    let properties = [("scheme", scheme), ("version", env!("CARGO_PKG_VERSION"))];
    // NOTE: listening on every address, it announces each address of each interface, as
    // they come and go.
    let every = listen.ip().is_unspecified();
    let address = if every {
        String::new()
    } else {
        listen.ip().to_string()
    };
    let info = ServiceInfo::new(
        DISCOVERY_SERVICE,
        &format!("Kodi Tickets on {host}"),
        &format!("{host}.local."),
        address,
        listen.port(),
        &properties[..],
    )?;
    let info = if every { info.enable_addr_auto() } else { info };
    let daemon = ServiceDaemon::new()?;
    let fullname = info.get_fullname().to_owned();
    daemon.register(info)?;
    Ok(Some(Announcement { daemon, fullname }))
}

impl Announcement {
    /// The name it is announced under, e.g. `Kodi Tickets on nas._kodi-tickets._tcp.local.`.
    pub fn name(&self) -> &str {
        &self.fullname
    }
}

impl Drop for Announcement {
    fn drop(&mut self) {
        // Best effort: a LAN that misses the goodbye forgets the server when its record ages.
        if let Ok(done) = self.daemon.unregister(&self.fullname) {
            let _ = done.recv_timeout(std::time::Duration::from_secs(1));
        }
        let _ = self.daemon.shutdown();
    }
}
