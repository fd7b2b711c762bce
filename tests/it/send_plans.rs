//! Statement plans (issue 21). The send's and the reads' statements are
//! planned once per connection, not on every request: PostgreSQL re-plans a
//! prepared statement for good when its custom plans look cheaper than the
//! generic one, which is what a `$n IS NULL` branch, a `LIMIT $n` or a short
//! `= ANY($n)` array does. Planning was a third of the database's time per
//! send before the statements were split (`bench/README.md`). And the
//! generic plans of the keyset pages start at their cursor, in a big chat
//! and a big directory alike, instead of reading their way there.

use serde_json::{json, Value};
use uuid::Uuid;

use crate::chats::support::*;
use crate::harness::{make_group, TestApp};

/// An app with one pool connection: every statement of every request runs
/// on it, so its prepared statements can be read back afterwards.
pub async fn one_connection() -> TestApp {
    TestApp::spawn_with(|env| {
        env.insert("DB_MAX_CONNECTIONS".into(), "1".into());
    })
    .await
}

/// Three messages in each of `chats`.
async fn send_three(app: &TestApp, token: &str, chats: &[Uuid]) {
    for chat in chats {
        for n in 0..3 {
            let (s, body) = post(
                app,
                token,
                "/api/messages",
                json!({"chat_id": chat, "content": format!("hello number {n}")}),
            )
            .await;
            assert_eq!(s, 200, "{body}");
        }
    }
}

/// The app's prepared statements run at least 8 times, with their plan
/// counts (generic, custom).
async fn statements_run_8_times(app: &TestApp) -> Vec<(String, i64, i64)> {
    sqlx::query_as(
        "SELECT statement, generic_plans, custom_plans FROM pg_prepared_statements \
          WHERE generic_plans + custom_plans >= 8",
    )
    .fetch_all(&app.state.db)
    .await
    .unwrap()
}

/// Five custom plans come first; from the sixth on PostgreSQL either
/// reuses the generic plan or keeps planning.
fn assert_reused<'a>(stats: impl IntoIterator<Item = &'a (String, i64, i64)>) {
    for (sql, generic, custom) in stats {
        assert!(
            *generic > 0 && *custom <= 5,
            "planned on every execution ({custom} custom, {generic} generic): {sql}"
        );
    }
}

#[tokio::test]
async fn sends_reuse_their_plans_in_private_chats_and_groups() {
    let app = one_connection().await;
    let (alice, at) = app.make_user("Alice").await;
    let (bob, _) = app.make_user("Bob").await;
    let private = app.make_private_chat(alice, bob).await;
    let group = make_group(&app, alice, &[bob]).await;
    // Five custom plans come first; from the sixth on PostgreSQL either
    // reuses the generic plan or keeps planning.
    for n in 0..8 {
        for chat in [private, group] {
            // A plain send (the one-statement send) and a reply (the
            // general path: context, then insert).
            let (s, body) = post(
                &app,
                &at,
                "/api/messages",
                json!({"chat_id": chat, "content": format!("message {n}")}),
            )
            .await;
            assert_eq!(s, 200, "{body}");
            let (s, body) = post(
                &app,
                &at,
                "/api/messages",
                json!({"chat_id": chat, "content": "re", "reply_to_id": body["data"]["id"]}),
            )
            .await;
            assert_eq!(s, 200, "{body}");
        }
        // Other routes read the account in the authentication's statement.
        let (s, body) = get(&app, &at, "/api/chats").await;
        assert_eq!(s, 200, "{body}");
    }
    let stats: Vec<(String, i64, i64)> = sqlx::query_as(
        "SELECT statement, generic_plans, custom_plans FROM pg_prepared_statements \
          WHERE statement LIKE '%INSERT INTO messages%' \
             OR statement LIKE 'SELECT u.role, u.is_banned%' \
             OR statement LIKE 'SELECT c.type AS chat_type%'",
    )
    .fetch_all(&app.state.db)
    .await
    .unwrap();
    // Statements run fewer than six times (the setup's) prove nothing.
    let hot: Vec<_> = stats.iter().filter(|s| s.1 + s.2 >= 6).collect();
    let kinds = |needle: &str| hot.iter().filter(|s| s.0.contains(needle)).count();
    assert_eq!(kinds("WITH ctx0 AS ("), 1, "one-statement send: {stats:?}");
    let general = |needle: &str| {
        hot.iter()
            .filter(|s| s.0.contains(needle) && !s.0.contains("WITH ctx0"))
            .count()
    };
    assert_eq!(
        general("UPDATE private_chats"),
        1,
        "private record: {stats:?}"
    );
    assert_eq!(
        general("UPDATE group_members"),
        1,
        "group record: {stats:?}"
    );
    assert_eq!(kinds("SELECT u.role"), 1, "auth: {stats:?}");
    assert_eq!(
        general("SELECT c.type AS chat_type"),
        1,
        "context: {stats:?}"
    );
    // On one Redis node the send reads the account in its chat-context
    // statement, so only the 8 chat lists (and the setup) ran this one;
    // on a cluster the authentication reads it for the 32 sends too.
    let auth_runs: i64 = hot
        .iter()
        .filter(|s| s.0.contains("SELECT u.role"))
        .map(|s| s.1 + s.2)
        .sum();
    if !app.state.redis.is_cluster() {
        assert!(
            auth_runs < 32,
            "the sends read the account on their own: {auth_runs} runs"
        );
    }
    assert_reused(hot);
}

