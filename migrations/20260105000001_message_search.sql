-- Extension (issue 17): full-text search over message text.
--
-- Configuration: `simple` (lower-casing only: no stemming, no stop words) over unaccented
-- text. Chats mix Indonesian and English, often within one message, and no configuration
-- fits both: PostgreSQL has no Indonesian stemmer (Indonesian inflects with prefixes,
-- suffixes and reduplication: "makan", "makanan", "dimakan", "makan-makan"), and the english
-- one cuts English suffixes off Indonesian words, merging unrelated ones ("keras" (hard)
-- becomes "kera" (monkey), "jelas" -> "jela", "panas" -> "pana"), while its stop words drop
-- "a", "it", "on", "is", which are ordinary words (or prefixes of them) here. `simple`
-- treats both languages alike, unaccent folds the accents users leave out ("café" =
-- "cafe"), and prefix matching of the last word stands in for stemming as users type.
--
--
-- unaccent is a contrib module, like pg_trgm which the initial schema already needs (Debian's
-- postgresql package ships them). unaccent() is only STABLE (its dictionary could change), so
-- an index cannot call it; the wrapper below names the dictionary explicitly (independent of
-- search_path) and is declared IMMUTABLE, which holds as long as nobody edits unaccent.rules
-- (after such an edit: REINDEX INDEX messages_search_idx).
CREATE EXTENSION IF NOT EXISTS unaccent WITH SCHEMA public;

CREATE FUNCTION atoitalk_unaccent(text) RETURNS text
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    AS $$ SELECT public.unaccent('public.unaccent'::regdictionary, $1) $$;

-- The indexed document of a message, and the query of a search text that the application
-- already wrote as tsquery text (quoted words of letters and digits, `&`, `:*` on the last).
CREATE FUNCTION atoitalk_search_doc(text) RETURNS tsvector
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    AS $$ SELECT to_tsvector('pg_catalog.simple'::regconfig, atoitalk_unaccent($1)) $$;

CREATE FUNCTION atoitalk_search_query(text) RETURNS tsquery
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    AS $$ SELECT to_tsquery('pg_catalog.simple'::regconfig, atoitalk_unaccent($1)) $$;

-- An expression index (no stored column: the table stays as wide as it was, and adding it
-- does not rewrite `messages`). Partial: only live text is searchable (a soft delete clears
-- content). fastupdate off: a search never scans an unmerged pending list, so its latency
-- does not depend on recent writes; each send pays for its index entries at once instead.
--
-- Deliberately on the document alone. Measured on the bench's million messages (see
-- bench/README.md): a composite (chat_id, document) GIN index (btree_gin) serves one chat
-- well but makes a search over a user's 500 chats 500 index scans (0.2 s for a rare word,
-- seconds for a common prefix); tagging every lexeme with its chat made the index ten times
-- larger and each of the 500 lookups slow. With the document alone, one chat is a BitmapAnd
-- with messages_chat_id_id_idx (or a walk of that chat's rows), and a global search is one
-- scan of this index intersected with the caller's chats.
CREATE INDEX messages_search_idx ON messages
    USING gin (atoitalk_search_doc(content))
    WITH (fastupdate = off)
    WHERE deleted_at IS NULL AND content IS NOT NULL;
