//! The agent's client of the Kodi Tickets server: the event stream and the reports.

use std::error::Error as _;
use std::path::Path;
use std::time::Duration;

use futures::{Stream, StreamExt};
use kodi_tickets_protocol::{
    AgentEvent, AgentStatus, DeliveryReport, LoggedOff, LoginRequest, LoginResponse, PairRequest,
    PairResponse, Ticket,
};
use reqwest::{Client, StatusCode};

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// Not reached, or it answered 5xx: try again later.
    #[error("server unavailable: {0}")]
    Unavailable(String),
    /// The device token was refused (revoked or wrong): retrying will not help.
    #[error("the server refused this device's token")]
    Unauthorized,
    /// The server said no to this request (e.g. an unknown PIN).
    #[error("server refused: {status} {message}")]
    Refused { status: u16, message: String },
}

impl From<reqwest::Error> for ServerError {
    fn from(e: reqwest::Error) -> Self {
        ServerError::Unavailable(in_plain_words(&e))
    }
}

/// What went wrong, in words a person setting up a box can act on: reqwest's own message
/// ("error sending request for url …") names no cause; the innermost one does.
fn in_plain_words(e: &reqwest::Error) -> String {
    let mut causes = Vec::new();
    let mut source = e.source();
    while let Some(cause) = source {
        causes.push(cause.to_string());
        source = cause.source();
    }
    let innermost = causes.last().cloned().unwrap_or_else(|| e.to_string());
    if causes.iter().any(|c| c.contains("certificate")) {
        format!(
            "the server's certificate is not trusted ({innermost}): give the agent the \
             certificate of the authority that signed it (server_ca_file, or pair --ca-file)"
        )
    } else if e.is_timeout() {
        "the server did not answer in time".into()
    } else if e.is_connect() {
        format!("cannot connect to the server ({innermost}): is the address right and the server running?")
    } else {
        innermost
    }
}

/// The certificates in the PEM file at `path`, for [`ServerClient::trusting`].
pub fn certificates_in(path: &Path) -> Result<Vec<reqwest::Certificate>, String> {
    let pem = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    match reqwest::Certificate::from_pem_bundle(&pem) {
        Ok(found) if !found.is_empty() => Ok(found),
        _ => Err(format!("{} holds no PEM certificate", path.display())),
    }
}

#[derive(Clone)]
pub struct ServerClient {
    http: Client,
    /// For the event stream only: it never reuses a connection, so the stream is a new
    /// connection's first request, which the server's gate serves itself (one open file and a
    /// few KiB per box there, against three and ~50 KiB relayed to its web framework).
    stream_http: Client,
    base: String,
    token: String,
}

impl ServerClient {
    pub fn new(base: &str, token: &str) -> Result<Self, ServerError> {
        Self::trusting(base, token, Vec::new())
    }

    /// A client that trusts `roots` for the server's HTTPS certificate besides the public
    /// certificate authorities (a server with a certificate of its own).
    pub fn trusting(
        base: &str,
        token: &str,
        roots: Vec<reqwest::Certificate>,
    ) -> Result<Self, ServerError> {
        let builder = || {
            let mut builder = Client::builder()
                .user_agent(concat!("kodi-tickets-agent/", env!("CARGO_PKG_VERSION")))
                .connect_timeout(Duration::from_secs(5));
            for root in &roots {
                builder = builder.add_root_certificate(root.clone());
            }
            builder
        };
        Ok(ServerClient {
            http: builder().build()?,
            stream_http: builder().pool_max_idle_per_host(0).build()?,
            base: base.trim_end_matches('/').to_owned(),
            token: token.to_owned(),
        })
    }

