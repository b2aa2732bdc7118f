//! The admin pages: login, password, profiles, tickets, devices, CSRF, errors.

mod common;

use common::TestServer;
use kodi_tickets_server::presence::Changes;
use rocket::http::{ContentType, Status};

fn location<'a>(res: &'a rocket::local::asynchronous::LocalResponse<'_>) -> Option<&'a str> {
    res.headers().get_one("Location")
}

#[rocket::async_test]
async fn pages_need_a_login() {
    let s = TestServer::start().await;
    for path in [
        "/profiles",
        "/profiles/new",
        "/devices",
        "/password",
        "/profiles/1",
    ] {
        let res = s.client.get(path).dispatch().await;
        assert_eq!(res.status(), Status::SeeOther, "{path}");
        assert_eq!(location(&res), Some("/login"), "{path}");
    }
    let res = s.client.get("/").dispatch().await;
    assert_eq!(location(&res), Some("/profiles"));
}

#[rocket::async_test]
async fn the_default_password_must_be_changed_first() {
    let s = TestServer::start().await;
    s.login_default().await;
    let res = s.client.get("/profiles").dispatch().await;
    assert_eq!(location(&res), Some("/password"));
    let (status, body) = s.page("/password").await;
    assert_eq!(status, Status::Ok);
    assert!(body.contains("default password"));

    let change = |current: &'static str, new: &'static str, confirm: &'static str| {
        let s = &s;
        async move {
            s.post_form(
                "/password",
                &[
                    ("current_password", current),
                    ("new_password", new),
                    ("confirm_password", confirm),
                ],
            )
            .await
            .headers()
            .get_one("Location")
            .map(str::to_owned)
        }
    };
    // Refused: wrong current, too short, mismatch, the default again.
    assert_eq!(
        change("wrong", "long-enough-1", "long-enough-1")
            .await
            .as_deref(),
        Some("/password")
    );
    assert_eq!(
        change("admin123", "short", "short").await.as_deref(),
        Some("/password")
    );
    assert_eq!(
        change("admin123", "long-enough-1", "long-enough-2")
            .await
            .as_deref(),
        Some("/password")
    );
    assert_eq!(
        change("admin123", "admin123", "admin123").await.as_deref(),
        Some("/password")
    );
    assert_eq!(
        location(&s.client.get("/profiles").dispatch().await),
        Some("/password")
    );

    assert_eq!(
        change("admin123", common::NEW_PASSWORD, common::NEW_PASSWORD)
            .await
            .as_deref(),
        Some("/profiles")
    );
    assert_eq!(s.page("/profiles").await.0, Status::Ok);
    let hash: String = sqlx::query_scalar("SELECT password_hash FROM admins")
        .fetch_one(&s.pool())
        .await
        .unwrap();
    assert!(hash.starts_with("$argon2id$"));
}

#[rocket::async_test]
async fn wrong_logins_are_refused_then_throttled() {
    let s = TestServer::start().await;
    for _ in 0..5 {
        let res = s
            .post_form("/login", &[("username", "admin"), ("password", "nope")])
            .await;
        assert_eq!(res.status(), Status::Unauthorized);
        assert!(res
            .into_string()
            .await
            .unwrap()
            .contains("Wrong user name or password"));
    }
    // Now even the right password waits.
    let res = s
        .post_form("/login", &[("username", "admin"), ("password", "admin123")])
        .await;
    assert_eq!(res.status(), Status::TooManyRequests);
    assert!(
        res.headers()
            .get_one("Retry-After")
            .unwrap()
            .parse::<u64>()
            .unwrap()
            > 0
    );
    assert!(res
        .into_string()
        .await
        .unwrap()
        .contains("Too many failed logins"));
}

#[rocket::async_test]
async fn unknown_users_are_refused_like_wrong_passwords() {
    let s = TestServer::start().await;
    let res = s
        .post_form(
            "/login",
            &[("username", "nobody"), ("password", "admin123")],
        )
        .await;
    assert_eq!(res.status(), Status::Unauthorized);
    assert!(s.session_cookie().is_none());
}

#[rocket::async_test]
async fn forms_without_the_csrf_token_are_refused() {
    let s = TestServer::start().await;
    s.login_admin().await;
    for (path, body) in [
        ("/profiles", "name=Kids"),
        ("/profiles", "csrf_token=forged&name=Kids"),
        ("/logout", ""),
        ("/login", "username=admin&password=x"),
    ] {
        let res = s
            .client
            .post(path)
            .header(ContentType::Form)
            .body(body)
            .dispatch()
            .await;
        assert!(
            matches!(
                res.status(),
                Status::Forbidden | Status::UnprocessableEntity
            ),
            "{path} {body}: {}",
            res.status()
        );
    }
    let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM profiles")
        .fetch_one(&s.pool())
        .await
        .unwrap();
    assert_eq!(count, 0);
    assert_eq!(s.page("/profiles").await.0, Status::Ok, "still logged in");
}