#[tokio::test]
async fn chat_lists_reuse_their_plans_with_and_without_search() {
    let app = one_connection().await;
    let (alice, at) = app.make_user("Alice").await;
    let (bob, _) = app.make_user("Bob").await;
    let (carol, _) = app.make_user("Carol").await;
    let private = app.make_private_chat(alice, bob).await;
    let group = make_group(&app, alice, &[carol]).await;
    for chat in [private, group] {
        let (s, body) = post(
            &app,
            &at,
            "/api/messages",
            json!({"chat_id": chat, "content": "hello"}),
        )
        .await;
        assert_eq!(s, 200, "{body}");
    }
    for _ in 0..8 {
        let (s, body) = get(&app, &at, "/api/chats?limit=5").await;
        assert_eq!(s, 200, "{body}");
        assert_eq!(body["data"].as_array().map(Vec::len), Some(2), "{body}");
        let (s, body) = get(&app, &at, "/api/chats?limit=5&query=bo").await;
        assert_eq!(s, 200, "{body}");
        let found: Vec<&Value> = body["data"].as_array().unwrap().iter().collect();
        assert_eq!(found.len(), 1, "{body}");
        assert_eq!(found[0]["id"], json!(private), "{body}");
    }
    let stats: Vec<(String, i64, i64)> = sqlx::query_as(
        "SELECT statement, generic_plans, custom_plans FROM pg_prepared_statements \
          WHERE statement LIKE 'WITH page AS MATERIALIZED (WITH top AS%'",
    )
    .fetch_all(&app.state.db)
    .await
    .unwrap();
    let runs = |search: bool| {
        stats
            .iter()
            .filter(|s| s.0.contains("ILIKE") == search)
            .map(|s| s.1 + s.2)
            .sum::<i64>()
    };
    assert_eq!((runs(false), runs(true)), (8, 8), "{stats:?}");
    assert_reused(&stats);
}

#[tokio::test]
async fn reading_a_chat_reuses_every_statement_plan() {
    let app = one_connection().await;
    let (alice, at) = app.make_user("Alice").await;
    let (bob, _) = app.make_user("Bob").await;
    let private = app.make_private_chat(alice, bob).await;
    let group = make_group(&app, alice, &[bob]).await;
    send_three(&app, &at, &[private, group]).await;
    for _ in 0..8 {
        for chat in [private, group] {
            let (s, body) = get(&app, &at, &format!("/api/chats/{chat}")).await;
            assert_eq!(s, 200, "{body}");
            let (s, body) = get(&app, &at, &format!("/api/chats/{chat}/messages?limit=2")).await;
            assert_eq!(s, 200, "{body}");
            assert_eq!(body["data"].as_array().map(Vec::len), Some(2), "{body}");
            let (s, body) = post(&app, &at, &format!("/api/chats/{chat}/read"), json!({})).await;
            assert!(s < 300, "{s} {body}");
        }
    }
    let stats = statements_run_8_times(&app).await;
    assert!(stats.len() >= 4, "{stats:?}");
    // No statement is compiled to machine code either (config.rs).
    let jit: String = sqlx::query_scalar("SHOW jit")
        .fetch_one(&app.state.db)
        .await
        .unwrap();
    assert_eq!(jit, "off");
    let replanned: Vec<_> = stats.iter().filter(|s| s.2 > 5).collect();
    assert!(
        replanned.is_empty(),
        "planned on every execution: {replanned:#?}"
    );
}

