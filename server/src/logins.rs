//! Uses of PINs (`POST /api/login`), written to the database in batches.
//!
//! Every commit waits for the disk (fsync), so one commit per login capped logins at the
//! disk's commit rate. Here the logins that arrive while one batch is being written all go
//! into the next: one statement and one commit for all of them, with the same durability.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use rocket::tokio::{self, sync::oneshot};

use crate::db::tickets::{self, Ticket};
use crate::db::{DeviceId, Pool, TicketId};
use crate::error::{Error, Result};

/// Most logins in one statement (three SQL variables each, far below SQLite's limit).
const MAX_BATCH: usize = 256;

/// The ticket used with the login's PIN (possibly by another device's login in the same
/// batch), or `None` for an unknown or already used PIN.
type Answer = std::result::Result<Option<TicketId>, String>;

struct Waiting {
    lock_code: String,
    /// The device reporting it: only tickets of its own profiles can be used.
    device_id: DeviceId,
    at: i64,
    answer: oneshot::Sender<Answer>,
}

/// The logins of one database, waiting for their batch.
pub struct Logins {
    pool: Pool,
    waiting: Mutex<Vec<Waiting>>,
    /// Held by the caller writing a batch; the others queue behind it.
    turn: tokio::sync::Mutex<()>,
}

impl Logins {
    pub fn new(pool: Pool) -> Self {
        Logins {
            pool,
            waiting: Mutex::default(),
            turn: tokio::sync::Mutex::const_new(()),
        }
    }

    /// Marks the unused ticket with this PIN of one of the device's profiles as used at `at`
    /// (or at its creation, if later): of any number of racing calls with one PIN exactly one
    /// gets the ticket.
    pub async fn mark_used(
        &self,
        lock_code: &str,
        device_id: DeviceId,
        at: i64,
    ) -> Result<Option<Ticket>> {
        let (answer, mut answered) = oneshot::channel();
        self.queue().push(Waiting {
            lock_code: lock_code.to_owned(),
            device_id,
            at,
            answer,
        });
        let id = {
            let _turn = self.turn.lock().await;
            // NOTE: whoever holds the turn writes every waiting login, its own among them
            // unless an earlier holder wrote it already.
            loop {
                match answered.try_recv() {
                    Ok(answer) => break answer,
                    Err(oneshot::error::TryRecvError::Closed) => break Err(lost()),
                    Err(oneshot::error::TryRecvError::Empty) => {}
                }
                let batch = self.take_batch();
                if batch.is_empty() {
                    // Ours is in a batch whose writer went away mid-write; it still answers.
                    break answered.await.unwrap_or_else(|_| Err(lost()));
                }
                // NOTE: spawned, so that a caller going away mid-write cannot leave the other
                // logins of its batch without an answer.
                let _ = tokio::spawn(write(self.pool.clone(), batch)).await;
            }
        };
        match id.map_err(Error::Internal)? {
            // NOTE: a batch may hold one PIN from several devices; only the one whose profile
            // holds the ticket can have used it, and the others learn nothing.
            Some(id) => Ok(tickets::find(&self.pool, id)
                .await?
                .filter(|t| t.device_id == Some(device_id))),
            None => Ok(None),
        }
    }

    fn queue(&self) -> std::sync::MutexGuard<'_, Vec<Waiting>> {
        self.waiting.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn take_batch(&self) -> Vec<Waiting> {
        let mut queue = self.queue();
        let n = queue.len().min(MAX_BATCH);
        queue.drain(..n).collect()
    }
}

fn lost() -> String {
    "the login was not written".into()
}

/// Writes one batch and answers each of its logins.
async fn write(pool: Pool, batch: Vec<Waiting>) {
    // NOTE: of several logins with one PIN from one device in a batch only the first can win,
    // so only it goes into the statement (which would apply just one of them anyway).
    let mut seen = HashSet::new();
    let is_first: Vec<bool> = batch
        .iter()
        .map(|login| seen.insert((login.lock_code.as_str(), login.device_id)))
        .collect();
    let uses: Vec<tickets::Use> = batch
        .iter()
        .zip(&is_first)
        .filter(|(_, first)| **first)
        .map(|(login, _)| tickets::Use {
            lock_code: &login.lock_code,
            device_id: login.device_id,
            at: login.at,
        })
        .collect();
    let written = tickets::mark_used(&pool, &uses).await;
    let winners: HashMap<String, TicketId> = match &written {
        Ok(used) => used.iter().map(|(id, code)| (code.clone(), *id)).collect(),
        Err(e) => {
            tracing::error!("cannot write {} login(s): {e}", uses.len());
            HashMap::new()
        }
    };
    for (login, first) in batch.into_iter().zip(is_first) {
        let answer = match &written {
            Err(e) => Err(format!("the login could not be written: {e}")),
            Ok(_) if !first => Ok(None),
            Ok(_) => Ok(winners.get(&login.lock_code).copied()),
        };
        // A caller that went away needs no answer.
        let _ = login.answer.send(answer);
    }
}
