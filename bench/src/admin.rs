//! The admin's browser: the CSRF cookie and token of the login page, the session cookie, and
//! the pages and forms the benchmark uses. Redirects are not followed (a ticket's creation is
//! timed up to its `303`, not the profile page it leads to).

use anyhow::{bail, Context};
use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use reqwest::{Client, Response, StatusCode};

#[derive(Clone)]
pub struct Browser {
    http: Client,
    base: String,
    csrf_cookie: String,
    csrf_token: String,
    session_cookie: Option<String>,
}

/// `name=value` of the cookie `name` a response sets.
fn set_cookie(response: &Response, name: &str) -> Option<String> {
    response
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or("").trim().to_owned())
        .find(|pair| pair.split_once('=').is_some_and(|(n, _)| n == name))
}

fn form_token(html: &str) -> Option<String> {
    let marker = "name=\"csrf_token\" value=\"";
    let start = html.find(marker)? + marker.len();
    let end = html[start..].find('"')? + start;
    Some(html[start..end].to_owned())
}

impl Browser {
    /// Opens the login page: the browser now holds a CSRF cookie and the form's token.
    pub async fn open(base: &str, http: Client) -> anyhow::Result<Browser> {
        let response = http.get(format!("{base}/login")).send().await?;
        let csrf_cookie = set_cookie(&response, "kt_csrf").context("no kt_csrf cookie")?;
        let html = response.text().await?;
        let csrf_token = form_token(&html).context("no csrf_token on the login page")?;
        Ok(Browser {
            http,
            base: base.to_owned(),
            csrf_cookie,
            csrf_token,
            session_cookie: None,
        })
    }

    /// The `Cookie` header of this browser, for loads that send their own requests.
    pub fn cookies(&self) -> String {
        match &self.session_cookie {
            Some(session) => format!("{}; {session}", self.csrf_cookie),
            None => self.csrf_cookie.clone(),
        }
    }

    /// Posts the login form; the session cookie on success (a `303` to the profiles).
    pub async fn post_login(&self, user: &str, password: &str) -> anyhow::Result<String> {
        let response = self
            .http
            .post(format!("{}/login", self.base))
            .header(COOKIE, self.csrf_cookie.clone())
            .form(&[
                ("csrf_token", self.csrf_token.as_str()),
                ("username", user),
                ("password", password),
            ])
            .send()
            .await?;
        let status = response.status();
        let session = set_cookie(&response, "kt_session");
        let _ = response.bytes().await;
        match (status, session) {
            (StatusCode::SEE_OTHER, Some(session)) => Ok(session),
            (status, _) => bail!("admin login answered {status}"),
        }
    }

    /// Logs in and keeps the session.
    pub async fn login(&mut self, user: &str, password: &str) -> anyhow::Result<()> {
        self.session_cookie = Some(self.post_login(user, password).await?);
        Ok(())
    }

    /// Issues a ticket on a profile as the "New ticket" form does.
    pub async fn create_ticket(&self, profile: i64, minutes: u32) -> anyhow::Result<()> {
        let response = self
            .http
            .post(format!("{}/profiles/{profile}/tickets", self.base))
            .header(COOKIE, self.cookies())
            .form(&[
                ("csrf_token", self.csrf_token.as_str()),
                ("length", &minutes.to_string()),
            ])
            .send()
            .await?;
        let status = response.status();
        let location = response
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let _ = response.bytes().await;
        if status != StatusCode::SEE_OTHER || location != format!("/profiles/{profile}") {
            bail!("creating a ticket answered {status} → {location:?}");
        }
        Ok(())
    }

    /// An open page's live stream (`GET /events`), as the page script holds it.
    pub async fn page_stream(&self) -> anyhow::Result<Response> {
        let response = self
            .http
            .get(format!("{}/events", self.base))
            .header(COOKIE, self.cookies())
            .send()
            .await?;
        if response.status() != StatusCode::OK {
            bail!("the page stream answered {}", response.status());
        }
        Ok(response)
    }

    /// The profile page's HTML, as the page script re-reads it.
    /// The profile page as an open page's script re-reads it after change `change` (the
    /// number its event stream sent): one copy per change, shared by every open page.
    pub async fn profile_html_after(&self, profile: i64, change: &str) -> anyhow::Result<String> {
        let response = self
            .http
            .get(format!("{}/profiles/{profile}", self.base))
            .header(COOKIE, self.cookies())
            .header("X-Live-Change", change)
            .send()
            .await?;
        if response.status() != StatusCode::OK {
            bail!("the profile page answered {}", response.status());
        }
        Ok(response.text().await?)
    }

    /// The profile page; its size in bytes.
    pub async fn profile_page(&self, profile: i64) -> anyhow::Result<usize> {
        let response = self
            .http
            .get(format!("{}/profiles/{profile}", self.base))
            .header(COOKIE, self.cookies())
            .send()
            .await?;
        let status = response.status();
        let body = response.bytes().await?;
        if status != StatusCode::OK {
            bail!("the profile page answered {status}");
        }
        Ok(body.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_form_token_is_found() {
        let html =
            r#"<form><input type="hidden" name="csrf_token" value="abc-_1"><input name="x">"#;
        assert_eq!(form_token(html).as_deref(), Some("abc-_1"));
        assert_eq!(form_token("<form></form>"), None);
    }
}
