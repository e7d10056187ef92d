"""``POST /v1/completions`` (legacy Completions, what LlamaIndex's ``OpenAILike`` calls) with the official ``openai``
client: whole and streamed, the prompt saved as the user message with the reply, refusals naming the field."""

from __future__ import annotations

import uuid

import openai
import pytest

from mofa_sdk.persistence import connect_store
from tests.server.support import InProcess, auth, make_key, openai_client, reply_of


async def _rows(db: str, tenant: uuid.UUID, sid: str) -> list[tuple[str, str, str]]:
    store = await connect_store(db)
    try:
        return [(m.role, m.content, m.status) for m in await store.get_session_messages(tenant, uuid.UUID(sid))]
    finally:
        await store.close()


async def test_a_completion_whole_and_streamed(in_app: InProcess) -> None:
    key, row = await make_key(in_app.db)
    oa = openai_client(in_app.url, key, in_app.transport)
    raw = await oa.completions.with_raw_response.create(model="m", prompt="Say hi words=3", max_tokens=20,
                                                        temperature=0.2)
    out = raw.parse()
    assert out.object == "text_completion" and out.id.startswith("cmpl-") and out.model == "m"
    assert out.choices[0].text == reply_of(3) and out.choices[0].finish_reason == "stop"
    assert out.choices[0].index == 0 and out.usage is not None and out.usage.total_tokens > 0
    sid = raw.headers["x-mofa-session-id"]
    assert await _rows(in_app.db, row.tenant_id, sid) == [
        ("user", "Say hi words=3", "complete"), ("assistant", reply_of(3), "complete")]

    stream = await oa.completions.create(model="m", prompt=["Stream it words=4"], stream=True,
                                         stream_options={"include_usage": True})
    chunks = [c async for c in stream]
    assert all(c.object == "text_completion" for c in chunks) and len({c.id for c in chunks}) == 1
    assert "".join(c.choices[0].text for c in chunks if c.choices) == reply_of(4)
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    # the prompt was sent alone, as the one user message (the echo keyword replies with what was sent)
    echoed = await oa.completions.create(model="m", prompt="echo", echo=True)
    assert echoed.choices[0].text == "echo" + "user: echo\n"


async def test_the_stream_ends_with_done_and_a_session_header_continues(in_app: InProcess) -> None:
    key, row = await make_key(in_app.db)
    sid = str(uuid.uuid4())
    h = auth(key) | {"X-Mofa-Session-Id": sid}
    r = await in_app.client.post(f"{in_app.url}/v1/completions", headers=h,
                                 json={"model": "m", "prompt": "one words=1", "stream": True})
    assert r.status_code == 200 and r.text.rstrip().endswith("data: [DONE]")
    r = await in_app.client.post(f"{in_app.url}/v1/completions", headers=h,
                                 json={"model": "m", "prompt": "two words=1"})
    assert r.status_code == 200 and r.headers["x-mofa-session-id"] == sid
    assert [c for _, c, _ in await _rows(in_app.db, row.tenant_id, sid)] == [
        "one words=1", reply_of(1), "two words=1", reply_of(1)]


@pytest.mark.parametrize(("body", "param"), [
    ({"prompt": ["a", "b"]}, "prompt"),
    ({"prompt": [1, 2, 3]}, "prompt"),
    ({"prompt": "   "}, "prompt"),
    ({"prompt": "x", "suffix": "y"}, "suffix"),
    ({"prompt": "x", "logprobs": 2}, "logprobs"),
    ({"prompt": "x", "n": 2}, "n"),
])
async def test_what_a_chat_model_cannot_do_is_refused(in_app: InProcess, body: dict[str, object], param: str) -> None:
    key, row = await make_key(in_app.db)
    oa = openai_client(in_app.url, key, in_app.transport)
    with pytest.raises(openai.BadRequestError) as err:
        await oa.completions.create(model="m", **body)  # type: ignore[call-overload]
    assert err.value.status_code == 400 and err.value.param is not None and err.value.param.startswith(param)
    store = await connect_store(in_app.db)
    try:
        assert await store.get_user_sessions(row.tenant_id, row.user_id) == []  # nothing written
    finally:
        await store.close()
