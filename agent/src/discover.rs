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

/// Time an announced address has to take a connection before the next one is tried.
const REACH: Duration = Duration::from_millis(700);

/// The servers that answer on the LAN within `wait`, by name, each at the first of its
/// addresses that takes a connection (one that takes none is left out).
pub fn servers(wait: Duration) -> anyhow::Result<Vec<Found>> {
    let daemon = ServiceDaemon::new()
        .map_err(|e| anyhow::anyhow!("cannot look for the server on the network (mDNS): {e}"))?;
    let answers = daemon
        .browse(DISCOVERY_SERVICE)
        .map_err(|e| anyhow::anyhow!("cannot look for the server on the network (mDNS): {e}"))?;
    let until = Instant::now() + wait;
    // Per server: (scheme, port, every address it announced).
    let mut heard: BTreeMap<String, (&'static str, u16, Vec<IpAddr>)> = BTreeMap::new();
    while let Ok(event) = answers.recv_timeout(until.saturating_duration_since(Instant::now())) {
        if let ServiceEvent::ServiceResolved(service) = event {
            let scheme = match service.txt_properties.get_property_val_str("scheme") {
                Some("https") => "https",
                _ => "http",
            };
            let entry =
                heard
                    .entry(service.fullname.clone())
                    .or_insert((scheme, service.port, Vec::new()));
            entry
                .2
                .extend(service.addresses.iter().map(|a| a.to_ip_addr()));
        }
    }
    let _ = daemon.shutdown();
    let mut found: Vec<Found> = heard
        .into_iter()
        .filter_map(|(fullname, (scheme, port, addresses))| {
            let address = reachable(&ranked(&addresses), port, REACH)?;
            let host = match address {
                IpAddr::V4(v4) => v4.to_string(),
                IpAddr::V6(v6) => format!("[{v6}]"),
            };
            let name = fullname
                .strip_suffix(DISCOVERY_SERVICE)
                .unwrap_or(&fullname)
                .trim_end_matches('.')
                .replace("\\.", ".");
            Some(Found {
                name,
                url: format!("{scheme}://{host}:{port}"),
            })
        })
        .collect();
    found.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(found)
}

/// The addresses a box may use of those a server announces, best first: IPv4 on the LAN (what
/// people read and type), then global IPv6, then loopback (only good on the server's own
/// machine); a link-local IPv6 address needs its interface, which a URL cannot carry.
fn ranked(addresses: &[IpAddr]) -> Vec<IpAddr> {
    let rank = |a: &IpAddr| match a {
        IpAddr::V4(v4) if v4.is_loopback() => Some(3),
        IpAddr::V4(v4) if v4.is_link_local() => Some(2),
        IpAddr::V4(_) => Some(0),
        IpAddr::V6(v6) if v6.is_loopback() || v6.segments()[0] & 0xffc0 == 0xfe80 => None,
        IpAddr::V6(_) => Some(1),
    };
    let mut usable: Vec<(u8, IpAddr)> = addresses
        .iter()
        .filter_map(|a| rank(a).map(|r| (r, *a)))
        .collect();
    usable.sort();
    usable.dedup();
    usable.into_iter().map(|(_, a)| a).collect()
}

/// The first of `addresses` that takes a connection on `port`: a server also announces
/// addresses this box cannot reach (a NAS's container bridges, a second network).
fn reachable(addresses: &[IpAddr], port: u16, within: Duration) -> Option<IpAddr> {
    addresses
        .iter()
        .find(|a| std::net::TcpStream::connect_timeout(&(**a, port).into(), within).is_ok())
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
    fn a_lan_address_is_ranked_before_loopback_and_link_local_ones() {
        let a = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(
            ranked(&[
                a("127.0.0.1"),
                a("fe80::1"),
                a("192.168.1.10"),
                a("fd00::2")
            ]),
            vec![a("192.168.1.10"), a("fd00::2"), a("127.0.0.1")]
        );
        assert!(ranked(&[a("fe80::1")]).is_empty(), "needs its interface");
    }

    #[test]
    fn an_address_that_takes_no_connection_is_passed_over() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let a = |s: &str| s.parse::<IpAddr>().unwrap();
        // Ranked first, but nothing answers there: a documentation address (TEST-NET-3), and
        // another loopback address with nothing listening on the port.
        let addresses = [a("203.0.113.9"), a("127.0.0.1"), a("127.0.0.2")];
        let ranked = ranked(&addresses);
        assert_eq!(ranked[0], a("203.0.113.9"));
        assert_eq!(
            reachable(&ranked, port, Duration::from_millis(300)),
            Some(a("127.0.0.1"))
        );
        assert_eq!(
            reachable(&[a("127.0.0.2")], port, Duration::from_millis(300)),
            None
        );
    }
}
