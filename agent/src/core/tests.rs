//! The rules, case by case: feed events at hand-set times, assert the actions.

use kodi_tickets_protocol::bus::{FromAddon, PinResult, PinTyped, Refusal, Request, ToAddon};
use kodi_tickets_protocol::{AgentEvent, DeliveryOutcome, DeliveryReport};

use super::ending::RESTART_GRACE;
use super::*;
use crate::kodi::{Observation, SessionState};
use crate::state::{Arm, State};

/// 2026-12-04 12:00:00 UTC.
const T0: i64 = 1_796_385_600;
const KIDS_PIN: &str = "0420";

fn native() -> Core {
    Core::new(Mode::Native, "9.9.9", State::default())
}

fn pin_pad() -> Core {
    Core::new(
        Mode::PinPad {
            profile: "Tickets".into(),
        },
        "9.9.9",
        State::default(),
    )
}

fn arm(ticket_id: i64) -> Arm {
    Arm {
        delivery_id: ticket_id * 10,
        ticket_id,
        profile: "Kids".into(),
        lock_code: KIDS_PIN.into(),
    }
}

fn arm_event(ticket_id: i64) -> Event {
    let arm = arm(ticket_id);
    Event::Server(AgentEvent::Arm {
        delivery_id: arm.delivery_id,
        ticket_id,
        profile: arm.profile,
        lock_code: arm.lock_code,
    })
}

fn session_event(ticket_id: i64, expires_at: i64) -> Event {
    Event::Server(AgentEvent::Session {
        ticket_id,
        profile: "Kids".into(),
        expires_at: rfc3339(expires_at),
    })
}

fn seen(profile: &str) -> Event {
    Event::Kodi(Observation::Session(SessionState {
        logged_on: true,
        profile: profile.into(),
    }))
}

fn login_screen() -> Event {
    Event::Kodi(Observation::Session(SessionState {
        logged_on: false,
        profile: "Master user".into(),
    }))
}

fn unreachable() -> Event {
    Event::Kodi(Observation::Unreachable)
}

fn script_done(job: ScriptJob, outcome: DeliveryOutcome) -> Event {
    Event::ScriptDone {
        job,
        report: DeliveryReport {
            outcome,
            exit_code: Some(0),
            message: "done".into(),
        },
    }
}

fn log_off_kids() -> Action {
    Action::LogOff {
        profile: "Kids".into(),
    }
}

fn relock_kids() -> ScriptJob {
    ScriptJob::Relock {
        profile: "kids".into(),
    }
}

fn delivery_outcomes(actions: &[Action]) -> Vec<(i64, DeliveryOutcome)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::ReportDelivery {
                delivery_id,
                report,
            } => Some((*delivery_id, report.outcome)),
            _ => None,
        })
        .collect()
}

fn count(actions: &[Action], wanted: &Action) -> usize {
    actions.iter().filter(|a| *a == wanted).count()
}

fn scripts(actions: &[Action]) -> Vec<&ScriptJob> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::RunScript(job) => Some(job),
            _ => None,
        })
        .collect()
}

/// A core with ticket 1's PIN as Kids' lock code, Kodi at the login screen.
fn armed() -> Core {
    let mut core = native();
    core.handle(T0, login_screen());
    let actions = core.handle(T0, arm_event(1));
    assert_eq!(scripts(&actions), [&ScriptJob::Arm(arm(1))]);
    let actions = core.handle(
        T0,
        script_done(ScriptJob::Arm(arm(1)), DeliveryOutcome::Applied),
    );
    assert_eq!(
        delivery_outcomes(&actions),
        [(10, DeliveryOutcome::Applied)]
    );
    core
}

/// `armed()`, then the child typed the PIN at T0 and the server gave 30 minutes.
fn running() -> Core {
    let mut core = armed();
    let actions = core.handle(T0, seen("Kids"));
    assert_eq!(
        count(
            &actions,
            &Action::ReportLogin {
                ticket_id: 1,
                lock_code: KIDS_PIN.into(),
                used_at: T0
            }
        ),
        1
    );
    core.handle(
        T0,
        Event::LoginAnswered {
            ticket_id: 1,
            answer: Ok(T0 + 1800),
        },
    );
    assert!(core.state().sessions.contains_key(&1));
    core
}