#[rocket::async_test]
async fn logout_ends_the_session_for_good() {
    let s = TestServer::start().await;
    s.login_admin().await;
    let stolen = s.session_cookie().unwrap();
    let res = s.post_form("/logout", &[]).await;
    assert_eq!(location(&res), Some("/login"));
    assert_eq!(
        location(&s.client.get("/profiles").dispatch().await),
        Some("/login")
    );
    // Replaying the old cookie does not bring the session back.
    let res = s
        .client
        .get("/profiles")
        .private_cookie(stolen)
        .dispatch()
        .await;
    assert_eq!(location(&res), Some("/login"));
}

#[rocket::async_test]
async fn changing_the_password_ends_other_sessions() {
    let s = TestServer::start().await;
    s.login_admin().await;
    let other = TestServer::client_for(s.dir.path()).await;
    let login = s.csrf().await;
    let _ = login;
    // A second browser logs in too.
    let body = other
        .get("/login")
        .dispatch()
        .await
        .into_string()
        .await
        .unwrap();
    let token = common::csrf_in(&body);
    let res = other
        .post("/login")
        .header(ContentType::Form)
        .body(format!(
            "csrf_token={}&username=admin&password={}",
            common::urlencode(&token),
            common::NEW_PASSWORD
        ))
        .dispatch()
        .await;
    assert_eq!(location(&res), Some("/profiles"));
    assert_eq!(other.get("/profiles").dispatch().await.status(), Status::Ok);

    let res = s
        .post_form(
            "/password",
            &[
                ("current_password", common::NEW_PASSWORD),
                ("new_password", "another-pass-9"),
                ("confirm_password", "another-pass-9"),
            ],
        )
        .await;
    assert_eq!(location(&res), Some("/profiles"));
    assert_eq!(
        s.page("/profiles").await.0,
        Status::Ok,
        "this session stays"
    );
    assert_eq!(
        location(&other.get("/profiles").dispatch().await),
        Some("/login"),
        "the other ends"
    );
}

#[rocket::async_test]
async fn profiles_can_be_created_renamed_and_deleted() {
    let s = TestServer::start().await;
    s.login_admin().await;
    let kids = s.create_profile("Kids").await;
    let (status, body) = s.page(&format!("/profiles/{kids}")).await;
    assert_eq!(status, Status::Ok);
    assert!(
        body.contains("Kids") && body.contains("created"),
        "flash shown"
    );

    // Duplicate (any case) and invalid names are refused with a message.
    for bad in ["kids", "", "a/b", "x\ny", &"y".repeat(51)] {
        let res = s.post_form("/profiles", &[("name", bad)]).await;
        assert_eq!(location(&res), Some("/profiles/new"), "{bad:?}");
        let flash = res.cookies().get("_flash").unwrap().value().to_owned();
        assert!(flash.contains("Not created"), "{flash}");
    }

    let res = s
        .post_form(&format!("/profiles/{kids}"), &[("name", "Room 12")])
        .await;
    assert_eq!(location(&res), Some(format!("/profiles/{kids}").as_str()));
    let other = s.create_profile("Teens").await;
    let res = s
        .post_form(&format!("/profiles/{other}"), &[("name", "room 12")])
        .await;
    assert_eq!(
        location(&res),
        Some(format!("/profiles/{other}/edit").as_str())
    );

    s.create_ticket(kids, 30).await;
    let (_, list) = s.page("/profiles").await;
    assert!(list.contains("Room 12") && list.contains("Teens"));

    let (status, confirm) = s.page(&format!("/profiles/{kids}/delete")).await;
    assert_eq!(status, Status::Ok);
    assert!(confirm.contains("Delete the profile"));
    let res = s.post_form(&format!("/profiles/{kids}/delete"), &[]).await;
    assert_eq!(location(&res), Some("/profiles"));
    assert_eq!(
        s.page(&format!("/profiles/{kids}")).await.0,
        Status::NotFound
    );
    let tickets: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM tickets")
        .fetch_one(&s.pool())
        .await
        .unwrap();
    assert_eq!(tickets, 0, "its tickets went with it");
}

