-- Seed of the `search` scenario, run statement by statement (split on lines of `;`).
-- {chats} chats (the viewer in {mine} of them: 60% groups, 40% private, a tenth of those
-- hidden half-way), {messages} messages of 4 to 12 words drawn Zipf-like from a mixed
-- Indonesian/English vocabulary, so some words are in most chats and some in few.
CREATE TEMP TABLE bench_words AS
SELECT row_number() OVER () AS n, w FROM unnest(string_to_array(
  'yang dan di ini itu dengan untuk tidak ada saya kamu kita mereka akan sudah bisa juga '
  'the and to of a in is it you that for on with be this have are not but at '
  'makan minum rumah kantor rapat besok kemarin nanti sekarang pagi siang malam jalan '
  'meeting deadline project report invoice budget review deploy server release update '
  'tolong terima kasih maaf oke siap mantap keren banget dong sih kok deh lho '
  'kopi teh nasi goreng sate bakso soto mie ayam ikan sapi pedas manis asin '
  'jakarta bandung surabaya yogyakarta bali medan makassar semarang malang bogor '
  'café naïve résumé jalapeño über crème brûlée façade coöperate señor', ' ')) AS w;

-- A tail of rare made-up words (word0001 ... word5000), each in few messages.
INSERT INTO bench_words (n, w)
SELECT 1000 + g, 'kata' || lpad(g::text, 4, '0') FROM generate_series(1, 5000) g;

-- Numbered 1..N without gaps, so a word is one primary-key lookup (indexing a big array
-- would detoast all of it for every word).
CREATE TEMP TABLE bench_vocab AS SELECT row_number() OVER (ORDER BY n) AS i, w FROM bench_words;

ALTER TABLE bench_vocab ADD PRIMARY KEY (i);

ANALYZE bench_vocab;

INSERT INTO users (id, email, username, full_name)
SELECT u, 's' || replace(u::text, '-', '') || '@bench.test', 's' || replace(u::text, '-', ''),
       'Search ' || left(u::text, 8)
  FROM (SELECT gen_random_uuid() AS u FROM generate_series(1, {chats} + 1)) t;

CREATE TEMP TABLE bench_users AS
SELECT row_number() OVER (ORDER BY id) - 1 AS n, id FROM users WHERE email LIKE 's%@bench.test';

ALTER TABLE bench_users ADD PRIMARY KEY (n);

-- Chat k (1..{chats}): a group for k % 5 < 3, else private; the viewer is user 0, in chats
-- 1..{mine}; every chat also has user k.
CREATE TEMP TABLE bench_chats AS
SELECT k, gen_random_uuid() AS chat_id, gen_random_uuid() AS group_id,
       CASE WHEN k % 5 < 3 THEN 'group' ELSE 'private' END AS kind
  FROM generate_series(1, {chats}) k;

ALTER TABLE bench_chats ADD PRIMARY KEY (k);

ANALYZE bench_users;

ANALYZE bench_chats;

INSERT INTO chats (id, type) SELECT chat_id, kind FROM bench_chats;

INSERT INTO group_chats (id, chat_id, name, invite_code)
SELECT group_id, chat_id, 'Search group ' || k, replace(group_id::text, '-', '')
  FROM bench_chats WHERE kind = 'group';

INSERT INTO group_members (id, group_chat_id, user_id, role, joined_at)
SELECT gen_random_uuid(), c.group_id, u.id, CASE WHEN u.n = c.k THEN 'owner' ELSE 'member' END, now()
  FROM bench_chats c JOIN bench_users u ON u.n = c.k OR (u.n = 0 AND c.k <= {mine})
 WHERE c.kind = 'group';

-- Private pairs are stored ordered (user1_id < user2_id). Chats 1..{chats} of other users
-- pair user k with user k+1 (k < {chats}) so no pair repeats.
INSERT INTO private_chats (id, chat_id, user1_id, user2_id)
SELECT gen_random_uuid(), c.chat_id, least(a.id, b.id), greatest(a.id, b.id)
  FROM bench_chats c
  JOIN bench_users a ON a.n = c.k
  JOIN bench_users b ON b.n = CASE WHEN c.k <= {mine} THEN 0 ELSE (c.k % {chats}) + 1 END
 WHERE c.kind = 'private';

-- The search index is built once after the load (far faster than a million inserts into
-- it), with the migration's own definition.
CREATE TEMP TABLE bench_index AS SELECT pg_get_indexdef('messages_search_idx'::regclass) AS def;

DROP INDEX messages_search_idx;

-- UUIDv7-shaped ids from the timestamp, so id order is time order; spread over 100 days.
INSERT INTO messages (id, chat_id, sender_id, content, created_at, updated_at)
SELECT (lpad(to_hex((extract(epoch FROM ts) * 1000)::bigint), 12, '0') || '7'
        || substr(md5(random()::text), 1, 3) || '8' || substr(md5(random()::text), 1, 15))::uuid,
       c.chat_id, u.id, body, ts, ts
  FROM generate_series(1, {messages}) g
  JOIN bench_chats c ON c.k = 1 + (g % {chats})
  JOIN bench_users u ON u.n = c.k
  CROSS JOIN (SELECT count(*) AS n FROM bench_vocab) v
  CROSS JOIN LATERAL (SELECT now() - make_interval(secs => ({messages} - g) * 8.64) AS ts) t
  CROSS JOIN LATERAL (
    SELECT string_agg(w.w, ' ') AS body
      FROM (SELECT 1 + floor(power(random(), 3) * v.n)::int AS i
              FROM generate_series(1, 4 + (g % 9))) r
      JOIN bench_vocab w ON w.i = r.i) b;

DO $$ BEGIN EXECUTE (SELECT def FROM bench_index); END $$;

UPDATE chats c SET last_message_id = m.id, last_message_at = m.created_at
  FROM (SELECT DISTINCT ON (chat_id) chat_id, id, created_at FROM messages
         ORDER BY chat_id, id DESC) m
 WHERE c.id = m.chat_id;

-- A tenth of the viewer's private chats hidden half-way back.
UPDATE private_chats p
   SET user1_hidden_at = CASE WHEN p.user1_id = u.id THEN now() - interval '50 days' END,
       user2_hidden_at = CASE WHEN p.user2_id = u.id THEN now() - interval '50 days' END
  FROM bench_chats c, bench_users u
 WHERE u.n = 0 AND p.chat_id = c.chat_id AND c.kind = 'private' AND c.k <= {mine} AND c.k % 10 = 3;
