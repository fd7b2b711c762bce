//! Extension (issue 17): full-text search over real HTTP: words, prefixes,
//! case and accents, newest first with keyset paging, snippets, who finds
//! what (members only; not deleted messages or chats, not groups left, not
//! messages from before a hide), bad input, the rate limit, and that the
//! statements can use the search index.

use serde_json::Value;
use uuid::Uuid;

use atoitalk::messages::search::query::Terms;

use crate::chats::support::*;
use crate::harness::{make_group, TestApp};

async fn search_chat(app: &TestApp, token: &str, chat: Uuid, query: &str) -> (u16, Value) {
    get(
        app,
        token,
        &format!("/api/chats/{chat}/messages/search{query}"),
    )
    .await
}

async fn search_all(app: &TestApp, token: &str, query: &str) -> (u16, Value) {
    get(app, token, &format!("/api/messages/search{query}")).await
}

async fn hide(app: &TestApp, token: &str, chat: Uuid) {
    let (s, b) = post(
        app,
        token,
        &format!("/api/chats/{chat}/hide"),
        serde_json::json!({}),
    )
    .await;
    assert_eq!(s, 200, "{b}");
}

fn contents(page: &Value) -> Vec<String> {
    page["data"]
        .as_array()
        .unwrap_or_else(|| panic!("no data: {page}"))
        .iter()
        .map(|m| m["content"].as_str().unwrap_or("").to_string())
        .collect()
}

#[tokio::test]
async fn words_prefixes_accents_order_paging_and_snippets() {
    let app = TestApp::spawn().await;
    let (alice, at) = app.make_user("Alice").await;
    let (bob, bt) = app.make_user("Bob").await;
    let (carol, ct) = app.make_user("Carol").await;
    let group = make_group(&app, alice, &[bob]).await;
    for text in [
        "Besok rapat di kantor jam 9",
        "Makan nasi goreng <b>pedas</b> & manis",
        "rapat dibatalkan",
        "Nasi goreng di Café dekat kantor",
    ] {
        send(&app, &at, group, text).await;
    }
    let private = app.make_private_chat(bob, carol).await;
    send(&app, &ct, private, "nasi uduk enak, mau?").await;

    let (s, page) = search_chat(&app, &bt, group, "?q=nasi%20goreng").await;
    assert_eq!(s, 200, "{page}");
    assert_eq!(
        contents(&page),
        vec![
            "Nasi goreng di Café dekat kantor",
            "Makan nasi goreng <b>pedas</b> & manis"
        ],
        "newest first"
    );
    let hit = &page["data"][1];
    assert_eq!(
        hit["snippet"],
        "Makan <mark>nasi</mark> <mark>goreng</mark> &lt;b&gt;pedas&lt;/b&gt; &amp; manis"
    );
    assert_eq!(hit["chat_id"], group.to_string());
    assert_eq!(hit["sender_name"], "Alice");
    assert_eq!(hit["type"], "regular");
    assert_eq!(hit["reactions"], serde_json::json!([]));
    assert_eq!(page["meta"]["has_next"], false);

    // The last word is a prefix, earlier ones are whole words; case and
    // accents do not matter.
    assert_eq!(
        contents(&search_chat(&app, &bt, group, "?q=GOR").await.1).len(),
        2
    );
    let (_, page) = search_chat(&app, &bt, group, "?q=rapat%20kan").await;
    assert_eq!(contents(&page), vec!["Besok rapat di kantor jam 9"]);
    let (_, page) = search_chat(&app, &bt, group, "?q=kan%20rapat").await;
    assert_eq!(contents(&page), Vec::<String>::new());
    for q in ["cafe", "CAF%C3%89", "caf"] {
        let (_, page) = search_chat(&app, &bt, group, &format!("?q={q}")).await;
        assert_eq!(
            contents(&page),
            vec!["Nasi goreng di Café dekat kantor"],
            "{q}"
        );
        assert_eq!(
            page["data"][0]["snippet"], "Nasi goreng di <mark>Café</mark> dekat kantor",
            "{q}"
        );
    }

    // Keyset paging, newest first.
    let (_, p1) = search_chat(&app, &bt, group, "?q=kantor&limit=1").await;
    assert_eq!(contents(&p1), vec!["Nasi goreng di Café dekat kantor"]);
    assert_eq!(p1["meta"]["has_next"], true);
    let cursor = p1["meta"]["next_cursor"].as_str().unwrap().to_string();
    let (s, p2) = search_chat(
        &app,
        &bt,
        group,
        &format!("?q=kantor&limit=1&cursor={cursor}"),
    )
    .await;
    assert_eq!(s, 200, "{p2}");
    assert_eq!(contents(&p2), vec!["Besok rapat di kantor jam 9"]);
    assert_eq!(p2["meta"]["has_next"], false);

    // Global: every chat the caller may read, newest first.
    let (s, page) = search_all(&app, &bt, "?q=nasi").await;
    assert_eq!(s, 200, "{page}");
    assert_eq!(
        contents(&page),
        vec![
            "nasi uduk enak, mau?",
            "Nasi goreng di Café dekat kantor",
            "Makan nasi goreng <b>pedas</b> & manis"
        ]
    );
    assert_eq!(page["data"][0]["chat_id"], private.to_string());
    assert_eq!(contents(&search_all(&app, &at, "?q=nasi").await.1).len(), 2);
    assert_eq!(contents(&search_all(&app, &ct, "?q=nasi").await.1).len(), 1);

    // Bad input: 400 on both endpoints.
    let long = format!("?q={}", "a".repeat(201));
    for q in [
        "",
        "?q=",
        "?q=%20%20",
        "?q=!!!%20...",
        long.as_str(),
        "?q=x&cursor=nope",
        "?q=x&limit=51",
    ] {
        let (s, b) = search_chat(&app, &bt, group, q).await;
        assert_eq!(s, 400, "chat {q}: {b}");
        assert!(b["error"].is_string());
        let (s, _) = search_all(&app, &bt, q).await;
        assert_eq!(s, 400, "global {q}");
    }
    let (s, b) = get(&app, &bt, "/api/chats/nope/messages/search?q=x").await;
    assert_eq!((s, b["error"].as_str()), (400, Some("Invalid Chat ID")));
}

