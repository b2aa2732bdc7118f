//! The gate with real sockets on loopback, in front of a small stand-in for Rocket that
//! answers each complete request head with the client address the gate says is behind it.

use std::net::Ipv4Addr;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};

use super::*;

const GENEROUS: Duration = Duration::from_secs(10);

struct Setup {
    gate: SocketAddr,
}

async fn setup(limits: Limits) -> Setup {
    let peers = Peers::default();
    let rocket = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let upstream = rocket.local_addr().unwrap();
    tokio::spawn(stand_in_for_rocket(rocket, peers.clone()));
    let listener = TcpListener::bind((Ipv4Addr::UNSPECIFIED, 0)).await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(run(listener, upstream, peers, limits, None));
    Setup {
        gate: SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
    }
}

/// Answers every request head (up to its blank line) with the client the gate names.
async fn stand_in_for_rocket(listener: TcpListener, peers: Peers) {
    loop {
        let (stream, gate_end) = listener.accept().await.unwrap();
        let peers = peers.clone();
        tokio::spawn(async move {
            let (read, mut write) = stream.into_split();
            let mut lines = BufReader::new(read).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if line.is_empty() {
                    let client = peers
                        .client_of(gate_end)
                        .map_or("unknown".into(), |ip| ip.to_string());
                    let answer = format!(
                        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{client}",
                        client.len()
                    );
                    if write.write_all(answer.as_bytes()).await.is_err() {
                        return;
                    }
                }
            }
        });
    }
}

fn limits(per_address: usize, request_ms: u64, idle_ms: u64) -> Limits {
    Limits {
        per_address,
        request: Duration::from_millis(request_ms),
        idle: Duration::from_millis(idle_ms),
        silent: Duration::from_secs(20),
    }
}

/// A connection to the gate from the loopback address `from` (any 127.x.y.z is this machine).
async fn connect(gate: SocketAddr, from: [u8; 4]) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::from((from, 0))).unwrap();
    socket.connect(gate).await.unwrap()
}

/// Everything the gate sends until it closes the connection.
async fn rest(stream: &mut TcpStream) -> String {
    let mut text = String::new();
    timeout(GENEROUS, stream.read_to_string(&mut text))
        .await
        .expect("the gate closes the connection")
        .unwrap_or_default();
    text
}

async fn answer_of(stream: &mut TcpStream) -> String {
    stream
        .write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut reader = BufReader::new(stream);
    let mut head = String::new();
    loop {
        let mut line = String::new();
        timeout(GENEROUS, reader.read_line(&mut line))
            .await
            .expect("an answer")
            .unwrap();
        if line == "\r\n" {
            break;
        }
        head.push_str(&line);
    }
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .unwrap()
        .parse()
        .unwrap();
    let mut body = vec![0; length];
    reader.read_exact(&mut body).await.unwrap();
    String::from_utf8(body).unwrap()
}

#[tokio::test]
async fn rocket_learns_the_client_behind_each_connection() {
    let setup = setup(limits(0, 5_000, 5_000)).await;
    let mut a = connect(setup.gate, [127, 0, 0, 2]).await;
    let mut b = connect(setup.gate, [127, 0, 0, 3]).await;
    assert_eq!(answer_of(&mut a).await, "127.0.0.2");
    assert_eq!(answer_of(&mut b).await, "127.0.0.3");
    // Several requests on one kept-alive connection.
    assert_eq!(answer_of(&mut a).await, "127.0.0.2");
}

