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
           SELECT gm.last_read_at, c.message_seq - gm.read_seq FROM chats c \
             JOIN group_chats g ON g.chat_id = c.id \
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

/// A group member's counter is the chat's message count minus what they
/// have read (migration `20260301000000`): members added later start at 0,
/// each send counts for everyone but its sender, a read zeroes only the
/// reader, and the member count follows adds and leaves made in one
/// statement.
#[tokio::test]
async fn group_counters_start_at_zero_for_late_members_and_move_per_reader() {
    let app = TestApp::spawn().await;
    let (carol, ct) = app.make_user("Carol").await;
    let (dave, dt) = app.make_user("Dave").await;
    let (erin, et) = app.make_user("Erin").await;
    let (frank, ft) = app.make_user("Frank").await;
    let group = make_group(&app, carol, &[dave]).await;
    let send = |token: String, text: &'static str| {
        let app = &app;
        async move {
            let payload = json!({"chat_id": group, "content": text});
            let (s, b) = post(app, &token, "/api/messages", payload).await;
            assert_eq!(s, 200, "{b}");
        }
    };
    for text in ["one", "two", "three"] {
        send(ct.to_string(), text).await;
    }
    let unread = |token: String| {
        let app = &app;
        async move {
            let (s, b) = get(app, &token, &format!("/api/chats/{group}")).await;
            assert_eq!(s, 200, "{b}");
            (
                b["data"]["unread_count"].as_i64().unwrap(),
                b["data"]["member_count"].as_i64().unwrap(),
            )
        }
    };
    assert_eq!(unread(dt.to_string()).await, (3, 2));

    // Two members added in one request (one INSERT statement).
    let members = format!("/api/chats/group/{group}/members");
    let (s, b) = post(&app, &ct, &members, json!({"user_ids": [erin, frank]})).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(
        unread(et.to_string()).await,
        (0, 4),
        "a new member has read nothing old"
    );
    assert_eq!(unread(ft.to_string()).await, (0, 4));

    let mut erin_ws = app.ws(&et).await;
    send(dt.to_string(), "four").await;
    let e = erin_ws.expect_event("message.new").await;
    assert_eq!(e["meta"]["unread_count"], 1, "{e}");
    assert_eq!(unread(et.to_string()).await, (1, 4));
    assert_eq!(unread(ct.to_string()).await, (1, 4));
    assert_eq!(
        unread(dt.to_string()).await,
        (0, 4),
        "sending reads the chat"
    );

    let (s, _) = post(&app, &et, &format!("/api/chats/{group}/read"), json!({})).await;
    assert_eq!(s, 200);
    assert_eq!(unread(et.to_string()).await, (0, 4));
    assert_eq!(
        unread(ft.to_string()).await,
        (1, 4),
        "another reader's counter stays"
    );
    assert_eq!(read_state(&app, group, erin).await, (0, 0));

    let (s, _) = post(
        &app,
        &ft,
        &format!("/api/chats/group/{group}/leave"),
        json!({}),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(unread(ct.to_string()).await, (1, 3), "a leave counts once");
    let list = get(&app, &ct, "/api/chats").await.1;
    let mine = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == group.to_string())
        .cloned()
        .expect("group in Carol's list");
    assert_eq!(mine["unread_count"], 1, "the chat list agrees: {mine}");
}
