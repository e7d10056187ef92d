-- One turn per session, decided by the database: the run that holds a session (its reply's id) and until
-- when (its lease). A turn claims the session with one conditional UPDATE (free, or its lease expired); the
-- owning process renews the leases of all its live runs in one statement per interval; the end releases it.
ALTER TABLE entity_session ADD COLUMN active_run_id TEXT;
ALTER TABLE entity_session ADD COLUMN active_until TEXT;

-- renewals and "who holds run R" look sessions up by their run; few sessions hold one at a time
CREATE INDEX IF NOT EXISTS entity_session_active_run_idx ON entity_session (active_run_id)
    WHERE active_run_id IS NOT NULL;