// ---- arming -------------------------------------------------------------------------------

#[test]
fn a_ticket_armed_at_the_login_screen_is_applied_and_reported_without_a_waiting_report() {
    let core = armed();
    assert_eq!(core.state().armed.get("kids"), Some(&arm(1)));
    assert!(core.state().queued.is_empty());
}

#[test]
fn a_ticket_armed_while_a_session_runs_waits_until_the_tv_is_logged_off() {
    let mut core = running();
    let actions = core.handle(T0 + 60, arm_event(2));
    assert!(scripts(&actions).is_empty(), "applying would restart Kodi");
    assert_eq!(delivery_outcomes(&actions), [(20, DeliveryOutcome::Busy)]);
    assert!(
        actions
            .iter()
            .any(|a| matches!(a, Action::ReportDelivery { report, .. }
            if report.message.contains("“Kids” is in use"))),
        "{actions:?}"
    );
    // Time is up, the TV logs off, and only then is the next PIN applied.
    let actions = core.handle(T0 + 1800, Event::Tick);
    assert_eq!(count(&actions, &log_off_kids()), 1);
    assert!(scripts(&actions).is_empty());
    let actions = core.handle(T0 + 1802, login_screen());
    assert_eq!(scripts(&actions), [&ScriptJob::Arm(arm(2))]);
}

#[test]
fn an_arm_sent_again_after_a_reconnect_is_answered_without_the_script() {
    let mut core = armed();
    let actions = core.handle(T0 + 5, arm_event(1));
    assert!(scripts(&actions).is_empty());
    assert_eq!(
        delivery_outcomes(&actions),
        [(10, DeliveryOutcome::Applied)]
    );

    // A waiting one sent again stays queued once and is told it waits.
    let actions = core.handle(T0 + 6, arm_event(2));
    assert_eq!(delivery_outcomes(&actions), [(20, DeliveryOutcome::Busy)]);
    let actions = core.handle(T0 + 7, arm_event(2));
    assert_eq!(delivery_outcomes(&actions), [(20, DeliveryOutcome::Busy)]);
    assert_eq!(core.state().queued.len(), 1);
}

#[test]
fn a_busy_script_is_tried_again_at_the_next_tick_not_at_once() {
    let mut core = native();
    core.handle(T0, login_screen());
    core.handle(T0, arm_event(1));
    let actions = core.handle(
        T0,
        script_done(ScriptJob::Arm(arm(1)), DeliveryOutcome::Busy),
    );
    assert!(scripts(&actions).is_empty());
    assert_eq!(delivery_outcomes(&actions), [(10, DeliveryOutcome::Busy)]);
    let actions = core.handle(T0 + 1, Event::Tick);
    assert_eq!(scripts(&actions), [&ScriptJob::Arm(arm(1))]);
}

#[test]
fn nothing_is_applied_while_kodi_does_not_answer() {
    let mut core = native();
    core.handle(T0, unreachable());
    let actions = core.handle(T0, arm_event(1));
    assert!(scripts(&actions).is_empty());
    assert_eq!(delivery_outcomes(&actions), [(10, DeliveryOutcome::Busy)]);
}

// ---- logins -------------------------------------------------------------------------------

#[test]
fn a_login_seen_twice_is_reported_once() {
    let mut core = armed();
    let first = core.handle(T0, seen("Kids"));
    assert_eq!(
        first
            .iter()
            .filter(|a| matches!(a, Action::ReportLogin { .. }))
            .count(),
        1
    );
    let again = core.handle(T0 + 1, seen("Kids"));
    let tick = core.handle(T0 + 2, Event::Tick);
    for actions in [again, tick] {
        assert!(
            !actions
                .iter()
                .any(|a| matches!(a, Action::ReportLogin { .. })),
            "already under way: {actions:?}"
        );
    }
}

#[test]
fn a_login_the_server_could_not_take_is_reported_again_at_the_next_tick() {
    let mut core = armed();
    core.handle(T0, seen("Kids"));
    core.handle(
        T0 + 1,
        Event::LoginAnswered {
            ticket_id: 1,
            answer: Err(ServerFailure::Unavailable),
        },
    );
    let actions = core.handle(T0 + 2, Event::Tick);
    assert!(actions.contains(&Action::ReportLogin {
        ticket_id: 1,
        lock_code: KIDS_PIN.into(),
        used_at: T0,
    }));
    assert!(
        !actions.contains(&log_off_kids()),
        "an unreported login is a running ticket"
    );
}

