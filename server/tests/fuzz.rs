//! Property tests: the login body parser, the login API as a whole and the PIN allocator hold
//! their contracts for generated inputs, not only for the examples the other tests pick.
//!
//! Case counts are bounded so the file runs in seconds in a debug build. Failures are not
//! persisted to files; a failing run prints the minimal input it found.

mod common;

use std::collections::BTreeSet;

use common::TestServer;
use kodi_tickets_server::db::tickets::{locate_free, BLOCK_SIZE, PIN_SPACE};
use kodi_tickets_server::error::Error;
use kodi_tickets_server::rate_limit::Limiters;
use kodi_tickets_server::routes::api::parse_login;
use proptest::collection::{btree_set, vec};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use rocket::http::{ContentType, Header, Status};
use serde_json::Value;

fn config(cases: u32) -> Config {
    Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    }
}

fn is_pin(s: &str) -> bool {
    s.len() == 4 && s.bytes().all(|b| b.is_ascii_digit())
}

// ---- generators of (mostly) JSON text ----------------------------------------------------

/// Text that is a PIN, looks like one, or is any string at all.
fn pinish_text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[0-9]{4}",
        "[0-9]{0,8}",
        // Digits of other scripts: fullwidth, Arabic-Indic, Extended Arabic-Indic, Devanagari.
        "[0-9０-９٠-٩۰-۹०-९]{4}",
        "[ \t]?[0-9]{4}[ \t\n]?",
        "[+-]?[0-9]{3,4}",
        any::<String>(),
    ]
}

/// A JSON string literal, sometimes spelt with `\u` escapes (`"\u0031..."` is "1...").
fn json_string() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => pinish_text().prop_map(|s| serde_json::to_string(&s).unwrap()),
        1 => "[0-9]{4}".prop_map(|s| {
            let escaped: String = s.chars().map(|c| format!("\\u{:04x}", c as u32)).collect();
            format!("\"{escaped}\"")
        }),
    ]
}

/// A JSON number as text, including ones no machine type holds.
fn json_number() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        any::<u64>().prop_map(|n| n.to_string()),
        any::<f64>()
            .prop_filter("JSON has no NaN or infinity", |f| f.is_finite())
            .prop_map(|f| format!("{f:e}")),
        "-?[1-9][0-9]{20,400}",
        "-?[0-9]{1,3}\\.[0-9]{1,20}[eE][+-]?[0-9]{1,7}",
        "[0-9]{4}",
        Just("-0".to_owned()),
    ]
}

/// An RFC 3339-like time, valid or not.
fn time_text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[0-9]{4}-[01][0-9]-[0-3][0-9]T[0-2][0-9]:[0-5][0-9]:[0-6][0-9](\\.[0-9]{1,9})?(Z|[+-][01][0-9]:[0-5][0-9])",
        "(19[7-9][0-9]|20[0-9]{2})-0[1-9]-[12][0-8]T1[0-9]:[0-5][0-9]:[0-5][0-9]Z",
        any::<String>(),
    ]
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => Just("\"lock_code\"".to_owned()),
        2 => Just("\"used_at\"".to_owned()),
        1 => Just("\"lock_cod\\u0065\"".to_owned()),
        2 => json_string(),
    ]
}

/// Any JSON value as text: scalars, and arrays and objects of them nested a few levels.
fn json_value() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        Just("null".to_owned()),
        Just("true".to_owned()),
        Just("false".to_owned()),
        json_number(),
        json_string(),
        time_text().prop_map(|s| serde_json::to_string(&s).unwrap()),
    ];
    leaf.prop_recursive(5, 64, 6, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..6).prop_map(|items| format!("[{}]", items.join(","))),
            vec((key(), inner), 0..6).prop_map(|fields| {
                let fields: Vec<String> = fields.iter().map(|(k, v)| format!("{k}:{v}")).collect();
                format!("{{{}}}", fields.join(","))
            }),
        ]
    })
}

/// An object that asks for a login, with a lock code and a time of any shape.
fn login_object() -> impl Strategy<Value = String> {
    let lock_code = prop_oneof![4 => json_string(), 1 => json_value()];
    let used_at = prop::option::of(prop_oneof![
        3 => time_text().prop_map(|s| serde_json::to_string(&s).unwrap()),
        1 => json_value(),
    ]);
    let extra = vec((json_string(), json_value()), 0..3);
    (lock_code, used_at, extra, any::<bool>()).prop_map(|(code, used_at, extra, spaced)| {
        let mut fields = vec![format!("\"lock_code\":{code}")];
        if let Some(at) = used_at {
            fields.push(format!("\"used_at\":{at}"));
        }
        fields.extend(extra.iter().map(|(k, v)| format!("{k}:{v}")));
        let sep = if spaced { " ,\n " } else { "," };
        format!("{{{}}}", fields.join(sep))
    })
}

