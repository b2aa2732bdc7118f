//! The gate every connection passes before it reaches Rocket.
//!
//! Rocket 0.5 takes connections without limit and waits for ever for a request sent slowly,
//! and it offers no way to plug in a listener of our own. So the server listens on the public
//! address itself, and relays each connection to Rocket on a loopback port, byte for byte
//! (TLS included). On the way the gate caps the connections of each client address, closes a
//! connection whose request has not been answered within a time limit (a request head or body
//! sent slowly, or nothing sent at all), and closes a connection on which nothing at all moved
//! for a while. It also notices a client whose network went away (a box unplugged, its Wi-Fi
//! down): the kernel gives up on data it cannot deliver, and on a quiet connection it probes.
//! Rocket sees every connection come from the gate; [`Peers`] tells it which client address
//! stands behind each one, and when that client is gone. An agent's event stream, the one
//! request thousands of boxes keep open, is served by the gate itself where it can
//! ([`AgentStreams`]).

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rocket::fairing::AdHoc;
use rocket::{Build, Rocket};
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch};
use tokio::time::{sleep_until, timeout, Instant};

/// How the gate treats connections; from the app's settings.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Open connections one client address may hold; 0 for no cap.
    pub per_address: usize,
    /// Time a client has to send a whole request (head and body) before the server answers.
    pub request: Duration,
    /// Time a connection may stay open with nothing sent either way.
    pub idle: Duration,
    /// Time data sent to a client may stay unacknowledged before its connection is closed;
    /// a connection on which nothing moves is probed after this long too.
    pub silent: Duration,
}

impl Limits {
    /// Time a client has to send its first request: the request limit, or when there is none,
    /// the idle one.
    fn request_or_idle(&self) -> Duration {
        match self.request.is_zero() {
            true => self.idle,
            false => self.request,
        }
    }
}

/// Time a write to one side may take; a peer that stops reading loses its connection.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// Bytes moved per read. Allocated per read, so that idle streams hold no buffers.
const CHUNK: usize = 16 * 1024;
/// The answer to a connection over its address's cap.
const TOO_MANY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nconnection: close\r\n\
content-type: text/plain; charset=utf-8\r\nretry-after: 10\r\ncontent-length: 52\r\n\r\n\
Too many connections from your address; retry later.";

/// Which client address stands behind each connection the gate opened to Rocket, keyed by the
/// gate's end of it (what Rocket calls the request's remote address).
#[derive(Debug, Clone, Default)]
pub struct Peers(Arc<Mutex<HashMap<SocketAddr, Peer>>>);

#[derive(Debug)]
struct Peer {
    ip: IpAddr,
    /// Turns true when the client hangs up; closed when the gate drops the connection.
    gone: watch::Receiver<bool>,
}

impl Peers {
    /// The client behind a connection Rocket got from the gate; `None` for any other.
    pub fn client_of(&self, gate_end: SocketAddr) -> Option<IpAddr> {
        self.lock().get(&gate_end).map(|peer| peer.ip)
    }

    /// Tells when the client behind a connection is gone. Rocket learns it only when it next
    /// writes to the connection; a long-lived stream that needs to know sooner waits on this.
    pub fn departure(&self, gate_end: Option<SocketAddr>) -> Departure {
        Departure(gate_end.and_then(|end| self.lock().get(&end).map(|peer| peer.gone.clone())))
    }