#[rocket::async_test]
async fn the_start_page_shows_every_profile_at_a_glance_in_natural_order() {
    let s = TestServer::start().await;
    s.login_admin().await;
    let (token, room10) = s.local_box_with_profile("TV", "Room 10").await;
    let tv = s.device_id("TV").await;
    let room2 = s.create_profile_on("Room 2", tv).await;
    s.create_profile_on("Room 1", tv).await;
    let a = s.create_ticket(room10, 30).await;
    s.create_ticket(room10, 30).await;
    s.create_ticket(room2, 60).await;
    s.api_login(&token, &format!(r#"{{"lock_code":"{a}"}}"#))
        .await;
    let (_, body) = s.page("/profiles").await;
    let at = |name: &str| body.find(&format!(">{name}</a>")).unwrap();
    assert!(
        at("Room 1") < at("Room 2") && at("Room 2") < at("Room 10"),
        "{body}"
    );
    let card = |id: i64| {
        let start = body.find(&format!(r#"id="profile-{id}""#)).unwrap();
        body[start..start + body[start..].find("</section>").unwrap()].to_owned()
    };
    let busy = card(room10);
    assert!(busy.contains(r#"data-status="in_use""#), "{busy}");
    assert!(busy.contains(&a) && busy.contains("In use until"), "{busy}");
    assert!(
        busy.contains("+15 min") && busy.contains("End now"),
        "{busy}"
    );
    assert!(busy.contains("+1 more waiting"), "{busy}");
    let waiting = card(room2);
    assert!(!waiting.contains("End now"), "{waiting}");
    assert!(waiting.contains("New ticket"), "{waiting}");

    // Time up on Room 10, its TV not yet seen logged off (Kodi busy): still red, and says so.
    s.set_script_exit(75);
    sqlx::query(
        "UPDATE tickets SET state = 'expired', expires_at = unixepoch() - 5 WHERE lock_code = ?",
    )
    .bind(&a)
    .execute(&s.pool())
    .await
    .unwrap();
    let (_, body) = s.page("/profiles").await;
    let start = body.find(&format!(r#"id="profile-{room10}""#)).unwrap();
    let ended = &body[start..start + body[start..].find("</section>").unwrap()];
    assert!(
        ended.contains(r#"data-status="not_logged_off""#)
            && ended.contains(&a)
            && ended.contains("TV not yet logged off"),
        "{ended}"
    );
    assert!(!ended.contains("End now"), "{ended}");
}

#[rocket::async_test]
async fn tickets_show_green_then_red_with_minutes_left() {
    let s = TestServer::start().await;
    s.login_admin().await;
    let (token, kids) = s.local_box_with_profile("TV", "Kids").await;
    let pin = s.create_ticket(kids, 30).await;
    let (_, body) = s.page(&format!("/profiles/{kids}")).await;
    assert!(
        body.contains(r#"<td class="pin" data-label="PIN">"#) && body.contains(&pin),
        "{body}"
    );
    // Green only once the PIN works on the TV.
    s.eventually("the PIN applied", |s| {
        s.applied().contains(&format!("Kids:{pin}"))
    })
    .await;
    let mut body = String::new();
    for _ in 0..100 {
        body = s.page(&format!("/profiles/{kids}")).await.1;
        if body.contains(r#"data-status="ready""#) {
            break;
        }
        rocket::tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(
        body.contains(r#"class="table-success""#) && body.contains("Ready on TV"),
        "{body}"
    );

    s.api_login(&token, &format!(r#"{{"lock_code":"{pin}"}}"#))
        .await;
    let (_, body) = s.page(&format!("/profiles/{kids}")).await;
    assert!(
        body.contains(r#"class="table-danger""#)
            && body.contains(r#"data-state="in_use" data-status="in_use""#),
        "{body}"
    );
    assert!(body.contains("30 min left"), "{body}");
    // The end in the browser's time zone by script, in UTC without it.
    assert!(body.contains("In use until <time datetime=\""), "{body}");
    assert!(
        !body.contains("Ready on TV"),
        "a used PIN is no longer ready"
    );

    // Time runs out: red until the TV is seen logged off, then grey.
    sqlx::query(
        "UPDATE tickets SET expires_at = expires_at - 31 * 60, used_at = used_at - 31 * 60",
    )
    .execute(&s.pool())
    .await
    .unwrap();
    let (_, body) = s.page(&format!("/profiles/{kids}")).await;
    assert!(body.contains(r#"data-state="expired""#), "{body}");
    assert!(
        body.contains(r#"class="table-danger""#) && body.contains("TV not yet logged off"),
        "{body}"
    );
    assert!(!body.contains("+15 min"), "no actions of a running ticket");
    // The server's own script logs the TV off and sees the login screen.
    s.client.rocket().state::<Changes>().unwrap().notify(None);
    s.eventually("the TV logged off", |s| {
        s.applied().iter().any(|run| run == "--log-off Kids")
    })
    .await;
    let mut body = String::new();
    for _ in 0..100 {
        body = s.page(&format!("/profiles/{kids}")).await.1;
        if body.contains("table-secondary") {
            break;
        }
        rocket::tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(
        body.contains("table-secondary") && body.contains("(time up)"),
        "{body}"
    );
    assert!(!body.contains("TV not yet logged off"), "{body}");
}

#[rocket::async_test]
async fn a_pin_for_an_offline_box_says_it_waits_and_the_page_warns() {
    let s = TestServer::start().await;
    s.login_admin().await;
    s.device_token("Living room").await;
    let device = s.device_id("Living room").await;
    let (_, form) = s.page("/profiles/new").await;
    assert!(
        form.contains("Its agent on the box sets each PIN"),
        "{form}"
    );
    assert!(form.contains("Only when Kodi runs on the same machine as this server"));
    assert!(
        !form.contains("checked"),
        "nothing is chosen for the admin: {form}"
    );
    let res = s
        .post_form(
            "/profiles",
            &[("name", "Kids"), ("device", &device.to_string())],
        )
        .await;
    let kids: i64 = location(&res).unwrap()["/profiles/".len()..]
        .parse()
        .unwrap();
    let res = s
        .post_form(&format!("/profiles/{kids}/tickets"), &[("length", "1440")])
        .await;
    let flash = res.cookies().get("_flash").unwrap().value().to_owned();
    assert!(
        flash.contains("is being set on the TV for “Kids”") && flash.contains("(24 h 00 min)"),
        "{flash}"
    );
    let (_, body) = s.page(&format!("/profiles/{kids}")).await;
    assert!(body.contains("“Living room” is offline"), "{body}");
    assert!(
        body.contains(r#"class="table-warning""#),
        "not green: {body}"
    );
    assert!(
        body.contains("Waiting for the TV (it is offline)"),
        "{body}"
    );
    assert!(
        body.contains("24 h 00 min"),
        "a day is written in hours: {body}"
    );

    // Someone uses it (the box reported the login, then went silent): the page says what the
    // parent must know now: the session ends on the TV only if the agent still runs there.
    let pin: String = sqlx::query_scalar("SELECT lock_code FROM tickets")
        .fetch_one(&s.pool())
        .await
        .unwrap();
    s.use_ticket(&pin).await;
    let (_, body) = s.page(&format!("/profiles/{kids}")).await;
    assert!(
        body.contains("“Living room” went offline while someone uses this profile")
            && body.contains("check the TV"),
        "{body}"
    );
    assert!(!body.contains("new PINs wait"), "{body}");
}

#[rocket::async_test]
async fn live_tickets_are_all_shown_and_ended_ones_a_page_at_a_time() {
    let s = TestServer::start().await;
    s.login_admin().await;
    let kids = s.create_profile("Kids").await;
    let pool = s.pool();
    // 120 ended tickets (PINs 1000-1119, oldest first), then 3 live ones.
    for n in 0..120 {
        sqlx::query("INSERT INTO tickets (profile_id, lock_code, length, state, created_at) VALUES (?, ?, 30, ?, 0)")
            .bind(kids)
            .bind(format!("{}", 1000 + n))
            .bind(if n % 2 == 0 { "expired" } else { "revoked" })
            .execute(&pool)
            .await
            .unwrap();
    }
    let mut live = Vec::new();
    for _ in 0..3 {
        live.push(s.create_ticket(kids, 30).await);
    }
    let pins_in = |body: &str, section: &str| -> Vec<String> {
        let Some(start) = body.find(&format!(r#"<tbody id="{section}">"#)) else {
            return Vec::new();
        };
        let part = &body[start..start + body[start..].find("</tbody>").unwrap()];
        part.split(r#"<td class="pin" data-label="PIN">"#)
            .skip(1)
            .map(|rest| rest[..4].to_string())
            .collect()
    };
    let code = |n: i32| format!("{}", 1000 + n);

    let (status, first) = s.page(&format!("/profiles/{kids}")).await;
    assert_eq!(status, Status::Ok);
    let newest_first: Vec<String> = live.iter().rev().cloned().collect();
    assert_eq!(pins_in(&first, "live-tickets"), newest_first);
    let ended = pins_in(&first, "ended-tickets");
    assert_eq!(ended, (70..120).rev().map(code).collect::<Vec<_>>());
    assert!(first.contains("Ended tickets 1–50 of 120"), "{first}");
    assert!(first.contains("Page 1 of 3"));
    assert!(first.contains(&format!(r#"href="/profiles/{kids}?page=2" rel="next""#)));

    let (_, last) = s.page(&format!("/profiles/{kids}?page=3")).await;
    assert_eq!(
        pins_in(&last, "live-tickets"),
        newest_first,
        "live on every page"
    );
    assert_eq!(
        pins_in(&last, "ended-tickets"),
        (0..20).rev().map(code).collect::<Vec<_>>()
    );
    assert!(last.contains("Ended tickets 101–120 of 120"));
    assert!(last.contains(&format!(r#"href="/profiles/{kids}?page=2" rel="prev""#)));

    for (asked, shown) in [
        ("99", "Page 3 of 3"),
        ("0", "Page 1 of 3"),
        ("-2", "Page 1 of 3"),
        ("abc", "Page 1 of 3"),
    ] {
        let (status, body) = s.page(&format!("/profiles/{kids}?page={asked}")).await;
        assert_eq!(status, Status::Ok, "{asked}");
        assert!(body.contains(shown), "page={asked}: {body}");
    }
}

#[rocket::async_test]
async fn ticket_lengths_are_checked() {
    let s = TestServer::start().await;
    s.login_admin().await;
    let kids = s.create_profile("Kids").await;
    let (status, form) = s.page(&format!("/profiles/{kids}/tickets/new")).await;
    assert_eq!(status, Status::Ok);
    for quick in ["15", "30", "60", "120"] {
        assert!(
            form.contains(&format!(r#"name="length" value="{quick}""#)),
            "{quick}"
        );
    }
    for bad in ["0", "1441", "-1", "abc", "", "2.5"] {
        let res = s
            .post_form(&format!("/profiles/{kids}/tickets"), &[("length", bad)])
            .await;
        assert_eq!(
            location(&res),
            Some(format!("/profiles/{kids}/tickets/new").as_str()),
            "{bad}"
        );
        assert!(res
            .cookies()
            .get("_flash")
            .unwrap()
            .value()
            .contains("1 to 1440"));
    }
    for good in [1, 1440] {
        s.create_ticket(kids, good).await;
    }
    let res = s
        .post_form("/profiles/999/tickets", &[("length", "30")])
        .await;
    assert_eq!(res.status(), Status::NotFound);
}

#[rocket::async_test]
async fn tickets_can_be_deleted_after_confirmation() {
    let s = TestServer::start().await;
    s.login_admin().await;
    let (token, kids) = s.local_box_with_profile("TV", "Kids").await;
    let pin = s.create_ticket(kids, 30).await;
    let id: i64 = sqlx::query_scalar("SELECT id FROM tickets")
        .fetch_one(&s.pool())
        .await
        .unwrap();
    let (status, confirm) = s.page(&format!("/tickets/{id}/delete")).await;
    assert_eq!(status, Status::Ok);
    assert!(confirm.contains(&pin) && confirm.contains(r#"method="post""#));
    // GET never deletes.
    assert_eq!(s.api_ticket(&token, &pin).await.0, Status::Ok);
    let res = s.post_form(&format!("/tickets/{id}/delete"), &[]).await;
    assert_eq!(location(&res), Some(format!("/profiles/{kids}").as_str()));
    assert_eq!(
        s.api_login(&token, &format!(r#"{{"lock_code":"{pin}"}}"#))
            .await
            .0,
        Status::NotFound
    );
    // Deleted while live, it stays on the record, labelled so.
    let (_, page) = s.page(&format!("/profiles/{kids}")).await;
    assert!(
        page.contains(&format!(">{pin}<")) && page.contains("(removed)"),
        "{page}"
    );
    let (_, confirm) = s.page(&format!("/tickets/{id}/delete")).await;
    assert!(
        confirm.contains("It leaves the list of ended tickets."),
        "{confirm}"
    );
    s.post_form(&format!("/tickets/{id}/delete"), &[]).await;
    let (_, page) = s.page(&format!("/profiles/{kids}")).await;
    assert!(!page.contains(&format!(">{pin}<")), "{page}");
    let res = s.post_form(&format!("/tickets/{id}/delete"), &[]).await;
    assert_eq!(res.status(), Status::NotFound);
}

#[rocket::async_test]
async fn devices_show_their_token_once_and_can_be_revoked() {
    let s = TestServer::start().await;
    s.login_admin().await;
    let token = s.device_token("Living room").await;
    assert!(token.starts_with("kt_") && token.len() > 40);
    let (_, list) = s.page("/devices").await;
    assert!(list.contains("Living room"));
    assert!(!list.contains(&token), "token shown only once");
    let res = s.post_form("/devices", &[("name", "living ROOM")]).await;
    assert_eq!(location(&res), Some("/devices"));
    let id: i64 = sqlx::query_scalar("SELECT id FROM devices")
        .fetch_one(&s.pool())
        .await
        .unwrap();
    let status = r#"{"agent_version":"1","kodi_reachable":true}"#;
    assert_eq!(
        s.agent_post(&token, "/api/agent/status", status).await,
        Status::Ok
    );
    assert_eq!(s.page(&format!("/devices/{id}/revoke")).await.0, Status::Ok);
    s.post_form(&format!("/devices/{id}/revoke"), &[]).await;
    let (_, list) = s.page("/devices").await;
    assert!(list.contains("revoked"));
    assert_eq!(
        s.agent_post(&token, "/api/agent/status", status).await,
        Status::Unauthorized,
        "a token revoked on the page is refused at once, though it was just used"
    );
}

#[rocket::async_test]
async fn user_text_is_escaped_everywhere() {
    let s = TestServer::start().await;
    s.login_admin().await;
    let id = s.create_profile("<script>alert(1)<script> & \"x\"").await;
    for path in [
        "/profiles".to_owned(),
        format!("/profiles/{id}"),
        format!("/profiles/{id}/edit"),
    ] {
        let (_, body) = s.page(&path).await;
        assert!(!body.contains("<script>alert"), "{path}");
        assert!(body.contains("&lt;script&gt;"), "{path}");
    }
}

#[rocket::async_test]
async fn unknown_pages_get_a_404_page() {
    let s = TestServer::start().await;
    s.login_admin().await;
    for path in [
        "/nothing-here",
        "/profiles/424242",
        "/tickets/424242/delete",
    ] {
        let (status, body) = s.page(path).await;
        assert_eq!(status, Status::NotFound, "{path}");
        assert!(body.contains("404") && body.contains("<html"), "{path}");
    }
}

#[rocket::async_test]
async fn every_page_carries_security_headers_and_styles_from_this_server() {
    let s = TestServer::start().await;
    let res = s.client.get("/login").dispatch().await;
    let csp = res
        .headers()
        .get_one("Content-Security-Policy")
        .unwrap()
        .to_owned();
    assert!(csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"));
    assert!(!csp.contains("unsafe-inline"));
    assert_eq!(
        res.headers().get_one("X-Content-Type-Options"),
        Some("nosniff")
    );
    assert!(res.headers().get_one("Referrer-Policy").is_some());
    let cookie = res
        .headers()
        .get("Set-Cookie")
        .find(|c| c.starts_with("kt_csrf"))
        .unwrap()
        .to_owned();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let body = res.into_string().await.unwrap();
    assert!(
        !body.contains("<script>") && !body.contains("style=\""),
        "no inline script or style"
    );

    for (asset, kind) in [
        ("/static/bootstrap.min.css", ContentType::CSS),
        ("/static/bootstrap.bundle.min.js", ContentType::JavaScript),
        ("/static/app.css", ContentType::CSS),
        ("/static/app.js", ContentType::JavaScript),
        ("/static/favicon.svg", ContentType::SVG),
    ] {
        let res = s.client.get(asset).dispatch().await;
        assert_eq!(res.status(), Status::Ok, "{asset}");
        assert_eq!(res.content_type(), Some(kind));
        assert!(res.into_bytes().await.unwrap().len() > 100);
    }
    let css = s
        .client
        .get("/static/bootstrap.min.css")
        .dispatch()
        .await
        .into_string()
        .await
        .unwrap();
    assert!(
        css.contains("Bootstrap  v5.3.8") || css.contains("Bootstrap v5.3.8"),
        "pinned version"
    );
}

/// Reads a page's event stream until `needle` arrives (or the stream ends: `false`).
async fn read_until(
    stream: &mut rocket::local::asynchronous::LocalResponse<'_>,
    seen: &mut String,
    needle: &str,
) -> bool {
    use rocket::tokio::io::AsyncReadExt;
    let mut buf = [0u8; 4096];
    let read = async {
        while !seen.contains(needle) {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return false,
                Ok(n) => seen.push_str(&String::from_utf8_lossy(&buf[..n])),
            }
        }
        true
    };
    // A guard against a hang, not a measure of speed.
    rocket::tokio::time::timeout(std::time::Duration::from_secs(20), read)
        .await
        .expect("the stream neither sent it nor ended")
}

#[rocket::async_test]
async fn an_open_page_hears_a_pin_used_and_its_stream_ends_at_logout() {
    let s = TestServer::start().await;
    assert_eq!(
        location(&s.client.get("/events").dispatch().await),
        Some("/login"),
        "no stream without a login"
    );
    s.login_admin().await;
    let (token, kids) = s.local_box_with_profile("TV", "Kids").await;
    let pin = s.create_ticket(kids, 30).await;
    let mut stream = s.client.get("/events").dispatch().await;
    assert_eq!(stream.status(), Status::Ok);
    assert_eq!(
        stream.content_type(),
        Some(rocket::http::ContentType::EventStream)
    );
    let mut seen = String::new();
    assert!(read_until(&mut stream, &mut seen, "event:ready").await);
    seen.clear();

    s.api_login(&token, &format!(r#"{{"lock_code":"{pin}"}}"#))
        .await;
    assert!(
        read_until(&mut stream, &mut seen, "event:change").await,
        "{seen}"
    );
    let (_, body) = s.page(&format!("/profiles/{kids}")).await;
    assert!(
        body.contains(r#"data-state="in_use""#),
        "the page reads it red"
    );

    s.post_form("/logout", &[]).await;
    seen.clear();
    assert!(
        !read_until(&mut stream, &mut seen, "never sent").await,
        "the stream ends once the admin logged out"
    );
}

#[rocket::async_test]
async fn an_open_page_hears_the_time_up() {
    let s = TestServer::start().await;
    s.login_admin().await;
    let (token, kids) = s.local_box_with_profile("TV", "Kids").await;
    let pin = s.create_ticket(kids, 30).await;
    s.api_login(&token, &format!(r#"{{"lock_code":"{pin}"}}"#))
        .await;
    let mut stream = s.client.get("/events").dispatch().await;
    let mut seen = String::new();
    assert!(read_until(&mut stream, &mut seen, "event:ready").await);
    seen.clear();
    // The time left runs out two seconds from now; the server looks again at its next
    // change (here another ticket issued).
    sqlx::query("UPDATE tickets SET expires_at = strftime('%s', 'now') + 2")
        .execute(&s.pool())
        .await
        .unwrap();
    s.create_ticket(kids, 30).await;
    assert!(read_until(&mut stream, &mut seen, "event:change").await);
    // Changes come until the time up; then the page reads the ticket ended.
    loop {
        let (_, body) = s.page(&format!("/profiles/{kids}")).await;
        if body.contains(r#"data-state="expired""#) {
            assert!(!body.contains("+15 min"));
            break;
        }
        seen.clear();
        assert!(
            read_until(&mut stream, &mut seen, "event:change").await,
            "no change announced at the time up"
        );
    }
}

#[rocket::async_test]
async fn refused_forms_come_back_with_what_was_typed_once() {
    let s = TestServer::start().await;
    s.login_admin().await;
    let res = s
        .post_form("/profiles", &[("name", "Room/12"), ("device", "")])
        .await;
    assert_eq!(location(&res), Some("/profiles/new"));
    let (_, form) = s.page("/profiles/new").await;
    assert!(form.contains(r#"value="Room/12""#), "{form}");
    assert!(form.contains("Not created"), "{form}");
    assert!(
        form.contains(r#"value="" required checked"#),
        "the chosen way too: {form}"
    );
    let (_, again) = s.page("/profiles/new").await;
    assert!(!again.contains("Room/12"), "kept for one showing only");

    let kids = s.create_profile("Kids").await;
    s.post_form(&format!("/profiles/{kids}/tickets"), &[("length", "1441")])
        .await;
    let (_, form) = s.page(&format!("/profiles/{kids}/tickets/new")).await;
    assert!(
        form.contains(r#"value="1441" required"#),
        "not reset to 30: {form}"
    );

    s.device_token("Living room").await;
    let device = s.device_id("Living room").await;
    s.post_form(
        &format!("/devices/{device}/delivery"),
        &[
            ("delivery", "ssh"),
            ("ssh_user", "kodi"),
            ("ssh_host", "tv.lan"),
            ("ssh_port", "70000"),
            ("ssh_key_path", "/srv/keys/tv"),
        ],
    )
    .await;
    let (_, list) = s.page("/devices").await;
    assert!(list.contains("Not changed for “Living room”"), "{list}");
    for typed in ["kodi", "tv.lan", "70000", "/srv/keys/tv"] {
        assert!(
            list.contains(&format!(r#"value="{typed}""#)),
            "{typed}: {list}"
        );
    }
    assert!(
        list.contains("<details class=\"small mt-1\" open>"),
        "{list}"
    );
}

#[rocket::async_test]
async fn deleting_or_ending_a_running_ticket_says_someone_is_watching() {
    let s = TestServer::start().await;
    s.login_admin().await;
    let (token, kids) = s.local_box_with_profile("TV", "Kids").await;
    let pin = s.create_ticket(kids, 30).await;
    let (_, page) = s.page(&format!("/profiles/{kids}")).await;
    assert!(
        page.contains(&format!(r#"aria-label="Delete ticket {pin}""#)),
        "{page}"
    );
    s.api_login(&token, &format!(r#"{{"lock_code":"{pin}"}}"#))
        .await;
    let id: i64 = sqlx::query_scalar("SELECT id FROM tickets")
        .fetch_one(&s.pool())
        .await
        .unwrap();
    let (_, confirm) = s.page(&format!("/tickets/{id}/delete")).await;
    assert!(confirm.contains("Someone is watching"), "{confirm}");
    let (_, confirm) = s.page(&format!("/profiles/{kids}/delete")).await;
    assert!(confirm.contains("Someone is watching “Kids”"), "{confirm}");
    let (_, confirm) = s.page(&format!("/tickets/{id}/end")).await;
    assert!(
        confirm.contains("The server logs “Kids” off on this machine within seconds"),
        "the server's own machine ends sessions itself: {confirm}"
    );
    let res = s.post_form(&format!("/tickets/{id}/end"), &[]).await;
    let flash = res.cookies().get("_flash").unwrap().value().to_owned();
    assert!(
        !flash.contains("logs the profile off"),
        "no claim the TV logs off: {flash}"
    );
    let (_, page) = s.page(&format!("/profiles/{kids}")).await;
    assert!(page.contains("(ended early)"), "{page}");
}

#[rocket::async_test]
async fn the_devices_page_says_when_an_agent_restarted_kodi_to_end_a_session() {
    let s = TestServer::start().await;
    s.login_admin().await;
    let token = s.device_token("Living room").await;
    let res = s
        .agent_post(
            &token,
            "/api/agent/status",
            r#"{"agent_version":"0.1.0","kodi_reachable":true,"kodi_version":"20.1","master_lock":true,
                "forced_restart":{"at":"2026-12-04T18:30:00Z","profile":"Kids","ok":true,
                                  "message":"Kodi restarted"}}"#,
        )
        .await;
    assert_eq!(res, Status::Ok);
    // A later status without one keeps the note.
    let res = s
        .agent_post(
            &token,
            "/api/agent/status",
            r#"{"agent_version":"0.1.0","kodi_reachable":true}"#,
        )
        .await;
    assert_eq!(res, Status::Ok);
    let (_, body) = s.page("/devices").await;
    assert!(
        body.contains("Kodi was restarted to end “Kids”: its remote control did not answer.")
            && body.contains(r#"datetime="2026-12-04T18:30:00Z""#),
        "{body}"
    );
}

/// A live page's re-read after change `n`, as the page script sends it.
async fn reread(s: &TestServer, path: &str, n: u64) -> (Status, String) {
    let res = s
        .client
        .get(path.to_owned())
        .header(rocket::http::Header::new("X-Live-Change", n.to_string()))
        .dispatch()
        .await;
    (res.status(), res.into_string().await.unwrap_or_default())
}

#[rocket::async_test]
async fn re_reads_after_one_change_share_one_copy_without_anyones_csrf_token() {
    let s = TestServer::start().await;
    s.login_admin().await;
    let kids = s.create_profile("Kids").await;
    let path = format!("/profiles/{kids}");
    let (_, own) = s.page(&path).await;
    let token = common::csrf_in(&own);
    assert!(!token.is_empty());

    let (status, first) = reread(&s, &path, 7).await;
    assert_eq!(status, Status::Ok);
    assert!(
        !first.contains(&token),
        "no session's token in a shared copy"
    );
    assert!(first.contains("No tickets yet."), "{first}");
    // A ticket issued meanwhile: the re-reads of change 7 still get the one copy made for
    // it; change 8's re-read reads the database again.
    let pin = s.create_ticket(kids, 30).await;
    let (_, again) = reread(&s, &path, 7).await;
    assert_eq!(again, first, "rendered once per change");
    let (_, next) = reread(&s, &path, 8).await;
    assert!(next.contains(&format!(">{pin}<")), "{next}");
    // A visit without the header is the visitor's own page.
    let (_, own) = s.page(&path).await;
    assert!(own.contains(&token) && own.contains(&format!(">{pin}<")));
    // Re-reads are for logged-in admins only, like the page.
    let res = s.post_form("/logout", &[]).await;
    assert_eq!(res.status(), Status::SeeOther);
    let (status, body) = reread(&s, &path, 8).await;
    assert!(!body.contains(&pin), "{status} {body}");
}

#[rocket::async_test]
async fn open_pages_hear_when_an_agent_reports_a_change_of_its_kodi_and_only_then() {
    let s = TestServer::start().await;
    s.login_admin().await;
    let token = s.device_token("Living room").await;
    let mut pages = s
        .client
        .rocket()
        .state::<kodi_tickets_server::live::Pages>()
        .unwrap()
        .listen();
    let status = |reachable: bool| {
        format!(
            r#"{{"agent_version":"1","kodi_reachable":{reachable},"kodi_version":"20.1","master_lock":true}}"#
        )
    };
    assert_eq!(
        s.agent_post(&token, "/api/agent/status", &status(true))
            .await,
        Status::Ok
    );
    assert!(pages.has_changed().unwrap(), "Kodi seen for the first time");
    pages.borrow_and_update();
    assert_eq!(
        s.agent_post(&token, "/api/agent/status", &status(true))
            .await,
        Status::Ok
    );
    assert!(
        !pages.has_changed().unwrap(),
        "the same again: nothing to show"
    );
    assert_eq!(
        s.agent_post(&token, "/api/agent/status", &status(false))
            .await,
        Status::Ok
    );
    assert!(pages.has_changed().unwrap(), "Kodi no longer answers");
}

#[rocket::async_test]
async fn a_profile_with_a_roll_of_vouchers_shows_its_newest_live_tickets_and_all_on_request() {
    let s = TestServer::start().await;
    s.login_admin().await;
    let id = s.create_profile("Café").await;
    let mut pins = Vec::new();
    for _ in 0..60 {
        pins.push(s.create_ticket(id, 30).await);
    }
    // The oldest one in use: shown, though 50 newer ones come before it.
    s.use_ticket(&pins[0]).await;
    let live_rows = |html: &str| {
        let start = html.find(r#"<tbody id="live-tickets">"#).unwrap();
        let end = start + html[start..].find("</tbody>").unwrap();
        html[start..end].matches("<tr").count()
    };

    let (status, html) = s.page(&format!("/profiles/{id}")).await;
    assert_eq!(status, Status::Ok);
    assert_eq!(live_rows(&html), 51, "the newest 50 and the one in use");
    assert!(html.contains(&format!(">{}<", pins[59])), "newest shown");
    assert!(
        html.contains(&format!(">{}<", pins[0])),
        "the one in use shown"
    );
    assert!(
        !html.contains(&format!(">{}<", pins[1])),
        "older unused hidden"
    );
    assert!(
        html.contains("Shown: 51 of this profile's 60 unused and in-use tickets")
            && html.contains(&format!(
                r#"href="/profiles/{id}?live=all">Show all 60</a>"#
            )),
        "{html}"
    );

    let (status, html) = s.page(&format!("/profiles/{id}?live=all")).await;
    assert_eq!(status, Status::Ok);
    assert_eq!(live_rows(&html), 60);
    assert!(html.contains("All 60 unused and in-use tickets are shown."));
    assert!(html.contains(&format!(
        r#"href="/profiles/{id}">Show the newest only</a>"#
    )));
}
