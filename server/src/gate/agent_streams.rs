//! Agents' event streams served by the gate itself.
//!
//! NOTE: why: relayed to Rocket, each connected agent holds three open files in the server
//! (the gate's two ends and Rocket's) and about 50 KiB (hyper's read buffer, Rocket's tasks
//! for a streamed body, the relay's), which capped a server at a few thousand boxes and kept
//! 50 MiB for a thousand. Served here, one open file and a few KiB. Only the plain case is
//! taken: the first request on a new plain-HTTP connection, `GET /api/agent/events` from a
//! live device with a `Host` naming this server. Everything else (HTTPS, a connection that
//! carried another request first, a bad token, anything unusual in the head) goes to Rocket,
//! whose route streams the same events (`agent_events`) and answers every error.

use std::io;
use std::pin::pin;

use kodi_tickets_protocol::AgentEvent;
use rocket::futures::StreamExt;
use rocket::{Orbit, Rocket, Shutdown};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::{interval_at, timeout, timeout_at, Instant};

use super::WRITE_TIMEOUT;
use crate::agent_events::{self, HEARTBEAT};
use crate::auth::Device;
use crate::config::AppConfig;
use crate::db::{self, Db};
use crate::known_tokens::KnownTokens;
use crate::presence::Presence;
use crate::{headers, origin};

/// The request line of the one request served here.
const REQUEST_LINE: &[u8] = b"GET /api/agent/events HTTP/1.1\r\n";
/// A request head longer than this goes to Rocket (an agent's is about 200 bytes).
const MAX_HEAD: usize = 4096;
/// Headers looked at; a head with more goes to Rocket.
const MAX_HEADERS: usize = 24;

/// What the gate needs to serve agents' streams: the server's state, shared with Rocket.
#[derive(Clone)]
pub struct AgentStreams {
    pool: db::Pool,
    known: KnownTokens,
    presence: Presence,
    shutdown: Shutdown,
    allowed_hosts: Vec<String>,
}

/// What a connection's first bytes are.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum First {
    /// The start of what may be an agent's stream request: read more.
    Partial,
    /// A whole agent's stream request, with the token it came with.
    Events { bearer: String },
    /// Anything else: Rocket's.
    Other,
}

impl AgentStreams {
    /// From a running Rocket; `None` when it serves HTTPS, where the gate sees only ciphertext.
    pub fn of(rocket: &Rocket<Orbit>) -> Option<Self> {
        if rocket.config().tls_enabled() {
            return None;
        }
        Some(AgentStreams {
            pool: db::Pool::clone(rocket.state::<Db>()?),
            known: rocket.state::<KnownTokens>()?.clone(),
            presence: rocket.state::<Presence>()?.clone(),
            shutdown: rocket.shutdown(),
            allowed_hosts: rocket.state::<AppConfig>()?.allowed_hosts.clone(),
        })
    }