#[test]
fn a_reconnect_after_a_profile_switch_repeats_nothing() {
    let mut core = running();
    let actions = [
        core.handle(T0 + 10, unreachable()),
        core.handle(T0 + 12, seen("Kids")),
        core.handle(T0 + 13, Event::Tick),
    ]
    .concat();
    assert!(
        actions.iter().all(|a| matches!(a, Action::SaveState)),
        "{actions:?}"
    );
}

#[test]
fn a_deleted_armed_ticket_ends_the_session_at_once() {
    let mut core = armed();
    core.handle(T0, seen("Kids"));
    let actions = core.handle(
        T0 + 1,
        Event::LoginAnswered {
            ticket_id: 1,
            answer: Err(ServerFailure::Refused(404)),
        },
    );
    assert_eq!(
        actions,
        [Action::LookUpTicket {
            ticket_id: 1,
            lock_code: KIDS_PIN.into()
        }]
    );
    let actions = core.handle(
        T0 + 2,
        Event::TicketLookedUp {
            ticket_id: 1,
            found: None,
        },
    );
    assert_eq!(count(&actions, &log_off_kids()), 1, "{actions:?}");
}

#[test]
fn a_login_reported_before_keeps_the_servers_end() {
    let mut core = armed();
    core.handle(T0, seen("Kids"));
    core.handle(
        T0 + 1,
        Event::LoginAnswered {
            ticket_id: 1,
            answer: Err(ServerFailure::Refused(404)),
        },
    );
    let actions = core.handle(
        T0 + 2,
        Event::TicketLookedUp {
            ticket_id: 1,
            found: Some(FoundTicket {
                id: 1,
                expires_at: Some(T0 + 600),
            }),
        },
    );
    assert!(!actions.contains(&log_off_kids()));
    assert_eq!(core.state().sessions[&1].expires_at, T0 + 600);
}

// ---- warnings -----------------------------------------------------------------------------

#[test]
fn warnings_come_once_at_five_and_at_one_minute() {
    let mut core = running();
    let notifications = |actions: &[Action]| -> Vec<String> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Notify(text) => Some(text.clone()),
                _ => None,
            })
            .collect()
    };
    let end = T0 + 1800;
    assert!(notifications(&core.handle(end - 301, Event::Tick)).is_empty());
    let five = core.handle(end - 300, Event::Tick);
    assert_eq!(notifications(&five), ["5 minutes left"]);
    assert!(five.contains(&Action::TellAddon(ToAddon::Warning(
        kodi_tickets_protocol::bus::Warning {
            profile: "Kids".into(),
            minutes_left: 5
        }
    ))));
    assert!(notifications(&core.handle(end - 200, Event::Tick)).is_empty());
    assert_eq!(
        notifications(&core.handle(end - 60, Event::Tick)),
        ["1 minute left"]
    );
    assert!(notifications(&core.handle(end - 59, Event::Tick)).is_empty());
}

#[test]
fn the_addon_relays_warnings_in_the_session_it_spoke_from() {
    let mut core = running();
    core.handle(
        T0 + 5,
        Event::Addon(FromAddon::Ping(Request {
            request_id: "p".into(),
        })),
    );
    let actions = core.handle(T0 + 1500, Event::Tick);
    assert!(!actions.iter().any(|a| matches!(a, Action::Notify(_))));
    assert!(actions
        .iter()
        .any(|a| matches!(a, Action::TellAddon(ToAddon::Warning(_)))));
}

#[test]
fn more_minutes_warn_again_near_the_new_end() {
    let mut core = running();
    core.handle(T0 + 1500, Event::Tick);
    core.handle(T0 + 1501, session_event(1, T0 + 3600));
    let actions = core.handle(T0 + 3300, Event::Tick);
    assert!(actions.contains(&Action::Notify("5 minutes left".into())));
}

fn withdrawn(ticket_id: i64) -> Event {
    Event::Server(AgentEvent::Withdrawn {
        ticket_id,
        profile: "Kids".into(),
    })
}

