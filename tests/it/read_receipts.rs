//! Read receipts under races (issue 16 §3): sends racing mark-reads keep
//! the read boundary consistent with the unread counter.

use serde_json::json;
use uuid::Uuid;

use crate::chats::support::*;
use crate::harness::{make_group, TestApp};

/// Rounds of racing; each user stays under the per-user `general_read`
/// limit (200 requests a minute).
const ROUNDS: usize = 8;
/// Requests per racing task per round.
const PER_TASK: usize = 10;

/// The reader's unread counter as stored, and the number of others'
/// regular messages created after the reader's `last_read_at`. Equal when
/// the boundary and the counter agree.
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

/// `senders` post and `readers` mark the chat read, all at once, for one
/// round.
async fn race(app: &TestApp, chat: Uuid, senders: &[&str], readers: &[&str], round: usize) {
    let sends = senders.iter().map(|token| async move {
        for i in 0..PER_TASK {
            let content = format!("r{round} m{i}");
            let payload = json!({"chat_id": chat, "content": content});
            let (s, b) = post(app, token, "/api/messages", payload).await;
            assert_eq!(s, 200, "{b}");
        }
    });
    let reads = readers.iter().map(|token| async move {
        for _ in 0..PER_TASK {
            let (s, b) = post(app, token, &format!("/api/chats/{chat}/read"), json!({})).await;
            assert_eq!(s, 200, "{b}");
        }
    });
    futures::future::join(
        futures::future::join_all(sends),
        futures::future::join_all(reads),
    )
    .await;
}

#[tokio::test]
async fn sends_racing_mark_reads_keep_the_boundary_and_counter_consistent() {
    let app = TestApp::spawn_with(|env| {
        env.insert("DB_MAX_CONNECTIONS".into(), "16".into());
    })
    .await;
    let mut users = Vec::new();
    for name in ["Alice", "Bob", "Carol", "Dave", "Erin", "Frank", "Gina"] {
        users.push(app.make_user(name).await);
    }
    let [(alice, at), (bob, bt), (carol, ct), (dave, dt), (erin, et), (frank, ft), (gina, gt)] =
        <[_; 7]>::try_from(users).expect("seven users");
    let private = app.make_private_chat(alice, bob).await;
    let group = make_group(&app, carol, &[dave, erin, frank, gina]).await;
    // (chat, senders, readers, reader ids)
    let setups = [
        (
            private,
            vec![&*at, &*at],
            vec![&*bt, &*bt],
            vec![(bob, &*bt)],
        ),
        (
            group,
            vec![&*ct, &*dt, &*ft],
            vec![&*et, &*et, &*gt, &*gt],
            vec![(erin, &*et), (gina, &*gt)],
        ),
    ];

    for round in 0..ROUNDS {
        let races = setups
            .iter()
            .map(|(chat, senders, readers, _)| race(&app, *chat, senders, readers, round));
        futures::future::join_all(races).await;
        for (chat, _, _, checked) in &setups {
            for (reader, token) in checked {
                let (unread, after_boundary) = read_state(&app, *chat, *reader).await;
                assert_eq!(
                    unread, after_boundary,
                    "round {round}, chat {chat}: counter {unread} but {after_boundary} \
                     messages after last_read_at"
                );
                let (_, detail) = get(&app, token, &format!("/api/chats/{chat}")).await;
                assert_eq!(
                    detail["data"]["unread_count"], unread,
                    "what the reader sees"
                );
            }
        }
    }
    // Reading now leaves nothing unread and nothing after the boundary.
    for (chat, _, _, checked) in &setups {
        for (reader, token) in checked {
            let (s, _) = post(&app, token, &format!("/api/chats/{chat}/read"), json!({})).await;
            assert_eq!(s, 200);
            assert_eq!(read_state(&app, *chat, *reader).await, (0, 0));
        }
    }
}
