//! Live pages re-read themselves after each change (see `live.rs`); every open page showing
//! the same URL asks at the same moment. Such a re-read names the change it follows
//! (`X-Live-Change`), and the page is read from the database and rendered once per URL and
//! change, for all of them.
//!
//! NOTE: a shared copy holds nothing of one session: no anti-CSRF token (the page script puts
//! its own into the forms it swaps in), no message, no user name. Every admin sees the same
//! data today; were some to see less (staff accounts), their role would join the key.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use rocket::request::{self, FromRequest, Request};
use rocket::response::content::RawHtml;
use rocket::tokio::sync::OnceCell;
use rocket::{Orbit, Rocket};
use rocket_dyn_templates::Template;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::views::{self, Chrome};

/// The header a page script's re-read carries: the number of the change it follows.
pub const HEADER: &str = "X-Live-Change";
/// Changes back from the newest whose renders are kept (a page whose stream lags a little
/// still finds its copy).
const CHANGES_KEPT: u64 = 2;
/// At most this many renders are kept, whatever their change.
const MOST_KEPT: usize = 256;

type Key = (String, u64);

/// The renders of the latest changes, one per URL and change.
#[derive(Default)]
pub struct Rereads {
    pages: Mutex<HashMap<Key, Arc<OnceCell<String>>>>,
}

impl Rereads {
    /// The one cell of `key`, made if new; older changes' cells are dropped.
    fn cell(&self, key: Key) -> Arc<OnceCell<String>> {
        let mut pages = self.pages.lock().unwrap_or_else(|e| e.into_inner());
        let newest = key.1;
        if pages.len() >= MOST_KEPT || !pages.contains_key(&key) {
            pages.retain(|(_, change), _| change.saturating_add(CHANGES_KEPT) >= newest);
            if pages.len() >= MOST_KEPT {
                pages.clear();
            }
        }
        Arc::clone(pages.entry(key).or_default())
    }
}

/// A page, as its handler builds it: template, title and data.
pub struct View<P> {
    pub name: &'static str,
    pub title: String,
    pub page: P,
}

/// A page's answer: rendered for this request, or the copy shared by every re-read of it
/// after the same change.
#[derive(rocket::Responder)]
pub enum PageAnswer {
    Own(Box<Template>),
    Shared(RawHtml<String>),
}

/// How this request reads its page: a plain visit (with the visitor's frame), or a live
/// page's re-read after a change.
pub struct Reread<'r> {
    chrome: Chrome,
    change: Option<u64>,
    uri: String,
    rocket: &'r Rocket<Orbit>,
    rereads: Option<&'r Rereads>,
}

#[rocket::async_trait]
impl<'r> FromRequest<'r> for Reread<'r> {
    type Error = std::convert::Infallible;

    async fn from_request(req: &'r Request<'_>) -> request::Outcome<Self, Self::Error> {
        let chrome = rocket::outcome::try_outcome!(req.guard::<Chrome>().await);
        request::Outcome::Success(Reread {
            chrome,
            change: req
                .headers()
                .get_one(HEADER)
                .and_then(|n| n.trim().parse().ok()),
            uri: req.uri().to_string(),
            rocket: req.rocket(),
            rereads: req.rocket().state::<Rereads>(),
        })
    }
}

impl Reread<'_> {
    /// Whether this answer is shared by every re-read after the same change.
    pub fn is_shared(&self) -> bool {
        self.change.is_some() && self.rereads.is_some()
    }

    /// Answers with the page `build` makes: for a plain visit in the visitor's frame;
    /// for a re-read after a change, built and rendered once for all of that change's
    /// re-reads of this URL (the first one builds, the others wait for it).
    pub async fn answer<P, F, Fut>(self, build: F) -> Result<PageAnswer>
    where
        P: Serialize,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<View<P>>>,
    {
        let (Some(change), Some(rereads)) = (self.change, self.rereads) else {
            let view = build().await?;
            return Ok(PageAnswer::Own(Box::new(views::render(
                view.name,
                &view.title,
                self.chrome,
                view.page,
            ))));
        };
        let cell = rereads.cell((self.uri, change));
        let html = cell
            .get_or_try_init(|| async {
                let view = build().await?;
                views::render_to_string(self.rocket, view.name, &view.title, view.page)
                    .ok_or_else(|| Error::Internal(format!("cannot render {}", view.name)))
            })
            .await?;
        Ok(PageAnswer::Shared(RawHtml(html.clone())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_cell_per_url_and_change_and_old_changes_go() {
        let rereads = Rereads::default();
        let first = rereads.cell(("/profiles/1".into(), 5));
        assert!(Arc::ptr_eq(
            &first,
            &rereads.cell(("/profiles/1".into(), 5))
        ));
        assert!(!Arc::ptr_eq(
            &first,
            &rereads.cell(("/profiles/2".into(), 5))
        ));
        rereads.cell(("/profiles/1".into(), 8));
        let kept: Vec<u64> = rereads.pages.lock().unwrap().keys().map(|k| k.1).collect();
        assert_eq!(kept, [8], "changes 5 is more than {CHANGES_KEPT} back");
    }
}