fn acknowledged(actions: &[Action], ticket_id: i64) -> bool {
    actions.contains(&Action::AcknowledgeWithdrawal { ticket_id })
}

#[test]
fn a_deleted_armed_ticket_gets_a_secret_at_once_and_is_acknowledged() {
    let mut core = armed();
    let actions = core.handle(T0 + 5, withdrawn(1));
    assert!(acknowledged(&actions, 1), "{actions:?}");
    assert_eq!(
        scripts(&actions),
        [&relock_kids()],
        "its PIN must stop opening Kids"
    );
    assert!(core.state().armed.is_empty());
}

#[test]
fn a_deleted_armed_ticket_makes_way_for_the_next_one() {
    let mut core = armed();
    core.handle(T0 + 1, arm_event(2));
    assert_eq!(
        core.state().queued,
        [arm(2)],
        "one armed ticket per profile"
    );
    let actions = core.handle(T0 + 5, withdrawn(1));
    assert_eq!(scripts(&actions), [&ScriptJob::Arm(arm(2))], "{actions:?}");
    let actions = core.handle(
        T0 + 9,
        script_done(ScriptJob::Arm(arm(2)), DeliveryOutcome::Applied),
    );
    assert!(
        scripts(&actions).is_empty(),
        "no secret over the new PIN: {actions:?}"
    );
    assert_eq!(core.state().armed.get("kids"), Some(&arm(2)));
    assert!(core.state().relock.is_empty());
}

#[test]
fn a_deleted_waiting_ticket_is_dropped() {
    let mut core = armed();
    core.handle(T0 + 1, arm_event(2));
    let actions = core.handle(T0 + 5, withdrawn(2));
    assert!(acknowledged(&actions, 2));
    assert!(core.state().queued.is_empty());
    assert_eq!(
        core.state().armed.get("kids"),
        Some(&arm(1)),
        "the armed one stays"
    );
}

#[test]
fn a_deleted_running_ticket_ends_its_session_now() {
    let mut core = running();
    let actions = core.handle(T0 + 60, withdrawn(1));
    assert!(acknowledged(&actions, 1));
    assert_eq!(count(&actions, &log_off_kids()), 1, "{actions:?}");
}

#[test]
fn a_deletion_this_box_knows_nothing_of_is_only_acknowledged() {
    let mut core = native();
    core.handle(T0, login_screen());
    let actions = core.handle(T0 + 5, withdrawn(7));
    assert!(acknowledged(&actions, 7));
    assert!(scripts(&actions).is_empty() && count(&actions, &log_off_kids()) == 0);
}

// ---- the end of a session -----------------------------------------------------------------

#[test]
fn end_now_logs_off_at_once() {
    let mut core = running();
    let actions = core.handle(T0 + 60, session_event(1, T0 + 59));
    let close = actions.iter().position(|a| *a == Action::CloseAddonDialogs);
    let log_off = actions.iter().position(|a| *a == log_off_kids());
    assert!(
        close.is_some() && close < log_off,
        "dialogs closed first: {actions:?}"
    );
}

#[test]
fn the_session_stays_until_kodi_is_seen_logged_off_and_log_off_is_sent_again() {
    let mut core = running();
    let end = T0 + 1800;
    assert_eq!(count(&core.handle(end, Event::Tick), &log_off_kids()), 1);
    assert!(
        core.state().sessions.contains_key(&1),
        "kept until confirmed"
    );
    // The packet was lost: sent again after 5 s, then 10 s, never every tick.
    let sent_at: Vec<i64> = (end + 1..=end + 40)
        .filter(|t| core.handle(*t, Event::Tick).contains(&log_off_kids()))
        .collect();
    assert_eq!(sent_at, [end + 5, end + 15, end + 35]);
    // Kodi is seen at its login screen: the session is over and its PIN is replaced.
    let actions = core.handle(end + 41, login_screen());
    assert!(core.state().sessions.is_empty());
    assert_eq!(scripts(&actions), [&relock_kids()]);
}

