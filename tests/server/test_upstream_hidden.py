"""Where the upstream lives is internal to the deployment (issue 23): no client body, event stream or log line
of a failed turn names the provider's base URL, through Chat Completions, Responses and the native API."""

from __future__ import annotations

import logging
import socket
from pathlib import Path

import pytest

from mofa_sdk.llm import OpenAICompatibleProvider
from mofa_sdk.persistence import connect_store
from mofa_sdk.server import ServeConfig
from tests.server.support import auth, in_process, make_key
from tests.support.fault_server import FaultServer, Reply


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("case", ["unreachable", "500 echoing its URL"])
async def test_no_body_stream_or_log_line_names_the_upstream(
    case: str, fault: FaultServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    port = _closed_port() if case == "unreachable" else fault.port
    base = f"http://127.0.0.1:{port}/v1"
    provider = OpenAICompatibleProvider(base_url=base, api_key="sk-upstream-key-0000", max_retries=0)
    db = f"sqlite:///{tmp_path / 'app.db'}"
    store = await connect_store(db)
    bodies: list[str] = []
    try:
        async with in_process(store, provider, db, ServeConfig(max_reply_chars=None)) as app:
            key, _ = await make_key(db)
            c, h = app.client, auth(key)
            sid = (await c.post(f"{app.url}/v1/sessions", json={}, headers=h)).json()["id"]
            requests = [
                ("/v1/chat/completions", {"model": "m", "messages": [{"role": "user", "content": "hi"}]}),
                ("/v1/chat/completions", {"model": "m", "messages": [{"role": "user", "content": "hi"}],
                                          "stream": True}),
                ("/v1/responses", {"model": "m", "input": "hi"}),
                ("/v1/responses", {"model": "m", "input": "hi", "stream": True}),
                (f"/v1/sessions/{sid}/messages", {"content": "hi", "stream": False}),
                (f"/v1/sessions/{sid}/messages", {"content": "hi", "stream": True}),
            ]
            for path, body in requests:
                if case != "unreachable":
                    fault.push(Reply(status=500, error_body={"error": {"message": f"upstream {base} is down"}}))
                r = await c.post(f"{app.url}{path}", json=body, headers=h)
                bodies.append(f"{path} {r.status_code} {r.text}")
    finally:
        await store.close()
    text = "\n".join(bodies)
    # each failed: an error the client can read (a 502, or an error event in the stream)
    assert text.count("openai-compatible provider") >= len(bodies), text
    assert "127.0.0.1" not in text and str(port) not in text.replace(sid, ""), text
    # the database driver's DEBUG log echoes every value written, the session's recorded provider label (which
    # names the upstream for `mofa` commands and is never sent to a client) among them: not the service's log
    logged = "\n".join(f"{r.name} {r.getMessage()} {r.exc_text or ''}" for r in caplog.records
                       if not r.name.startswith(("aiosqlite", "psycopg")))
    assert "openai-compatible provider" in logged or "HTTP Request" in logged or case == "unreachable"
    assert f"127.0.0.1:{port}" not in logged and "host='127.0.0.1'" not in logged, logged
