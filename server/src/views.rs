//! What every page shows around its content, and how values are written for people.

/// Machine time, as the API and the logs write it: `2026-11-27T15:40:00Z`.
pub use kodi_tickets_protocol::times::rfc3339;
use kodi_tickets_protocol::TicketState;
use rocket::request::{self, FlashMessage, FromRequest, Request};
use rocket::{Orbit, Rocket};
use rocket_dyn_templates::Template;
use serde::Serialize;
use time::macros::format_description;
use time::OffsetDateTime;

use crate::auth::{CsrfToken, Session};
use crate::db::tickets::Ticket;
use crate::db::{DeliveryStatus, TicketId};

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

/// Renders `name` for no one in particular (no anti-CSRF token, message or user name), to be
/// shared by every live page's re-read of it (`rereads.rs`).
pub fn render_to_string(
    rocket: &Rocket<Orbit>,
    name: &'static str,
    title: &str,
    page: impl Serialize,
) -> Option<String> {
    let chrome = Chrome {
        csrf_token: String::new(),
        admin: None,
        flash: None,
    };
    Template::show(
        rocket,
        name,
        Context {
            title,
            chrome,
            page,
        },
    )
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

/// Human time: `2026-11-27 15:40 UTC`.
pub fn human_time(unix: i64) -> String {
    datetime(unix)
        .format(format_description!(
            "[year]-[month]-[day] [hour]:[minute] UTC"
        ))
        .unwrap_or_default()
}

/// A moment as a page shows it: a `<time>` element whose `datetime` the page script writes
/// in the browser's time zone; `utc` is what is read without the script.
#[derive(Debug, Clone, Serialize)]
pub struct Moment {
    pub iso: String,
    pub utc: String,
}

impl Moment {
    pub fn at(unix: i64) -> Self {
        Moment {
            iso: rfc3339(unix),
            utc: human_time(unix),
        }
    }
}

/// Time left as people say it: `25 min`, `2 h 05 min` (the page script writes it the same way).
pub fn time_left(seconds: i64) -> String {
    let minutes = (seconds.max(0) + 59) / 60;
    if minutes < 60 {
        format!("{minutes} min")
    } else {
        format!("{} h {:02} min", minutes / 60, minutes % 60)
    }
}

/// What the pages know about how a profile's PINs reach its TV, for every ticket row of it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Reach {
    /// The unused ticket whose PIN is the profile's lock code on the TV now.
    pub armed: Option<TicketId>,
    /// The profile's box gets PINs through its agent, and the agent is not connected.
    pub tv_offline: bool,
}

/// Whether a ticket's PIN works on the TV now, in one word for the page script and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Its PIN is the profile's lock code: typing it opens the profile.
    Ready,
    /// Being set on the TV.
    Setting,
    /// Queued behind another unused PIN of the profile.
    WaitingTurn,
    /// Queued until someone's session on the profile ends.
    WaitingSession,
    /// Queued until the box's agent connects.
    WaitingOffline,
    /// Setting it failed; Retry sends it again.
    NotSent,
    /// A newer PIN was set after it.
    Replaced,
    InUse,
    /// Its time is up (or it was ended), but the TV was not yet seen logged off.
    NotLoggedOff,
    Ended,
}

/// A delivery failure as a receptionist reads it.
pub fn plain_reason(message: Option<&str>) -> String {
    let message = message.unwrap_or("").trim();
    if let Some(rest) = message.strip_prefix("the Kodi script failed (exit ") {
        let said = rest.split_once("): ").map(|(_, s)| s.trim()).unwrap_or("");
        return if said.is_empty() {
            "Kodi refused the PIN".into()
        } else {
            format!("Kodi refused the PIN ({said})")
        };
    }
    if message.contains("timed out") {
        "the TV did not answer in time".into()
    } else if message.starts_with("cannot run") {
        "the server cannot run its Kodi script".into()
    } else if message.contains("SSH settings") {
        "the box's SSH settings are incomplete".into()
    } else if message.contains("killed") {
        "setting the PIN was interrupted".into()
    } else if message.is_empty() {
        "it failed".into()
    } else {
        message.to_owned()
    }
}

/// A ticket as a table row or card shows it.
#[derive(Debug, Serialize)]
pub struct TicketRow {
    pub id: TicketId,
    pub lock_code: String,
    pub length: String,
    pub state: TicketState,
    pub status: Status,
    /// The plain state, before its time if it has one: "Ready on TV", "In use until".
    pub status_text: String,
    pub status_time: Option<Moment>,
    /// Why it ended: "time up", "ended early", "removed".
    pub status_note: Option<&'static str>,
    /// Bootstrap row colour: green when its PIN works, yellow while it does not yet, red in
    /// use, grey ended.
    pub row_class: &'static str,
    pub created_at: Moment,
    pub used_at: Option<Moment>,
    /// Unix seconds, for the page script that counts down.
    pub expires_at_unix: Option<i64>,
    pub time_left: Option<String>,
    pub is_running: bool,
    pub can_retry: bool,
}