#[test]
fn the_server_hears_once_kodi_showed_the_session_logged_off_until_it_answers() {
    let mut core = running();
    let end = T0 + 1800;
    let logged_off = |at| Action::ReportLogOff { ticket_id: 1, at };
    let actions = core.handle(end, Event::Tick);
    assert_eq!(
        count(&actions, &logged_off(end)),
        0,
        "not before Kodi shows it"
    );
    let actions = core.handle(end + 3, login_screen());
    assert_eq!(count(&actions, &logged_off(end + 3)), 1);
    assert_eq!(
        count(&core.handle(end + 4, Event::Tick), &logged_off(end + 3)),
        0,
        "not again while the report is under way"
    );
    // The server was unreachable: sent again at the next tick, with the time Kodi showed it.
    core.handle(
        end + 5,
        Event::LogOffReported {
            ticket_id: 1,
            answer: Err(ServerFailure::Unavailable),
        },
    );
    assert_eq!(core.state().logged_off.get(&1), Some(&(end + 3)), "kept");
    assert_eq!(
        count(&core.handle(end + 6, Event::Tick), &logged_off(end + 3)),
        1
    );
    let actions = core.handle(
        end + 7,
        Event::LogOffReported {
            ticket_id: 1,
            answer: Ok(()),
        },
    );
    assert!(actions.contains(&Action::SaveState));
    assert!(core.state().logged_off.is_empty());
    assert_eq!(
        count(&core.handle(end + 8, Event::Tick), &logged_off(end + 3)),
        0,
        "answered: never again"
    );
}

#[test]
fn a_log_off_the_server_refuses_is_dropped() {
    let mut core = running();
    core.handle(T0 + 1800, Event::Tick);
    core.handle(T0 + 1801, login_screen());
    core.handle(
        T0 + 1802,
        Event::LogOffReported {
            ticket_id: 1,
            answer: Err(ServerFailure::Refused(404)),
        },
    );
    assert!(core.state().logged_off.is_empty(), "a deleted ticket, say");
}

#[test]
fn a_child_typing_the_old_pin_right_after_the_log_off_is_logged_off_again() {
    let mut core = running();
    let end = T0 + 1800;
    core.handle(end, Event::Tick);
    let actions = core.handle(end + 2, login_screen());
    assert_eq!(scripts(&actions), [&relock_kids()]);
    // Back in before the new lock code is set: logged off at once; the script finds Kodi
    // busy.
    let actions = core.handle(end + 3, seen("Kids"));
    assert_eq!(count(&actions, &log_off_kids()), 1, "{actions:?}");
    let actions = core.handle(end + 3, script_done(relock_kids(), DeliveryOutcome::Busy));
    assert!(scripts(&actions).is_empty());
    assert!(!core.handle(end + 4, Event::Tick).contains(&log_off_kids()));
    // Logged off: the re-lock runs again.
    let actions = core.handle(end + 6, login_screen());
    assert_eq!(scripts(&actions), [&relock_kids()]);
}

#[test]
fn the_old_pin_typed_even_before_the_watcher_saw_the_login_screen_is_logged_off() {
    let mut core = running();
    let end = T0 + 1800;
    core.handle(end, Event::Tick);
    // Kodi logged off and the child was back within a second: the watcher saw no change.
    let actions: Vec<Action> = (end + 1..=end + 5)
        .flat_map(|t| core.handle(t, Event::Tick))
        .collect();
    assert_eq!(count(&actions, &log_off_kids()), 1);
    assert!(core.state().sessions.contains_key(&1));
}

#[test]
fn a_ticket_profile_logged_in_without_a_ticket_is_logged_off() {
    let mut core = running();
    core.handle(T0 + 1800, Event::Tick);
    core.handle(T0 + 1802, login_screen());
    core.handle(
        T0 + 1810,
        script_done(relock_kids(), DeliveryOutcome::Applied),
    );
    assert!(core.state().relock.is_empty());
    // Someone opened Kids anyway (the master code, a guessed secret).
    let actions = core.handle(T0 + 2000, seen("Kids"));
    assert_eq!(count(&actions, &log_off_kids()), 1);
}

#[test]
fn profiles_without_tickets_and_the_master_are_left_alone() {
    let mut core = running();
    for profile in ["Parents", "Master user"] {
        let actions = core.handle(T0 + 10, seen(profile));
        assert!(
            !actions.iter().any(|a| matches!(a, Action::LogOff { .. })),
            "{profile}: {actions:?}"
        );
    }
}