/// Each scan of `table` in the generic plan of `sql` run with `args` (SQL
/// literals): the most rows one scan read in one loop.
async fn most_rows_scanned(
    app: &TestApp,
    table: &str,
    sql: &str,
    types: &str,
    args: &str,
) -> (i64, String) {
    let mut conn = app.state.db.acquire().await.unwrap();
    sqlx::raw_sql(&format!(
        "SET plan_cache_mode = force_generic_plan; PREPARE p({types}) AS {sql}"
    ))
    .execute(&mut *conn)
    .await
    .unwrap();
    let plan: Vec<String> = sqlx::query_scalar(&format!(
        "EXPLAIN (ANALYZE, TIMING OFF, COSTS OFF) EXECUTE p({args})"
    ))
    .fetch_all(&mut *conn)
    .await
    .unwrap();
    sqlx::raw_sql("DEALLOCATE p; RESET plan_cache_mode")
        .execute(&mut *conn)
        .await
        .unwrap();
    // A scan reads the rows it returns plus those its filter removed (the
    // detail lines under the scan's own line).
    let number = |l: &str, key: &str| -> Option<i64> {
        l.split(key).nth(1)?.split(' ').next()?.parse().ok()
    };
    let mut rows = 0;
    for (i, line) in plan.iter().enumerate() {
        if !line.contains(&format!(" on {table} ")) {
            continue;
        }
        let removed: i64 = plan[i + 1..]
            .iter()
            .take_while(|l| !l.trim_start().starts_with("->"))
            .filter_map(|l| number(l, "Rows Removed by Filter: "))
            .sum();
        rows = rows.max(number(line, "actual rows=").unwrap_or(0) + removed);
    }
    (rows, plan.join("\n"))
}

#[tokio::test]
async fn a_big_chats_history_pages_read_their_page_not_the_chat() {
    let app = TestApp::spawn().await;
    let db = &app.state.db;
    let (alice, _) = app.make_user("Alice").await;
    let (bob, _) = app.make_user("Bob").await;
    // One chat of 3,000 messages among 300 of one message: the statistics
    // say "a chat has about ten", which is what a generic plan assumes.
    let big = app.make_private_chat(alice, bob).await;
    let ids: Vec<Uuid> = (0..3000).map(|_| Uuid::now_v7()).collect();
    sqlx::query(
        "INSERT INTO messages (id, chat_id, sender_id, content) \
         SELECT unnest($1::uuid[]), $2, $3, 'hello'",
    )
    .bind(&ids)
    .bind(big)
    .bind(alice)
    .execute(db)
    .await
    .unwrap();
    let partners = crate::chat_list_scale::bulk_users(db, "h", 300).await;
    crate::chat_list_scale::bulk_chats(db, alice, &partners, 1.0).await;
    sqlx::query("ANALYZE messages").execute(db).await.unwrap();
    for (older, cursor) in [
        (true, Uuid::max()),
        (true, ids[300]),
        (false, Uuid::nil()),
        (false, ids[2700]),
    ] {
        let sql = atoitalk::messages::repo::history_page_sql(older, false);
        let args = format!("'{big}', '{cursor}', 21");
        let (rows, plan) =
            most_rows_scanned(&app, "messages", &sql, "uuid, uuid, bigint", &args).await;
        assert!(rows <= 21, "a page read {rows} messages:\n{plan}");
    }
}