/// Arrays or objects nested up to 3,000 deep, closed or not.
fn deep_nesting() -> impl Strategy<Value = String> {
    (1usize..3_000, any::<bool>(), any::<bool>()).prop_map(|(depth, objects, closed)| {
        let (open, close) = if objects {
            ("{\"lock_code\":", "}")
        } else {
            ("[", "]")
        };
        let mut body = open.repeat(depth);
        body.push_str("\"1234\"");
        if closed {
            body.push_str(&close.repeat(depth));
        }
        body
    })
}

/// Every kind of body `POST /api/login` might be sent as text.
fn login_body() -> impl Strategy<Value = String> {
    prop_oneof![
        2 => any::<String>(),
        3 => json_value(),
        4 => login_object(),
        1 => deep_nesting(),
        // Truncated or padded JSON.
        1 => (login_object(), any::<prop::sample::Index>()).prop_map(|(body, cut)| {
            let mut end = cut.index(body.len() + 1);
            while !body.is_char_boundary(end) {
                end -= 1;
            }
            body[..end].to_owned()
        }),
        1 => (login_object(), "[ \t\r\n]{0,3}", "[ \t\r\nx,}\\]]{0,3}")
            .prop_map(|(body, before, after)| format!("{before}{body}{after}")),
    ]
}

// ---- (a) parse_login --------------------------------------------------------------------

/// What `parse_login` promises for one body: `Ok` only for an object whose `lock_code` is a
/// string of four ASCII digits (and whose `used_at`, if any, is a past RFC 3339 time), the
/// same code back, and a 400 for everything else.
fn check_parse_login(body: &str, now: i64) -> Result<(), TestCaseError> {
    let result = parse_login(body, now);
    let object = match serde_json::from_str::<Value>(body) {
        Ok(Value::Object(object)) => Some(object),
        _ => None,
    };
    let code = object
        .as_ref()
        .and_then(|o| o.get("lock_code"))
        .and_then(Value::as_str)
        .filter(|c| is_pin(c));
    match (&result, code) {
        (Ok(login), Some(code)) => {
            prop_assert_eq!(&login.lock_code, code);
            prop_assert!(is_pin(&login.lock_code));
            if let Some(at) = login.used_at {
                prop_assert!(at <= now, "used_at {} after now {}", at, now);
            }
        }
        (Ok(login), None) => {
            return Err(TestCaseError::fail(format!(
                "accepted {login:?} from a body without a four-digit lock_code"
            )));
        }
        (Err(e), _) => {
            prop_assert!(
                matches!(e, Error::BadRequest(_)),
                "refusals are 400s, got {:?}",
                e
            );
            prop_assert!(!e.to_string().is_empty());
        }
    }
    // A good code with no time (or a null one) is always accepted.
    if let (Some(code), Some(object)) = (code, &object) {
        if matches!(object.get("used_at"), None | Some(Value::Null)) {
            prop_assert_eq!(
                result
                    .as_ref()
                    .map(|l| (l.lock_code.as_str(), l.used_at))
                    .ok(),
                Some((code, None))
            );
        }
    }
    Ok(())
}

fn any_now() -> impl Strategy<Value = i64> {
    prop_oneof![
        4 => 0i64..4_000_000_000,
        1 => any::<i64>(),
        1 => prop_oneof![Just(i64::MAX), Just(i64::MIN), Just(i64::MAX - 30)],
    ]
}

#[test]
fn parse_login_accepts_only_objects_with_a_four_digit_lock_code() {
    let mut runner = TestRunner::new(config(1_500));
    runner
        .run(&(login_body(), any_now()), |(body, now)| {
            check_parse_login(&body, now)
        })
        .unwrap();
}

#[test]
fn parse_login_never_panics_on_arbitrary_text() {
    let mut runner = TestRunner::new(config(1_000));
    runner
        .run(
            &(
                prop_oneof![any::<String>(), "\\PC{0,64}", "[{}\\[\\]\":,0-9a-z ]{0,64}"],
                any_now(),
            ),
            |(body, now)| check_parse_login(&body, now),
        )
        .unwrap();
}

