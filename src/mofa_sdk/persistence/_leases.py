# ruff: noqa: S608  (only fixed fragments and generated placeholder names are interpolated; values are bound)
"""Session leases: one turn per session, decided by the database (migration 0012).

A session row names the run that holds it (``active_run_id``, the id of the reply it writes) and until when
(``active_until``). A turn claims its session with one conditional UPDATE: it wins when the session is free,
already its own, or its holder's lease has run out, so two processes (or two requests of one) can never both
start a turn. The owner renews the leases of all its live runs with one statement per interval, whatever its
providers do; the end of the turn releases the session. A lease nobody renews ends by itself: a dead
process holds a session at most ``lease_seconds`` after its last renewal.

A reply row still ``streaming`` whose last checkpoint is older than the store's lease reads ``interrupted``
unless its session's lease is live: a silent provider never makes a live reply look dead.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "CLAIM_SQL", "HOLDER_SQL", "RELEASE_SQL", "RUN_HOLDER_SQL", "SWEEP_REPLIES_SQL", "SWEEP_SESSIONS_SQL", "in_list",
    "live_sessions_sql", "renew_sql",
]

_SESSION = "id = :session_id AND tenant_id = :tenant_id"

#: the claim: free, already this run's, or a lease that ran out
CLAIM_SQL = (
    "UPDATE entity_session SET active_run_id = :run_id, active_until = :until"
    f" WHERE {_SESSION} AND (active_run_id IS NULL OR active_run_id = :run_id OR active_until IS NULL"
    " OR active_until < :now) RETURNING id"
)
#: who holds a session now (a lease still running)
HOLDER_SQL = f"SELECT active_run_id FROM entity_session WHERE {_SESSION} AND active_until >= :now"
RELEASE_SQL = (
    "UPDATE entity_session SET active_run_id = NULL, active_until = NULL WHERE"
    f" {_SESSION} AND active_run_id = :run_id"
)
#: the session a run of this tenant and user holds now
RUN_HOLDER_SQL = (
    "SELECT id FROM entity_session WHERE active_run_id = :run_id AND tenant_id = :tenant_id"
    " AND user_id = :user_id AND active_until >= :now"
)


#: the replies left ``streaming`` on sessions whose lease ran out (their process is gone) become ``interrupted``
SWEEP_REPLIES_SQL = (
    "UPDATE entity_message SET status = 'interrupted', update_time = :now WHERE status = 'streaming'"
    " AND session_id IN (SELECT id FROM entity_session WHERE active_run_id IS NOT NULL AND active_until < :cutoff)"
)
#: ... and those sessions are free (in the same transaction)
SWEEP_SESSIONS_SQL = (
    "UPDATE entity_session SET active_run_id = NULL, active_until = NULL"
    " WHERE active_run_id IS NOT NULL AND active_until < :cutoff"
)


def in_list(prefix: str, values: Sequence[object]) -> tuple[str, dict[str, object]]:
    """``(:p0, :p1, …)`` and its parameters: both dialects take it (SQLite has no arrays)."""
    names = [f"{prefix}{i}" for i in range(len(values))]
    return "(" + ", ".join(f":{n}" for n in names) + ")", dict(zip(names, values, strict=True))


def live_sessions_sql(ids: str) -> str:
    """Which of the sessions ``ids`` (an :func:`in_list`) have a live lease."""
    return f"SELECT id FROM entity_session WHERE tenant_id = :tenant_id AND id IN {ids} AND active_until >= :now"


def renew_sql(ids: str, *, per_tenant: bool) -> str:
    """Extend the leases of the runs ``ids`` (an :func:`in_list`); returns the runs that still hold one."""
    tenant = " AND tenant_id = :tenant_id" if per_tenant else ""
    return (f"UPDATE entity_session SET active_until = :until WHERE active_run_id IN {ids}{tenant}"
            " RETURNING active_run_id")
