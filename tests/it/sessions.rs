//! Sessions and devices (issue 18) over real HTTP and WebSocket: every
//! sign-in is a session with its device, listed to its owner; ending one
//! stops its token on every instance and closes its sockets (4001) and
//! nobody else's; revoke-all actions end them all; old tokens still work.

use std::time::Duration;

use base64::Engine;
use reqwest::Method;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::harness::{json, register_user, TestApp, WsRead, PASSWORD};

pub const CHROME_WINDOWS: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 \
    (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36";
pub const FIREFOX_LINUX: &str =
    "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0";

/// `POST /api/auth/login` with a user agent; the raw answer.
pub async fn login_as(app: &TestApp, email: &str, user_agent: &str) -> (u16, Value) {
    let res = json(
        app.http
            .post(app.url("/api/auth/login"))
            .header("User-Agent", user_agent)
            .json(&json!({"email": email, "password": PASSWORD, "captcha_token": "dummy-token"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    app.reset_public_rate_limit().await;
    res
}

/// A token of a fresh session (login must not ask for a second factor).
pub async fn new_session(app: &TestApp, email: &str, user_agent: &str) -> String {
    let (status, body) = login_as(app, email, user_agent).await;
    assert_eq!(status, 200, "{body}");
    body["data"]["token"].as_str().expect("token").to_string()
}

/// The `sid` claim of a token (its payload is not verified here).
pub fn sid_of(token: &str) -> Option<Uuid> {
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    let v: Value = serde_json::from_slice(&bytes).ok()?;
    v["sid"].as_str()?.parse().ok()
}

pub async fn call(app: &TestApp, method: Method, path: &str, token: &str) -> (u16, Value) {
    json(app.authed(method, path, token).send().await.unwrap()).await
}

async fn sessions(app: &TestApp, token: &str) -> Vec<Value> {
    let (status, body) = call(app, Method::GET, "/api/account/sessions", token).await;
    assert_eq!(status, 200, "{body}");
    body["data"].as_array().expect("list").clone()
}

async fn me_status(app: &TestApp, token: &str) -> (u16, String) {
    let (status, body) = call(app, Method::GET, "/api/user/current", token).await;
    (
        status,
        body["error"].as_str().unwrap_or_default().to_string(),
    )
}

async fn last_seen(app: &TestApp, sid: Uuid) -> Option<chrono::DateTime<chrono::Utc>> {
    sqlx::query_scalar("SELECT last_seen_at FROM sessions WHERE id = $1")
        .bind(sid)
        .fetch_one(&app.state.db)
        .await
        .unwrap()
}

/// Waits (up to 2 s) until `last_seen_at` of `sid` satisfies `ok`.
async fn wait_last_seen(
    app: &TestApp,
    sid: Uuid,
    ok: impl Fn(Option<chrono::DateTime<chrono::Utc>>) -> bool,
) -> bool {
    for _ in 0..40 {
        if ok(last_seen(app, sid).await) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// The socket stays open (no close frame) for `within`.
async fn stays_open(ws: &mut crate::harness::WsClient, within: Duration) {
    match ws.read(within).await {
        WsRead::Timeout | WsRead::Event(_) => {}
        WsRead::Closed(code) => panic!("socket of another session was closed ({code:?})"),
    }
}

#[tokio::test]
async fn each_sign_in_is_a_listed_session_with_its_device() {
    let app = TestApp::spawn().await;
    let (_id, first, email) = register_user(&app, "Dana").await;
    let second = new_session(&app, &email, CHROME_WINDOWS).await;
    let (sid1, sid2) = (sid_of(&first).unwrap(), sid_of(&second).unwrap());
    assert_ne!(sid1, sid2);

    // The register session has not been used yet: last_seen_at is null.
    let list = sessions(&app, &second).await;
    assert_eq!(list.len(), 2, "{list:?}");
    assert_eq!(list[0]["id"], sid2.to_string(), "newest first");
    assert_eq!(list[0]["current"], true);
    assert_eq!(list[0]["name"], "Chrome on Windows");
    assert_eq!(list[0]["user_agent"], CHROME_WINDOWS);
    assert_eq!(list[0]["ip"], "127.0.0.1");
    assert!(list[0]["created_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(list[1]["id"], sid1.to_string());
    assert_eq!(list[1]["current"], false);
    assert!(list[1]["last_seen_at"].is_null(), "{}", list[1]);
    assert!(list[1].get("last_seen_at").is_some());

    // First use records last_seen_at; within the minute it is not written
    // again (the guard), after the guard expires it is.
    assert_eq!(me_status(&app, &first).await.0, 200);
    assert!(wait_last_seen(&app, sid1, |t| t.is_some()).await);
    sqlx::query("UPDATE sessions SET last_seen_at = '2000-01-01T00:00:00Z' WHERE id = $1")
        .bind(sid1)
        .execute(&app.state.db)
        .await
        .unwrap();
    assert_eq!(me_status(&app, &first).await.0, 200);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let old = chrono::DateTime::parse_from_rfc3339("2000-01-01T00:00:00Z").unwrap();
    assert_eq!(last_seen(&app, sid1).await, Some(old.into()));
    let mut c = app.state.redis.conn();
    let _: () = redis::cmd("DEL")
        .arg(app.state.redis.key(&format!("session_seen:{sid1}")))
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(me_status(&app, &first).await.0, 200);
    assert!(wait_last_seen(&app, sid1, |t| t.is_some_and(|t| t > old)).await);
    let list = sessions(&app, &first).await;
    assert_eq!(list[1]["current"], true);
    assert!(list[1]["last_seen_at"].is_string());
}

#[tokio::test]
async fn remote_sign_out_closes_that_sessions_sockets_on_every_instance_only() {
    let a = TestApp::spawn().await;
    let b = a.second_instance().await;
    let (_id, _reg, email) = register_user(&a, "Erin").await;
    let lost = new_session(&a, &email, FIREFOX_LINUX).await;
    let kept = new_session(&b, &email, CHROME_WINDOWS).await;
    let (_other, other_token) = a.make_user("Other").await;
    let mut lost_on_b = b.ws(&lost).await;
    let mut lost_on_a = a.ws(&lost).await;
    let mut kept_on_b = b.ws(&kept).await;
    let mut kept_on_a = a.ws(&kept).await;
    let mut other_on_b = b.ws(&other_token).await;
    tokio::time::sleep(Duration::from_millis(150)).await;

    let lost_sid = sid_of(&lost).unwrap();
    let path = format!("/api/account/sessions/{lost_sid}");
    let (status, body) = call(&a, Method::DELETE, &path, &kept).await;
    assert_eq!(status, 200, "{body}");

    assert_eq!(lost_on_b.expect_closed().await, Some(4001));
    assert_eq!(lost_on_a.expect_closed().await, Some(4001));
    stays_open(&mut kept_on_b, Duration::from_millis(500)).await;
    stays_open(&mut kept_on_a, Duration::from_millis(100)).await;
    stays_open(&mut other_on_b, Duration::from_millis(100)).await;

    // The token is refused at once on both instances; the other one works.
    for app in [&a, &b] {
        assert_eq!(
            me_status(app, &lost).await,
            (401, "Token has been revoked".into())
        );
        assert_eq!(me_status(app, &kept).await.0, 200);
    }
    let res = tokio_tungstenite::connect_async(b.ws_url(&lost)).await;
    assert!(res.is_err(), "a revoked session cannot open a socket");
    let ids: Vec<Value> = sessions(&b, &kept)
        .await
        .iter()
        .map(|s| s["id"].clone())
        .collect();
    assert!(!ids.contains(&Value::from(lost_sid.to_string())), "{ids:?}");
    // Ending it again: it is no longer a live session.
    assert_eq!(call(&b, Method::DELETE, &path, &kept).await.0, 404);
}

#[tokio::test]
async fn another_users_or_an_unknown_session_is_not_found() {
    let app = TestApp::spawn().await;
    let (_a, a_token, _) = register_user(&app, "Fay").await;
    let (_b, b_token, _) = register_user(&app, "Gus").await;
    let a_sid = sid_of(&a_token).unwrap();
    let (status, body) = call(
        &app,
        Method::DELETE,
        &format!("/api/account/sessions/{a_sid}"),
        &b_token,
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (404, Some("Session not found"))
    );
    assert_eq!(
        me_status(&app, &a_token).await.0,
        200,
        "A's session survives"
    );
    let unknown = format!("/api/account/sessions/{}", Uuid::now_v7());
    assert_eq!(call(&app, Method::DELETE, &unknown, &b_token).await.0, 404);
    let (status, body) = call(&app, Method::DELETE, "/api/account/sessions/nope", &b_token).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("Invalid session ID"))
    );
    // B's list never shows A's sessions.
    let list = sessions(&app, &b_token).await;
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["id"], sid_of(&b_token).unwrap().to_string());
}

#[tokio::test]
async fn signing_out_the_others_keeps_the_current_session() {
    let app = TestApp::spawn().await;
    let (_id, one, email) = register_user(&app, "Hal").await;
    let two = new_session(&app, &email, FIREFOX_LINUX).await;
    let me = new_session(&app, &email, CHROME_WINDOWS).await;
    let mut one_ws = app.ws(&one).await;
    let mut two_ws = app.ws(&two).await;
    let mut me_ws = app.ws(&me).await;
    tokio::time::sleep(Duration::from_millis(100)).await;

    let (status, body) = call(&app, Method::DELETE, "/api/account/sessions", &me).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(one_ws.expect_closed().await, Some(4001));
    assert_eq!(two_ws.expect_closed().await, Some(4001));
    stays_open(&mut me_ws, Duration::from_millis(300)).await;
    assert_eq!(me_status(&app, &one).await.0, 401);
    assert_eq!(me_status(&app, &two).await.0, 401);
    let list = sessions(&app, &me).await;
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["current"], true);
}

#[tokio::test]
async fn logout_ends_its_session() {
    let app = TestApp::spawn().await;
    let (_id, stays, email) = register_user(&app, "Ivy").await;
    let leaves = new_session(&app, &email, FIREFOX_LINUX).await;
    assert_eq!(sessions(&app, &stays).await.len(), 2);
    let (status, _) = call(&app, Method::POST, "/api/auth/logout", &leaves).await;
    assert_eq!(status, 200);
    let list = sessions(&app, &stays).await;
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["id"], sid_of(&stays).unwrap().to_string());
    assert_eq!(
        me_status(&app, &leaves).await,
        (401, "Token has been revoked".into())
    );
}

#[tokio::test]
async fn tokens_from_before_sessions_keep_working() {
    let app = TestApp::spawn().await;
    let (_id, legacy) = app.make_user("Old").await;
    assert!(
        sid_of(&legacy).is_none(),
        "the harness mints old-format tokens"
    );
    assert_eq!(me_status(&app, &legacy).await.0, 200);
    assert!(sessions(&app, &legacy).await.is_empty());
    let mut ws = app.ws(&legacy).await;
    // "All but current" has nothing to end and leaves the legacy socket.
    assert_eq!(
        call(&app, Method::DELETE, "/api/account/sessions", &legacy)
            .await
            .0,
        200
    );
    stays_open(&mut ws, Duration::from_millis(300)).await;
    assert_eq!(me_status(&app, &legacy).await.0, 200);
    // Logout still ends it, and closes its socket.
    assert_eq!(
        call(&app, Method::POST, "/api/auth/logout", &legacy)
            .await
            .0,
        200
    );
    assert_eq!(ws.expect_closed().await, Some(4001));
    assert_eq!(
        me_status(&app, &legacy).await,
        (401, "Token has been revoked".into())
    );
}

async fn live_sessions_in_db(app: &TestApp, user: Uuid) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM sessions WHERE user_id = $1 AND revoked_at IS NULL")
        .bind(user)
        .fetch_one(&app.state.db)
        .await
        .unwrap()
}

#[tokio::test]
async fn password_change_and_account_deletion_end_every_session() {
    let app = TestApp::spawn().await;
    let (id, first, email) = register_user(&app, "Jon").await;
    let second = new_session(&app, &email, FIREFOX_LINUX).await;
    let mut ws = app.ws(&first).await;
    let (status, body) = json(
        app.authed(Method::PUT, "/api/account/password", &second)
            .json(
                &json!({"old_password": PASSWORD, "new_password": "Newpass123!",
                          "confirm_password": "Newpass123!"}),
            )
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(ws.expect_closed().await, Some(4001));
    assert_eq!(me_status(&app, &first).await.0, 401);
    assert_eq!(me_status(&app, &second).await.0, 401);
    assert_eq!(live_sessions_in_db(&app, id).await, 0);

    let (status, body) = json(
        app.http
            .post(app.url("/api/auth/login"))
            .json(&json!({"email": email, "password": "Newpass123!", "captcha_token": "x"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let fresh = body["data"]["token"].as_str().unwrap().to_string();
    let list = sessions(&app, &fresh).await;
    assert_eq!(list.len(), 1, "only the new sign-in is live: {list:?}");

    let (status, body) = json(
        app.authed(Method::DELETE, "/api/account", &fresh)
            .json(&json!({"password": "Newpass123!"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(live_sessions_in_db(&app, id).await, 0);
    assert_eq!(me_status(&app, &fresh).await.0, 401);
}

#[tokio::test]
async fn admins_see_a_users_sessions_and_a_ban_ends_them() {
    let app = TestApp::spawn().await;
    let (admin, admin_token) = app.make_user("Boss").await;
    app.make_admin(admin).await;
    let (target, t1, email) = register_user(&app, "Kim").await;
    let t2 = new_session(&app, &email, FIREFOX_LINUX).await;
    let path = format!("/api/admin/users/{target}");
    let (status, body) = call(&app, Method::GET, &path, &admin_token).await;
    assert_eq!(status, 200, "{body}");
    let list = body["data"]["sessions"].as_array().expect("sessions field");
    assert_eq!(list.len(), 2, "{list:?}");
    assert_eq!(list[0]["name"], "Firefox on Linux");
    assert!(list.iter().all(|s| s["current"] == false));
    // The reference fields are untouched.
    assert!(body["data"]["total_messages"].is_i64());

    let mut ws = app.ws(&t1).await;
    let (status, body) = json(
        app.authed(Method::POST, "/api/admin/users/ban", &admin_token)
            .json(&json!({"target_user_id": target, "reason": "spam"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(ws.expect_closed().await, Some(4003));
    assert_eq!(live_sessions_in_db(&app, target).await, 0);
    assert_ne!(me_status(&app, &t2).await.0, 200);
    let (_, body) = call(&app, Method::GET, &path, &admin_token).await;
    assert_eq!(body["data"]["sessions"], json!([]));
}