#[test]
fn parse_login_examples_at_the_edges() {
    let now = 1_800_000_000;
    let accepted = [
        r#"{"lock_code":"0420"}"#,
        r#"{"lock_code":"\u0030\u0034\u0032\u0030"}"#,
        r#"{"lock_code":"1111","lock_code":"0420"}"#,
        r#"{"lock_code":"0420","used_at":"2027-01-15T07:00:00Z"}"#,
        r#"{"lock_code":"0420","used_at":"1970-01-01T00:00:00+01:00"}"#,
    ];
    for body in accepted {
        check_parse_login(body, now).unwrap();
        assert!(parse_login(body, now).is_ok(), "{body}");
    }
    let huge = format!(r#"{{"lock_code":"{}"}}"#, "9".repeat(15 * 1024));
    let refused = [
        r#"{"lock_code":"１２３４"}"#,
        r#"{"lock_code":"١٢٣٤"}"#,
        r#"{"lock_code":1e999999}"#,
        r#"{"lock_code":123456789012345678901234567890}"#,
        r#"{"lock_code":"0420","used_at":"9999-12-31T23:59:59Z"}"#,
        r#"{"lock_code":"0420","used_at":"0000-01-01T00:00:00Z"}"#,
        r#"{"lock_code":"0420","used_at":[]}"#,
        r#"{"lock_code":"0420""#,
        &huge,
    ];
    for body in refused {
        check_parse_login(body, now).unwrap();
    }
    // The clock itself at its limits.
    for now in [i64::MIN, -1, 0, i64::MAX - 60, i64::MAX] {
        for body in accepted {
            check_parse_login(body, now).unwrap();
        }
    }
}

// ---- (b) the login API over Rocket's local client ------------------------------------------

#[test]
fn the_login_api_answers_every_body_with_json_and_never_500() {
    let rt = rocket::tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (s, token, pins, device_id) = rt.block_on(async {
        let s = TestServer::start().await;
        s.login_admin().await;
        let (token, kids) = s.local_box_with_profile("Living room", "Kids").await;
        let mut pins = Vec::new();
        for _ in 0..8 {
            pins.push(s.create_ticket(kids, 30).await);
        }
        let device_id: i64 = sqlx::query_scalar("SELECT id FROM devices")
            .fetch_one(&s.pool())
            .await
            .unwrap();
        (s, token, pins, device_id)
    });
    let limiters = s.client.rocket().state::<Limiters>().unwrap();

    let body = prop_oneof![
        6 => login_body().prop_map(String::into_bytes),
        1 => vec(any::<u8>(), 0..256),
        // Valid UTF-8 with a stray byte somewhere: not text at all.
        1 => (login_object(), any::<prop::sample::Index>(), 0x80u8..=0xff).prop_map(|(b, at, byte)| {
            let mut bytes = b.into_bytes();
            let at = at.index(bytes.len() + 1);
            bytes.insert(at, byte);
            bytes
        }),
        // A PIN that exists: one body in a few may succeed.
        1 => prop::sample::select(pins.clone())
            .prop_map(|pin| format!(r#"{{"lock_code":"{pin}"}}"#).into_bytes()),
    ];
    let mut runner = TestRunner::new(config(48));
    runner
        .run(&body, |body| {
            // Misses are rate limited (429 instead of the lookup); start each case afresh so
            // every valid body is looked up.
            limiters.pins.clear(&format!("device:{device_id}"));
            limiters.pins.clear("ip:unknown");
            let (status, content_type, text) = rt.block_on(async {
                let res = s
                    .client
                    .post("/api/login")
                    .header(ContentType::JSON)
                    .header(Header::new("Authorization", format!("Bearer {token}")))
                    .body(&body)
                    .dispatch()
                    .await;
                let status = res.status();
                let content_type = res.content_type();
                (
                    status,
                    content_type,
                    res.into_string().await.unwrap_or_default(),
                )
            });
            prop_assert!(
                status == Status::Ok || status.class().is_client_error(),
                "status {} for {:?}: {}",
                status,
                String::from_utf8_lossy(&body),
                text
            );
            prop_assert_eq!(content_type, Some(ContentType::JSON));
            let json: Value = serde_json::from_str(&text)
                .map_err(|e| TestCaseError::fail(format!("not JSON ({e}): {text}")))?;
            if status == Status::Ok {
                prop_assert_eq!(&json["success"], &Value::Bool(true));
            } else {
                prop_assert!(
                    json["error"].as_str().is_some_and(|e| !e.is_empty()),
                    "{}",
                    json
                );
            }
            Ok(())
        })
        .unwrap();
}

// ---- (c) the PIN allocator ------------------------------------------------------------------

fn code(n: u16) -> String {
    format!("{n:04}")
}

/// The allocator as `tickets::insert` runs it: the live count of each block locates the drawn
/// free code, then only that block's taken codes are looked at.
fn pick_free_code(taken: &[String], draw: u32) -> Option<String> {
    let taken: BTreeSet<&str> = taken.iter().map(String::as_str).collect();
    let mut live_per_block = vec![0; (PIN_SPACE / BLOCK_SIZE) as usize];
    for c in &taken {
        live_per_block[c.parse::<usize>().unwrap() / BLOCK_SIZE as usize] += 1;
    }
    let slot = locate_free(&live_per_block, draw)?;
    let (first, last) = slot.bounds();
    let in_block: Vec<String> = taken
        .range(first.as_str()..=last.as_str())
        .map(|c| c.to_string())
        .collect();
    Some(slot.code(&in_block).expect("the counts match the codes"))
}

/// Codes held by live tickets: a few, many (with repeats), or all but a few (or all).
fn taken_codes() -> impl Strategy<Value = Vec<String>> {
    prop_oneof![
        vec(0u16..PIN_SPACE as u16, 0..40).prop_map(|v| v.into_iter().map(code).collect()),
        vec(0u16..PIN_SPACE as u16, 0..12_000).prop_map(|v| v.into_iter().map(code).collect()),
        all_but_a_few(),
    ]
}

/// Every code except up to 300 of them.
fn all_but_a_few() -> impl Strategy<Value = Vec<String>> {
    btree_set(0u16..PIN_SPACE as u16, 0..300).prop_map(|free| {
        (0..PIN_SPACE as u16)
            .filter(|n| !free.contains(n))
            .map(code)
            .collect()
    })
}

fn free_codes(taken: &[String]) -> Vec<String> {
    let taken: BTreeSet<&str> = taken.iter().map(String::as_str).collect();
    (0..PIN_SPACE as u16)
        .map(code)
        .filter(|c| !taken.contains(c.as_str()))
        .collect()
}

#[test]
fn the_allocator_gives_a_free_code_unless_none_is_left() {
    let mut runner = TestRunner::new(config(200));
    runner
        .run(&(taken_codes(), any::<u32>()), |(taken, draw)| {
            let free = free_codes(&taken);
            let picked = pick_free_code(&taken, draw);
            match picked {
                None => prop_assert!(free.is_empty(), "None with {} free codes", free.len()),
                Some(pin) => {
                    prop_assert!(is_pin(&pin), "{}", pin);
                    prop_assert!(!taken.contains(&pin), "{} is taken", pin);
                    // The draw-th free code in order, modulo their number.
                    prop_assert_eq!(&pin, &free[draw as usize % free.len()]);
                }
            }
            Ok(())
        })
        .unwrap();
    let all: Vec<String> = (0..PIN_SPACE as u16).map(code).collect();
    for draw in [0, 1, 9_999, 10_000, u32::MAX] {
        assert_eq!(pick_free_code(&all, draw), None);
        assert_eq!(pick_free_code(&all[1..], draw), Some("0000".into()));
        assert_eq!(
            pick_free_code(&all[..9_999], draw),
            Some("9999".into()),
            "{draw}"
        );
    }
}

#[test]
fn every_free_code_is_drawn_exactly_once_per_cycle() {
    let mut runner = TestRunner::new(config(24));
    runner
        .run(&all_but_a_few(), |taken| {
            let free = free_codes(&taken);
            let n = free.len() as u32;
            let mut drawn: Vec<String> = (0..n)
                .map(|draw| pick_free_code(&taken, draw).expect("a free code"))
                .collect();
            drawn.sort();
            prop_assert_eq!(&drawn, &free);
            // The next cycle repeats the first.
            if n > 0 {
                prop_assert_eq!(pick_free_code(&taken, n), pick_free_code(&taken, 0));
            }
            Ok(())
        })
        .unwrap();
}

#[test]
fn with_every_code_free_each_is_drawn_once() {
    let mut seen = vec![0u8; PIN_SPACE as usize];
    for draw in 0..PIN_SPACE as u32 {
        let pin = pick_free_code(&[], draw).unwrap();
        seen[pin.parse::<usize>().unwrap()] += 1;
    }
    assert!(seen.iter().all(|&n| n == 1));
}
