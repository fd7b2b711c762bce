//! The chat list of a member of hundreds of chats: its first page is looked
//! for among everyone's newest chats before all of the member's chats are
//! gathered (`chats::repo::list_page_sql`). Whichever way a page is found,
//! paging through the list gives every visible chat once, newest first.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::PgPool;
use uuid::Uuid;

use crate::chats::support::*;
use crate::harness::TestApp;

/// `n` users in one statement.
pub async fn bulk_users(db: &PgPool, prefix: &str, n: i32) -> Vec<Uuid> {
    sqlx::query_scalar(
        "INSERT INTO users (id, email, username, full_name, password_hash) \
         SELECT gen_random_uuid(), $1 || g || '@example.com', $1 || g, 'User ' || $1 || g, 'x' \
           FROM generate_series(1, $2) g RETURNING id",
    )
    .bind(format!(
        "{prefix}{}",
        &Uuid::now_v7().simple().to_string()[20..]
    ))
    .bind(n)
    .fetch_all(db)
    .await
    .unwrap()
}

/// A private chat of `me` with each partner (on alternating sides of the
/// pair), each with one message, `step_ms` apart and in pairs of equal
/// timestamps (the keyset's tie on `last_message_at`), newest first,
/// starting `offset_s` seconds ago.
pub async fn bulk_chats(db: &PgPool, me: Uuid, partners: &[Uuid], offset_s: f64) -> Vec<Uuid> {
    let chats: Vec<Uuid> = partners.iter().map(|_| Uuid::now_v7()).collect();
    let mut tx = db.begin().await.unwrap();
    sqlx::query("INSERT INTO chats (id, type) SELECT unnest($1::uuid[]), 'private'")
        .bind(&chats)
        .execute(&mut *tx)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO private_chats (id, chat_id, user1_id, user2_id) \
         SELECT gen_random_uuid(), c, CASE WHEN k % 2 = 0 THEN $2 ELSE p END, \
                CASE WHEN k % 2 = 0 THEN p ELSE $2 END \
           FROM unnest($1::uuid[], $3::uuid[]) WITH ORDINALITY t(c, p, k)",
    )
    .bind(&chats)
    .bind(me)
    .bind(partners)
    .execute(&mut *tx)
    .await
    .unwrap();
    sqlx::query(
        "WITH m AS (INSERT INTO messages (id, chat_id, sender_id, content, created_at, updated_at) \
                    SELECT gen_random_uuid(), c, p, 'hello', ts, ts \
                      FROM unnest($1::uuid[], $2::uuid[]) WITH ORDINALITY t(c, p, k), \
                           LATERAL (SELECT now() - make_interval(secs => $3 + (k / 2) * 0.01) AS ts) s \
                    RETURNING id, chat_id, created_at) \
         UPDATE chats c SET last_message_id = m.id, last_message_at = m.created_at \
           FROM m WHERE c.id = m.chat_id",
    )
    .bind(&chats)
    .bind(partners)
    .bind(offset_s)
    .execute(&mut *tx)
    .await
    .unwrap();
    tx.commit().await.unwrap();
    chats
}

/// Every page of `token`'s chat list, `limit` at a time.
async fn whole_list(app: &TestApp, token: &str, limit: u32) -> Vec<Uuid> {
    let mut ids = Vec::new();
    let mut path = format!("/api/chats?limit={limit}");
    loop {
        let (s, body) = get(app, token, &path).await;
        assert_eq!(s, 200, "{body}");
        let page = body["data"].as_array().unwrap();
        assert!(page.len() <= limit as usize, "{body}");
        ids.extend(
            page.iter()
                .map(|c| c["id"].as_str().unwrap().parse::<Uuid>().unwrap()),
        );
        match body["meta"]["next_cursor"].as_str() {
            Some(cursor) if body["meta"]["has_next"] == Value::Bool(true) => {
                path = format!("/api/chats?limit={limit}&cursor={cursor}");
            }
            _ => return ids,
        }
    }
}

/// `chats` newest first, as the list must order them.
async fn newest_first(db: &PgPool, chats: &[Uuid]) -> Vec<Uuid> {
    let mut rows: Vec<(Uuid, DateTime<Utc>)> =
        sqlx::query_as("SELECT id, last_message_at FROM chats WHERE id = ANY($1)")
            .bind(chats)
            .fetch_all(db)
            .await
            .unwrap();
    rows.sort_by(|a, b| b.1.cmp(&a.1).then(b.0.cmp(&a.0)));
    rows.into_iter().map(|r| r.0).collect()
}

#[tokio::test]
async fn a_member_of_hundreds_of_chats_pages_through_all_of_them_in_order() {
    let app = TestApp::spawn().await;
    let db = &app.state.db;
    let (alice, at) = app.make_user("Alice").await;
    let (bob, bt) = app.make_user("Bob").await;
    let partners = bulk_users(db, "p", 240).await;
    let mut mine = bulk_chats(db, alice, &partners, 60.0).await;
    // Three chats hidden after their last message drop out; one hidden
    // before it stays.
    let set_hidden = |chat: Uuid, at: &'static str| {
        let sql = format!(
            "UPDATE private_chats SET \
               user1_hidden_at = CASE WHEN user1_id = $2 THEN {at} ELSE user1_hidden_at END, \
               user2_hidden_at = CASE WHEN user2_id = $2 THEN {at} ELSE user2_hidden_at END \
             WHERE chat_id = $1"
        );
        async move {
            sqlx::query(&sql)
                .bind(chat)
                .bind(alice)
                .execute(db)
                .await
                .unwrap();
        }
    };
    for chat in [mine[0], mine[7], mine[100]] {
        set_hidden(chat, "now()").await;
    }
    set_hidden(mine[8], "now() - interval '1 day'").await;
    let hidden = [mine[0], mine[7], mine[100]];
    // Groups count too, and other people's newer chats are skipped.
    let group = app.make_group(alice, &[bob]).await;
    app.insert_message(group, bob, "in the group").await;
    let strangers = bulk_users(db, "s", 30).await;
    bulk_chats(db, bob, &strangers, 0.0).await;
    mine.push(group);
    let visible: Vec<Uuid> = mine
        .iter()
        .copied()
        .filter(|c| !hidden.contains(c))
        .collect();
    let expected = newest_first(db, &visible).await;
    assert_eq!(expected[0], group);

    for limit in [50, 7] {
        let listed = whole_list(&app, &at, limit).await;
        assert_eq!(listed.len(), expected.len(), "limit {limit}");
        assert!(
            listed == expected,
            "limit {limit}: the list is out of order"
        );
    }

    // Thousands of other people's chats newer than all of Alice's: her
    // first page is not among the newest, the gathering finds it.
    let crowd = bulk_users(db, "c", 2100).await;
    let crowd_chats = bulk_chats(db, bob, &crowd, -5.0).await;
    let listed = whole_list(&app, &at, 50).await;
    assert!(
        listed == newest_first(db, &visible).await,
        "after the crowd"
    );

    // Bob, in 2,131 chats, finds his newest at the top of everyone's.
    let (s, body) = get(&app, &bt, "/api/chats?limit=3").await;
    assert_eq!(s, 200, "{body}");
    let top: Vec<Uuid> = body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap().parse().unwrap())
        .collect();
    assert_eq!(top, newest_first(db, &crowd_chats).await[..3].to_vec());
    assert_eq!(body["meta"]["has_next"], Value::Bool(true), "{body}");
}