    /// Looks at a connection's first request (read until `deadline`) and serves it when it is
    /// an agent's stream. Otherwise gives the connection back with the bytes read from it.
    pub(super) async fn take(
        &self,
        client: TcpStream,
        deadline: Instant,
    ) -> io::Result<Option<(TcpStream, Vec<u8>)>> {
        let mut head = Vec::new();
        let bearer = loop {
            timeout_at(deadline, client.readable())
                .await
                .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no request in time"))??;
            head.reserve(MAX_HEAD.saturating_sub(head.len()).max(1));
            match client.try_read_buf(&mut head) {
                Ok(0) => return Ok(None),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
            match first(&head, &self.allowed_hosts) {
                First::Partial => continue,
                First::Events { bearer } => break bearer,
                First::Other => return Ok(Some((client, head))),
            }
        };
        match Device::with_token(&bearer, &self.pool, Some(&self.known)).await {
            Ok(Some(device)) => {
                drop(head);
                self.serve(client, device).await.map(|()| None)
            }
            // Rocket answers: 401, or 500 with the error logged.
            Ok(None) | Err(_) => Ok(Some((client, head))),
        }
    }

    /// Streams the device's events until it is revoked or hangs up, or the server stops.
    async fn serve(&self, mut client: TcpStream, device: Device) -> io::Result<()> {
        let online = self.presence.connect(device.id);
        let events = agent_events::follow(
            db::Pool::clone(&self.pool),
            device,
            online,
            self.shutdown.clone(),
        );
        let mut events = pin!(events);
        send(&mut client, response_head().as_bytes()).await?;
        let mut heartbeat = interval_at(Instant::now() + HEARTBEAT, HEARTBEAT);
        loop {
            tokio::select! {
                event = events.next() => match event {
                    Some(event) => send(&mut client, &chunk(&frame(&event))).await?,
                    None => break,
                },
                _ = heartbeat.tick() => send(&mut client, &chunk(":\n\n")).await?,
                ready = client.readable() => {
                    ready?;
                    // NOTE: an agent sends nothing more on its stream's connection: whatever
                    // comes is dropped; only its end matters.
                    let mut ignored = [0; 64];
                    match client.try_read(&mut ignored) {
                        Ok(0) => return Ok(()),
                        Ok(_) => {}
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                        Err(e) => return Err(e),
                    }
                }
            }
        }
        send(&mut client, b"0\r\n\r\n").await?;
        client.shutdown().await
    }
}

/// Classifies a connection's first bytes (see [`First`]).
pub(super) fn first(bytes: &[u8], allowed_hosts: &[String]) -> First {
    if bytes.len() < REQUEST_LINE.len() {
        return match REQUEST_LINE.starts_with(bytes) {
            true => First::Partial,
            false => First::Other,
        };
    }
    if !bytes.starts_with(REQUEST_LINE) || bytes.len() > MAX_HEAD {
        return First::Other;
    }
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    match request.parse(bytes) {
        Ok(httparse::Status::Partial) => First::Partial,
        // NOTE: anything after the head (a body, a second request) is Rocket's business.
        Ok(httparse::Status::Complete(length)) if length == bytes.len() => {
            agent_request(request.headers, allowed_hosts)
        }
        _ => First::Other,
    }
}

/// The bearer token of a plain agent's stream request; `Other` for anything Rocket must see.
fn agent_request(headers: &[httparse::Header<'_>], allowed_hosts: &[String]) -> First {
    let mut bearer = None;
    for header in headers {
        let value = std::str::from_utf8(header.value).ok();
        let name = header.name;
        if name.eq_ignore_ascii_case("authorization") {
            bearer = value.and_then(|v| v.strip_prefix("Bearer "));
        } else if name.eq_ignore_ascii_case("host") {
            if !value.is_some_and(|host| origin::names_this_server(host, allowed_hosts)) {
                return First::Other;
            }
        } else if name.eq_ignore_ascii_case("content-length") {
            if value.map(str::trim) != Some("0") {
                return First::Other;
            }
        } else if name.eq_ignore_ascii_case("transfer-encoding")
            || name.eq_ignore_ascii_case("upgrade")
        {
            return First::Other;
        }
    }
    match bearer {
        Some(bearer) => First::Events {
            bearer: bearer.to_owned(),
        },
        None => First::Other,
    }
}

/// The response head Rocket would send for the stream, with the same headers.
fn response_head() -> String {
    let mut head = String::from("HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n");
    for (name, value) in headers::for_path("/api/agent/events") {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    // NOTE: Rocket's Shield adds this one to every response; the agent's contract test
    // compares the two heads.
    head.push_str("permissions-policy: interest-cohort=()\r\n");
    head.push_str("expires: 0\r\ntransfer-encoding: chunked\r\n\r\n");
    head
}

/// One server-sent event.
fn frame(event: &AgentEvent) -> String {
    // NOTE: serde_json writes no line breaks, which would split the `data:` line.
    let data = serde_json::to_string(event).unwrap_or_default();
    format!("event: {}\ndata: {data}\n\n", agent_events::kind(event))
}

/// `text` as one chunk of a chunked body.
fn chunk(text: &str) -> Vec<u8> {
    format!("{:x}\r\n{text}\r\n", text.len()).into_bytes()
}

/// Writes to a client that must keep reading: one that stops loses its connection.
async fn send(client: &mut TcpStream, bytes: &[u8]) -> io::Result<()> {
    timeout(WRITE_TIMEOUT, client.write_all(bytes))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "the agent stopped reading"))?
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEAD: &str = "GET /api/agent/events HTTP/1.1\r\nhost: 192.168.1.5:8000\r\n\
                        authorization: Bearer abc\r\naccept: text/event-stream\r\n\r\n";

    fn of(text: &str) -> First {
        first(text.as_bytes(), &["tickets.lan".into()])
    }

    #[test]
    fn an_agents_stream_request_is_taken_with_its_token() {
        let bearer = "abc".to_owned();
        assert_eq!(of(HEAD), First::Events { bearer });
        for cut in [1, 10, REQUEST_LINE.len(), HEAD.len() - 1] {
            assert_eq!(of(&HEAD[..cut]), First::Partial, "{cut}");
        }
    }

    #[test]
    fn anything_else_is_left_to_rocket() {
        let others = [
            "GET /api/agent/events?x=1 HTTP/1.1\r\n\r\n".to_owned(),
            "POST /api/agent/events HTTP/1.1\r\n\r\n".into(),
            "GET /healthz HTTP/1.1\r\n\r\n".into(),
            "\u{16}\u{3}\u{1}".into(),
            HEAD.replace("authorization: Bearer abc\r\n", ""),
            HEAD.replace("Bearer", "Basic"),
            HEAD.replace("192.168.1.5:8000", "evil.example"),
            HEAD.replace("accept:", "content-length: 5\r\naccept:") + "hello",
            HEAD.replace("accept:", "transfer-encoding: chunked\r\naccept:"),
            format!("{HEAD}GET /healthz HTTP/1.1\r\n\r\n"),
            HEAD.replace(
                "accept:",
                &format!("x-pad: {}\r\naccept:", "a".repeat(MAX_HEAD)),
            ),
        ];
        for other in others {
            assert_eq!(of(&other), First::Other, "{other:?}");
        }
        assert_eq!(
            of(&HEAD.replace("192.168.1.5:8000", "tickets.lan")),
            First::Events {
                bearer: "abc".into()
            }
        );
    }

    #[test]
    fn an_event_is_one_framed_chunk() {
        let event = AgentEvent::Withdrawn {
            ticket_id: 3,
            profile: "Kids".into(),
        };
        let framed = frame(&event);
        assert_eq!(
            framed,
            "event: withdrawn\ndata: {\"type\":\"withdrawn\",\"ticket_id\":3,\"profile\":\"Kids\"}\n\n"
        );
        assert_eq!(chunk("ab"), b"2\r\nab\r\n");
    }
}
