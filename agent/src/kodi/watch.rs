//! Following Kodi's session over reconnects: Kodi sends nothing on login or log-off and
//! drops every client on each profile switch, so the session is re-read after every
//! (re)connect, on every rewrite of `profiles.xml` and on a slow poll.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::event::{AccessKind, AccessMode};
use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tokio::time::{sleep, Instant};

use super::{Kodi, KodiError, SessionState};

/// What [`watch`] saw. Only changes are sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observation {
    /// Kodi answered; this is who is logged in.
    Session(SessionState),
    /// Kodi's JSON-RPC does not answer (Kodi stopped, starting, or its services are down).
    Unreachable,
}

#[derive(Debug, Clone, Copy)]
struct Timing {
    /// First retry after a drop or a failed connect; doubles up to `backoff_max`.
    backoff_min: Duration,
    backoff_max: Duration,
    /// Re-read while connected: the safety net for a login nothing else reveals.
    poll: Duration,
    /// A profile switch drops the connection for 1–2 s; only a longer outage after a
    /// connection is reported as `Unreachable`.
    unreachable_grace: Duration,
    /// After a `profiles.xml` change while connected, give Kodi a moment: it writes the file
    /// in the middle of a switch (and on settings saves, which change nothing here). Also
    /// how long a read of the master profile just after a switch waits to be read again.
    settle: Duration,
    /// After a `profiles.xml` change while Kodi is away (a switch), the wait before the next
    /// connect, and the first retry after it; doubles like `backoff_min`.
    switch_retry: Duration,
}

// NOTE: backoff_max bounds how late the agent sees Kodi back after a restart (its own
// script's, to apply a PIN, and it arms nothing until it has seen the login screen): a
// connect to a closed port on this box costs nothing worth saving.
const TIMING: Timing = Timing {
    backoff_min: Duration::from_millis(250),
    backoff_max: Duration::from_secs(1),
    poll: Duration::from_secs(3),
    unreachable_grace: Duration::from_secs(3),
    settle: Duration::from_millis(200),
    switch_retry: Duration::from_millis(20),
};

/// Watches Kodi at `addr` ("127.0.0.1:9090") until the receiver is dropped, sending each
/// change of [`Observation`]: the session after every (re)connect, on every change of
/// `profiles_xml` (Kodi rewrites it on each profile switch) and every 3 s while connected;
/// `Unreachable` when the first connect fails or Kodi stays away for more than 3 s.
///
/// Must be called within a Tokio runtime: the watching runs on a spawned task.
pub fn watch(addr: String, profiles_xml: Option<PathBuf>) -> mpsc::Receiver<Observation> {
    watch_with(addr, profiles_xml, TIMING)
}

fn watch_with(
    addr: String,
    profiles_xml: Option<PathBuf>,
    timing: Timing,
) -> mpsc::Receiver<Observation> {
    let (tx, rx) = mpsc::channel(16);
    tokio::spawn(run(addr, profiles_xml, tx, timing));
    rx
}

/// How following one connection ended.
enum Ended {
    ReceiverGone,
    /// The connection dropped or stopped answering: `Ok` if it gave a session first.
    Lost(Result<(), KodiError>),
    /// The connection dropped right after a `profiles.xml` change: Kodi is switching.
    Switching,
}

