//! Shortening Kodi's own profile switch by about a second.
//!
//! At the start of every switch (a login, a log-off) Kodi tells its EventServer and its
//! JSON-RPC server to stop, and then waits for their threads to end. Both threads block in
//! `select()` for up to one second at a time (Kodi's `CEventServer::Run`, 1000 ms, and
//! `CTCPServer::Process`, 1 s), so each stop takes whatever remains of that second: measured
//! on 20.1, ~1.0 s of its ~1.05 s switch. Anything arriving on their sockets ends the wait at
//! once. So while a switch begins, [`hurry_switch`] sends Kodi what both ignore: a one-byte
//! datagram to the EventServer (not a packet: dropped unread) and a space on a JSON-RPC
//! connection of its own (outside any JSON text: skipped).
//!
//! It stops once both are gone: Kodi closes that connection when its JSON-RPC server ends,
//! and a datagram to the closed EventServer port is refused. Either may go first (on 20.1
//! the JSON-RPC clients were dropped ~0.9 s before the EventServer ended when nothing woke
//! it), so one is not taken for both. A switch Kodi never begins ends it after [`LIMIT`].

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

use super::eventserver::socket_for;

/// How often both are woken: each wait then lasts at most this long.
pub const STEP: Duration = Duration::from_millis(20);
/// A switch Kodi never begins (it refused the login, say) is not waited for longer.
pub const LIMIT: Duration = Duration::from_secs(3);

/// Wakes Kodi's EventServer at `eventserver` and its JSON-RPC server at `jsonrpc`
/// ("127.0.0.1:9090") every [`STEP`] until both are down, or [`LIMIT`] has passed. Returns
/// how many times it woke them. Errors only shorten it: the switch happens without it, a
/// second later.
pub async fn hurry_switch(jsonrpc: &str, eventserver: SocketAddr) -> u32 {
    let deadline = tokio::time::Instant::now() + LIMIT;
    // NOTE: connecting wakes the JSON-RPC server too, if it is already stopping.
    let mut tcp = tokio::time::timeout(STEP * 5, TcpStream::connect(jsonrpc))
        .await
        .ok()
        .and_then(Result::ok);
    let mut udp = connected_to(eventserver).await;
    let mut ticks = tokio::time::interval(STEP);
    let mut woken = 0;
    let mut scratch = [0u8; 256];
    while tcp.is_some() || udp.is_some() {
        tokio::select! {
            _ = ticks.tick() => {}
            () = tokio::time::sleep_until(deadline) => break,
            () = closed(tcp.as_mut(), &mut scratch) => {
                tcp = None;
                continue;
            }
        }
        // A send is refused once Kodi has closed the port (the ICMP answer to the one
        // before): the EventServer has ended.
        if let Some(socket) = &udp {
            if socket.send(&[0]).await.is_err() {
                udp = None;
            }
        }
        if let Some(stream) = tcp.as_mut() {
            if stream.write_all(b" ").await.is_err() {
                tcp = None;
            }
        }
        woken += 1;
    }
    tracing::debug!(woken, "hurried Kodi's switch");
    woken
}

/// A UDP socket connected to `eventserver` (so that a refusal is reported), or `None` if the
/// system refuses one.
async fn connected_to(eventserver: SocketAddr) -> Option<UdpSocket> {
    let socket = socket_for(eventserver).await.ok()?;
    socket.connect(eventserver).await.ok()?;
    Some(socket)
}

/// Resolves when Kodi closes `stream` (end of file or an error); never without a stream.
/// Kodi sends nothing on it: any bytes are dropped.
async fn closed(stream: Option<&mut TcpStream>, scratch: &mut [u8]) {
    let Some(stream) = stream else {
        return std::future::pending().await;
    };
    while let Ok(1..) = stream.read(scratch).await {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    /// Kodi's two servers as two sockets.
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

        /// Receives `n` datagrams, checking each is the one byte Kodi drops unread.
        async fn datagrams(&self, n: usize) {
            let mut datagram = [0u8; 64];
            for _ in 0..n {
                let len = self.eventserver.recv(&mut datagram).await.unwrap();
                assert_eq!(
                    &datagram[..len],
                    &[0],
                    "one byte, not an EventServer packet"
                );
            }
        }
    }

    fn hurry(kodi: &KodiSockets) -> tokio::task::JoinHandle<u32> {
        let (jsonrpc, eventserver) = kodi.addrs();
        tokio::spawn(async move { hurry_switch(&jsonrpc, eventserver).await })
    }

    #[tokio::test]
    async fn wakes_both_servers_until_both_are_gone() {
        let kodi = KodiSockets::new().await;
        let hurrying = hurry(&kodi);
        let (mut connection, _) = kodi.jsonrpc.accept().await.unwrap();
        kodi.datagrams(3).await;
        let mut bytes = [0u8; 3];
        connection.read_exact(&mut bytes).await.unwrap();
        assert_eq!(
            &bytes, b"   ",
            "only spaces, which Kodi skips between JSON texts"
        );

        // Kodi's JSON-RPC server ends first: the EventServer is still woken.
        drop(connection);
        tokio::time::sleep(STEP * 3).await;
        assert!(!hurrying.is_finished());
        kodi.datagrams(2).await;

        let gone_at = tokio::time::Instant::now();
        drop(kodi);
        let woken = tokio::time::timeout(LIMIT, hurrying)
            .await
            .expect("stops once the EventServer is gone too")
            .unwrap();
        assert!(gone_at.elapsed() < LIMIT / 2, "{:?}", gone_at.elapsed());
        assert!(woken >= 5, "{woken}");
    }

    #[tokio::test]
    async fn the_eventserver_gone_first_the_json_rpc_server_is_still_woken() {
        let kodi = KodiSockets::new().await;
        let hurrying = hurry(&kodi);
        let (mut connection, _) = kodi.jsonrpc.accept().await.unwrap();
        let KodiSockets { eventserver, .. } = kodi;
        drop(eventserver);
        let mut bytes = [0u8; 8];
        connection.read_exact(&mut bytes).await.unwrap();
        assert!(!hurrying.is_finished());
        drop(connection);
        tokio::time::timeout(LIMIT, hurrying)
            .await
            .expect("stops once the JSON-RPC connection is closed too")
            .unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn gives_up_after_the_limit_when_no_switch_comes() {
        let kodi = KodiSockets::new().await;
        let hurrying = hurry(&kodi);
        let (_connection, _) = kodi.jsonrpc.accept().await.unwrap();

        let woken = hurrying.await.unwrap();
        let steps = (LIMIT.as_millis() / STEP.as_millis()) as u32;
        assert!(
            (steps - 1..=steps + 1).contains(&woken),
            "{woken} of {steps}"
        );
    }

    #[tokio::test]
    async fn without_kodi_it_ends_at_once() {
        let kodi = KodiSockets::new().await;
        let (jsonrpc, eventserver) = kodi.addrs();
        drop(kodi);
        let woken = tokio::time::timeout(LIMIT / 2, hurry_switch(&jsonrpc, eventserver))
            .await
            .expect("ends on the first refused datagram");
        assert!(woken <= 2, "{woken}");
    }
}
