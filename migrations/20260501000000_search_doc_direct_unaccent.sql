-- Performance (issue 21): the search document calls unaccent() directly.
--
-- `atoitalk_unaccent` is a SQL function around unaccent(), declared IMMUTABLE while its body
-- is only STABLE, so the planner never inlines it. Called from the plpgsql document below, it
-- was run as its own SQL-function query, planned afresh in every transaction: one plan and one
-- execution (about 21 us together) per sent message, next to a document that costs ~20 us.
-- A direct call is part of plpgsql's simple expression and is planned once per connection.
--
-- The document is the same text for every message (the same unaccent call with the same
-- dictionary, named independently of search_path), so messages_search_idx stays valid and is
-- not rebuilt.
CREATE OR REPLACE FUNCTION atoitalk_search_doc(text) RETURNS tsvector
    LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE COST 1000
    AS $$
DECLARE
    doc tsvector := to_tsvector('pg_catalog.simple'::regconfig,
                                public.unaccent('public.unaccent'::regdictionary, $1));
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