/// A box paired again with its state lost (its add-on's folder wiped, a new SD card) while
/// Kids is in use: the server's account of the running session is the agent's, and the
/// session ends at the server's time, not before.
#[test]
fn a_box_without_state_takes_the_running_session_from_the_server() {
    let mut core = native();
    let actions = core.handle(T0 + 60, seen("Kids"));
    assert!(
        !actions.iter().any(|a| matches!(a, Action::LogOff { .. })),
        "nothing known yet, nothing ended: {actions:?}"
    );
    core.handle(T0 + 61, session_event(1, T0 + 1800));
    assert!(core.state().sessions.contains_key(&1));
    let actions = core.handle(T0 + 1799, Event::Tick);
    assert_eq!(count(&actions, &log_off_kids()), 0, "never early");
    let actions = core.handle(T0 + 1800, Event::Tick);
    assert_eq!(count(&actions, &log_off_kids()), 1, "{actions:?}");
}

#[test]
fn expiry_while_kodi_restarts_ends_the_session_when_kodi_is_back_logged_in() {
    let mut core = running();
    core.handle(T0 + 1790, unreachable());
    let actions = core.handle(T0 + 1800, Event::Tick);
    assert!(!actions.iter().any(|a| matches!(a, Action::LogOff { .. })));
    assert!(
        core.state().sessions.contains_key(&1),
        "not forgotten while Kodi is away"
    );
    let actions = core.handle(T0 + 1805, seen("Kids"));
    assert_eq!(count(&actions, &log_off_kids()), 1);
}

#[test]
fn expiry_while_kodi_restarts_ends_the_session_when_kodi_is_back_at_its_login_screen() {
    let mut core = running();
    core.handle(T0 + 1790, unreachable());
    core.handle(T0 + 1800, Event::Tick);
    let actions = core.handle(T0 + 1805, login_screen());
    assert!(core.state().sessions.is_empty());
    assert_eq!(scripts(&actions), [&relock_kids()]);
}

#[test]
fn kodi_unreachable_past_the_grace_at_expiry_is_restarted_and_reported() {
    let mut core = running();
    let end = T0 + 1800;
    // The child switched the control services off in the session.
    core.handle(T0 + 600, unreachable());
    let restart = Action::RestartKodi {
        profile: "Kids".into(),
    };
    let before: Vec<Action> = (T0 + 601..end + RESTART_GRACE)
        .flat_map(|t| core.handle(t, Event::Tick))
        .collect();
    assert!(
        !before.contains(&restart),
        "the session still runs, then the grace"
    );
    assert_eq!(
        core.handle(end + RESTART_GRACE, Event::Tick),
        std::slice::from_ref(&restart)
    );
    let actions = core.handle(
        end + RESTART_GRACE + 8,
        Event::KodiRestarted {
            ok: true,
            message: "Kodi restarted".into(),
        },
    );
    assert_eq!(actions, [Action::SendStatus]);
    let reported = core.forced_restart().unwrap();
    assert_eq!((reported.profile.as_str(), reported.ok), ("Kids", true));
    assert_eq!(reported.at, rfc3339(end + RESTART_GRACE + 8));
    // Still away: not restarted again at once, but after two minutes, at most three times.
    let mut restarts = Vec::new();
    for t in end + RESTART_GRACE + 9..end + 1000 {
        if core.handle(t, Event::Tick).contains(&restart) {
            restarts.push(t);
            let failed = Event::KodiRestarted {
                ok: false,
                message: "no".into(),
            };
            core.handle(t, failed);
        }
    }
    assert_eq!(
        restarts,
        [end + RESTART_GRACE + 120, end + RESTART_GRACE + 240]
    );
    // Kodi is back at its login screen: the session is over.
    let actions = core.handle(end + 1000, login_screen());
    assert!(core.state().sessions.is_empty());
    assert_eq!(scripts(&actions), [&relock_kids()]);
}

#[test]
fn kodi_unreachable_during_a_running_session_is_not_restarted() {
    let mut core = running();
    core.handle(T0 + 60, unreachable());
    let actions: Vec<Action> = (T0 + 61..T0 + 1799)
        .flat_map(|t| core.handle(t, Event::Tick))
        .collect();
    assert!(!actions
        .iter()
        .any(|a| matches!(a, Action::RestartKodi { .. })));
}

