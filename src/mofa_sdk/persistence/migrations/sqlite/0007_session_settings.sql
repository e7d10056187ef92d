-- A session's settings (how it is answered) and their changes move out of the user's metadata, where the
-- library kept them under the keys "settings" and "settings_changes", into columns of their own. Existing
-- values are moved: a setting of the wrong type is dropped (a migration must not fail on odd data), and each
-- old change entry {"at", "changed": {key: {"from", "to"}}} becomes one {"at", "key", "old", "new"} per key.
ALTER TABLE entity_session ADD COLUMN settings TEXT;
ALTER TABLE entity_session ADD COLUMN settings_changes TEXT NOT NULL DEFAULT '[]';

UPDATE entity_session SET
    settings = (
        SELECT json_group_object(e.key, e.value)
        FROM json_each(CASE WHEN json_type(entity_session.metadata, '$.settings') = 'object'
                            THEN entity_session.metadata -> '$.settings' END) e
        WHERE (e.key IN ('agent', 'provider', 'model', 'system_prompt') AND e.type IN ('text', 'null'))
            OR (e.key = 'window' AND (e.type = 'null' OR (e.type = 'integer' AND e.value BETWEEN 0 AND 2147483647)))
            OR (e.key = 'max_tokens' AND (e.type = 'null' OR (e.type = 'integer' AND e.value BETWEEN 1 AND 2147483647)))
        HAVING count(*) > 0
    ),
    settings_changes = COALESCE((
        SELECT json_group_array(json_object('at', c.value ->> '$.at', 'key', k.key, 'old', k.value -> '$.from',
                                            'new', k.value -> '$.to'))
        FROM (SELECT value, type, id FROM json_each(CASE WHEN json_type(entity_session.metadata, '$.settings_changes')
                                                         = 'array' THEN entity_session.metadata -> '$.settings_changes' END)
              ORDER BY id) c
        -- CASE, not AND: a JSON function is only applied to an element once it is known to be an object
        JOIN json_each(CASE WHEN c.type = 'object' THEN CASE WHEN json_type(c.value, '$.changed') = 'object'
                                                             THEN c.value -> '$.changed' END END) k
        WHERE k.type = 'object' AND CASE WHEN c.type = 'object' THEN
            -- a time the entity can read: ISO 8601 (datetime() alone takes 24:00, 02-30 and " +00:00")
            json_type(c.value, '$.at') = 'text'
            AND c.value ->> '$.at' GLOB '[0-9][0-9][0-9][0-9]-[01][0-9]-[0-3][0-9][T ][0-2][0-9]:[0-5][0-9]:[0-5][0-9]*'
            AND substr(c.value ->> '$.at', 1, 4) <> '0000'
            AND date(substr(c.value ->> '$.at', 1, 10), '+0 days') IS substr(c.value ->> '$.at', 1, 10)
            AND CAST(substr(c.value ->> '$.at', 12, 2) AS INTEGER) < 24
            AND datetime(c.value ->> '$.at') IS NOT NULL
            AND instr(substr(c.value ->> '$.at', 20), ' ') = 0
            ELSE 0 END
    ), '[]'),
    metadata = json_remove(entity_session.metadata, '$.settings', '$.settings_changes')
WHERE CASE WHEN json_valid(metadata) THEN json_type(metadata) = 'object'
    AND (json_type(metadata, '$.settings') IS NOT NULL OR json_type(metadata, '$.settings_changes') IS NOT NULL)
    ELSE 0 END;