impl TicketRow {
    pub fn new(t: &Ticket, now: i64, reach: Reach) -> Self {
        let state = t.state_at(now);
        let delivery = t.delivery_status;
        let status = match state {
            TicketState::InUse => Status::InUse,
            TicketState::Expired | TicketState::Revoked if t.awaits_log_off(now) => {
                Status::NotLoggedOff
            }
            TicketState::Expired | TicketState::Revoked => Status::Ended,
            TicketState::Unused => match delivery {
                Some(DeliveryStatus::Applied) if reach.armed == Some(t.id) => Status::Ready,
                Some(DeliveryStatus::Applied) => Status::Replaced,
                Some(DeliveryStatus::Failed) => Status::NotSent,
                _ if reach.tv_offline => Status::WaitingOffline,
                _ if reach.armed.is_some_and(|a| a != t.id) => Status::WaitingTurn,
                _ if t
                    .delivery_message
                    .as_deref()
                    .is_some_and(|m| m.contains("in use")) =>
                {
                    Status::WaitingSession
                }
                _ => Status::Setting,
            },
        };
        let status_text = match status {
            Status::Ready => "Ready on TV".to_owned(),
            Status::Setting => "Being set on the TV…".to_owned(),
            Status::WaitingTurn => "Waiting: another PIN is ready first".to_owned(),
            Status::WaitingSession => "Waiting: someone is using the profile on the TV".to_owned(),
            Status::WaitingOffline => "Waiting for the TV (it is offline)".to_owned(),
            Status::NotSent => format!(
                "Not sent to the TV: {}",
                plain_reason(t.delivery_message.as_deref())
            ),
            Status::Replaced => "Not on the TV: a newer PIN replaced it".to_owned(),
            Status::InUse => "In use until".to_owned(),
            Status::NotLoggedOff => "TV not yet logged off; ended".to_owned(),
            Status::Ended => "Ended".to_owned(),
        };
        let status_note = matches!(status, Status::Ended | Status::NotLoggedOff).then(|| {
            let planned_end = t.used_at.map(|u| u + t.length * 60);
            match state {
                TicketState::Revoked => "removed",
                _ if t.expires_at.zip(planned_end).is_some_and(|(e, p)| e < p) => "ended early",
                _ => "time up",
            }
        });
        let row_class = match status {
            Status::Ready => "table-success",
            Status::InUse | Status::NotLoggedOff => "table-danger",
            Status::Ended => "table-secondary",
            _ => "table-warning",
        };
        let is_running = state == TicketState::InUse;
        TicketRow {
            id: t.id,
            lock_code: t.lock_code.clone(),
            length: time_left(t.length * 60),
            state,
            status,
            status_text,
            status_time: match status {
                Status::InUse | Status::NotLoggedOff | Status::Ended => {
                    t.expires_at.map(Moment::at)
                }
                _ => None,
            },
            status_note,
            row_class,
            created_at: Moment::at(t.created_at),
            used_at: t.used_at.map(Moment::at),
            expires_at_unix: t.expires_at,
            time_left: is_running
                .then(|| t.remaining_seconds_at(now).map(time_left))
                .flatten(),
            is_running,
            can_retry: status == Status::NotSent,
        }
    }
}