    /// Exchanges a pairing code (Devices page) for this box's name and token; `self`'s token
    /// is not used.
    pub async fn pair(&self, code: &str) -> Result<PairResponse, ServerError> {
        let response = self
            .http
            .post(self.url("/api/pair"))
            .json(&PairRequest {
                code: code.trim().to_owned(),
            })
            .timeout(Duration::from_secs(15))
            .send()
            .await?;
        Ok(Self::check(response).await?.json().await?)
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn check(response: reqwest::Response) -> Result<reqwest::Response, ServerError> {
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        if status == StatusCode::UNAUTHORIZED {
            return Err(ServerError::Unauthorized);
        }
        let message = response
            .json::<serde_json::Value>()
            .await
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_owned))
            .unwrap_or_default();
        if status.is_server_error() {
            return Err(ServerError::Unavailable(format!("{status} {message}")));
        }
        Err(ServerError::Refused {
            status: status.as_u16(),
            message,
        })
    }

    /// Opens the event stream; it yields events until the connection drops.
    pub async fn events(
        &self,
    ) -> Result<impl Stream<Item = Result<AgentEvent, ServerError>>, ServerError> {
        let response = self
            .stream_http
            .get(self.url("/api/agent/events"))
            .bearer_auth(&self.token)
            .header("Accept", "text/event-stream")
            .send()
            .await?;
        let bytes = Self::check(response).await?.bytes_stream();
        Ok(sse_events(bytes))
    }

    pub async fn report(
        &self,
        delivery_id: i64,
        report: &DeliveryReport,
    ) -> Result<(), ServerError> {
        let response = self
            .http
            .post(self.url(&format!("/api/agent/deliveries/{delivery_id}")))
            .bearer_auth(&self.token)
            .timeout(Duration::from_secs(15))
            .json(report)
            .send()
            .await?;
        Self::check(response).await.map(drop)
    }

    /// Tells the server a deleted ticket is dealt with on this box.
    pub async fn acknowledge_withdrawal(&self, ticket_id: i64) -> Result<(), ServerError> {
        let response = self
            .http
            .post(self.url(&format!("/api/agent/withdrawals/{ticket_id}")))
            .bearer_auth(&self.token)
            .timeout(Duration::from_secs(15))
            .send()
            .await?;
        Self::check(response).await.map(drop)
    }

    /// Says Kodi was seen logged off after the ticket's end.
    pub async fn logged_off(&self, ticket_id: i64, body: &LoggedOff) -> Result<(), ServerError> {
        let response = self
            .http
            .post(self.url(&format!("/api/agent/sessions/{ticket_id}/logged-off")))
            .bearer_auth(&self.token)
            .json(body)
            .timeout(Duration::from_secs(15))
            .send()
            .await?;
        Self::check(response).await.map(drop)
    }

    pub async fn status(&self, status: &AgentStatus) -> Result<(), ServerError> {
        let response = self
            .http
            .post(self.url("/api/agent/status"))
            .bearer_auth(&self.token)
            .timeout(Duration::from_secs(15))
            .json(status)
            .send()
            .await?;
        Self::check(response).await.map(drop)
    }

    pub async fn login(&self, request: &LoginRequest) -> Result<LoginResponse, ServerError> {
        let response = self
            .http
            .post(self.url("/api/login"))
            .bearer_auth(&self.token)
            .timeout(Duration::from_secs(15))
            .json(request)
            .send()
            .await?;
        Ok(Self::check(response).await?.json().await?)
    }

    pub async fn ticket(&self, lock_code: &str) -> Result<Ticket, ServerError> {
        let response = self
            .http
            .get(self.url(&format!("/api/ticket/{lock_code}")))
            .bearer_auth(&self.token)
            .timeout(Duration::from_secs(15))
            .send()
            .await?;
        Ok(Self::check(response).await?.json().await?)
    }
}

/// Time the event stream may bring nothing before the agent takes the connection for dead and
/// opens a new one: three of the server's 15 s heartbeats. Without it, a connection whose
/// other end went away while the network was down would be waited on for ever, and no PIN
/// would reach the box again.
const SILENT_SERVER: Duration = Duration::from_secs(45);