#[test]
fn kodi_unreachable_with_a_used_pin_still_in_place_is_restarted() {
    let mut core = running();
    core.handle(T0 + 1800, Event::Tick);
    core.handle(T0 + 1802, login_screen());
    // The re-lock did not get its turn before Kodi went away (the child is back in with the
    // control services off).
    core.handle(T0 + 1803, unreachable());
    let actions = core.handle(T0 + 1803 + RESTART_GRACE, Event::Tick);
    assert_eq!(
        actions,
        [Action::RestartKodi {
            profile: "kids".into()
        }]
    );
}

#[test]
fn a_leftover_re_lock_does_not_restart_a_kodi_never_seen_since_the_start() {
    let mut state = State::default();
    state.relock.insert("kids".into());
    let mut core = Core::new(Mode::Native, "9.9.9", state);
    core.handle(T0, unreachable());
    let actions: Vec<Action> = (T0..T0 + 300)
        .flat_map(|t| core.handle(t, Event::Tick))
        .collect();
    assert!(!actions
        .iter()
        .any(|a| matches!(a, Action::RestartKodi { .. })));
    // Once it answered, the re-lock runs as usual.
    let actions = core.handle(T0 + 301, login_screen());
    assert_eq!(scripts(&actions), [&relock_kids()]);
}

// ---- the clock ----------------------------------------------------------------------------

#[test]
fn a_clock_jump_forward_ends_a_session_whose_time_has_come() {
    let mut core = running();
    let actions = core.handle(T0 + 7200, Event::Tick);
    assert_eq!(count(&actions, &log_off_kids()), 1);
}

#[test]
fn a_clock_jump_backward_neither_warns_again_nor_stalls_a_log_off() {
    let mut core = running();
    core.handle(T0 + 1500, Event::Tick);
    let actions = core.handle(T0 + 1000, Event::Tick);
    assert!(!actions.iter().any(|a| matches!(a, Action::Notify(_))));
    core.handle(T0 + 1510, Event::Tick);
    assert!(core.state().sessions.contains_key(&1));

    // A profile that must leave, and the clock goes back an hour while it is logged off.
    let mut core = running();
    core.handle(T0 + 1800, Event::Tick);
    core.handle(T0 + 1802, login_screen());
    core.handle(T0 + 1803, seen("Kids"));
    let later = core.handle(T0 + 1803 - 3600, Event::Tick);
    assert_eq!(
        count(&later, &log_off_kids()),
        1,
        "retried, not after an hour"
    );
}

// ---- the add-on and the PIN pad -----------------------------------------------------------

fn typed(pin: &str) -> Event {
    Event::Addon(FromAddon::Pin(PinTyped {
        request_id: "r".into(),
        pin: Some(pin.into()),
    }))
}

fn pin_answer(answer: Result<PinTicket, ServerFailure>) -> Event {
    Event::PinChecked {
        request_id: "r".into(),
        answer,
    }
}

fn kids_ticket(known_to_kodi: bool) -> PinTicket {
    PinTicket {
        ticket_id: Some(7),
        profile: "Kids".into(),
        expires_at: T0 + 1800,
        known_to_kodi,
    }
}

#[test]
fn a_ping_is_answered_with_the_version_and_time_left_with_the_session() {
    let mut core = running();
    let actions = core.handle(
        T0 + 100,
        Event::Addon(FromAddon::Ping(Request {
            request_id: "p".into(),
        })),
    );
    assert_eq!(
        actions,
        [Action::TellAddon(ToAddon::Pong(
            kodi_tickets_protocol::bus::Pong {
                request_id: "p".into(),
                agent_version: "9.9.9".into()
            }
        ))]
    );
    let actions = core.handle(
        T0 + 100,
        Event::Addon(FromAddon::TimeLeft(Request {
            request_id: "t".into(),
        })),
    );
    let [Action::TellAddon(ToAddon::Session(left))] = actions.as_slice() else {
        panic!("{actions:?}")
    };
    assert_eq!(left.remaining_seconds, Some(1700));
    assert_eq!(left.profile.as_deref(), Some("Kids"));
}