#[tokio::test]
async fn an_address_over_its_cap_is_refused_and_others_are_not() {
    let setup = setup(limits(3, 5_000, 5_000)).await;
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut stream = connect(setup.gate, [127, 0, 0, 4]).await;
        assert_eq!(answer_of(&mut stream).await, "127.0.0.4");
        held.push(stream);
    }
    let mut fourth = connect(setup.gate, [127, 0, 0, 4]).await;
    let refused = rest(&mut fourth).await;
    assert!(refused.starts_with("HTTP/1.1 503"), "{refused}");
    assert!(refused.contains("Too many connections"), "{refused}");

    let mut other = connect(setup.gate, [127, 0, 0, 5]).await;
    assert_eq!(answer_of(&mut other).await, "127.0.0.5");

    // A closed connection frees its place.
    drop(held.pop());
    let again = async {
        loop {
            let mut stream = connect(setup.gate, [127, 0, 0, 4]).await;
            stream
                .write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
                .await
                .unwrap();
            let mut first = [0u8; 12];
            if stream.read_exact(&mut first).await.is_ok() && &first == b"HTTP/1.1 200" {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    timeout(GENEROUS, again).await.expect("a place again");
}

#[tokio::test]
async fn a_request_head_sent_slowly_is_cut_off() {
    let setup = setup(limits(0, 300, 60_000)).await;
    let mut slow = connect(setup.gate, [127, 0, 0, 6]).await;
    let started = Instant::now();
    for part in ["GET / HTTP/1.1\r\n", "host: x\r\n", "x-slow: 1\r\n"] {
        if slow.write_all(part.as_bytes()).await.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        rest(&mut slow).await,
        "",
        "no answer to a request never finished"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "never early"
    );
}

#[tokio::test]
async fn a_connection_that_sends_nothing_is_closed() {
    let setup = setup(limits(0, 300, 60_000)).await;
    let mut silent = connect(setup.gate, [127, 0, 0, 7]).await;
    assert_eq!(rest(&mut silent).await, "");
}

#[tokio::test]
async fn a_request_sent_in_parts_within_the_limit_is_answered() {
    let setup = setup(limits(0, 2_000, 60_000)).await;
    let mut stream = connect(setup.gate, [127, 0, 0, 8]).await;
    stream.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(answer_of(&mut stream).await, "127.0.0.8");
}

#[tokio::test]
async fn an_idle_connection_is_closed_after_its_answer() {
    let setup = setup(limits(0, 60_000, 300)).await;
    let mut stream = connect(setup.gate, [127, 0, 0, 9]).await;
    assert_eq!(answer_of(&mut stream).await, "127.0.0.9");
    let started = Instant::now();
    assert_eq!(rest(&mut stream).await, "");
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "never early"
    );
}

/// A gate in front of a stand-in for Rocket's event streams, which takes one connection: the
/// gate's address, the stand-in's end of that connection and the gate's name for it.
async fn stream_setup(limits: Limits) -> (SocketAddr, Peers, TcpListener) {
    let peers = Peers::default();
    let rocket = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let upstream = rocket.local_addr().unwrap();
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let gate = listener.local_addr().unwrap();
    tokio::spawn(run(listener, upstream, peers.clone(), limits, None));
    (gate, peers, rocket)
}

/// A client's connection through the gate, once its request reached the stand-in (as with
/// Rocket, which learns of a connection only from its first bytes): the client's end, the
/// stand-in's end and the gate's name for it.
async fn stream_opened(
    gate: SocketAddr,
    rocket: &TcpListener,
) -> (TcpStream, TcpStream, SocketAddr) {
    let mut client = TcpStream::connect(gate).await.unwrap();
    client
        .write_all(b"GET /events HTTP/1.1\r\n\r\n")
        .await
        .unwrap();
    let (mut stream, gate_end) = rocket.accept().await.unwrap();
    let mut request = [0u8; 4];
    stream.read_exact(&mut request).await.unwrap();
    (client, stream, gate_end)
}

/// Sends a heartbeat every 100 ms, as an event stream does, until the connection breaks.
fn heartbeats(mut stream: TcpStream) {
    tokio::spawn(async move {
        while stream.write_all(b": heartbeat\n\n").await.is_ok() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
}

#[tokio::test]
async fn a_stream_hears_at_once_that_its_client_hung_up() {
    let (gate, peers, rocket) = stream_setup(limits(0, 60_000, 60_000)).await;
    let (mut client, stream, gate_end) = stream_opened(gate, &rocket).await;
    let mut departure = peers.departure(Some(gate_end));
    heartbeats(stream);
    let mut first = [0u8; 13];
    client.read_exact(&mut first).await.unwrap();
    assert!(
        timeout(Duration::from_millis(300), departure.wait())
            .await
            .is_err(),
        "gone while still there"
    );
    drop(client);
    timeout(GENEROUS, departure.wait())
        .await
        .expect("the stream hears that its client left");
}

/// Marks the copy of the test binary that runs inside a network namespace of its own.
const IN_OWN_NETWORK: &str = "KODI_TICKETS_TEST_IN_OWN_NETWORK";

/// A client whose network goes away, without a word, is dropped: the stream it had hears of
/// it within a few seconds, not after the kernel's quarter of an hour. The loopback link of a
/// network namespace of the test's own is taken down, as a cable is pulled.
#[test]
fn a_client_whose_network_went_away_is_dropped() {
    const NAME: &str = "gate::tests::a_client_whose_network_went_away_is_dropped";
    if std::env::var_os(IN_OWN_NETWORK).is_none() {
        let run = std::process::Command::new("unshare")
            .arg("--net")
            .arg(std::env::current_exe().unwrap())
            .args(["--exact", NAME, "--nocapture", "--test-threads=1"])
            .env(IN_OWN_NETWORK, "1")
            .output()
            .expect("unshare (util-linux) runs");
        assert!(
            run.status.success(),
            "the test in a network namespace of its own failed ({}; `unshare --net` needs \
             root, as ./scripts/test runs):\n{}{}",
            run.status,
            String::from_utf8_lossy(&run.stdout),
            String::from_utf8_lossy(&run.stderr)
        );
        assert!(
            String::from_utf8_lossy(&run.stdout).contains("1 passed"),
            "the test did not run in its namespace"
        );
        return;
    }
    let link = |state: &str| {
        let status = std::process::Command::new("ip")
            .args(["link", "set", "lo", state])
            .status()
            .expect("ip (iproute2) runs");
        assert!(status.success(), "ip link set lo {state}");
    };
    link("up");
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let mut limits = limits(0, 60_000, 60_000);
            limits.silent = Duration::from_secs(1);
            let (gate, peers, rocket) = stream_setup(limits).await;
            let (mut client, stream, gate_end) = stream_opened(gate, &rocket).await;
            let mut departure = peers.departure(Some(gate_end));
            heartbeats(stream);
            let mut first = [0u8; 13];
            client.read_exact(&mut first).await.unwrap();
            link("down");
            // NOTE: the client's socket stays open: only the network is gone.
            timeout(Duration::from_secs(15), departure.wait())
                .await
                .expect("the gate drops a client whose network went away");
            drop(client);
        });
}
