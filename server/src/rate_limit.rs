//! Limits on guessing (admin passwords, PINs) per key, taken *before* a guess is checked.
//!
//! Every guess first reserves a place under each of its keys; a key's places are its misses
//! still remembered plus the guesses being checked right now. A guess that finds no free place
//! waits for one of those in progress to end, and is refused once the key's misses are used up.
//! So a burst of any size gets at most the allowed number of guesses checked: the rest wait,
//! then get 429.
//!
//! NOTE: written by hand rather than with `governor`: a GCRA limiter takes a token per
//! attempt and cannot give it back, so every right PIN (an agent reports thousands) would use
//! up the allowance meant for wrong ones. Here only a miss keeps its place; a hit returns it.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rocket::tokio::sync::Notify;

/// Keys beyond this many are pruned of forgotten ones, bounding memory under a flood.
const PRUNE_ABOVE: usize = 10_000;

/// The longest a waiting guess sleeps before it looks at its keys again unwoken.
const LOOK_AGAIN_AFTER: Duration = Duration::from_secs(1);

/// How many misses a key may have, and for how long they count.
#[derive(Debug, Clone, Copy)]
pub enum Policy {
    /// At most `max` misses within any `window`.
    Window { max: usize, window: Duration },
    /// `free` misses, then one guess at a time, each after a wait that starts at `first` and
    /// doubles with every further miss up to `longest`. Forgotten after `forget_after` without
    /// a miss, or when the key is forgiven.
    Backoff {
        free: usize,
        first: Duration,
        longest: Duration,
        forget_after: Duration,
    },
}

/// What a key allows now.
enum Room {
    /// This many more guesses may be checked (counting those in progress).
    Places(usize),
    /// Nothing until this much time has passed.
    Closed(Duration),
}

impl Policy {
    /// Forgets the misses that no longer count, then says what the rest allow.
    fn room(&self, misses: &mut VecDeque<Instant>, now: Instant) -> Room {
        match *self {
            Policy::Window { max, window } => {
                while misses.front().is_some_and(|t| now - *t >= window) {
                    misses.pop_front();
                }
                match misses.front() {
                    Some(oldest) if misses.len() >= max => {
                        Room::Closed(window.saturating_sub(now - *oldest))
                    }
                    _ => Room::Places(max - misses.len()),
                }
            }
            Policy::Backoff {
                free,
                first,
                longest,
                forget_after,
            } => {
                if misses.back().is_some_and(|t| now - *t >= forget_after) {
                    misses.clear();
                }
                let Some(last) = misses.back().filter(|_| misses.len() >= free) else {
                    return Room::Places(free - misses.len());
                };
                let doublings = u32::try_from(misses.len() - free).unwrap_or(u32::MAX);
                let wait = first
                    .checked_mul(2u32.saturating_pow(doublings))
                    .map_or(longest, |w| w.min(longest));
                match wait.checked_sub(now - *last) {
                    Some(left) if !left.is_zero() => Room::Closed(left),
                    _ => Room::Places(1),
                }
            }
        }
    }

    /// Whether a key with these misses can be dropped from memory.
    fn forgotten(&self, misses: &VecDeque<Instant>, now: Instant) -> bool {
        let keep_for = match *self {
            Policy::Window { window, .. } => window,
            Policy::Backoff { forget_after, .. } => forget_after,
        };
        misses.back().is_none_or(|t| now - *t >= keep_for)
    }
}

#[derive(Default)]
struct Key {
    misses: VecDeque<Instant>,
    /// Guesses reserved and not yet settled.
    checking: usize,
    /// Woken whenever one of them settles.
    settled: Arc<Notify>,
}

pub struct RateLimiter {
    policy: Policy,
    keys: Mutex<HashMap<String, Key>>,
}

/// The outcome of trying to reserve a guess without waiting.
enum Attempt {
    Reserved,
    Refused(Duration),
    /// Every place is taken by guesses in progress: wait for one to settle.
    Wait(Arc<Notify>),
}

impl RateLimiter {
    pub fn new(policy: Policy) -> Self {
        RateLimiter {
            policy,
            keys: Mutex::new(HashMap::new()),
        }
    }

