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
-- unaccent and btree_gin are contrib modules, like pg_trgm the initial schema already needs
-- (Debian's postgresql package ships them). unaccent() is only STABLE (its dictionary could
-- change), so an index cannot call it; the wrappers below name the dictionary explicitly
-- (independent of search_path) and are declared IMMUTABLE, which is true as long as nobody
-- edits unaccent.rules (after such an edit: REINDEX INDEX messages_search_idx).
CREATE EXTENSION IF NOT EXISTS unaccent WITH SCHEMA public;
CREATE EXTENSION IF NOT EXISTS btree_gin WITH SCHEMA public;

CREATE FUNCTION atoitalk_unaccent(text) RETURNS text
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    AS $$ SELECT public.unaccent('public.unaccent'::regdictionary, $1) $$;

-- The indexed document of a message, and the query of a search string already written as
-- tsquery text by the application (quoted lexemes, `&`, `:*` on the last one).
CREATE FUNCTION atoitalk_search_doc(text) RETURNS tsvector
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    AS $$ SELECT to_tsvector('pg_catalog.simple'::regconfig, atoitalk_unaccent($1)) $$;

CREATE FUNCTION atoitalk_search_query(text) RETURNS tsquery
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    AS $$ SELECT to_tsquery('pg_catalog.simple'::regconfig, atoitalk_unaccent($1)) $$;

-- An expression index (no stored column: the table stays as wide as it was, and adding it
-- does not rewrite `messages`). Composite (btree_gin): chat_id first, so both the per-chat
-- search and the global one (chat_id = ANY(the caller's readable chats)) intersect the
-- chat's entries with the words' inside the index, and never read matches of chats the
-- caller cannot see. Partial: only live text is searchable (a soft delete clears content).
-- fastupdate off: a search never has to scan an unmerged pending list, so its latency does
-- not depend on recent writes; each send pays for its index entries at once instead.
CREATE INDEX messages_search_idx ON messages
    USING gin (chat_id, atoitalk_search_doc(content))
    WITH (fastupdate = off)
    WHERE deleted_at IS NULL AND content IS NOT NULL;
