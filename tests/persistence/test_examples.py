"""The seed's three examples, run as a user would (subprocess, stdin lines, `quit`), against the real
llama.cpp server, on SQLite and PostgreSQL; the rows they leave are asserted."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from mofa_sdk.persistence import Agent, Provider, QueryFilter, connect_store

ROOT = Path(__file__).resolve().parents[2]
SEED_SESSION = "019bda9f-9ffd-7a80-a9e5-88b05e81a7d4"

pytestmark = pytest.mark.llama_server


def run_example(name: str, lines: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "SESSION_ID", "AGENT_"))}
    full_env.update(env)
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / name)],
        input="\n".join([*lines, "quit"]) + "\n",
        capture_output=True,
        text=True,
        env=full_env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    return proc


async def test_streaming_persistence_example_resumes_with_the_last_two_rounds(
    db_url: str, llama_server: Any, tmp_path: Path
) -> None:
    tenant, user = uuid.uuid4(), uuid.uuid4()
    env = {
        "DATABASE_URL": db_url,
        "OPENAI_BASE_URL": llama_server.base_url,
        "OPENAI_MODEL": "smollm2",
        "TENANT_ID": str(tenant),
        "USER_ID": str(user),
        "MOFA_MAX_TOKENS": "24",
    }
    llama_server.clear()
    first = run_example("streaming_persistence.py", ["Say hi.", "Name a colour.", "Name a fruit."], env)
    assert first.stdout.strip(), "the replies are printed"
    assert SEED_SESSION in first.stderr

    store = await connect_store(db_url)
    try:
        msgs = await store.get_session_messages(tenant, uuid.UUID(SEED_SESSION))
        assert [m.role for m in msgs] == ["user", "assistant"] * 3
        assert [m.content for m in msgs[::2]] == ["Say hi.", "Name a colour.", "Name a fruit."]
        assert all(m.status == "complete" and m.content for m in msgs)
        for reply in msgs[1::2]:
            assert reply.content.strip() in first.stdout
        calls = await store.query_api_calls(QueryFilter(tenant_id=tenant, session_id=uuid.UUID(SEED_SESSION)))
        assert len(calls) == 3 and {c.status for c in calls} == {"success"}
        assert all(c.completion_tokens > 0 and c.time_to_first_token_ms is not None for c in calls)

        llama_server.clear()
        run_example("streaming_persistence.py", ["And a vegetable?"], env)
        (request,) = llama_server.requests
        sent = [(m["role"], m["content"]) for m in request["messages"]]
        expected_rounds = [(m.role, m.content) for m in msgs[2:]]  # the first run's last 2 rounds
        assert sent == [
            ("system", "You are a professional AI assistant."),
            *expected_rounds,
            ("user", "And a vegetable?"),
        ]
        assert await store.count_session_messages(tenant, uuid.UUID(SEED_SESSION)) == 8
    finally:
        await store.close()


async def test_manual_persistence_example(db_url: str, llama_server: Any) -> None:
    tenant, user, agent_id = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    env = {
        "DATABASE_URL": db_url,
        "OPENAI_BASE_URL": llama_server.base_url,
        "TENANT_ID": str(tenant),
        "USER_ID": str(user),
        "AGENT_ID": str(agent_id),
        "MOFA_MAX_TOKENS": "24",
    }
    proc = run_example("streaming_manual_persistence.py", ["Say hello."], env)
    session_id = uuid.UUID(proc.stderr.split("session ")[1].split()[0])
    store = await connect_store(db_url)
    try:
        msgs = await store.get_session_messages(tenant, session_id)
        assert [(m.role, m.metadata.get("channel")) for m in msgs] == [("user", "cli"), ("assistant", None)]
        assert msgs[1].metadata["checked"] is True and msgs[1].content.strip() in proc.stdout
        (call,) = await store.query_api_calls(QueryFilter(tenant_id=tenant, session_id=session_id))
        assert call.status == "success" and call.request_message_id == msgs[0].id and call.agent_id == agent_id
    finally:
        await store.close()


async def test_agent_from_database_example(db_url: str, llama_server: Any) -> None:
    tenant, user = uuid.uuid4(), uuid.uuid4()
    store = await connect_store(db_url)
    try:
        provider = await store.create_provider(
            Provider(
                tenant_id=tenant, provider_name="local-llm", provider_type="compatible", api_base=llama_server.base_url
            )
        )
        agent = await store.create_agent(
            Agent(
                tenant_id=tenant,
                agent_code="chat-assistant",
                agent_name="Chat Assistant",
                model_name="smollm2",
                provider_id=provider.id,
                system_prompt="You are a pirate.",
                context_limit=1,
                max_completion_tokens=16,
                temperature=0.0,
            )
        )
        env = {"DATABASE_URL": db_url, "TENANT_ID": str(tenant), "USER_ID": str(user), "AGENT_CODE": "chat-assistant"}
        llama_server.clear()
        proc = run_example("agent_from_database_streaming.py", ["Hello!", "Who are you?"], env)
        session_id = uuid.UUID(proc.stderr.split("session ")[1].split()[0])
        first, second = llama_server.requests
        assert first["messages"][0] == {"role": "system", "content": "You are a pirate."}
        assert first["max_tokens"] == 16 and first["temperature"] == 0.0 and first["model"] == "smollm2"
        assert len(second["messages"]) == 4  # system + the 1 round of context_limit + the new message
        msgs = await store.get_session_messages(tenant, session_id)
        assert [m.role for m in msgs] == ["user", "assistant", "user", "assistant"]
        assert all(m.agent_id == agent.id for m in msgs)

        # SESSION_ID resumes the session
        llama_server.clear()
        run_example("agent_from_database_streaming.py", ["Again?"], {**env, "SESSION_ID": str(session_id)})
        (resumed,) = llama_server.requests
        assert [m["content"] for m in resumed["messages"][1:3]] == [msgs[2].content, msgs[3].content]
        assert await store.count_session_messages(tenant, session_id) == 6

        proc = subprocess.run(
            [sys.executable, str(ROOT / "examples" / "agent_from_database_streaming.py")],
            input="quit\n",
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, **env, "AGENT_CODE": "no-such-agent"},
        )
        assert proc.returncode == 1 and "Agent not found" in proc.stderr
    finally:
        await store.close()
