-- Extension (issue 17): prefix tokens in the search document, so that a short last word
-- (typed as users type: "mak", "kop", "caf") is an exact index lookup instead of a prefix
-- scan.
--
-- A tsquery prefix (`'mak':*`) makes GIN gather the postings of every lexeme it matches into
-- a TID bitmap before the scan can return anything; measured on the bench's million
-- messages that costs about five times an exact lexeme with as many postings (`'makan':*`
-- 11.7 ms against `'makan'` 2.3 ms for the same 13,791 postings), and it was the one search
-- over the 20 ms goal. The document now also holds, for every lexeme of two or more
-- characters, its first 2, 3 and 4 characters behind a `>` ('makanan' adds '>ma', '>mak',
-- '>maka'). `>` separates words for the parser, so no lexeme of message text and no word of
-- a search (the application splits search text into letters and digits) can ever be one of
-- these; the application asks for `'>mak'` when the last word has 2-4 characters and for
-- `'makan':*` when it is longer (few lexemes share a 5-character prefix).
--
-- Cost: the index grows from 30 to 48 MiB per million messages; computing a document is
-- ~2.5x slower (plpgsql, ~20 us per message), paid once per insert or edit. COST 1000 tells
-- the planner so: walking messages and computing documents is then costed as the ~20 us it
-- is, which keeps it for words on a large share of messages (a page is found in the newest
-- few dozen) and not for a 2 % prefix.
--
-- CREATE OR REPLACE of an indexed function is only sound together with the REINDEX below,
-- in this transaction; it holds messages' write lock while the index is rebuilt (~25 s per
-- million messages on the bench machine).
CREATE OR REPLACE FUNCTION atoitalk_search_doc(text) RETURNS tsvector
    LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE COST 1000
    AS $$
DECLARE
    doc tsvector := to_tsvector('pg_catalog.simple'::regconfig, atoitalk_unaccent($1));
    lexeme text;
    tokens text[] := '{}';
BEGIN
    FOREACH lexeme IN ARRAY tsvector_to_array(doc) LOOP
        FOR n IN 2 .. least(4, length(lexeme)) LOOP
            tokens := tokens || ('>' || left(lexeme, n));
        END LOOP;
    END LOOP;
    -- array_to_tsvector sorts and removes duplicates; tokens carry no positions.
    RETURN doc || array_to_tsvector(tokens);
END
$$;

-- The query of a search: `words` as before (tsquery text of quoted words, folded by the same
-- unaccent + simple), and `token` a prefix token as tsquery text (`'>mak'`) or ''. The token
-- is cast, not parsed: the parser would drop its `>`.
CREATE FUNCTION atoitalk_search_query(words text, token text) RETURNS tsquery
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    AS $$ SELECT CASE WHEN token = '' THEN atoitalk_search_query(words)
                      WHEN words = '' THEN token::tsquery
                      ELSE atoitalk_search_query(words) && token::tsquery END $$;

REINDEX INDEX messages_search_idx;

-- The expression statistics (messages_search_doc_stats) now describe the new documents.
ANALYZE messages;

-- The caller's chats, for the global search's intersection with the document index: the
-- bitmap of a viewer's 500 chats (50,000 messages on the bench) was 5.0 ms from
-- messages_chat_id_id_idx (one 24-byte entry per message: 67 MiB per million) and is 3.4 ms
-- from this one (deduplicated: one posting list per chat, 7 MiB per million). One more
-- index entry per sent message.
CREATE INDEX messages_chat_id_idx ON messages (chat_id);