/// Short last words (2-4 characters) are answered from the prefix tokens of
/// the search document, longer and 1-character ones by a prefix match, and
/// both find the same words: the word itself, longer words, any case or
/// accent; an edit re-indexes the text.
#[tokio::test]
async fn short_and_long_prefixes_find_the_same_words() {
    let app = TestApp::spawn().await;
    let (alice, at) = app.make_user("Alice").await;
    let (bob, bt) = app.make_user("Bob").await;
    let group = make_group(&app, alice, &[bob]).await;
    let private = app.make_private_chat(alice, bob).await;
    let mut ids = std::collections::HashMap::new();
    for (chat, text) in [
        (group, "Makan makanan enak"),
        (private, "Makassar panas"),
        (group, "mak comblang datang"),
        (group, "kopi susu"),
        (private, "kopitiam baru"),
        (group, "Ñoño dan 日本語"),
        (group, "ok sip"),
    ] {
        let m = send(&app, &at, chat, text).await;
        ids.insert(text, m["id"].as_str().unwrap().to_string());
    }
    let found = |q: &'static str| {
        let (app, bt) = (&app, bt.clone());
        async move {
            let (s, page) = search_all(app, &bt, &format!("?q={q}")).await;
            assert_eq!(s, 200, "{q}: {page}");
            let mut c = contents(&page);
            c.sort();
            c
        }
    };
    let mak = vec![
        "Makan makanan enak",
        "Makassar panas",
        "mak comblang datang",
    ];
    assert_eq!(found("mak").await, mak, "3 characters, the word itself too");
    assert_eq!(found("MAK").await, mak);
    assert_eq!(
        found("maka").await,
        vec!["Makan makanan enak", "Makassar panas"]
    );
    assert_eq!(
        found("makana").await,
        vec!["Makan makanan enak"],
        "6: a prefix match"
    );
    assert_eq!(found("makan").await, vec!["Makan makanan enak"]);
    assert_eq!(found("kopi").await, vec!["kopi susu", "kopitiam baru"]);
    assert_eq!(found("kopit").await, vec!["kopitiam baru"]);
    assert_eq!(found("ok").await, vec!["ok sip"], "2 characters");
    assert_eq!(
        found("no%C3%B1").await,
        vec!["Ñoño dan 日本語"],
        "folded to non"
    );
    assert_eq!(
        found("%E6%97%A5%E6%9C%AC").await,
        vec!["Ñoño dan 日本語"],
        "not ASCII"
    );
    assert_eq!(found("c").await, vec!["mak comblang datang"], "1 character");
    assert_eq!(found("makan%20ena").await, vec!["Makan makanan enak"]);
    assert_eq!(
        found("ena%20makan").await,
        Vec::<String>::new(),
        "earlier words are whole"
    );
    assert_eq!(found("xyz").await, Vec::<String>::new());
    // A snippet marks the words the prefix matched, in their own case.
    let (_, page) = search_chat(&app, &bt, group, "?q=mak").await;
    let snippets: Vec<&str> = page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["snippet"].as_str().unwrap())
        .collect();
    assert_eq!(
        snippets,
        vec![
            "<mark>mak</mark> comblang datang",
            "<mark>Makan</mark> <mark>makanan</mark> enak"
        ]
    );

    // An edit replaces the indexed text: the old words are gone, the new found.
    let kopi = &ids["kopi susu"];
    let (s, b) = put(
        &app,
        &at,
        &format!("/api/messages/{kopi}"),
        serde_json::json!({"content": "teh manis"}),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(found("kopi").await, vec!["kopitiam baru"]);
    assert_eq!(found("te").await, vec!["teh manis"]);
    assert_eq!(found("man").await, vec!["teh manis"]);
}

