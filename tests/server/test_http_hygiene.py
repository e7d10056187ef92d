"""Connection and request hygiene of ``mofa serve`` (issue 24): a deadline for a request's headers, a connection
cap answered with a clean 503 and no log flood; no key from a query string in the access log; body limits on
every method."""

from __future__ import annotations

import asyncio

import httpx2
import pytest

from tests.server.support import InProcess, Launcher, auth, make_key

pytestmark = pytest.mark.slow


async def _read_all(reader: asyncio.StreamReader) -> bytes:
    return await asyncio.wait_for(reader.read(), 20)  # until the server closes (a bound, not a measure)


async def test_slow_headers_get_408_and_extra_connections_a_503(launcher: Launcher, sqlite_url: str) -> None:
    server = await launcher.scripted(sqlite_url, "--header-timeout", "1", "--max-connections", "20")
    before = server.log.read_text().count("\n")
    held = [await asyncio.open_connection("127.0.0.1", server.port) for _ in range(30)]
    for _, writer in held:  # a request line and a header, never the blank line that ends them
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        await writer.drain()
    answers = await asyncio.gather(*(_read_all(reader) for reader, _ in held))
    for _, writer in held:
        writer.close()
    slow = [a for a in answers if a.startswith(b"HTTP/1.1 408 ")]
    busy = [a for a in answers if a.startswith(b"HTTP/1.1 503 ")]
    assert len(slow) + len(busy) == 30 and len(busy) >= 10, answers[:3]
    assert b'"code": "request_timeout"' in slow[0] and b'"code": "unavailable"' in busy[0]
    async with httpx2.AsyncClient(timeout=10) as client:  # the service is there for everyone else
        assert (await client.get(f"{server.url}/healthz")).status_code == 200
    assert server.log.read_text().count("\n") - before <= 4  # counted, not one line per connection


async def test_query_string_keys_stay_out_of_the_access_log_and_every_body_is_limited(
    launcher: Launcher, sqlite_url: str
) -> None:
    server = await launcher.mofa_serve(sqlite_url, "--max-body-bytes", "2048")
    key, _ = await make_key(sqlite_url)
    async with httpx2.AsyncClient(timeout=10) as client:
        r = await client.get(f"{server.url}/v1/sessions?api_key={key}&limit=5&x_token=tok-123", headers=auth(key))
        assert r.status_code == 200
        for method in ("GET", "DELETE", "POST"):
            r = await client.request(method, f"{server.url}/v1/sessions", content=b"x" * 5000,
                                     headers={**auth(key), "content-type": "application/json"})
            assert r.status_code == 413 and r.json()["error"]["code"] == "body_too_large", (method, r.text)
    await asyncio.sleep(0.5)  # the access log line is written after the response
    log = server.log.read_text()
    assert "api_key=***&limit=5&x_token=***" in log, log[-2000:]
    assert key not in log and "tok-123" not in log


DEEP = "[" * 100_000 + "]" * 100_000


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/responses", "/v1/conversations", "conv-items",
                                  "conv-update"])
async def test_deep_json_and_unencodable_text_are_400_on_the_openai_views(in_app: InProcess, path: str) -> None:
    """Items 8 and 12: a body nested 100,000 deep, and a lone surrogate in a field, answer 400 (never 500 or
    422) on Chat Completions, Responses and the Conversations write routes."""
    client, base = in_app.client, in_app.url
    key, _ = await make_key(in_app.db)
    h = {**auth(key), "content-type": "application/json"}
    conv = (await client.post(f"{base}/v1/conversations", json={}, headers=auth(key))).json()["id"]
    target, text_body = {
        "/v1/chat/completions": (path, '{"model": "m", "messages": [{"role": "user", "content": "a\\ud800"}]}'),
        "/v1/responses": (path, '{"input": "a\\ud800b"}'),
        "/v1/conversations": (path, '{"metadata": {"k": "\\udc00"}}'),
        "conv-items": (f"/v1/conversations/{conv}/items", '{"items": [{"role": "user", "content": "\\ud800"}]}'),
        "conv-update": (f"/v1/conversations/{conv}", '{"metadata": {"k": "\\ud800"}}'),
    }[path]
    for body in (DEEP, text_body):
        r = await client.post(f"{base}{target}", content=body.encode(), headers=h)
        assert r.status_code == 400, (target, r.text[:300])
        assert r.json()["error"]["type"] == "invalid_request_error"
