-- Extension (issue 17): statistics on the search document, so the planner knows how common
-- each word of a search is.
--
-- messages_search_idx is a partial expression index, and PostgreSQL ignores the statistics
-- of partial indexes when estimating (they do not describe the whole table), so every search
-- was estimated at a fixed guess (2 % of the messages) whether the word was in 37 % of them
-- or in 0.06 %. With these expression statistics (the lexemes' frequencies, as ANALYZE
-- collects them for a tsvector column) the estimate follows the word (measured on the
-- bench's million messages: `yang` 372,676 estimated / 372,977 actual, `kata4321` 783 / 584),
-- and the global search can choose per search between walking the newest messages until it
-- has a page (a common word) and intersecting the index with the caller's chats (a rarer
-- one) - see src/messages/search/repo.rs and bench/README.md. No table rewrite, nothing
-- stored per row; ANALYZE (autovacuum's too) computes the document for its sample.
CREATE STATISTICS messages_search_doc_stats ON (atoitalk_search_doc(content)) FROM messages;

ANALYZE messages;