#[tokio::test]
async fn only_readable_live_messages_are_found() {
    let app = TestApp::spawn().await;
    let (alice, at) = app.make_user("Alice").await;
    let (bob, bt) = app.make_user("Bob").await;
    let (carol, ct) = app.make_user("Carol").await;
    let (_dave, dt) = app.make_user("Dave").await;
    let group = make_group(&app, alice, &[bob, carol]).await;
    send(&app, &at, group, "rahasia grup pertama").await;
    let gone = send(&app, &at, group, "rahasia yang dihapus").await;

    // Outsiders: the chat answers as its history; global finds nothing.
    let (s, b) = search_chat(&app, &dt, group, "?q=rahasia").await;
    assert_eq!((s, b["error"].as_str()), (403, Some("Forbidden")));
    assert_eq!(
        contents(&search_all(&app, &dt, "?q=rahasia").await.1),
        Vec::<String>::new()
    );
    assert_eq!(search_chat(&app, &dt, Uuid::now_v7(), "?q=x").await.0, 404);

    // Deleted messages never appear (nor do system messages).
    let (s, _) = delete(
        &app,
        &at,
        &format!("/api/messages/{}", gone["id"].as_str().unwrap()),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(
        contents(&search_chat(&app, &bt, group, "?q=rahasia").await.1),
        vec!["rahasia grup pertama"]
    );
    assert_eq!(
        contents(&search_all(&app, &bt, "?q=dihapus").await.1),
        Vec::<String>::new()
    );

    // A group the caller left: 403 for the chat, nothing globally.
    let (s, _) = post(
        &app,
        &ct,
        &format!("/api/chats/group/{group}/leave"),
        serde_json::json!({}),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(search_chat(&app, &ct, group, "?q=rahasia").await.0, 403);
    assert_eq!(
        contents(&search_all(&app, &ct, "?q=rahasia").await.1),
        Vec::<String>::new()
    );

    // Hidden chat: nothing from before the hide, newer messages again.
    let private = app.make_private_chat(alice, bob).await;
    send(&app, &at, private, "rahasia lama").await;
    hide(&app, &bt, private).await;
    assert_eq!(
        contents(&search_chat(&app, &bt, private, "?q=lama").await.1),
        Vec::<String>::new()
    );
    assert_eq!(
        contents(&search_all(&app, &bt, "?q=lama").await.1),
        Vec::<String>::new()
    );
    assert_eq!(
        contents(&search_all(&app, &at, "?q=lama").await.1),
        vec!["rahasia lama"]
    );
    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    send(&app, &at, private, "rahasia baru").await;
    assert_eq!(
        contents(&search_all(&app, &bt, "?q=rahasia").await.1),
        vec!["rahasia baru", "rahasia grup pertama"]
    );

    // Deleted chat: 404 for the chat, nothing globally.
    exec(
        &app,
        "UPDATE chats SET deleted_at = now() WHERE id = $1",
        group,
    )
    .await;
    assert_eq!(search_chat(&app, &bt, group, "?q=rahasia").await.0, 404);
    assert_eq!(
        contents(&search_all(&app, &bt, "?q=rahasia").await.1),
        vec!["rahasia baru"]
    );

    // Rate-limited with the neighbouring endpoints (general_read, 200/min).
    app.exhaust_user_bucket(bob, "general_read", 200).await;
    let (s, _) = search_all(&app, &bt, "?q=rahasia").await;
    assert_eq!(s, 429);
    let (s, _) = search_chat(&app, &bt, private, "?q=rahasia").await;
    assert_eq!(s, 429);
}

/// Both statements are answered from `messages_search_idx` (the expression
/// and predicate match it) on a chat big enough for the planner to care.
#[tokio::test]
async fn search_statements_use_the_search_index() {
    let app = TestApp::spawn().await;
    let (alice, _) = app.make_user("Alice").await;
    let group = make_group(&app, alice, &[]).await;
    sqlx::query(
        "INSERT INTO messages (id, chat_id, sender_id, content, created_at) \
         SELECT gen_random_uuid(), $1, $2, \
                CASE WHEN g % 1000 = 0 THEN 'nasi goreng ' ELSE 'filler text ' END || g, \
                now() - make_interval(secs => 5000 - g) \
           FROM generate_series(1, 5000) g",
    )
    .bind(group)
    .bind(alice)
    .execute(&app.state.db)
    .await
    .unwrap();
    sqlx::query("ANALYZE messages")
        .execute(&app.state.db)
        .await
        .unwrap();
    let q = Terms::parse(Some("nasi gor")).unwrap().tsquery();
    let plans = [
        sqlx::query_scalar::<_, String>(&format!(
            "EXPLAIN {}",
            atoitalk::messages::search::repo::in_chat_sql()
        ))
        .bind(group)
        .bind(&q.words)
        .bind(None::<chrono::DateTime<chrono::Utc>>)
        .bind(Uuid::max())
        .bind(21i64)
        .bind(&q.token)
        .fetch_all(&app.state.db)
        .await
        .unwrap(),
        sqlx::query_scalar::<_, String>(&format!(
            "EXPLAIN {}",
            atoitalk::messages::search::repo::global_sql()
        ))
        .bind(vec![group])
        .bind(&q.words)
        .bind(Uuid::max())
        .bind(21i64)
        .bind(Vec::<Uuid>::new())
        .bind(Vec::<chrono::DateTime<chrono::Utc>>::new())
        .bind(&q.token)
        .fetch_all(&app.state.db)
        .await
        .unwrap(),
    ];
    for plan in plans {
        let plan = plan.join("\n");
        assert!(plan.contains("messages_search_idx"), "{plan}");
        assert!(!plan.contains("Seq Scan on messages"), "{plan}");
    }
}

/// Every page of a global search, `limit` at a time, following
/// `meta.next_cursor` until `has_next` is false.
async fn all_pages(app: &TestApp, token: &str, q: &str, limit: usize) -> Vec<Vec<String>> {
    let mut pages = Vec::new();
    let mut cursor = String::new();
    loop {
        let (s, page) = search_all(app, token, &format!("?q={q}&limit={limit}{cursor}")).await;
        assert_eq!(s, 200, "{page}");
        pages.push(contents(&page));
        if page["meta"]["has_next"] != true {
            return pages;
        }
        let next = page["meta"]["next_cursor"].as_str().unwrap();
        cursor = format!("&cursor={next}");
    }
}

/// The global search pages across chats newest first whichever plan the
/// planner picks (a word in every message walks the newest messages, a
/// rare one intersects the index with the chats): no message twice, none
/// skipped, none from a chat the caller cannot read or from before a hide.
#[tokio::test]
async fn global_search_pages_across_chats_newest_first() {
    let app = TestApp::spawn().await;
    let (alice, at) = app.make_user("Alice").await;
    let (bob, bt) = app.make_user("Bob").await;
    let (carol, ct) = app.make_user("Carol").await;
    let g1 = make_group(&app, alice, &[bob]).await;
    let g2 = make_group(&app, carol, &[bob]).await;
    let other = make_group(&app, carol, &[alice]).await;
    let private = app.make_private_chat(alice, bob).await;
    send(&app, &at, private, "kopi pahit sebelum disembunyikan").await;
    hide(&app, &bt, private).await;
    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    // Interleaved across the chats, so every page mixes them.
    let mut expected = Vec::new();
    for i in 0..9 {
        let (chat, token) = match i % 4 {
            0 => (g1, &at),
            1 => (g2, &ct),
            2 => (private, &at),
            _ => (other, &ct),
        };
        let text = format!("kopi susu {i}{}", if i % 3 == 0 { " langka" } else { "" });
        send(&app, token, chat, &text).await;
        if chat != other {
            expected.push(text);
        }
    }
    expected.reverse();
    let rare: Vec<String> = expected
        .iter()
        .filter(|t| t.ends_with("langka"))
        .cloned()
        .collect();
    assert_eq!(rare.len(), 2, "{expected:?}");

    for limit in [1, 2, 4, 50] {
        let pages = all_pages(&app, &bt, "kopi", limit).await;
        assert!(pages.iter().all(|p| p.len() <= limit));
        assert_eq!(pages.concat(), expected, "limit {limit}");
        let pages = all_pages(&app, &bt, "susu%20lang", limit).await;
        assert_eq!(pages.concat(), rare, "limit {limit}");
    }
    // Carol sees her two groups only; Alice sees `other` but not g2.
    let carol_sees = all_pages(&app, &ct, "kopi", 3).await.concat();
    assert_eq!(carol_sees.len(), 4, "{carol_sees:?}");
    let alice_sees = all_pages(&app, &at, "kopi", 3).await.concat();
    assert!(alice_sees.contains(&"kopi pahit sebelum disembunyikan".to_string()));
    assert!(!alice_sees
        .iter()
        .any(|t| t == "kopi susu 1" || t == "kopi susu 5"));
}

/// With statistics on the search document the planner tells a common word
/// from a rare one (a vocabulary of a few hundred words: with under 100
/// frequent lexemes PostgreSQL falls back to a fixed guess for prefixes): the first walks the newest messages (the page is
/// found at once), the second uses the search index; never a sequential
/// scan, and both answer the same as the search itself.
#[tokio::test]
async fn global_plan_follows_how_common_the_word_is() {
    let app = TestApp::spawn().await;
    let (alice, _) = app.make_user("Alice").await;
    let group = make_group(&app, alice, &[]).await;
    let elsewhere = make_group(&app, alice, &[]).await;
    sqlx::query(
        "INSERT INTO messages (id, chat_id, sender_id, content, created_at) \
         SELECT gen_random_uuid(), CASE WHEN g % 2 = 0 THEN $1 ELSE $3 END, $2, \
                'yang kata' || (g % 200) || ' kata' || (g % 173) \
                || CASE WHEN g % 5000 = 0 THEN ' langka' ELSE '' END, \
                now() - make_interval(secs => 20000 - g) \
           FROM generate_series(1, 20000) g",
    )
    .bind(group)
    .bind(alice)
    .bind(elsewhere)
    .execute(&app.state.db)
    .await
    .unwrap();
    sqlx::query("ANALYZE messages")
        .execute(&app.state.db)
        .await
        .unwrap();
    let explain = |text: &'static str| {
        let db = app.state.db.clone();
        let q = Terms::parse(Some(text)).unwrap().tsquery();
        async move {
            let mut tx = db.begin().await.unwrap();
            sqlx::query(atoitalk::messages::search::repo::GLOBAL_SETTINGS)
                .execute(&mut *tx)
                .await
                .unwrap();
            let plan: Vec<String> = sqlx::query_scalar(&format!(
                "EXPLAIN {}",
                atoitalk::messages::search::repo::global_sql()
            ))
            .persistent(false)
            .bind(vec![group])
            .bind(&q.words)
            .bind(Uuid::max())
            .bind(21i64)
            .bind(Vec::<Uuid>::new())
            .bind(Vec::<chrono::DateTime<chrono::Utc>>::new())
            .bind(&q.token)
            .fetch_all(&mut *tx)
            .await
            .unwrap();
            plan.join("\n")
        }
    };
    let common = explain("yang").await;
    assert!(
        common.contains("Index Scan Backward using messages_pkey"),
        "{common}"
    );
    let rare = explain("langka").await;
    assert!(rare.contains("messages_search_idx"), "{rare}");
    // A short last word is the exact prefix token, not a prefix scan.
    let short = explain("kat").await;
    assert!(short.contains("'>kat'"), "{short}");
    assert!(!short.contains(":*"), "{short}");
    for plan in [common, rare, short] {
        assert!(!plan.contains("Seq Scan"), "{plan}");
    }
}