async fn run(
    addr: String,
    profiles_xml: Option<PathBuf>,
    tx: mpsc::Sender<Observation>,
    timing: Timing,
) {
    // The watcher must live as long as the loop: dropping it stops the events.
    let (_watcher, mut changes) = match profiles_xml.as_deref().map(watch_file).transpose() {
        Ok(Some((watcher, changes))) => (Some(watcher), Some(changes)),
        Ok(None) => (None, None),
        Err(error) => {
            tracing::warn!(path = ?profiles_xml, %error, "cannot watch profiles.xml; relying on reconnects and polling");
            (None, None)
        }
    };
    let mut last = None;
    let mut backoff = timing.backoff_min;
    // When the last good connection was lost; `None` before the first one, so that a Kodi
    // that is down at start-up is reported at once.
    let mut lost_at: Option<Instant> = None;
    // Whether Kodi rewrote profiles.xml while it was away: a switch, whose first read may
    // be early (see `follow`).
    let mut switched = false;

    loop {
        let ended = match Kodi::connect(&addr).await {
            Ok(kodi) => {
                follow(
                    &kodi,
                    &tx,
                    &mut last,
                    &mut changes,
                    timing,
                    std::mem::take(&mut switched),
                )
                .await
            }
            Err(error) => Ended::Lost(Err(error)),
        };
        let switching = match ended {
            Ended::ReceiverGone => return,
            // The change that told of the switch was heard while connected: `follow` took it.
            Ended::Switching => {
                lost_at = Some(Instant::now());
                true
            }
            Ended::Lost(Ok(())) => {
                tracing::debug!(%addr, "Kodi connection lost");
                backoff = timing.backoff_min;
                lost_at = Some(Instant::now());
                false
            }
            Ended::Lost(Err(error)) => {
                let within_grace =
                    lost_at.is_some_and(|at| at.elapsed() < timing.unreachable_grace);
                if within_grace || last == Some(Observation::Unreachable) {
                    tracing::debug!(%error, "Kodi not answering yet");
                } else {
                    tracing::warn!(%error, "Kodi is unreachable");
                    if send(&tx, &mut last, Observation::Unreachable)
                        .await
                        .is_break()
                    {
                        return;
                    }
                }
                false
            }
        };
        let switching = switching
            || tokio::select! {
                () = sleep(backoff) => false,
                () = tx.closed() => return,
                () = next_change(&mut changes) => true,
            };
        if switching {
            // NOTE: Kodi rewrites profiles.xml right after dropping its clients for a profile
            // switch and listens again ~20 ms later (seen on 20.1), so this is the usual way
            // a switch shows here. Reconnect then, and often after, so that a login is
            // reported as soon as Kodi can tell it; once per rewrite, not per event of it.
            tracing::debug!("profiles.xml changed: Kodi is switching profiles");
            tokio::select! {
                () = sleep(timing.switch_retry) => {}
                () = tx.closed() => return,
            }
            drain(&mut changes);
            switched = true;
            backoff = timing.switch_retry;
        } else {
            backoff = (backoff * 2).min(timing.backoff_max);
        }
    }
}

/// Reads the session now, on every `profiles.xml` change and on every poll tick, until the
/// connection is lost or the receiver is dropped. `switched`: Kodi is back from a profile
/// switch.
async fn follow(
    kodi: &Kodi,
    tx: &mpsc::Sender<Observation>,
    last: &mut Option<Observation>,
    changes: &mut Option<mpsc::Receiver<()>>,
    timing: Timing,
    switched: bool,
) -> Ended {
    // The read on connect covers every change seen while disconnected.
    drain(changes);
    let mut answered = false;
    let mut early = switched;
    loop {
        match kodi.session().await {
            Ok(session) if std::mem::take(&mut early) && settling(kodi, &session).await => {
                answered = true;
                // NOTE: back from a switch to the master profile, Kodi shows the window it
                // left for ~0.2 s (seen on 20.1): whether this is its login screen or the
                // master's home is known only then. Any other profile is final at once.
                tokio::select! {
                    () = tx.closed() => return Ended::ReceiverGone,
                    () = sleep(timing.settle) => {}
                }
                continue;
            }
            Ok(session) => {
                answered = true;
                if send(tx, last, Observation::Session(session))
                    .await
                    .is_break()
                {
                    return Ended::ReceiverGone;
                }
            }
            // NOTE: a connection that never gave a session counts as no connection.
            Err(error) if !answered => return Ended::Lost(Err(error)),
            Err(error) => {
                tracing::debug!(%error, "reading Kodi's session failed");
                return Ended::Lost(Ok(()));
            }
        }
        tokio::select! {
            () = kodi.closed() => return Ended::Lost(Ok(())),
            () = tx.closed() => return Ended::ReceiverGone,
            () = sleep(timing.poll) => {}
            () = next_change(changes) => {
                tracing::debug!("profiles.xml changed: reading the session again");
                tokio::select! {
                    // NOTE: the rewrite of a switch can be heard before the drop that comes
                    // just before it: then it is a switch after all.
                    () = kodi.closed() => return Ended::Switching,
                    () = tx.closed() => return Ended::ReceiverGone,
                    () = sleep(timing.settle) => {}
                }
                // One rewrite fires several events: read once for all of them.
                drain(changes);
            }
        }
    }
}

