"""``mofa sessions list|show|export|delete|rename`` on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from pathlib import Path

from mofa_sdk.entities import Message, MessageRole, MessageStatus, Session
from mofa_sdk.ids import utc_now
from tests.support.cli import Cli, one_error_line


async def _session_with_messages(cli: Cli, title: str | None = None) -> uuid.UUID:
    """A session: a complete round, a cancelled reply, and a reply left streaming by a dead process."""
    store = await cli.store()
    try:
        s = await store.create_session(Session(tenant_id=cli.tenant, user_id=cli.user, title=title))
        old = utc_now() - timedelta(minutes=5)

        def msg(role: MessageRole, content: str, status: MessageStatus = "complete") -> Message:
            return Message(
                session_id=s.id,
                tenant_id=cli.tenant,
                user_id=cli.user,
                role=role,
                content=content,
                status=status,
                update_time=old,
            )

        await store.save_messages(
            [
                msg("user", "What is [bold]markup[/bold]?\nSecond line"),
                msg("assistant", "A way to style text."),
                msg("user", "Tell me more"),
                msg("assistant", "Well, it", "cancelled"),
                msg("user", "And then?"),
                msg("assistant", "It was half", "streaming"),
            ]
        )
        return s.id
    finally:
        await store.close()


async def test_list_shows_derived_title_and_counts(cli: Cli) -> None:
    sid = await _session_with_messages(cli)
    named = await _session_with_messages(cli, title="Named one")
    result = await cli("sessions", "list")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    # lists show the short id: the random end of the uuid7, not its time-ordered start
    row = next(line for line in lines if line.startswith(str(sid)[-8:] + " "))
    assert (
        "What is [bold]markup[/bold]? Second line" in row
    )  # from the first user message, markup kept as text
    assert " 6 " in row
    assert "Named one" in next(line for line in lines if line.startswith(str(named)[-8:]))
    # most recently active first
    assert result.stdout.index(str(named)[-8:]) < result.stdout.index(str(sid)[-8:])
    as_json = json.loads((await cli("sessions", "list", "--json")).stdout)
    assert [r["id"] for r in as_json] == [str(named), str(sid)]
    assert as_json[1]["messages"] == 6 and as_json[1]["title"] is None


async def test_list_pages_with_a_cursor(cli: Cli) -> None:
    made = [await _session_with_messages(cli, title=f"page {i}") for i in range(3)]
    first = await cli("sessions", "list", "--limit", "2", "--json")
    assert first.exit_code == 0, first.output
    assert [r["id"] for r in json.loads(first.stdout)] == [str(made[2]), str(made[1])]
    # the next page's command is on stderr, so stdout stays the page (JSON here)
    hint = next(line for line in first.stderr.splitlines() if line.startswith("more: "))
    cursor = hint.split("--after ", 1)[1].strip()
    second = await cli("sessions", "list", "--limit", "2", "--json", "--after", cursor)
    assert second.exit_code == 0, second.output
    assert [r["id"] for r in json.loads(second.stdout)] == [str(made[0])]
    assert "more: " not in second.stderr
    bad = await cli("sessions", "list", "--after", "junk")
    assert bad.exit_code == 1 and "cursor" in one_error_line(bad)


async def test_list_is_per_user_and_tenant(cli: Cli) -> None:
    await _session_with_messages(cli)
    other = await cli("sessions", "list", "--user", str(uuid.uuid4()))
    assert other.exit_code == 0 and "no sessions yet" in other.stdout
    other = await cli("sessions", "list", "--tenant", str(uuid.uuid4()))
    assert other.exit_code == 0 and "no sessions yet" in other.stdout


async def test_show_marks_unfinished_replies(cli: Cli) -> None:
    sid = await _session_with_messages(cli)
    result = await cli("sessions", "show", str(sid))
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "A way to style text." in out and "[bold]markup[/bold]" in out
    assert "[cancelled]" in out
    assert "[interrupted]" in out  # left streaming past the lease: a crashed process
    assert out.index("[cancelled]") < out.index("Well, it") < out.index("[interrupted]")


async def test_export_json_and_markdown(cli: Cli, tmp_path: Path) -> None:
    sid = await _session_with_messages(cli, title="Export me")
    result = await cli("sessions", "export", str(sid))
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["session"]["id"] == str(sid) and data["session"]["title"] == "Export me"
    assert [m["status"] for m in data["messages"]] == [
        "complete",
        "complete",
        "complete",
        "cancelled",
        "complete",
        "interrupted",
    ]
    assert [m["seq"] for m in data["messages"]] == [1, 2, 3, 4, 5, 6]
    out = tmp_path / "s.md"
    result = await cli("sessions", "export", str(sid), "--format", "markdown", "-o", str(out))
    assert result.exit_code == 0, result.output
    md = out.read_text(encoding="utf-8")
    assert md.startswith("# Export me\n")
    assert "## Assistant _(cancelled)_" in md and "## Assistant _(interrupted)_" in md
    assert "Well, it" in md
    line = one_error_line(await cli("sessions", "export", str(sid), "--format", "yaml"))
    assert "--format" in line


async def test_rename_and_delete(cli: Cli) -> None:
    sid = await _session_with_messages(cli)
    result = await cli("sessions", "rename", str(sid), "A better title")
    assert result.exit_code == 0, result.output
    store = await cli.store()
    try:
        s = await store.get_session(cli.tenant, sid)
        assert s is not None and s.title == "A better title"
        refused = await cli("sessions", "delete", str(sid), input="n\n")
        assert refused.exit_code == 0 and "nothing deleted" in refused.stdout
        assert await store.count_session_messages(cli.tenant, sid) == 6
        result = await cli("sessions", "delete", str(sid), "--yes")
        assert result.exit_code == 0, result.output
        assert "6 messages" in result.stdout
        assert await store.get_session(cli.tenant, sid) is None
        assert await store.count_session_messages(cli.tenant, sid) == 0
    finally:
        await store.close()
    line = one_error_line(await cli("sessions", "show", str(sid)))
    assert f"unknown session {sid}" in line


async def test_another_users_session_is_unknown(cli: Cli) -> None:
    sid = await _session_with_messages(cli)
    for cmd in (
        ["show", str(sid)],
        ["export", str(sid)],
        ["rename", str(sid), "x"],
        ["delete", str(sid), "-y"],
    ):
        line = one_error_line(await cli("sessions", *cmd, "--user", str(uuid.uuid4())))
        assert "unknown session" in line
    store = await cli.store()
    try:
        s = await store.get_session(cli.tenant, sid)
        assert s is not None and s.title is None  # nothing changed
    finally:
        await store.close()


async def _session_with_tools(cli: Cli) -> uuid.UUID:
    """A round with an image, two tool calls (one failed), the final reply; then a call a crash left,
    answered by the recorded interrupted result."""
    from mofa_sdk.entities import MessagePart, MessageToolCall

    store = await cli.store()
    try:
        s = await store.create_session(Session(tenant_id=cli.tenant, user_id=cli.user))

        def msg(role: MessageRole, content: str, **kw: object) -> Message:
            return Message(session_id=s.id, tenant_id=cli.tenant, user_id=cli.user, role=role, content=content,
                           **kw)  # type: ignore[arg-type]  # fmt: skip

        await store.save_messages([
            msg("user", "Weather where this was taken?", parts=[
                MessagePart(type="text", text="Weather where this was taken?"),
                MessagePart(type="image", url="data:image/png;base64," + "A" * 4000),
            ]),
            msg("assistant", "", tool_calls=[
                MessageToolCall(id="call_geo", name="locate", arguments='{"image": 1}'),
                MessageToolCall(id="call_wx", name="weather", arguments='{"city": "Pa`ris", "days": 3}'),
            ]),
            msg("tool", '{"city": "Paris"}', tool_call_id="call_geo"),
            msg("tool", "TimeoutError: the weather service did not answer", tool_call_id="call_wx", is_error=True),
            msg("assistant", "It was taken in Paris; the forecast is unavailable."),
            msg("user", "Try again"),
            msg("assistant", "Retrying.", tool_calls=[MessageToolCall(id="call_2", name="weather",
                                                                      arguments="{}")]),
            msg("tool", "The tool call was interrupted and did not finish; it has no result.",
                tool_call_id="call_2", is_error=True, status="interrupted"),
        ])  # fmt: skip
        return s.id
    finally:
        await store.close()


async def test_show_includes_tool_calls_and_results(cli: Cli) -> None:
    sid = await _session_with_tools(cli)
    result = await cli("sessions", "show", str(sid))
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert '→ locate({"image": 1})' in out and '→ weather({"city": "Pa`ris", "days": 3})' in out
    assert "locate · call_geo" in out and '{"city": "Paris"}' in out
    failed = next(line for line in out.splitlines() if "weather · call_wx" in line)
    assert "[error]" in failed
    repaired = next(line for line in out.splitlines() if "weather · call_2" in line)
    assert "[interrupted]" in repaired and "[error]" in repaired
    assert "[image: image/png data URL, 4,022 characters]" in out and "AAAA" not in out  # compact
    assert out.index("→ weather(") < out.index("TimeoutError") < out.index("It was taken in Paris")


async def test_export_includes_tool_calls_and_results(cli: Cli, tmp_path: Path) -> None:
    sid = await _session_with_tools(cli)
    data = json.loads((await cli("sessions", "export", str(sid))).stdout)
    messages = data["messages"]
    assert messages[1]["tool_calls"] == [
        {"id": "call_geo", "name": "locate", "arguments": '{"image": 1}'},
        {"id": "call_wx", "name": "weather", "arguments": '{"city": "Pa`ris", "days": 3}'},
    ]
    assert [(m["tool_call_id"], m["is_error"]) for m in messages if m["role"] == "tool"] == [
        ("call_geo", False), ("call_wx", True), ("call_2", True)
    ]  # fmt: skip
    assert messages[0]["parts"][1] == {"type": "image", "url": "data:image/png;base64," + "A" * 4000}
    assert "tool_calls" not in messages[4] and "tool_call_id" not in messages[4]  # text stays compact
    out = tmp_path / "s.md"
    assert (await cli("sessions", "export", str(sid), "-f", "md", "-o", str(out))).exit_code == 0
    md = out.read_text(encoding="utf-8")
    assert "- tool call `weather` · `call_wx`: ``{\"city\": \"Pa`ris\", \"days\": 3}``" in md
    assert "## Tool result · `weather` · `call_wx` _(error)_" in md
    assert "## Tool result · `weather` · `call_2` _(interrupted)_ _(error)_" in md
    assert "![image 1](data:image/png;base64,AAAA" in md
