-- A session's settings (how it is answered) and their changes move out of the user's metadata, where the
-- library kept them under the keys "settings" and "settings_changes", into columns of their own. Existing
-- values are moved: a setting of the wrong type is dropped (a migration must not fail on odd data), and each
-- old change entry {"at", "changed": {key: {"from", "to"}}} becomes one {"at", "key", "old", "new"} per key.
ALTER TABLE entity_session
    ADD COLUMN settings json,
    ADD COLUMN settings_changes json NOT NULL DEFAULT '[]'::json;

UPDATE entity_session s SET
    settings = (
        SELECT json_object_agg(e.key, e.value)
        FROM json_each(CASE WHEN json_typeof(s.metadata -> 'settings') = 'object' THEN s.metadata -> 'settings' END) e
        WHERE (e.key IN ('agent', 'provider', 'model', 'system_prompt') AND json_typeof(e.value) IN ('string', 'null'))
            OR (e.key = 'window' AND (json_typeof(e.value) = 'null' OR (json_typeof(e.value) = 'number'
                AND CASE WHEN e.value::text ~ '^[0-9]{1,10}$' THEN e.value::text::bigint <= 2147483647 END)))
            OR (e.key = 'max_tokens' AND json_typeof(e.value) IN ('null', 'number')
                AND CASE WHEN e.value::text = 'null' THEN true
                    WHEN e.value::text ~ '^[0-9]{1,10}$' THEN e.value::text::bigint BETWEEN 1 AND 2147483647 END)
    ),
    settings_changes = COALESCE((
        SELECT json_agg(json_build_object('at', c.value ->> 'at', 'key', k.key, 'old', k.value -> 'from',
                                          'new', k.value -> 'to') ORDER BY c.n, k.n)
        FROM json_array_elements(CASE WHEN json_typeof(s.metadata -> 'settings_changes') = 'array'
                                      THEN s.metadata -> 'settings_changes' END) WITH ORDINALITY AS c (value, n)
        CROSS JOIN LATERAL json_each(CASE WHEN json_typeof(c.value) = 'object'
                                               AND json_typeof(c.value -> 'changed') = 'object'
                                          THEN c.value -> 'changed' END) WITH ORDINALITY AS k (key, value, n)
        WHERE json_typeof(k.value) = 'object'
            -- a time the entity can read: ISO 8601, and a day its month has (CASE: the cast only after the match)
            AND CASE WHEN json_typeof(c.value -> 'at') = 'string' AND (c.value ->> 'at') ~ '^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])[T ]([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,6})?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])?$'
                     AND substr(c.value ->> 'at', 1, 4) <> '0000'
                THEN to_char((substr(c.value ->> 'at', 1, 7) || '-01')::date
                             + (substr(c.value ->> 'at', 9, 2)::int - 1), 'YYYY-MM-DD') = substr(c.value ->> 'at', 1, 10)
                ELSE false END
    ), '[]'::json),
    metadata = COALESCE((
        SELECT json_object_agg(e.key, e.value) FROM json_each(s.metadata) e
        WHERE e.key NOT IN ('settings', 'settings_changes')
    ), '{}'::json)
WHERE json_typeof(s.metadata) = 'object'
    AND (s.metadata -> 'settings' IS NOT NULL OR s.metadata -> 'settings_changes' IS NOT NULL);