/// Whether a read just after a switch must wait for Kodi's window to settle: it names the
/// master profile (or cannot tell).
async fn settling(kodi: &Kodi, session: &SessionState) -> bool {
    kodi.is_master(&session.profile).await.unwrap_or(true)
}

/// Sends `observation` unless it is the one sent last. `Break` when nobody listens.
async fn send(
    tx: &mpsc::Sender<Observation>,
    last: &mut Option<Observation>,
    observation: Observation,
) -> ControlFlow<()> {
    if last.as_ref() == Some(&observation) {
        return ControlFlow::Continue(());
    }
    tracing::info!(?observation, "Kodi session changed");
    *last = Some(observation.clone());
    match tx.send(observation).await {
        Ok(()) => ControlFlow::Continue(()),
        Err(_) => ControlFlow::Break(()),
    }
}

/// Resolves on the next `profiles.xml` change; never when there is no file watch.
async fn next_change(changes: &mut Option<mpsc::Receiver<()>>) {
    if let Some(rx) = changes {
        if rx.recv().await.is_some() {
            return;
        }
        // The watcher is gone (it only goes with the task): stop asking.
        *changes = None;
    }
    std::future::pending().await
}

fn drain(changes: &mut Option<mpsc::Receiver<()>>) {
    if let Some(changes) = changes {
        while changes.try_recv().is_ok() {}
    }
}