#[test]
fn the_pin_pad_accepts_a_ticket_answers_first_then_closes_dialogs_and_switches() {
    let mut core = pin_pad();
    core.handle(T0, seen("Tickets"));
    assert_eq!(
        core.handle(T0, typed("1234")),
        [Action::CheckPin {
            request_id: "r".into(),
            pin: "1234".into()
        }]
    );
    let actions = core.handle(T0 + 1, pin_answer(Ok(kids_ticket(true))));
    let accepted = PinResult::accepted("r".into(), "Kids".into(), rfc3339(T0 + 1800));
    assert_eq!(
        actions,
        [
            Action::SaveState,
            Action::TellAddon(ToAddon::Result(accepted)),
            Action::CloseAddonDialogs,
            Action::LoadProfile {
                profile: "Kids".into()
            },
        ]
    );
    // In the session: nothing to log off; at its end, logged off, and no re-lock.
    assert!(!core.handle(T0 + 3, seen("Kids")).contains(&log_off_kids()));
    assert!(core
        .handle(T0 + 1800, Event::Tick)
        .contains(&log_off_kids()));
    let actions = core.handle(T0 + 1802, login_screen());
    assert!(scripts(&actions).is_empty());
    assert!(core.state().relock.is_empty());
    let actions = core.handle(T0 + 1803, Event::Tick);
    assert!(actions.contains(&Action::LoadProfile {
        profile: "Tickets".into()
    }));
}

#[test]
fn the_pin_pad_answers_each_refusal_with_its_reason() {
    let cases = [
        (ServerFailure::Refused(404), Refusal::UnknownPin),
        (ServerFailure::Refused(429), Refusal::RateLimited),
        (ServerFailure::Unavailable, Refusal::ServerUnreachable),
    ];
    for (failure, reason) in cases {
        let mut core = pin_pad();
        core.handle(T0, seen("Tickets"));
        let actions = core.handle(T0, pin_answer(Err(failure)));
        assert_eq!(
            actions,
            [Action::TellAddon(ToAddon::Result(PinResult::refused(
                "r".into(),
                reason
            )))]
        );
    }
    let mut core = pin_pad();
    let actions = core.handle(T0, pin_answer(Ok(kids_ticket(false))));
    assert!(
        actions.contains(&Action::TellAddon(ToAddon::Result(PinResult::refused(
            "r".into(),
            Refusal::KodiError
        ))))
    );
    assert!(!actions
        .iter()
        .any(|a| matches!(a, Action::LoadProfile { .. })));
}

#[test]
fn a_malformed_pin_is_a_bad_request_without_asking_the_server() {
    let mut core = pin_pad();
    for pin in ["12a4", "12345"] {
        let actions = core.handle(T0, typed(pin));
        assert_eq!(
            actions,
            [Action::TellAddon(ToAddon::Result(PinResult::refused(
                "r".into(),
                Refusal::BadRequest
            )))]
        );
    }
}

#[test]
fn the_pin_pad_profile_is_loaded_again_from_the_login_screen_not_every_tick() {
    let mut core = pin_pad();
    let load = Action::LoadProfile {
        profile: "Tickets".into(),
    };
    let actions = core.handle(T0, login_screen());
    assert!(!actions.contains(&load), "at the next tick");
    let loads: Vec<i64> = (T0..T0 + 25)
        .filter(|t| core.handle(*t, Event::Tick).contains(&load))
        .collect();
    assert_eq!(
        loads,
        [T0, T0 + 10, T0 + 20],
        "asked again only if no switch came"
    );
    // The PIN-pad profile itself is never logged off.
    let actions = core.handle(T0 + 26, seen("Tickets"));
    assert!(!actions.iter().any(|a| matches!(a, Action::LogOff { .. })));
}

#[test]
fn arms_in_pin_pad_mode_are_acknowledged_without_the_script() {
    let mut core = pin_pad();
    core.handle(T0, login_screen());
    let actions = core.handle(T0, arm_event(1));
    assert!(scripts(&actions).is_empty());
    assert_eq!(
        delivery_outcomes(&actions),
        [(10, DeliveryOutcome::Applied)]
    );
}