#[tokio::test]
async fn a_deep_page_of_the_user_directory_starts_at_its_cursor() {
    let app = TestApp::spawn().await;
    let db = &app.state.db;
    let (alice, _) = app.make_user("Alice").await;
    crate::chat_list_scale::bulk_users(db, "d", 3000).await;
    sqlx::query("ANALYZE users").execute(db).await.unwrap();
    let (name, id): (String, Uuid) = sqlx::query_as(
        "SELECT full_name, id FROM users WHERE full_name IS NOT NULL \
          ORDER BY full_name, id OFFSET 2500 LIMIT 1",
    )
    .fetch_one(db)
    .await
    .unwrap();
    let sql = atoitalk::users::repo::search_sql(false, false, 21);
    let types = "uuid, text, text, text, uuid, uuid, boolean";
    for (cursor, page) in [
        (
            "NULL, '00000000-0000-0000-0000-000000000000'".to_string(),
            "first",
        ),
        (format!("'{name}', '{id}'"), "deep"),
    ] {
        let args = format!("'{alice}', NULL, NULL, {cursor}, NULL, true");
        let (rows, plan) = most_rows_scanned(&app, "users", &sql, types, &args).await;
        assert!(rows <= 22, "the {page} page read {rows} users:\n{plan}");
    }
}

#[tokio::test]
async fn a_deep_page_of_the_admin_user_list_starts_at_its_cursor() {
    let app = TestApp::spawn().await;
    let db = &app.state.db;
    crate::chat_list_scale::bulk_users(db, "a", 3000).await;
    sqlx::query("ANALYZE users").execute(db).await.unwrap();
    let deep: Uuid = sqlx::query_scalar(
        "SELECT id FROM users WHERE deleted_at IS NULL ORDER BY id DESC OFFSET 2500 LIMIT 1",
    )
    .fetch_one(db)
    .await
    .unwrap();
    let sql = atoitalk::admin::repo::list_users_sql();
    for (cursor, page) in [
        (
            "'ffffffff-ffff-ffff-ffff-ffffffffffff'".to_string(),
            "first",
        ),
        (format!("'{deep}'"), "deep"),
    ] {
        let args = format!("NULL, {cursor}, NULL, 21");
        let types = "text, uuid, text, bigint";
        let (rows, plan) = most_rows_scanned(&app, "users", &sql, types, &args).await;
        assert!(rows <= 22, "the {page} page read {rows} users:\n{plan}");
    }
}

#[tokio::test]
async fn browsing_reuses_every_statement_plan() {
    let app = one_connection().await;
    let (alice, at) = app.make_user("Alice").await;
    let (bob, _) = app.make_user("Bob").await;
    let (carol, _) = app.make_user("Carol").await;
    let private = app.make_private_chat(alice, bob).await;
    let group = make_group(&app, alice, &[bob, carol]).await;
    send_three(&app, &at, &[private, group]).await;
    // Second pages need the first page's cursor.
    let next = |body: &Value| {
        body["meta"]["next_cursor"]
            .as_str()
            .unwrap_or("")
            .to_string()
    };
    let (_, users) = get(&app, &at, "/api/users?limit=1").await;
    let (_, history) = get(&app, &at, &format!("/api/chats/{group}/messages?limit=1")).await;
    let paths = [
        "/api/user/current".to_string(),
        format!("/api/users/{bob}"),
        "/api/users?limit=1".to_string(),
        format!("/api/users?limit=1&cursor={}", next(&users)),
        "/api/users?query=bo".to_string(),
        "/api/users/blocked".to_string(),
        "/api/chats/group/public".to_string(),
        format!("/api/chats/group/{group}/members"),
        format!(
            "/api/chats/{group}/messages?limit=1&cursor={}",
            next(&history)
        ),
        "/api/messages/search?q=hello".to_string(),
        format!("/api/chats/{group}/messages/search?q=number"),
    ];
    for _ in 0..8 {
        for path in &paths {
            let (s, body) = get(&app, &at, path).await;
            assert_eq!(s, 200, "{path}: {body}");
        }
    }
    let stats = statements_run_8_times(&app).await;
    assert!(stats.len() >= 6, "{stats:?}");
    // Except the rendering of several messages by id (`= ANY($1)`): its
    // generic plan is slower than planning each call (messages/repo.rs).
    let replanned: Vec<_> = stats
        .iter()
        .filter(|s| s.2 > 5 && !s.0.contains("WHERE m.id = ANY($1)"))
        .collect();
    assert!(
        replanned.is_empty(),
        "planned on every execution: {replanned:#?}"
    );
}
