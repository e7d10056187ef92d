"""``mofa usage``: statistics of the api-call records, by agent or model, with a chart."""

from __future__ import annotations

import uuid
from datetime import timedelta

from mofa_sdk.cli._usage import parse_since, percentile
from mofa_sdk.entities import LLMApiCall, Session
from mofa_sdk.ids import utc_now
from tests.support.cli import Cli
from tests.support.fault_server import FaultServer


async def _calls(cli: Cli, *, cancelled: bool = False) -> None:
    store = await cli.store()
    try:
        s = await store.create_session(Session(tenant_id=cli.tenant, user_id=cli.user))
        now = utc_now()
        rows = [
            ("model-a", "success", 100, 10, now - timedelta(hours=1)),
            ("model-a", "success", 200, 20, now - timedelta(hours=2)),
            ("model-a", "timeout", 300, None, now - timedelta(days=1, hours=1)),
            ("model-b", "success", 400, 40, now - timedelta(days=2)),
            ("model-b", "rate_limited", 50, None, now - timedelta(days=40)),  # outside 7d
        ]
        if cancelled:
            rows.append(("model-a", "cancelled", 150, 15, now - timedelta(minutes=5)))
        for model, status, latency, ttft, when in rows:
            await store.save_api_call(
                LLMApiCall(
                    tenant_id=cli.tenant,
                    session_id=s.id,
                    user_id=cli.user,
                    model_name=model,
                    status=status,  # type: ignore[arg-type]
                    prompt_tokens=10,
                    completion_tokens=5,
                    total_tokens=15,
                    latency_ms=latency,
                    time_to_first_token_ms=ttft,
                    create_time=when,
                )
            )
    finally:
        await store.close()


async def test_usage_by_model_over_a_week(cli: Cli) -> None:
    await _calls(cli)
    result = await cli("usage", "--by", "model")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "4 (3 ok, 1 failed, 0 cancelled)" in out
    assert "timeout 1" in out and "rate_limited" not in out
    assert "60 (40 prompt + 20 completion)" in out
    assert "p50 250 ms · p95 385 ms" in out  # latency 100/200/300/400, interpolated as percentile_cont
    assert "p50 20 ms · p95 38 ms" in out  # time to first token 10/20/40
    a_row = next(line for line in out.splitlines() if line.strip().startswith("model-a"))
    assert [c for c in a_row.split() if c != "│"][1:3] == ["3", "1"]  # calls, errors
    assert "calls per day" in out and "█" in out


async def test_usage_all_time_and_filters(cli: Cli) -> None:
    await _calls(cli)
    out = (await cli("usage", "--since", "all", "--no-chart")).stdout
    assert "5 (3 ok, 2 failed, 0 cancelled)" in out and "rate_limited 1" in out and "calls per" not in out
    out = (await cli("usage", "--since", "all", "--model", "model-b")).stdout
    assert "2 (1 ok, 1 failed, 0 cancelled)" in out
    out = (await cli("usage", "--since", "3h")).stdout
    assert "2 (2 ok, 0 failed, 0 cancelled)" in out and "calls per hour" in out
    out = (await cli("usage", "--user", str(uuid.uuid4()))).stdout
    assert "no LLM calls recorded" in out


async def test_usage_after_a_chat_by_agent(cli: Cli, fault: FaultServer) -> None:
    t = str(cli.tenant)
    assert (await cli("providers", "add", "srv", "--api-base", fault.base_url, "--tenant", t)).exit_code == 0
    assert (await cli("agents", "add", "bot", "--provider", "srv", "--model", "m1")).exit_code == 0
    chat = await cli("chat", "--agent", "bot", "--lines", input="one\ntwo\n")
    assert chat.exit_code == 0, chat.output
    result = await cli("usage", "--agent", "bot")
    assert result.exit_code == 0, result.output
    assert "2 (2 ok, 0 failed, 0 cancelled)" in result.stdout
    bot_row = next(line for line in result.stdout.splitlines() if line.strip().startswith("bot"))
    assert [c for c in bot_row.split() if c != "│"][1] == "2"
    # the fault server reports 11 prompt + 3 completion tokens per call
    assert "28 (22 prompt + 6 completion)" in result.stdout


async def test_usage_counts_cancellations_apart_from_errors(cli: Cli) -> None:
    await _calls(cli, cancelled=True)
    out = (await cli("usage", "--by", "model")).stdout
    assert "5 (3 ok, 1 failed, 1 cancelled)" in out
    assert "cancelled" not in out.split("errors by status", 1)[1].splitlines()[0]
    a_row = next(line for line in out.splitlines() if line.strip().startswith("model-a"))
    assert [c for c in a_row.split() if c != "│"][1:4] == ["4", "1", "1"]  # calls, errors, cancelled


async def test_usage_of_one_session_by_its_short_id(cli: Cli, fault: FaultServer) -> None:
    from tests.support.cli import session_id_in

    sid = session_id_in((await cli("chat", "--base-url", fault.base_url, "one")).stderr)
    assert (await cli("chat", "--base-url", fault.base_url, "other")).exit_code == 0
    out = (await cli("usage", "--session", sid[-8:], "--no-chart")).stdout
    assert "1 (1 ok, 0 failed, 0 cancelled)" in out


def test_parse_since_and_percentile() -> None:
    now = utc_now()
    assert parse_since("7d", now) == now - timedelta(days=7)
    assert parse_since("90m", now) == now - timedelta(minutes=90)
    assert parse_since("all", now) is None
    when = parse_since("2024-05-01", now)
    assert when is not None and when.isoformat() == "2024-05-01T00:00:00+00:00"
    assert percentile([], 0.5) is None
    assert percentile([1.0], 0.95) == 1.0
    assert percentile([100.0, 200.0, 300.0, 400.0], 0.95) == 385.0