/// Orders names as people count: "Room 2" before "Room 10", letters without regard to case.
pub fn natural_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    fn chunks(s: &str) -> Vec<(bool, String)> {
        let mut out: Vec<(bool, String)> = Vec::new();
        for c in s.chars() {
            let digit = c.is_ascii_digit();
            match out.last_mut() {
                Some((d, chunk)) if *d == digit => chunk.push(c),
                _ => out.push((digit, c.to_string())),
            }
        }
        out
    }
    let (left, right) = (chunks(a), chunks(b));
    for ((ld, l), (rd, r)) in left.iter().zip(&right) {
        let order = if *ld && *rd {
            let (l, r) = (l.trim_start_matches('0'), r.trim_start_matches('0'));
            l.len().cmp(&r.len()).then_with(|| l.cmp(r))
        } else {
            l.to_lowercase().cmp(&r.to_lowercase())
        };
        if order.is_ne() {
            return order;
        }
    }
    left.len().cmp(&right.len()).then_with(|| a.cmp(b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::{DeviceId, ProfileId};

    #[test]
    fn names_sort_as_people_count() {
        let mut rooms = vec!["Room 10", "room 2", "Room 1", "Kids", "Room 12", "Room 02b"];
        rooms.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(
            rooms,
            ["Kids", "Room 1", "room 2", "Room 02b", "Room 10", "Room 12"]
        );
    }

    #[test]
    fn times_are_written_in_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(human_time(90), "1970-01-01 00:01 UTC");
    }

    #[test]
    fn long_times_are_written_in_hours() {
        assert_eq!(time_left(25 * 60 - 10), "25 min");
        assert_eq!(time_left(24 * 3600), "24 h 00 min");
        assert_eq!(time_left(90 * 60), "1 h 30 min");
    }

    #[test]
    fn failures_are_told_in_plain_words() {
        assert_eq!(
            plain_reason(Some("the Kodi script failed (exit 3): no such profile")),
            "Kodi refused the PIN (no such profile)"
        );
        assert_eq!(
            plain_reason(Some("the Kodi script timed out after 60 s")),
            "the TV did not answer in time"
        );
    }

    fn ticket(state: TicketState, delivery: Option<DeliveryStatus>) -> Ticket {
        Ticket {
            id: TicketId(7),
            profile_id: ProfileId(1),
            profile_name: "Kids".into(),
            device_id: Some(DeviceId(1)),
            lock_code: "4821".into(),
            length: 30,
            state,
            created_at: 0,
            used_at: None,
            expires_at: None,
            logged_off_at: None,
            delivery_status: delivery,
            delivery_message: None,
            delivery_updated_at: None,
        }
    }

    #[test]
    fn only_the_armed_pin_is_ready_on_the_tv() {
        let armed = Reach {
            armed: Some(TicketId(7)),
            tv_offline: false,
        };
        let other = Reach {
            armed: Some(TicketId(8)),
            tv_offline: false,
        };
        let offline = Reach {
            armed: None,
            tv_offline: true,
        };
        let status = |t: &Ticket, r| TicketRow::new(t, 0, r).status;
        assert_eq!(
            status(
                &ticket(TicketState::Unused, Some(DeliveryStatus::Applied)),
                armed
            ),
            Status::Ready
        );
        assert_eq!(
            status(
                &ticket(TicketState::Unused, Some(DeliveryStatus::Applied)),
                other
            ),
            Status::Replaced
        );
        assert_eq!(
            status(
                &ticket(TicketState::Unused, Some(DeliveryStatus::Pending)),
                other
            ),
            Status::WaitingTurn
        );
        assert_eq!(
            status(
                &ticket(TicketState::Unused, Some(DeliveryStatus::Pending)),
                offline
            ),
            Status::WaitingOffline
        );
        assert_eq!(
            status(
                &ticket(TicketState::Unused, Some(DeliveryStatus::Failed)),
                armed
            ),
            Status::NotSent
        );
        let row = TicketRow::new(
            &ticket(TicketState::Unused, Some(DeliveryStatus::Pending)),
            0,
            Reach::default(),
        );
        assert_eq!(
            (row.status, row.row_class),
            (Status::Setting, "table-warning")
        );
    }

    #[test]
    fn an_ended_ticket_is_not_plainly_ended_until_the_tv_logged_off() {
        let mut t = ticket(TicketState::Expired, Some(DeliveryStatus::Applied));
        t.used_at = Some(0);
        t.expires_at = Some(30 * 60);
        let row = TicketRow::new(&t, 3600, Reach::default());
        assert_eq!(
            (row.status, row.row_class, row.status_note),
            (Status::NotLoggedOff, "table-danger", Some("time up"))
        );
        t.logged_off_at = Some(30 * 60 + 4);
        let row = TicketRow::new(&t, 3600, Reach::default());
        assert_eq!(
            (row.status, row.row_class),
            (Status::Ended, "table-secondary")
        );
        // A ticket never used had no session to end.
        let unused = ticket(TicketState::Revoked, Some(DeliveryStatus::Applied));
        assert_eq!(
            TicketRow::new(&unused, 0, Reach::default()).status,
            Status::Ended
        );
    }

    #[test]
    fn an_ended_ticket_says_how_it_ended() {
        let mut t = ticket(TicketState::Expired, Some(DeliveryStatus::Applied));
        t.used_at = Some(0);
        t.logged_off_at = Some(30 * 60);
        t.expires_at = Some(30 * 60);
        assert_eq!(
            TicketRow::new(&t, 3600, Reach::default()).status_note,
            Some("time up")
        );
        t.expires_at = Some(60);
        assert_eq!(
            TicketRow::new(&t, 3600, Reach::default()).status_note,
            Some("ended early")
        );
        t.state = TicketState::Revoked;
        assert_eq!(
            TicketRow::new(&t, 3600, Reach::default()).status_note,
            Some("removed")
        );
    }
}
