//! The send path's statements are planned once per connection, not on every
//! send (issue 21): PostgreSQL re-plans a prepared statement for good when
//! its custom plans look cheaper than the generic one, which is what a
//! `$n IS NULL` branch does. Planning was a third of the database's time per
//! send before the statements were split (`bench/README.md`).

use serde_json::json;

use crate::chats::support::*;
use crate::harness::{make_group, TestApp};

#[tokio::test]
async fn sends_reuse_their_plans_in_private_chats_and_groups() {
    // One pool connection: every statement of every request runs on it, so
    // its prepared statements can be read back afterwards.
    let app = TestApp::spawn_with(|env| {
        env.insert("DB_MAX_CONNECTIONS".into(), "1".into());
    })
    .await;
    let (alice, at) = app.make_user("Alice").await;
    let (bob, _) = app.make_user("Bob").await;
    let private = app.make_private_chat(alice, bob).await;
    let group = make_group(&app, alice, &[bob]).await;
    // Five custom plans come first; from the sixth on PostgreSQL either
    // reuses the generic plan or keeps planning.
    for n in 0..8 {
        for chat in [private, group] {
            let (s, body) = post(
                &app,
                &at,
                "/api/messages",
                json!({"chat_id": chat, "content": format!("message {n}")}),
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
    assert_eq!(
        kinds("UPDATE private_chats"),
        1,
        "private record: {stats:?}"
    );
    assert_eq!(kinds("UPDATE group_members"), 1, "group record: {stats:?}");
    assert_eq!(kinds("SELECT u.role"), 1, "auth: {stats:?}");
    assert_eq!(kinds("SELECT c.type AS chat_type"), 1, "context: {stats:?}");
    // On one Redis node the send reads the account in its chat-context
    // statement, so only the 8 chat lists (and the setup) ran this one;
    // on a cluster the authentication reads it for the 16 sends too.
    let auth_runs: i64 = hot
        .iter()
        .filter(|s| s.0.contains("SELECT u.role"))
        .map(|s| s.1 + s.2)
        .sum();
    if !app.state.redis.is_cluster() {
        assert!(
            auth_runs < 16,
            "the sends read the account on their own: {auth_runs} runs"
        );
    }
    for (sql, generic, custom) in hot {
        assert!(
            *generic > 0 && *custom <= 5,
            "planned on every execution ({custom} custom, {generic} generic): {sql}"
        );
    }
}
