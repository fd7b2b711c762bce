//! Read receipts under races (issue 16 §3): sends racing mark-reads keep
//! the read boundary consistent with the unread counter.

use serde_json::json;
use uuid::Uuid;

use crate::chats::support::*;
use crate::harness::{make_group, TestApp};

/// The reader's boundary and counter as stored, the number of others'
/// messages after the boundary, and how many of those counted as unread
/// were created at or before it.
async fn read_state(app: &TestApp, chat: Uuid, reader: Uuid) -> (i64, i64) {
    sqlx::query_as(
        "WITH r AS ( \
           SELECT CASE WHEN p.user1_id = $2 THEN p.user1_last_read_at ELSE p.user2_last_read_at END AS at, \
                  CASE WHEN p.user1_id = $2 THEN p.user1_unread_count ELSE p.user2_unread_count END AS n \
             FROM private_chats p WHERE p.chat_id = $1 \
           UNION ALL \
           SELECT gm.last_read_at, gm.unread_count FROM group_chats g \
             JOIN group_members gm ON gm.group_chat_id = g.id AND gm.user_id = $2 \
            WHERE g.chat_id = $1) \
         SELECT r.n::bigint, \
                (SELECT count(*) FROM messages m \
                  WHERE m.chat_id = $1 AND m.type = 'regular' AND m.sender_id <> $2 \
                    AND (r.at IS NULL OR m.created_at > r.at)) \
           FROM r",
    )
    .bind(chat)
    .bind(reader)
    .fetch_one(&app.state.db)
    .await
    .expect("read state")
}

#[tokio::test]
async fn sends_racing_mark_reads_keep_the_boundary_and_counter_consistent() {
    let app = TestApp::spawn_with(|env| {
        env.insert("DB_MAX_CONNECTIONS".into(), "16".into());
    })
    .await;
    let (alice, at) = app.make_user("Alice").await;
    let (bob, bt) = app.make_user("Bob").await;
    let (carol, ct) = app.make_user("Carol").await;
    let private = app.make_private_chat(alice, bob).await;
    let group = make_group(&app, alice, &[bob, carol]).await;

    // Six rounds of 3 senders and 2 readers per chat stay under the
    // per-user `general_read` limit (200 a minute).
    for round in 0..6 {
        for chat in [private, group] {
            let senders = [&at, &at, &ct].map(|token| {
                let app = &app;
                async move {
                    for i in 0..5 {
                        let content = format!("r{round} m{i}");
                        // Carol is not in the private chat: her sends there fail.
                        let _ = post(
                            app,
                            token,
                            "/api/messages",
                            json!({"chat_id": chat, "content": content}),
                        )
                        .await;
                    }
                }
            });
            let readers = (0..2).map(|_| {
                let app = &app;
                let bt = &bt;
                async move {
                    for _ in 0..6 {
                        let (s, b) =
                            post(app, bt, &format!("/api/chats/{chat}/read"), json!({})).await;
                        assert_eq!(s, 200, "{b}");
                    }
                }
            });
            futures::future::join(
                futures::future::join_all(senders),
                futures::future::join_all(readers),
            )
            .await;

            let (unread, after_boundary) = read_state(&app, chat, bob).await;
            assert_eq!(
                unread, after_boundary,
                "round {round}, chat {chat}: counter {unread} but {after_boundary} messages \
                 after last_read_at"
            );
            let (_, detail) = get(&app, &bt, &format!("/api/chats/{chat}")).await;
            assert_eq!(detail["data"]["unread_count"], unread, "what Bob sees");
        }
    }
    // Reading now leaves nothing unread and nothing after the boundary.
    for chat in [private, group] {
        let (s, _) = post(&app, &bt, &format!("/api/chats/{chat}/read"), json!({})).await;
        assert_eq!(s, 200);
        assert_eq!(read_state(&app, chat, bob).await, (0, 0));
    }
}
