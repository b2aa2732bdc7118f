//! Kodi's EventServer (UDP, `services.esport`, 9777 by default): the only way from outside
//! to end a session, as no JSON-RPC method logs off.
//!
//! Packet layout as in Kodi's `xbmcclient.py` (Debian `kodi-eventclients-python`): a
//! 32-byte header, all numbers big-endian, then the payload:
//! "XBMC", version 2.0, packet type (u16), sequence number (u32), packet count (u32),
//! payload size (u16), client token (u32), 10 reserved zero bytes.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use tokio::net::UdpSocket;

use super::KodiError;

const PT_HELO: u16 = 0x01;
const PT_BYE: u16 = 0x02;
const PT_ACTION: u16 = 0x0A;
const ACTION_EXECBUILTIN: u8 = 0x01;
const ICON_NONE: u8 = 0x00;
const DEVICE_NAME: &str = "kodi-tickets-agent";
/// Kodi queues an ACTION and runs it from its main loop; a BYE handled before that discards
/// the client with its queue. `xbmcclient.py` users wait 0.2 s for the same reason.
const ACTION_GRACE: Duration = Duration::from_millis(250);

/// Ends the logged-in session through the EventServer at `eventserver`
/// (HELO, ACTION "execute builtin" `System.LogOff`, BYE). Kodi shows the login screen about
/// 1.2 s later and drops every JSON-RPC client on the way.
///
/// ⚠ `System.LogOff` at the login screen, or while the master profile is logged on, leaves
/// Kodi's JSON-RPC down until someone logs in at the TV: ask [`Kodi::check_log_off`] first.
/// UDP gives no answer: an `Ok` means the packets were sent, not that Kodi acted on them;
/// watch the session to know.
///
/// [`Kodi::check_log_off`]: super::Kodi::check_log_off
pub async fn log_off(eventserver: SocketAddr) -> Result<(), KodiError> {
    let io = |source| KodiError::Io {
        addr: eventserver,
        source,
    };
    let socket = socket_for(eventserver).await.map_err(io)?;
    // Kodi tells clients apart by this token; 0 would make it fall back to the IP address.
    let token = rand::random::<u32>().max(1);
    socket
        .send_to(&helo(token), eventserver)
        .await
        .map_err(io)?;
    socket
        .send_to(&execute_builtin(token, "System.LogOff"), eventserver)
        .await
        .map_err(io)?;
    tokio::time::sleep(ACTION_GRACE).await;
    socket
        .send_to(&packet(PT_BYE, token, &[]), eventserver)
        .await
        .map_err(io)?;
    tracing::info!(%eventserver, "sent System.LogOff to Kodi's EventServer");
    Ok(())
}

