//! The server's one error type and how each kind answers over HTTP.

use std::time::Duration;

use kodi_tickets_protocol::ErrorBody;
use rocket::http::{ContentType, Header, Status};
use rocket::response::{self, Responder, Response};
use rocket::Request;
use rocket_dyn_templates::{context, Template};

use crate::rate_limit::in_minutes;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("not found")]
    NotFound,
    #[error("{0}")]
    NotFoundMessage(String),
    #[error("the request body is too large")]
    PayloadTooLarge,
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Conflict(String),
    #[error("a valid device token is required (Authorization: Bearer ...)")]
    Unauthorized,
    #[error("the form has expired or did not come from this site; reload the page and try again")]
    Csrf,
    #[error("this server is not reached under that name; add it to allowed_hosts if it is this server's")]
    MisdirectedHost,
    #[error("too many attempts; try again in {}", in_minutes(*retry_after))]
    RateLimited { retry_after: Duration },
    #[error("database error")]
    Database(#[from] sqlx::Error),
    #[error("internal error")]
    Internal(String),
}

/// `Retry-After` in whole seconds, rounded up.
pub fn retry_after_header(wait: Duration) -> Header<'static> {
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    Header::new("Retry-After", seconds.to_string())
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn status(&self) -> Status {
        match self {
            Error::NotFound | Error::NotFoundMessage(_) => Status::NotFound,
            Error::PayloadTooLarge => Status::PayloadTooLarge,
            Error::BadRequest(_) => Status::BadRequest,
            Error::Conflict(_) => Status::Conflict,
            Error::Unauthorized => Status::Unauthorized,
            Error::Csrf => Status::Forbidden,
            Error::MisdirectedHost => Status::MisdirectedRequest,
            Error::RateLimited { .. } => Status::TooManyRequests,
            Error::Database(_) | Error::Internal(_) => Status::InternalServerError,
        }
    }
}

/// `{"error": ...}` with the given status: the shape of every API error.
pub fn json_error(status: Status, message: &str) -> (Status, (ContentType, String)) {
    let body = serde_json::to_string(&ErrorBody {
        error: message.to_owned(),
    })
    .expect("an error body always serializes");
    (status, (ContentType::JSON, body))
}

/// The message a status gets when no handler said more.
pub fn status_message(status: Status) -> &'static str {
    match status.code {
        400 => "the request is malformed",
        401 => "a valid device token is required (Authorization: Bearer ...)",
        403 => "forbidden",
        404 => "not found",
        413 => "the request body is too large",
        422 => "the request body has the wrong shape",
        429 => "too many attempts; slow down",
        _ => status.reason().unwrap_or("error"),
    }
}

impl<'r> Responder<'r, 'static> for Error {
    fn respond_to(self, req: &'r Request<'_>) -> response::Result<'static> {
        let status = self.status();
        if status == Status::InternalServerError {
            tracing::error!(error = ?self, path = %req.uri().path(), "request failed");
        }
        let message = self.to_string();
        let mut response = if crate::routes::answers_json(req) {
            json_error(status, &message).respond_to(req)?
        } else {
            let page = Template::render(
                "error",
                context! { status: status.code, reason: status.reason(), message: &message },
            );
            Response::build_from(page.respond_to(req)?)
                .status(status)
                .finalize()
        };
        if let Error::RateLimited { retry_after } = self {
            response.set_header(retry_after_header(retry_after));
        }
        if let Error::Unauthorized = self {
            response.set_header(Header::new("WWW-Authenticate", "Bearer"));
        }
        Ok(response)
    }
}
