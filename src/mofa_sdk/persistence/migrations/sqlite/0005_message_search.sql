-- 0005: full-text search over message content (`Store.search_messages`, `mofa sessions search`).
-- An FTS5 index over entity_message itself (external content: no second copy of the text), kept by
-- triggers; queries join back to entity_message and scope by tenant and user there. Diacritics are kept,
-- as the other stores keep them. A later migration that rebuilds entity_message (new rowids) must run
-- INSERT INTO entity_message_fts (entity_message_fts) VALUES ('rebuild') afterwards.
CREATE VIRTUAL TABLE IF NOT EXISTS entity_message_fts USING fts5(
    content, content = 'entity_message', tokenize = 'unicode61 remove_diacritics 0'
);

INSERT INTO entity_message_fts (entity_message_fts) VALUES ('rebuild');

CREATE TRIGGER IF NOT EXISTS entity_message_fts_insert AFTER INSERT ON entity_message BEGIN
    INSERT INTO entity_message_fts (rowid, content) VALUES (new.rowid, new.content);
END;

CREATE TRIGGER IF NOT EXISTS entity_message_fts_update AFTER UPDATE OF content ON entity_message BEGIN
    INSERT INTO entity_message_fts (entity_message_fts, rowid, content) VALUES ('delete', old.rowid, old.content);
    INSERT INTO entity_message_fts (rowid, content) VALUES (new.rowid, new.content);
END;

CREATE TRIGGER IF NOT EXISTS entity_message_fts_delete AFTER DELETE ON entity_message BEGIN
    INSERT INTO entity_message_fts (entity_message_fts, rowid, content) VALUES ('delete', old.rowid, old.content);
END;