    fn keys(&self) -> std::sync::MutexGuard<'_, HashMap<String, Key>> {
        self.keys.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Reserves one guess under every key (all or none), waiting while guesses in progress
    /// hold the last places; `Err(time to wait)` once a key's misses are used up.
    pub async fn reserve(&self, keys: &[&str]) -> Result<Reservation<'_>, Duration> {
        loop {
            let wake = match self.try_reserve(keys) {
                Attempt::Reserved => return Ok(self.reserved(keys)),
                Attempt::Refused(wait) => return Err(wait),
                Attempt::Wait(wake) => wake,
            };
            let woken = wake.notified();
            rocket::tokio::pin!(woken);
            // NOTE: registered before looking again, so a settle in between is not missed.
            woken.as_mut().enable();
            match self.try_reserve(keys) {
                Attempt::Reserved => return Ok(self.reserved(keys)),
                Attempt::Refused(wait) => return Err(wait),
                // NOTE: a right answer wakes one waiter of each of its keys (waking them all
                // made every waiter of a busy device look again after every lookup). One woken
                // for one key may find another key full and wait there, leaving the first
                // key's place to nobody until its next settle: the timeout bounds that case.
                Attempt::Wait(_) => {
                    let _ = rocket::tokio::time::timeout(LOOK_AGAIN_AFTER, woken).await;
                }
            }
        }
    }

    fn reserved(&self, keys: &[&str]) -> Reservation<'_> {
        Reservation {
            limiter: self,
            keys: keys.iter().map(|k| (*k).to_owned()).collect(),
            outcome: Outcome::Miss,
        }
    }

    fn try_reserve(&self, keys: &[&str]) -> Attempt {
        let now = Instant::now();
        let mut map = self.keys();
        if map.len() > PRUNE_ABOVE {
            map.retain(|_, k| k.checking > 0 || !self.policy.forgotten(&k.misses, now));
        }
        let mut refused: Option<Duration> = None;
        let mut busy = None;
        for name in keys {
            let key = map.entry((*name).to_owned()).or_default();
            match self.policy.room(&mut key.misses, now) {
                Room::Closed(wait) => {
                    refused = Some(refused.map_or(wait, |w| w.max(wait)));
                }
                Room::Places(n) if key.checking >= n => busy = Some(key.settled.clone()),
                Room::Places(_) => {}
            }
        }
        if let Some(wait) = refused {
            return Attempt::Refused(wait.max(Duration::from_secs(1)));
        }
        if let Some(wake) = busy {
            return Attempt::Wait(wake);
        }
        for name in keys {
            if let Some(key) = map.get_mut(*name) {
                key.checking += 1;
            }
        }
        Attempt::Reserved
    }

    fn settle(&self, keys: &[String], outcome: Outcome) {
        let now = Instant::now();
        let mut map = self.keys();
        for name in keys {
            let Some(key) = map.get_mut(name) else {
                continue;
            };
            key.checking = key.checking.saturating_sub(1);
            match outcome {
                // One place is free again: one waiter can take it.
                Outcome::Hit => key.settled.notify_one(),
                // The key may now be closed (or open again): every waiter must look.
                Outcome::Miss => {
                    key.misses.push_back(now);
                    key.settled.notify_waiters();
                }
                Outcome::Forgiven => {
                    key.misses.clear();
                    key.settled.notify_waiters();
                }
            }
        }
    }

    /// Forgets every miss of `key`.
    pub fn clear(&self, key: &str) {
        if let Some(key) = self.keys().get_mut(key) {
            key.misses.clear();
            key.settled.notify_waiters();
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Outcome {
    Miss,
    Hit,
    Forgiven,
}

/// A guess allowed to be checked. Dropped without a verdict it counts as a miss: a guess
/// whose check failed half-way may still have learnt something.
#[must_use]
pub struct Reservation<'a> {
    limiter: &'a RateLimiter,
    keys: Vec<String>,
    outcome: Outcome,
}

impl Reservation<'_> {
    /// The guess was right (or never checked): its place is given back, earlier misses
    /// still count.
    pub fn give_back(mut self) {
        self.outcome = Outcome::Hit;
    }

    /// The guess was right and proves its keys honest: their misses are forgotten.
    pub fn forgive(mut self) {
        self.outcome = Outcome::Forgiven;
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        self.limiter.settle(&self.keys, self.outcome);
    }
}

/// "15 minutes", "1 minute": how long to wait, rounded up, as people read it.
pub fn in_minutes(wait: Duration) -> String {
    let minutes = wait.as_secs().div_ceil(60).max(1);
    if minutes == 1 {
        "1 minute".into()
    } else {
        format!("{minutes} minutes")
    }
}

/// The server's limiters, managed as Rocket state.
pub struct Limiters {
    /// Wrong admin passwords per user name (`user:<name>:<password version>`): 5 per 15
    /// minutes, whatever the address, except from a browser that logged in before.
    pub users: RateLimiter,
    /// Wrong admin passwords per client address (`ip:<address>`) and per known browser
    /// (`browser:<id>`): 5, then waits from 1 minute doubling up to an hour.
    pub clients: RateLimiter,
    /// Wrong PINs on the API, keyed by `device:<id>` and `ip:<address>`: 10 a minute.
    pub pins: RateLimiter,
}

