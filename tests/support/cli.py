"""Running the ``mofa`` app in tests. ``Cli(...)(*args)`` runs it through typer's CliRunner in a worker
thread, so the servers the tests talk to (the fault server, the llama.cpp proxy) keep running on the test
loop meanwhile."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from typer.testing import CliRunner, Result

from mofa_sdk.cli import app
from mofa_sdk.persistence import Store, connect_store

#: environment the CLI must not pick up from the developer's shell
_CLEAR = ("OPENAI_API_KEY", "OPENAI_BASE_URL", "OPENAI_MODEL", "MOFA_SECRET_KEY", "AGENT_CODE", "SESSION_ID")


@dataclass
class Cli:
    db_url: str
    tenant: uuid.UUID
    user: uuid.UUID

    @property
    def env(self) -> dict[str, str | None]:
        env: dict[str, str | None] = {k: None for k in _CLEAR}
        env.update(
            DATABASE_URL=self.db_url, TENANT_ID=str(self.tenant), USER_ID=str(self.user), COLUMNS="200"
        )
        return env

    async def __call__(
        self, *args: str, input: str | None = None, env: Mapping[str, str | None] | None = None
    ) -> Result:
        merged = {**self.env, **(env or {})}
        runner = CliRunner()
        return await asyncio.to_thread(runner.invoke, app, list(args), input=input, env=merged)

    async def store(self) -> Store:
        return await connect_store(self.db_url)


async def messages_of(cli: Cli, session_id: uuid.UUID | str) -> list[Any]:
    store = await cli.store()
    try:
        return await store.get_session_messages(cli.tenant, uuid.UUID(str(session_id)))
    finally:
        await store.close()


def session_id_in(text: str) -> str:
    """The id from the ``session <uuid>`` line the chat prints when it starts."""
    import re

    m = re.search(r"session ([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})", text)
    assert m is not None, text
    return m.group(1)


def one_error_line(result: Result) -> str:
    """A user mistake: non-zero exit, no traceback, exactly one line on stderr, starting with ``error:``."""
    assert result.exit_code not in (0, None), result.output
    assert "Traceback" not in result.output
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit), repr(
        result.exception
    )
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), lines[0]
    return lines[0]