    fn enter(&self, gate_end: SocketAddr, ip: IpAddr, gone: watch::Receiver<bool>) -> PeerEntry {
        self.lock().insert(gate_end, Peer { ip, gone });
        PeerEntry {
            peers: self.clone(),
            gate_end,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<SocketAddr, Peer>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The moment a client leaves: it hung up, or its network stopped answering.
#[derive(Debug)]
pub struct Departure(Option<watch::Receiver<bool>>);

impl Departure {
    /// Returns once the client is gone; never for a connection that did not come through the
    /// gate.
    pub async fn wait(&mut self) {
        match &mut self.0 {
            // NOTE: an error means the gate dropped the connection, which is gone too.
            Some(gone) => drop(gone.wait_for(|gone| *gone).await),
            None => std::future::pending().await,
        }
    }
}

/// Removes a connection from [`Peers`] when it closes.
struct PeerEntry {
    peers: Peers,
    gate_end: SocketAddr,
}

impl Drop for PeerEntry {
    fn drop(&mut self) {
        self.peers.lock().remove(&self.gate_end);
    }
}

/// Open connections per client address.
#[derive(Debug, Clone, Default)]
struct Counts(Arc<Mutex<HashMap<IpAddr, usize>>>);

impl Counts {
    /// Counts one more connection from `client`, unless it already holds `cap` of them.
    fn admit(&self, client: IpAddr, cap: usize) -> Option<Admitted> {
        let mut counts = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let open = counts.entry(client).or_default();
        if cap != 0 && *open >= cap {
            return None;
        }
        *open += 1;
        Some(Admitted {
            counts: self.clone(),
            client,
        })
    }
}

/// One counted connection; uncounted when dropped.
struct Admitted {
    counts: Counts,
    client: IpAddr,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut counts = self.counts.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(open) = counts.get_mut(&self.client) {
            *open -= 1;
            if *open == 0 {
                counts.remove(&self.client);
            }
        }
    }
}

/// Puts the gate on `listener` in front of `rocket`, which is moved to a loopback port of its
/// own; the gate opens once Rocket has lifted off, and then `opened` says whether it speaks
/// HTTPS. Agents' streams are served by the gate itself where it can (see [`AgentStreams`]).
pub fn in_front_of(
    rocket: Rocket<Build>,
    listener: TcpListener,
    limits: Limits,
) -> (Rocket<Build>, oneshot::Receiver<Opened>) {
    let (rocket, peers) = match rocket.state::<Peers>().cloned() {
        Some(peers) => (rocket, peers),
        None => {
            let peers = Peers::default();
            (rocket.manage(peers.clone()), peers)
        }
    };
    let behind_gate = rocket
        .figment()
        .clone()
        .merge(("address", Ipv4Addr::LOCALHOST))
        .merge(("port", 0));
    let (opened, opened_seen) = oneshot::channel();
    let rocket = rocket
        .configure(behind_gate)
        .attach(AdHoc::on_liftoff("Gate", move |rocket| {
            let upstream = SocketAddr::from((Ipv4Addr::LOCALHOST, rocket.config().port));
            let tls = rocket.config().tls_enabled();
            let streams = AgentStreams::of(rocket).map(Arc::new);
            Box::pin(async move {
                let _ = opened.send(Opened { tls });
                tokio::spawn(run(listener, upstream, peers, limits, streams));
            })
        }));
    (rocket, opened_seen)
}

/// The gate is open.
#[derive(Debug)]
pub struct Opened {
    /// Whether Rocket behind it speaks HTTPS.
    pub tls: bool,
}

/// Accepts connections on `listener` for ever; serves agents' streams it can (`streams`) and
/// relays every other connection to Rocket at `upstream`.
pub async fn run(
    listener: TcpListener,
    upstream: SocketAddr,
    peers: Peers,
    limits: Limits,
    streams: Option<Arc<AgentStreams>>,
) {
    let counts = Counts::default();
    loop {
        let (client, address) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors, or a connection reset before it was taken: neither
                // stops the server. A short pause lets connections close meanwhile.
                tracing::warn!("cannot accept a connection: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Some(admitted) = counts.admit(address.ip(), limits.per_address) else {
            tracing::warn!(
                "refused a connection from {}: it holds {} already",
                address.ip(),
                limits.per_address
            );
            tokio::spawn(refuse(client));
            continue;
        };
        let peers = peers.clone();
        let streams = streams.clone();
        tokio::spawn(async move {
            let to = Upstream {
                rocket: upstream,
                peers: &peers,
                streams: streams.as_deref(),
            };
            if let Err(e) = pass(client, address.ip(), to, limits).await {
                tracing::debug!("connection from {address} ended: {e}");
            }
            drop(admitted);
        });
    }
}

async fn refuse(mut client: TcpStream) {
    let _ = timeout(Duration::from_secs(1), client.write_all(TOO_MANY)).await;
    let _ = client.shutdown().await;
}

/// Where the gate sends a connection.
struct Upstream<'a> {
    rocket: SocketAddr,
    peers: &'a Peers,
    streams: Option<&'a AgentStreams>,
}

async fn pass(
    client: TcpStream,
    client_ip: IpAddr,
    upstream: Upstream<'_>,
    limits: Limits,
) -> io::Result<()> {
    notice_silence(&client, limits.silent)?;
    let opened = Instant::now();
    let (client, first_bytes) = match upstream.streams {
        Some(streams) => {
            let deadline = opened + limits.request_or_idle();
            match streams.take(client, deadline).await? {
                Some(given_back) => given_back,
                None => return Ok(()),
            }
        }
        None => (client, Vec::new()),
    };
    let mut rocket = TcpStream::connect(upstream.rocket).await?;
    // The connection is known to Peers before its first byte reaches Rocket, so every request
    // on it finds its client.
    let (gone, gone_seen) = watch::channel(false);
    let _entry = upstream
        .peers
        .enter(rocket.local_addr()?, client_ip, gone_seen);
    timeout(WRITE_TIMEOUT, rocket.write_all(&first_bytes))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "Rocket stopped reading"))??;
    drop(first_bytes);
    client.set_nodelay(true)?;
    rocket.set_nodelay(true)?;
    let (from_client, to_client) = client.into_split();
    let (from_rocket, to_rocket) = rocket.into_split();
    let sides = Sides {
        from_client,
        to_client,
        from_rocket,
        to_rocket,
    };
    relay(sides, limits, &gone, opened).await
}