/// Watches the directory of `path` rather than the file: Kodi may replace the file, which
/// ends a watch on the file itself.
fn watch_file(path: &Path) -> notify::Result<(RecommendedWatcher, mpsc::Receiver<()>)> {
    let name = path.file_name().map(ToOwned::to_owned);
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
        _ => PathBuf::from("."),
    };
    // Capacity 1: a pending change already means "read again"; more add nothing.
    let (tx, rx) = mpsc::channel(1);
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else { return };
        let written = match event.kind {
            EventKind::Create(_) | EventKind::Modify(_) | EventKind::Remove(_) => true,
            EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
            // Reads (ours included) change nothing.
            _ => false,
        };
        if written && event.paths.iter().any(|p| p.file_name() == name.as_deref()) {
            let _ = tx.try_send(());
        }
    })?;
    watcher.watch(&dir, RecursiveMode::NonRecursive)?;
    Ok((watcher, rx))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kodi::fake::{
        free_port, FakeKodi, Refuser, GET_CURRENT_PROFILE, HOME, LOGIN_SCREEN,
    };

    const FAST: Timing = Timing {
        backoff_min: Duration::from_millis(50),
        backoff_max: Duration::from_millis(200),
        poll: Duration::from_millis(100),
        unreachable_grace: Duration::from_millis(500),
        settle: Duration::from_millis(20),
        switch_retry: Duration::from_millis(10),
    };

    fn session(logged_on: bool, profile: &str) -> Observation {
        Observation::Session(SessionState {
            logged_on,
            profile: profile.into(),
        })
    }

    /// A userdata folder holding a `profiles.xml`, and the file's path.
    fn userdata() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let xml = dir.path().join("profiles.xml");
        std::fs::write(&xml, "<profiles/>").unwrap();
        (dir, xml)
    }

    async fn next(rx: &mut mpsc::Receiver<Observation>) -> Observation {
        tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("an observation within 10 s")
            .expect("the watcher runs")
    }

    #[tokio::test]
    async fn reports_the_session_once_and_then_each_change() {
        let fake = FakeKodi::start().await;
        let mut rx = watch_with(fake.addr(), None, FAST);
        assert_eq!(next(&mut rx).await, session(false, "Master user"));
        // Several polls later, the unchanged session has not been sent again.
        fake.wait_for_calls(GET_CURRENT_PROFILE, 4).await;
        assert!(rx.try_recv().is_err(), "no duplicates");
        fake.log_in("Kids");
        assert_eq!(next(&mut rx).await, session(true, "Kids"));
    }

    #[tokio::test]
    async fn reports_unreachable_at_once_when_kodi_is_down_at_start() {
        let mut refuser = Refuser::start().await;
        let mut rx = watch(refuser.addr(), None);
        assert_eq!(next(&mut rx).await, Observation::Unreachable);
        refuser.wait_for_attempts(4).await;
        assert!(rx.try_recv().is_err(), "Unreachable is sent once");
    }

    #[tokio::test]
    async fn reconnects_after_kodi_goes_away_and_comes_back() {
        let mut fake = FakeKodi::start().await;
        let mut rx = watch_with(fake.addr(), None, FAST);
        assert_eq!(next(&mut rx).await, session(false, "Master user"));

        fake.stop().await;
        let stopped = Instant::now();
        assert_eq!(next(&mut rx).await, Observation::Unreachable);
        assert!(
            stopped.elapsed() >= FAST.unreachable_grace,
            "a short outage (a profile switch) is not reported"
        );

        fake.log_in("Kids");
        fake.restart().await;
        assert_eq!(next(&mut rx).await, session(true, "Kids"));
    }

    #[tokio::test]
    async fn a_drop_shorter_than_the_grace_goes_unreported() {
        let mut fake = FakeKodi::start().await;
        let mut rx = watch_with(fake.addr(), None, FAST);
        assert_eq!(next(&mut rx).await, session(false, "Master user"));
        fake.log_in("Kids");
        fake.restart().await;
        assert_eq!(next(&mut rx).await, session(true, "Kids"));
    }

    #[tokio::test]
    async fn rereads_at_once_when_profiles_xml_changes() {
        let (dir, xml) = userdata();
        let fake = FakeKodi::start().await;
        // Polling far too slow to explain a quick re-read.
        let timing = Timing {
            poll: Duration::from_secs(600),
            ..FAST
        };
        let mut rx = watch_with(fake.addr(), Some(xml.clone()), timing);
        assert_eq!(next(&mut rx).await, session(false, "Master user"));
        // The watch is set up before the first connect; this read must not trigger it.
        let _ = std::fs::read(&xml).unwrap();

        fake.log_in("Kids");
        let other = dir.path().join("other.xml");
        std::fs::write(&other, "x").unwrap();
        sleep(Duration::from_millis(300)).await;
        assert!(rx.try_recv().is_err(), "other files are ignored");

        std::fs::write(&xml, "<profiles><lastloaded>1</lastloaded></profiles>").unwrap();
        let seen = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .expect("re-read within 5 s of the change")
            .unwrap();
        assert_eq!(seen, session(true, "Kids"));
    }

    #[tokio::test]
    async fn reconnects_at_once_when_profiles_xml_changes_while_kodi_is_away() {
        let (_userdata, xml) = userdata();
        let port = free_port();
        // Without the change, the next connect would come an hour after the first failed.
        let timing = Timing {
            backoff_min: Duration::from_secs(3600),
            backoff_max: Duration::from_secs(3600),
            poll: Duration::from_secs(3600),
            ..FAST
        };
        let mut rx = watch_with(format!("127.0.0.1:{port}"), Some(xml.clone()), timing);
        // Kodi is away: the first connect failed and the watcher waits out its backoff.
        assert_eq!(next(&mut rx).await, Observation::Unreachable);

        let fake = FakeKodi::start_on(port).await;
        fake.log_in("Kids");
        std::fs::write(&xml, "<profiles><lastloaded>1</lastloaded></profiles>").unwrap();
        assert_eq!(next(&mut rx).await, session(true, "Kids"));
    }

    /// Kodi's side of a profile switch: it drops its clients, rewrites profiles.xml, then
    /// listens again with the new profile loaded (`switch_to` changes the fake's state).
    async fn switch(fake: &mut FakeKodi, xml: &Path, switch_to: impl FnOnce(&FakeKodi)) {
        fake.stop().await;
        std::fs::write(xml, "<profiles><lastloaded>1</lastloaded></profiles>").unwrap();
        sleep(Duration::from_millis(50)).await;
        switch_to(fake);
        fake.restart().await;
    }

    /// A settle this long would show in the time a login takes to arrive.
    const LONG_SETTLE: Timing = Timing {
        settle: Duration::from_secs(5),
        ..FAST
    };

    /// A fake Kodi at its login screen, watched with [`LONG_SETTLE`].
    async fn watching_the_login_screen(xml: &Path) -> (FakeKodi, mpsc::Receiver<Observation>) {
        let fake = FakeKodi::start().await;
        let mut rx = watch_with(fake.addr(), Some(xml.to_owned()), LONG_SETTLE);
        assert_eq!(next(&mut rx).await, session(false, "Master user"));
        (fake, rx)
    }

    /// Kids reported within a fifth of [`LONG_SETTLE`]'s settle from now (Kodi back).
    async fn kids_seen_at_once(rx: &mut mpsc::Receiver<Observation>) {
        let back = Instant::now();
        assert_eq!(next(rx).await, session(true, "Kids"));
        assert!(
            back.elapsed() < LONG_SETTLE.settle / 5,
            "seen {:?} after Kodi was back",
            back.elapsed()
        );
    }

    #[tokio::test]
    async fn a_profile_opened_by_a_switch_is_reported_as_soon_as_kodi_answers() {
        let (_userdata, xml) = userdata();
        let (mut fake, mut rx) = watching_the_login_screen(&xml).await;

        switch(&mut fake, &xml, |fake| fake.log_in("Kids")).await;
        kids_seen_at_once(&mut rx).await;
    }

    #[tokio::test]
    async fn a_switch_whose_rewrite_is_heard_before_the_drop_is_reported_as_soon_as_kodi_answers() {
        let (_userdata, xml) = userdata();
        let (mut fake, mut rx) = watching_the_login_screen(&xml).await;

        // The watcher hears the rewrite while still connected, then the drop.
        std::fs::write(&xml, "<profiles><lastloaded>1</lastloaded></profiles>").unwrap();
        sleep(Duration::from_millis(100)).await;
        fake.stop().await;
        fake.log_in("Kids");
        fake.restart().await;
        kids_seen_at_once(&mut rx).await;
    }

    #[tokio::test]
    async fn the_master_profile_after_a_switch_is_read_again_once_kodi_shows_its_window() {
        let (_userdata, xml) = userdata();
        let mut fake = FakeKodi::start().await;
        fake.log_in("Kids");
        let timing = Timing {
            settle: Duration::from_millis(600),
            ..FAST
        };
        let mut rx = watch_with(fake.addr(), Some(xml.clone()), timing);
        assert_eq!(next(&mut rx).await, session(true, "Kids"));

        // A log-off: the master profile is current at once, the login screen shows later.
        switch(&mut fake, &xml, |fake| {
            fake.set(|s| {
                s.profile = "Master user".into();
                s.window = HOME;
            });
        })
        .await;
        sleep(Duration::from_millis(200)).await;
        fake.set(|s| s.window = LOGIN_SCREEN);
        assert_eq!(
            next(&mut rx).await,
            session(false, "Master user"),
            "never the master logged on"
        );
    }

    #[tokio::test]
    async fn sees_kodi_back_within_a_second_however_long_it_was_away() {
        let port = free_port();
        let mut rx = watch(format!("127.0.0.1:{port}"), None);
        assert_eq!(next(&mut rx).await, Observation::Unreachable);
        // Long enough for a backoff that kept doubling to wait 4 s for its next try.
        sleep(Duration::from_secs(4)).await;
        let fake = FakeKodi::start_on(port).await;
        let back = Instant::now();
        assert_eq!(next(&mut rx).await, session(false, "Master user"));
        assert!(
            back.elapsed() < TIMING.backoff_max + Duration::from_millis(500),
            "seen {:?} after Kodi was back",
            back.elapsed()
        );
        drop(fake);
    }

    #[tokio::test]
    async fn a_missing_profiles_xml_directory_does_not_stop_watching() {
        let fake = FakeKodi::start().await;
        let mut rx = watch_with(
            fake.addr(),
            Some(PathBuf::from("/nonexistent/kodi/userdata/profiles.xml")),
            FAST,
        );
        assert_eq!(next(&mut rx).await, session(false, "Master user"));
    }

    #[tokio::test]
    async fn stops_when_the_receiver_is_dropped() {
        let fake = FakeKodi::start().await;
        let rx = watch_with(fake.addr(), None, FAST);
        fake.wait_for_calls(GET_CURRENT_PROFILE, 2).await;
        drop(rx);
        sleep(FAST.poll * 3).await;
        let polls = fake.calls().len();
        sleep(FAST.poll * 5).await;
        assert_eq!(
            fake.calls().len(),
            polls,
            "no more calls after the receiver is gone"
        );
    }
}