/// Server-sent events as agent events: blocks separated by a blank line, `data:` lines joined;
/// comments (heartbeats) and unknown event types are skipped. A stream silent for
/// [`SILENT_SERVER`] ends with an error.
fn sse_events<S, B>(bytes: S) -> impl Stream<Item = Result<AgentEvent, ServerError>>
where
    S: Stream<Item = Result<B, reqwest::Error>> + Unpin,
    B: AsRef<[u8]>,
{
    futures::stream::unfold(
        (bytes, Vec::<u8>::new()),
        |(mut bytes, mut buffer)| async move {
            loop {
                if let Some(end) = find_block_end(&buffer) {
                    let block: Vec<u8> = buffer.drain(..end.0 + end.1).collect();
                    let text = String::from_utf8_lossy(&block[..end.0]).into_owned();
                    if let Some(event) = parse_block(&text) {
                        return Some((Ok(event), (bytes, buffer)));
                    }
                    continue;
                }
                match tokio::time::timeout(SILENT_SERVER, bytes.next()).await {
                    Ok(Some(Ok(chunk))) => buffer.extend_from_slice(chunk.as_ref()),
                    Ok(Some(Err(e))) => return Some((Err(ServerError::from(e)), (bytes, buffer))),
                    Ok(None) => return None,
                    Err(_) => {
                        let silent = ServerError::Unavailable(format!(
                            "nothing heard from the server for {} s",
                            SILENT_SERVER.as_secs()
                        ));
                        return Some((Err(silent), (bytes, buffer)));
                    }
                }
            }
        },
    )
}

/// Where the first event block ends: (length of the block, length of its separator).
fn find_block_end(buffer: &[u8]) -> Option<(usize, usize)> {
    let lf = buffer.windows(2).position(|w| w == b"\n\n").map(|i| (i, 2));
    let crlf = buffer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, 4));
    match (lf, crlf) {
        (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
        (a, b) => a.or(b),
    }
}

fn parse_block(block: &str) -> Option<AgentEvent> {
    let data: Vec<&str> = block
        .lines()
        .filter_map(|line| line.strip_prefix("data:"))
        .map(|d| d.strip_prefix(' ').unwrap_or(d))
        .collect();
    if data.is_empty() {
        return None;
    }
    match serde_json::from_str(&data.join("\n")) {
        Ok(event) => Some(event),
        Err(e) => {
            tracing::warn!("ignoring an event the agent does not know: {e}");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn events_are_parsed_across_chunks_and_heartbeats_skipped() {
        let arm =
            r#"{"type":"arm","delivery_id":1,"ticket_id":2,"profile":"Kids","lock_code":"0420"}"#;
        let text = format!(":\n\nevent: arm\ndata: {arm}\n\n:\n\nevent: session\r\ndata: {{\"type\":\"session\",\"ticket_id\":2,\"profile\":\"Kids\",\"expires_at\":\"2026-11-27T16:00:00Z\"}}\r\n\r\ndata: {{\"type\":\"future\"}}\n\n");
        let chunks: Vec<Result<Vec<u8>, reqwest::Error>> =
            text.as_bytes().chunks(7).map(|c| Ok(c.to_vec())).collect();
        let events: Vec<AgentEvent> = sse_events(futures::stream::iter(chunks))
            .map(|e| e.unwrap())
            .collect()
            .await;
        assert_eq!(events.len(), 2, "{events:?}");
        assert!(matches!(&events[0], AgentEvent::Arm { lock_code, .. } if lock_code == "0420"));
        assert!(matches!(
            &events[1],
            AgentEvent::Session { ticket_id: 2, .. }
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn a_stream_silent_for_three_heartbeats_ends_with_an_error() {
        let (sender, receiver) =
            futures::channel::mpsc::unbounded::<Result<Vec<u8>, reqwest::Error>>();
        let events = sse_events(receiver);
        let mut events = std::pin::pin!(events);
        let started = tokio::time::Instant::now();
        // Heartbeats keep it open, however long it runs.
        let beats = tokio::spawn(async move {
            for _ in 0..10 {
                sender.unbounded_send(Ok(b":\n\n".to_vec())).unwrap();
                tokio::time::sleep(Duration::from_secs(15)).await;
            }
            sender // held, sending nothing more
        });
        let outcome = events.next().await;
        assert!(
            matches!(&outcome, Some(Err(ServerError::Unavailable(m))) if m.contains("nothing heard")),
            "{outcome:?}"
        );
        let _quiet_sender = beats.await.unwrap();
        // The tenth heartbeat came at 135 s; silence ends the stream 45 s after it.
        assert_eq!(started.elapsed(), Duration::from_secs(135) + SILENT_SERVER);
    }
}