impl Default for Limiters {
    fn default() -> Self {
        Limiters {
            users: RateLimiter::new(Policy::Window {
                max: 5,
                window: Duration::from_secs(15 * 60),
            }),
            clients: RateLimiter::new(Policy::Backoff {
                free: 5,
                first: Duration::from_secs(60),
                longest: Duration::from_secs(60 * 60),
                forget_after: Duration::from_secs(24 * 60 * 60),
            }),
            pins: RateLimiter::new(Policy::Window {
                max: 10,
                window: Duration::from_secs(60),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(max: usize, window: Duration) -> RateLimiter {
        RateLimiter::new(Policy::Window { max, window })
    }

    fn refused(limiter: &RateLimiter, key: &str) -> Option<Duration> {
        match limiter.try_reserve(&[key]) {
            Attempt::Refused(wait) => Some(wait),
            _ => None,
        }
    }

    #[rocket::async_test]
    async fn blocks_after_max_misses_within_the_window() {
        let limiter = window(3, Duration::from_secs(60));
        for _ in 0..3 {
            drop(limiter.reserve(&["k"]).await.unwrap());
        }
        let wait = limiter.reserve(&["k"]).await.err().unwrap();
        assert!((1..=60).contains(&wait.as_secs()));
        assert!(limiter.reserve(&["other"]).await.is_ok());
        limiter.clear("k");
        assert!(limiter.reserve(&["k"]).await.is_ok());
    }

    #[rocket::async_test]
    async fn hits_give_their_place_back_and_misses_keep_it() {
        let limiter = window(2, Duration::from_secs(60));
        for _ in 0..10 {
            limiter.reserve(&["k"]).await.unwrap().give_back();
        }
        drop(limiter.reserve(&["k"]).await.unwrap());
        limiter.reserve(&["k"]).await.unwrap().give_back();
        drop(limiter.reserve(&["k"]).await.unwrap());
        assert!(refused(&limiter, "k").is_some());
    }

    #[rocket::async_test]
    async fn guesses_in_progress_hold_the_places_of_all_their_keys() {
        let limiter = window(2, Duration::from_secs(60));
        let a = limiter.reserve(&["device", "ip"]).await.unwrap();
        let b = limiter.reserve(&["device", "ip"]).await.unwrap();
        assert!(matches!(limiter.try_reserve(&["ip"]), Attempt::Wait(_)));
        assert!(matches!(
            limiter.try_reserve(&["other", "ip"]),
            Attempt::Wait(_)
        ));
        a.give_back();
        let c = limiter.reserve(&["ip"]).await.unwrap();
        drop((b, c));
        assert!(refused(&limiter, "ip").is_some());
        assert!(refused(&limiter, "device").is_none());
    }

    /// With one guess allowed and one in progress, whether a second, waiting guess goes on
    /// once the first is settled by `settle` (a miss or a hit).
    async fn second_guess_goes_on(settle: fn(Reservation<'_>)) -> bool {
        let limiter = Arc::new(window(1, Duration::from_secs(60)));
        let first = limiter.reserve(&["k"]).await.unwrap();
        let waiting = {
            let limiter = limiter.clone();
            rocket::tokio::spawn(
                async move { limiter.reserve(&["k"]).await.map(|r| r.give_back()) },
            )
        };
        rocket::tokio::task::yield_now().await;
        settle(first);
        waiting.await.unwrap().is_ok()
    }

    #[rocket::async_test]
    async fn a_waiting_guess_is_refused_when_those_in_progress_miss() {
        assert!(!second_guess_goes_on(|first| drop(first)).await);
    }

    #[rocket::async_test]
    async fn a_waiting_guess_goes_on_when_the_one_in_progress_hits() {
        assert!(second_guess_goes_on(|first| first.give_back()).await);
    }

    #[test]
    fn misses_expire_after_the_window() {
        let policy = Policy::Window {
            max: 1,
            window: Duration::from_secs(60),
        };
        let start = Instant::now();
        let mut misses = VecDeque::from([start]);
        assert!(matches!(policy.room(&mut misses, start), Room::Closed(_)));
        let later = start + Duration::from_secs(60);
        assert!(matches!(policy.room(&mut misses, later), Room::Places(1)));
    }

    #[test]
    fn backoff_doubles_the_wait_per_miss_up_to_the_longest() {
        let policy = Policy::Backoff {
            free: 2,
            first: Duration::from_secs(60),
            longest: Duration::from_secs(300),
            forget_after: Duration::from_secs(3600),
        };
        let start = Instant::now();
        let mut misses = VecDeque::from([start]);
        assert!(matches!(policy.room(&mut misses, start), Room::Places(1)));
        let closed = |misses: &mut VecDeque<Instant>, at| match policy.room(misses, at) {
            Room::Closed(wait) => wait.as_secs(),
            Room::Places(n) => panic!("open with {n} places"),
        };
        for (count, wait) in [(2, 60), (3, 120), (4, 240), (5, 300), (6, 300)] {
            misses = VecDeque::from(vec![start; count]);
            assert_eq!(closed(&mut misses, start), wait, "after {count} misses");
            let after = start + Duration::from_secs(wait);
            assert!(matches!(policy.room(&mut misses, after), Room::Places(1)));
        }
        let forgotten = start + Duration::from_secs(3600);
        assert!(matches!(
            policy.room(&mut misses, forgotten),
            Room::Places(2)
        ));
    }

    #[test]
    fn waits_read_in_minutes() {
        assert_eq!(in_minutes(Duration::from_secs(1)), "1 minute");
        assert_eq!(in_minutes(Duration::from_secs(60)), "1 minute");
        assert_eq!(in_minutes(Duration::from_secs(61)), "2 minutes");
        assert_eq!(in_minutes(Duration::from_secs(881)), "15 minutes");
    }
}
