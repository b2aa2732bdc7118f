//! Finding the Kodi Tickets server on the LAN: it announces itself with mDNS/DNS-SD
//! (`kodi_tickets_protocol::DISCOVERY_SERVICE`), so that pairing a box takes only the code.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use kodi_tickets_protocol::DISCOVERY_SERVICE;
use mdns_sd::{ServiceDaemon, ServiceEvent};

/// How long `pair` and `discover` listen for servers' answers.
pub const LISTEN: Duration = Duration::from_secs(3);

/// A server that answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// As it announces itself, e.g. "Kodi Tickets on nas".
    pub name: String,
    /// Where this box reaches it, e.g. `http://192.168.1.10:5000`.
    pub url: String,
}

/// The servers that answer on the LAN within `wait`, by name.
pub fn servers(wait: Duration) -> anyhow::Result<Vec<Found>> {
    let daemon = ServiceDaemon::new()
        .map_err(|e| anyhow::anyhow!("cannot look for the server on the network (mDNS): {e}"))?;
    let answers = daemon
        .browse(DISCOVERY_SERVICE)
        .map_err(|e| anyhow::anyhow!("cannot look for the server on the network (mDNS): {e}"))?;
    let until = Instant::now() + wait;
    let mut found = BTreeMap::new();
    while let Ok(event) = answers.recv_timeout(until.saturating_duration_since(Instant::now())) {
        if let ServiceEvent::ServiceResolved(service) = event {
            let addresses: Vec<IpAddr> = service.addresses.iter().map(|a| a.to_ip_addr()).collect();
            let Some(address) = best_address(&addresses) else {
                continue;
            };
            let scheme = match service.txt_properties.get_property_val_str("scheme") {
                Some("https") => "https",
                _ => "http",
            };
            let host = match address {
                IpAddr::V4(v4) => v4.to_string(),
                IpAddr::V6(v6) => format!("[{v6}]"),
            };
            let name = service
                .fullname
                .strip_suffix(DISCOVERY_SERVICE)
                .unwrap_or(&service.fullname)
                .trim_end_matches('.')
                .replace("\\.", ".");
            found.insert(
                service.fullname.clone(),
                Found {
                    name,
                    url: format!("{scheme}://{host}:{}", service.port),
                },
            );
        }
    }
    let _ = daemon.shutdown();
    let mut found: Vec<Found> = found.into_values().collect();
    found.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(found)
}

/// The address a box should use of those a server announces: IPv4 on the LAN first (what
/// people read and type), then global IPv6; a link-local IPv6 address needs its interface,
/// which a URL cannot carry, and a loopback address is only good on the server's machine.
fn best_address(addresses: &[IpAddr]) -> Option<IpAddr> {
    let rank = |a: &IpAddr| match a {
        IpAddr::V4(v4) if v4.is_loopback() => 3,
        IpAddr::V4(v4) if v4.is_link_local() => 2,
        IpAddr::V4(_) => 0,
        IpAddr::V6(v6) if v6.is_loopback() || v6.segments()[0] & 0xffc0 == 0xfe80 => 9,
        IpAddr::V6(_) => 1,
    };
    addresses
        .iter()
        .filter(|a| rank(a) < 9)
        .min_by_key(|a| (rank(a), **a))
        .copied()
}

/// The one server on the LAN, or what to do instead.
pub fn the_server(wait: Duration) -> anyhow::Result<Found> {
    let mut found = servers(wait)?;
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => Err(anyhow::anyhow!(
            "no Kodi Tickets server answered on this network: give its address, e.g. \
             kodi-tickets-agent pair http://192.168.1.10:5000 CODE"
        )),
        _ => Err(anyhow::anyhow!(
            "several Kodi Tickets servers answer ({}): give the address of yours, e.g. \
             kodi-tickets-agent pair {} CODE",
            found
                .iter()
                .map(|f| format!("{} at {}", f.name, f.url))
                .collect::<Vec<_>>()
                .join(", "),
            found[0].url
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lan_address_is_chosen_before_loopback_and_link_local_ones() {
        let a = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(
            best_address(&[
                a("127.0.0.1"),
                a("fe80::1"),
                a("192.168.1.10"),
                a("fd00::2")
            ]),
            Some(a("192.168.1.10"))
        );
        assert_eq!(
            best_address(&[a("fe80::1"), a("fd00::2")]),
            Some(a("fd00::2"))
        );
        assert_eq!(best_address(&[a("fe80::1")]), None, "needs its interface");
        assert_eq!(best_address(&[a("127.0.0.1")]), Some(a("127.0.0.1")));
    }
}
