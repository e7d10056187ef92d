"""The app in this process: its errors take the shape of the API a path belongs to, whatever raised them (the
auth and body-limit middlewares, routing, validation, a route); its dependencies need its lifespan."""

from __future__ import annotations

import uuid

import httpx2

from mofa_sdk.llm import ScriptedProvider
from mofa_sdk.persistence import InMemoryStore
from mofa_sdk.server import create_app
from tests.server.support import InProcess, auth, make_key

NATIVE = {"code", "message", "type", "param"}


def _openai(r: httpx2.Response, status: int, code: str | None = None) -> dict[str, object]:
    assert r.status_code == status, (r.status_code, r.text)
    body = r.json()
    assert list(body) == ["error"] and list(body["error"]) == ["message", "type", "param", "code"], body
    if code is not None:
        assert body["error"]["code"] == code, body
    return body["error"]  # type: ignore[no-any-return]


def _native(r: httpx2.Response, status: int, code: str | None = None) -> dict[str, object]:
    assert r.status_code == status, (r.status_code, r.text)
    body = r.json()
    assert list(body) == ["error"] and list(body["error"]) == ["code", "message", "type", "param"], body
    if code is not None:
        assert body["error"]["code"] == code, body
    return body["error"]  # type: ignore[no-any-return]


async def test_every_error_takes_its_apis_shape(in_app: InProcess) -> None:
    c, base = in_app.client, in_app.url
    key, _ = await make_key(in_app.db)
    # 401 from the auth middleware
    assert _openai(await c.get(f"{base}/v1/conversations/conv_x"), 401, "invalid_api_key")["type"] == \
        "invalid_request_error"
    _openai(await c.post(f"{base}/v1/responses", json={"input": "x"}), 401, "invalid_api_key")
    assert _native(await c.get(f"{base}/v1/sessions"), 401, "unauthorized")["type"] == "authentication_error"
    # 413 from the body limit
    big = {"input": "x" * 1_100_000}
    _openai(await c.post(f"{base}/v1/responses", json=big, headers=auth(key)), 413, "body_too_large")
    _native(await c.post(f"{base}/v1/sessions", json={"title": "x" * 1_100_000}, headers=auth(key)), 413,
            "body_too_large")
    # 404 and 405 from routing
    _openai(await c.get(f"{base}/v1/models/a/b/c", headers=auth(key)), 404, "not_found")
    _openai(await c.put(f"{base}/v1/conversations", headers=auth(key)), 405, "method_not_allowed")
    _native(await c.put(f"{base}/v1/sessions", headers=auth(key)), 405, "method_not_allowed")
    # validation: OpenAI's 400 naming the field, the native 422
    err = _openai(await c.post(f"{base}/v1/conversations", json={"items": [{"role": "robot", "content": "x"}]},
                               headers=auth(key)), 400)
    assert err["param"] == "items[0].role", err
    err = _openai(await c.post(f"{base}/v1/responses", json={"input": "x", "frobnicate": 1}, headers=auth(key)), 400,
                  "unknown_parameter")
    assert err["param"] == "frobnicate", err
    _openai(await c.get(f"{base}/v1/conversations/conv_{uuid.uuid4().hex}/items?limit=0", headers=auth(key)), 400)
    _native(await c.get(f"{base}/v1/sessions?limit=0", headers=auth(key)), 422, "invalid_request")
    err = _native(await c.post(f"{base}/v1/sessions", json={"frobnicate": 1}, headers=auth(key)), 422,
                  "invalid_request")
    assert err["param"] == "frobnicate", err
    # a library error raised by a route
    _openai(await c.get(f"{base}/v1/responses/resp_{uuid.uuid4().hex}", headers=auth(key)), 404, "not_found")
    _native(await c.get(f"{base}/v1/sessions/{uuid.uuid4()}", headers=auth(key)), 404, "not_found")


async def test_routes_answer_503_before_the_lifespan_has_started() -> None:
    """The typed dependencies read the services the lifespan made: none yet is a clear 503, never a crash."""
    app = create_app(store=InMemoryStore(), provider=ScriptedProvider("hi"))
    async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url="http://t") as client:
        r = await client.get("/healthz")
        assert r.status_code == 503 and "not started" in r.json()["error"]["message"]