/// Has the kernel close the connection once data sent to the client stays unacknowledged for
/// `after`, and probe the client when nothing moves for that long, so that a client whose
/// network went away is noticed within about `after` of the next byte sent to it (an agent's
/// or a page's stream sends a heartbeat every 15 s), not after the kernel's default of
/// about 15 minutes.
fn notice_silence(client: &TcpStream, after: Duration) -> io::Result<()> {
    use rustix::net::sockopt;

    let millis = u32::try_from(after.as_millis()).unwrap_or(u32::MAX).max(1);
    sockopt::set_tcp_user_timeout(client, millis)?;
    sockopt::set_socket_keepalive(client, true)?;
    sockopt::set_tcp_keepidle(client, after.max(Duration::from_secs(1)))?;
    sockopt::set_tcp_keepintvl(client, (after / 4).max(Duration::from_secs(1)))?;
    Ok(())
}

/// The two connections the gate joins, each split in its reading and writing side.
struct Sides {
    from_client: OwnedReadHalf,
    to_client: OwnedWriteHalf,
    from_rocket: OwnedReadHalf,
    to_rocket: OwnedWriteHalf,
}

/// Moves bytes both ways until both sides are done, or a limit is passed; `gone` turns true
/// when the client hangs up. A request is pending from the connection's start, and from a
/// client's byte sent while no answer was coming, until Rocket's next byte.
async fn relay(
    sides: Sides,
    limits: Limits,
    gone: &watch::Sender<bool>,
    opened: Instant,
) -> io::Result<()> {
    let Sides {
        from_client,
        mut to_client,
        from_rocket,
        mut to_rocket,
    } = sides;
    let mut pending_since = Some(opened);
    let mut last_traffic = Instant::now();
    let mut client_open = true;
    let mut rocket_open = true;
    while client_open || rocket_open {
        let deadline = match pending_since {
            Some(since) if !limits.request.is_zero() => since + limits.request,
            _ => last_traffic + limits.idle,
        };
        tokio::select! {
            ready = from_client.readable(), if client_open => {
                ready?;
                match forward(&from_client, &mut to_rocket).await? {
                    Moved::Bytes => {
                        pending_since.get_or_insert_with(Instant::now);
                        last_traffic = Instant::now();
                    }
                    Moved::Closed => {
                        client_open = false;
                        gone.send_replace(true);
                    }
                    Moved::Nothing => {}
                }
            }
            ready = from_rocket.readable(), if rocket_open => {
                ready?;
                match forward(&from_rocket, &mut to_client).await? {
                    Moved::Bytes => {
                        pending_since = None;
                        last_traffic = Instant::now();
                    }
                    Moved::Closed => rocket_open = false,
                    Moved::Nothing => {}
                }
            }
            () = sleep_until(deadline) => {
                return Err(io::Error::new(io::ErrorKind::TimedOut, match pending_since {
                    Some(_) => "the request was not sent in time",
                    None => "idle",
                }));
            }
        }
    }
    Ok(())
}

enum Moved {
    Bytes,
    /// The reading side closed; the writing side was told (half-close).
    Closed,
    /// The wake-up was spurious.
    Nothing,
}

async fn forward(from: &OwnedReadHalf, to: &mut OwnedWriteHalf) -> io::Result<Moved> {
    let mut chunk = vec![0; CHUNK];
    match from.try_read(&mut chunk) {
        Ok(0) => {
            let _ = to.shutdown().await;
            Ok(Moved::Closed)
        }
        Ok(n) => {
            timeout(WRITE_TIMEOUT, to.write_all(&chunk[..n]))
                .await
                .map_err(|_| {
                    io::Error::new(io::ErrorKind::TimedOut, "the peer stopped reading")
                })??;
            Ok(Moved::Bytes)
        }
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(Moved::Nothing),
        Err(e) => Err(e),
    }
}

mod agent_streams;
#[cfg(test)]
mod tests;

pub use agent_streams::AgentStreams;
