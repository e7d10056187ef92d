"""A reply whose final write fails is not lost with its run: the service keeps it (the plugin's ``pending``)
and writes it once the database answers again, though no next turn of that plugin will ever come."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from mofa_sdk.entities import LLMApiCall, QueryFilter, Session
from mofa_sdk.errors import DatabaseUnavailableError
from mofa_sdk.llm import ScriptedProvider
from mofa_sdk.persistence import InMemoryStore
from mofa_sdk.server import ServeConfig
from mofa_sdk.server.runs import LocalBus, Principal, RunRegistry


class OutageStore(InMemoryStore):
    """The database is away for the first ``outage`` api-call writes (the reply's final transaction)."""

    outage = 2

    async def save_api_call(self, call: LLMApiCall, *, tx: Any = None) -> LLMApiCall:
        if self.outage:
            self.outage -= 1
            raise DatabaseUnavailableError("saving the api call: the database went away")
        return await super().save_api_call(call, tx=tx)


async def test_a_reply_whose_final_write_failed_is_written_later() -> None:
    store = OutageStore()
    registry = RunRegistry(store, LocalBus(), ScriptedProvider("Hello there, friend."),
                           ServeConfig(unsaved_retry_seconds=0.05))
    who = Principal(uuid.uuid4(), uuid.uuid4(), uuid.uuid4())
    session = await store.create_session(Session(tenant_id=who.tenant_id, user_id=who.user_id))
    try:
        run = await registry.start_run(who, session, "hi")
        assert await run.wait_finished(10)
        assert run.terminal is not None and run.terminal.kind == "error"
        assert run.terminal.error is not None and run.terminal.error.code == "unsaved_reply"
        for _ in range(200):  # the retry loop, not a timing assertion: it just has to happen
            if not registry.unsaved:
                break
            await asyncio.sleep(0.02)
        assert not registry.unsaved and store.outage == 0
        reply = await store.get_message(who.tenant_id, run.id)
        assert reply is not None and reply.status == "complete" and reply.content == "Hello there, friend."
        calls = await store.query_api_calls(QueryFilter(tenant_id=who.tenant_id, session_id=session.id))
        assert [c.response_message_id for c in calls] == [run.id] and calls[0].status == "success"
    finally:
        await registry.close()