/// A UDP socket on any local port, of the address family of `eventserver`.
pub(super) async fn socket_for(eventserver: SocketAddr) -> std::io::Result<UdpSocket> {
    let local: SocketAddr = match eventserver {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    UdpSocket::bind(local).await
}

/// HELO: device name, icon type, port (unused), two reserved u32.
fn helo(token: u32) -> Vec<u8> {
    let mut payload = Vec::with_capacity(DEVICE_NAME.len() + 12);
    payload.extend_from_slice(DEVICE_NAME.as_bytes());
    payload.push(0);
    payload.push(ICON_NONE);
    payload.extend_from_slice(&0u16.to_be_bytes());
    payload.extend_from_slice(&0u32.to_be_bytes());
    payload.extend_from_slice(&0u32.to_be_bytes());
    packet(PT_HELO, token, &payload)
}

/// ACTION: action type, then the builtin as a NUL-terminated string.
fn execute_builtin(token: u32, builtin: &str) -> Vec<u8> {
    let mut payload = Vec::with_capacity(builtin.len() + 2);
    payload.push(ACTION_EXECBUILTIN);
    payload.extend_from_slice(builtin.as_bytes());
    payload.push(0);
    packet(PT_ACTION, token, &payload)
}

/// One single-packet message. Every payload built here is far below the 992-byte limit.
fn packet(packet_type: u16, token: u32, payload: &[u8]) -> Vec<u8> {
    let size = u16::try_from(payload.len()).unwrap_or(u16::MAX);
    let mut out = Vec::with_capacity(32 + payload.len());
    out.extend_from_slice(b"XBMC");
    out.extend_from_slice(&[2, 0]);
    out.extend_from_slice(&packet_type.to_be_bytes());
    out.extend_from_slice(&1u32.to_be_bytes());
    out.extend_from_slice(&1u32.to_be_bytes());
    out.extend_from_slice(&size.to_be_bytes());
    out.extend_from_slice(&token.to_be_bytes());
    out.extend_from_slice(&[0; 10]);
    out.extend_from_slice(payload);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Splits a datagram into (packet type, token, payload), checking the fixed fields.
    fn parse(datagram: &[u8]) -> (u16, u32, &[u8]) {
        assert!(datagram.len() >= 32, "header is 32 bytes: {datagram:?}");
        assert_eq!(&datagram[0..4], b"XBMC");
        assert_eq!(&datagram[4..6], &[2, 0], "version 2.0");
        assert_eq!(&datagram[8..12], &[0, 0, 0, 1], "sequence number 1");
        assert_eq!(&datagram[12..16], &[0, 0, 0, 1], "one packet");
        let size = u16::from_be_bytes([datagram[16], datagram[17]]) as usize;
        assert_eq!(&datagram[22..32], &[0; 10], "reserved");
        assert_eq!(datagram.len(), 32 + size, "payload size field");
        (
            u16::from_be_bytes([datagram[6], datagram[7]]),
            u32::from_be_bytes([datagram[18], datagram[19], datagram[20], datagram[21]]),
            &datagram[32..],
        )
    }

    #[tokio::test]
    async fn log_off_sends_helo_execbuiltin_logoff_and_bye() {
        let kodi = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = kodi.local_addr().unwrap();
        let sender = tokio::spawn(log_off(addr));

        let mut datagrams = Vec::new();
        let mut buf = [0u8; 1024];
        for _ in 0..3 {
            let (n, _) = tokio::time::timeout(Duration::from_secs(5), kodi.recv_from(&mut buf))
                .await
                .expect("a datagram")
                .unwrap();
            datagrams.push(buf[..n].to_vec());
        }
        sender.await.unwrap().unwrap();

        let (kind, token, payload) = parse(&datagrams[0]);
        assert_eq!(kind, 0x01, "HELO");
        assert_ne!(token, 0);
        assert_eq!(payload, b"kodi-tickets-agent\0\0\0\0\0\0\0\0\0\0\0\0");

        let (kind, action_token, payload) = parse(&datagrams[1]);
        assert_eq!(kind, 0x0A, "ACTION");
        assert_eq!(action_token, token);
        assert_eq!(payload, b"\x01System.LogOff\0");

        let (kind, bye_token, payload) = parse(&datagrams[2]);
        assert_eq!(kind, 0x02, "BYE");
        assert_eq!(bye_token, token);
        assert!(payload.is_empty());
    }

    #[test]
    fn packets_match_xbmcclient_py() {
        // get_udp_message() of PacketHELO("kodi-tickets-agent"), PacketACTION("System.LogOff")
        // and PacketBYE() with uid 0x01020304, from Debian's kodi/xbmcclient.py.
        let token = 0x0102_0304;
        let helo_py: &[u8] = b"XBMC\x02\x00\x00\x01\x00\x00\x00\x01\x00\x00\x00\x01\x00\x1e\
            \x01\x02\x03\x04\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\
            kodi-tickets-agent\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00";
        let action_py: &[u8] = b"XBMC\x02\x00\x00\x0a\x00\x00\x00\x01\x00\x00\x00\x01\x00\x0f\
            \x01\x02\x03\x04\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01System.LogOff\x00";
        let bye_py: &[u8] = b"XBMC\x02\x00\x00\x02\x00\x00\x00\x01\x00\x00\x00\x01\x00\x00\
            \x01\x02\x03\x04\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00";
        assert_eq!(helo(token), helo_py);
        assert_eq!(execute_builtin(token, "System.LogOff"), action_py);
        assert_eq!(packet(PT_BYE, token, &[]), bye_py);
    }
}
