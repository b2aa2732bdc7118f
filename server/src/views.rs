//! What every page shows around its content, and how values are written for people.

use kodi_tickets_protocol::TicketState;
use rocket::request::{self, FlashMessage, FromRequest, Request};
use rocket_dyn_templates::Template;
use serde::Serialize;
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::OffsetDateTime;

use crate::auth::{CsrfToken, Session};
use crate::db::tickets::Ticket;

/// The page frame: who is logged in, the CSRF token for forms, the flash message.
#[derive(Debug, Serialize)]
pub struct Chrome {
    pub csrf_token: String,
    pub admin: Option<String>,
    pub flash: Option<Flash>,
}

#[derive(Debug, Serialize)]
pub struct Flash {
    /// Bootstrap alert colour: `success`, `danger`, ...
    pub kind: &'static str,
    pub message: String,
}

#[rocket::async_trait]
impl<'r> FromRequest<'r> for Chrome {
    type Error = std::convert::Infallible;

    async fn from_request(req: &'r Request<'_>) -> request::Outcome<Self, Self::Error> {
        let csrf = req.guard::<CsrfToken>().await.succeeded().map(|t| t.0);
        let admin = req
            .guard::<Session>()
            .await
            .succeeded()
            .map(|s| s.admin.username);
        let flash = req
            .guard::<Option<FlashMessage<'_>>>()
            .await
            .succeeded()
            .flatten()
            .map(|f| Flash {
                kind: if f.kind() == "success" {
                    "success"
                } else {
                    "danger"
                },
                message: f.message().to_owned(),
            });
        request::Outcome::Success(Chrome {
            csrf_token: csrf.unwrap_or_default(),
            admin,
            flash,
        })
    }
}

/// What a page template sees.
#[derive(Serialize)]
struct Context<'a, P> {
    title: &'a str,
    chrome: Chrome,
    page: P,
}

/// Renders `name` with the frame under `chrome` and the page's own data under `page`.
pub fn render(name: &'static str, title: &str, chrome: Chrome, page: impl Serialize) -> Template {
    // NOTE: the context goes to the template engine as it is, not through a `serde_json::Value`
    // first: building that tree took a sixth of the time of a page of 1,000 tickets.
    Template::render(
        name,
        Context {
            title,
            chrome,
            page,
        },
    )
}

fn datetime(unix: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(unix).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// Machine time, as the API and the logs write it: `2026-11-27T15:40:00Z`.
pub fn rfc3339(unix: i64) -> String {
    datetime(unix).format(&Rfc3339).unwrap_or_default()
}

/// Human time: `2026-11-27 15:40 UTC`.
pub fn human_time(unix: i64) -> String {
    datetime(unix)
        .format(format_description!(
            "[year]-[month]-[day] [hour]:[minute] UTC"
        ))
        .unwrap_or_default()
}

/// A ticket as a table row shows it.
#[derive(Debug, Serialize)]
pub struct TicketRow {
    pub id: i64,
    pub lock_code: String,
    pub length: i64,
    pub state: TicketState,
    pub state_label: &'static str,
    /// Bootstrap row colour: green unused, red in use, grey ended.
    pub row_class: &'static str,
    pub created_at: String,
    pub used_at: Option<String>,
    pub expires_at: Option<String>,
    /// Unix seconds, for the page script that counts down.
    pub expires_at_unix: Option<i64>,
    pub remaining_minutes: Option<i64>,
    pub is_running: bool,
    pub delivery_status: Option<String>,
    /// The last run's message, under the badge while the PIN is not applied.
    pub delivery_detail: Option<String>,
    pub delivery_title: String,
    pub delivery_class: &'static str,
    pub can_retry: bool,
}

impl TicketRow {
    pub fn new(t: &Ticket, now: i64) -> Self {
        let state = t.state_at(now);
        let (state_label, row_class) = match state {
            TicketState::Unused => ("unused", "table-success"),
            TicketState::InUse => ("in use", "table-danger"),
            TicketState::Expired => ("expired", "table-secondary text-body-secondary"),
            TicketState::Revoked => ("revoked", "table-secondary text-body-secondary"),
        };
        let is_running = state == TicketState::InUse;
        let delivery_class = match t.delivery_status.as_deref() {
            Some("applied") => "text-bg-success",
            Some("failed") => "text-bg-danger",
            _ => "text-bg-warning",
        };
        TicketRow {
            id: t.id,
            lock_code: t.lock_code.clone(),
            length: t.length,
            state,
            state_label,
            row_class,
            created_at: human_time(t.created_at),
            used_at: t.used_at.map(human_time),
            expires_at: t.expires_at.map(human_time),
            expires_at_unix: t.expires_at,
            remaining_minutes: is_running
                .then(|| t.remaining_seconds_at(now).map(|s| (s + 59) / 60))
                .flatten(),
            is_running,
            can_retry: t.delivery_status.as_deref() == Some("failed"),
            delivery_status: t.delivery_status.clone(),
            delivery_detail: t
                .delivery_message
                .clone()
                .filter(|_| t.delivery_status.as_deref() != Some("applied")),
            delivery_title: t.delivery_message.clone().unwrap_or_default(),
            delivery_class,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_written_in_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(human_time(90), "1970-01-01 00:01 UTC");
    }
}
