//! Shortening Kodi's own profile switch by about a second.
//!
//! At the start of every switch (a login, a log-off) Kodi stops its EventServer and then its
//! JSON-RPC server, and waits for each one's thread to notice. Both threads block in
//! `select()` for up to one second at a time (Kodi's `CEventServer::Run`, 1000 ms, and
//! `CTCPServer::Process`, 1 s), so each stop takes whatever remains of that second: measured
//! on 20.1, ~1.0 s of its ~1.05 s switch. Anything arriving on their sockets ends the wait at
//! once. So while a switch the agent asked for begins, [`hurry_switch`] sends Kodi what both
//! ignore: a one-byte datagram to the EventServer (not a packet: dropped unread) and a space
//! on a JSON-RPC connection of its own (outside any JSON text: skipped). It stops when Kodi
//! closes that connection, which it does once both servers are down, or after [`LIMIT`].

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

/// How often both are woken: each wait then lasts at most this long.
pub const STEP: Duration = Duration::from_millis(20);
/// A switch Kodi never begins (it refused the login, say) is not waited for longer.
pub const LIMIT: Duration = Duration::from_secs(3);

/// Wakes Kodi's EventServer at `eventserver` and its JSON-RPC server at `jsonrpc`
/// ("127.0.0.1:9090") every [`STEP`] until Kodi closes the JSON-RPC connection this opens, or
/// [`LIMIT`] has passed. Returns how many times it woke them: 0 when that connection cannot
/// be opened. Errors only shorten it: the switch happens without it, a second later.
pub async fn hurry_switch(jsonrpc: &str, eventserver: SocketAddr) -> u32 {
    let deadline = tokio::time::Instant::now() + LIMIT;
    let connected = tokio::time::timeout(STEP * 5, TcpStream::connect(jsonrpc)).await;
    let Ok(Ok(mut tcp)) = connected else {
        tracing::debug!("cannot reach Kodi's JSON-RPC to hurry its switch");
        return 0;
    };
    let udp = bound_to(eventserver).await;
    let mut ticks = tokio::time::interval(STEP);
    let mut woken = 0;
    let mut scratch = [0u8; 256];
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            () = tokio::time::sleep_until(deadline) => break,
            () = closed(&mut tcp, &mut scratch) => break,
        }
        if let Some(udp) = &udp {
            // A refused send (the EventServer already gone) is no reason to stop.
            let _ = udp.send(&[0]).await;
        }
        if tcp.write_all(b" ").await.is_err() {
            break;
        }
        woken += 1;
    }
    tracing::debug!(woken, "hurried Kodi's switch");
    woken
}

/// A UDP socket connected to `eventserver`, or `None` if the system refuses one.
async fn bound_to(eventserver: SocketAddr) -> Option<UdpSocket> {
    let local: SocketAddr = match eventserver {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = UdpSocket::bind(local).await.ok()?;
    socket.connect(eventserver).await.ok()?;
    Some(socket)
}

/// Resolves when Kodi closes `stream` (end of file or an error). Kodi sends nothing on it:
/// any bytes are dropped.
async fn closed(stream: &mut TcpStream, scratch: &mut [u8]) {
    while let Ok(1..) = stream.read(scratch).await {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    /// Kodi's two servers as two sockets: what each receives, and the JSON-RPC connection.
    struct KodiSockets {
        eventserver: UdpSocket,
        jsonrpc: TcpListener,
    }

    impl KodiSockets {
        async fn new() -> KodiSockets {
            KodiSockets {
                eventserver: UdpSocket::bind("127.0.0.1:0").await.unwrap(),
                jsonrpc: TcpListener::bind("127.0.0.1:0").await.unwrap(),
            }
        }

        fn addrs(&self) -> (String, SocketAddr) {
            (
                self.jsonrpc.local_addr().unwrap().to_string(),
                self.eventserver.local_addr().unwrap(),
            )
        }
    }

    #[tokio::test]
    async fn wakes_both_servers_until_kodi_closes_the_connection() {
        let kodi = KodiSockets::new().await;
        let (jsonrpc, eventserver) = kodi.addrs();
        let hurry = tokio::spawn(async move { hurry_switch(&jsonrpc, eventserver).await });

        let (mut connection, _) = kodi.jsonrpc.accept().await.unwrap();
        let mut datagram = [0u8; 64];
        for _ in 0..3 {
            let n = kodi.eventserver.recv(&mut datagram).await.unwrap();
            assert_eq!(&datagram[..n], &[0], "one byte, not an EventServer packet");
        }
        let mut bytes = [0u8; 3];
        connection.read_exact(&mut bytes).await.unwrap();
        assert_eq!(
            &bytes, b"   ",
            "only spaces, which Kodi skips between JSON texts"
        );

        let closed_at = tokio::time::Instant::now();
        drop(connection);
        let woken = tokio::time::timeout(LIMIT, hurry)
            .await
            .expect("stops once Kodi closes the connection")
            .unwrap();
        assert!(closed_at.elapsed() < LIMIT / 2, "{:?}", closed_at.elapsed());
        assert!(woken >= 3, "{woken}");
    }

    #[tokio::test(start_paused = true)]
    async fn gives_up_after_the_limit_when_no_switch_comes() {
        let kodi = KodiSockets::new().await;
        let (jsonrpc, eventserver) = kodi.addrs();
        let hurry = tokio::spawn(async move { hurry_switch(&jsonrpc, eventserver).await });
        let (_connection, _) = kodi.jsonrpc.accept().await.unwrap();

        let woken = hurry.await.unwrap();
        let steps = (LIMIT.as_millis() / STEP.as_millis()) as u32;
        assert!(
            (steps - 1..=steps + 1).contains(&woken),
            "{woken} of {steps}"
        );
    }

    #[tokio::test]
    async fn without_kodi_it_returns_at_once() {
        let kodi = KodiSockets::new().await;
        let (jsonrpc, eventserver) = kodi.addrs();
        drop(kodi);
        let started = tokio::time::Instant::now();
        assert_eq!(hurry_switch(&jsonrpc, eventserver).await, 0);
        assert!(started.elapsed() < LIMIT / 2);
    }
}
