"""``mofa chat --functions FILE.py``: the file's public functions are the agent's tools; each call and result is
shown as it happens (dim, on stderr when piped: stdout holds only replies) and saved in order."""

from __future__ import annotations

import json
from pathlib import Path

from tests.support.cli import Cli, messages_of, one_error_line, session_id_in
from tests.support.fault_server import FaultServer, Reply, ScriptedCall

FUNCTIONS = '''
import json as _json
from datetime import date  # imported: not a tool


def get_weather(city: str, days: int = 1) -> str:
    """The forecast for a city.

    Args:
        city: The city's name.
        days: How many days ahead.
    """
    with open(COUNT, "a") as f:
        f.write(city + "\\n")
    return f"sunny in {city} for {days} day(s)"


def fail_always() -> str:
    """Always fails."""
    raise RuntimeError("the service is down")


def _helper() -> None:
    pass
'''


def write_functions(tmp_path: Path) -> tuple[Path, Path]:
    count = tmp_path / "count.txt"
    file = tmp_path / "tools.py"
    file.write_text(f"COUNT = {str(count)!r}\n" + FUNCTIONS)
    return file, count


async def test_functions_become_tools_and_calls_show_as_they_happen(
    cli: Cli, fault: FaultServer, tmp_path: Path
) -> None:
    file, count = write_functions(tmp_path)
    fault.push(
        Reply(chunks=["Checking. "], finish_reason="tool_calls",
              tool_calls=[ScriptedCall("c1", "get_weather", json.dumps({"city": "Paris", "days": 2})),
                          ScriptedCall("c2", "fail_always", "{}")]),
        Reply(chunks=["Sunny in Paris."]),
    )
    result = await cli("chat", "--base-url", fault.base_url, "--functions", str(file), "weather?")
    assert result.exit_code == 0, result.output
    assert result.stdout == "Checking. \nSunny in Paris.\n"
    assert '⚙ get_weather({"city": "Paris", "days": 2})' in result.stderr
    assert "↳ get_weather: sunny in Paris for 2 day(s)" in result.stderr
    assert "✗ fail_always: tool fail_always failed: RuntimeError: the service is down" in result.stderr
    assert count.read_text() == "Paris\n"
    tools = fault.requests[0].body["tools"]
    assert [t["function"]["name"] for t in tools] == ["get_weather", "fail_always"]
    weather = tools[0]["function"]
    assert weather["description"] == "The forecast for a city."
    assert weather["parameters"]["properties"]["city"]["description"] == "The city's name."
    rows = await messages_of(cli, session_id_in(result.stderr))
    assert [m.role for m in rows] == ["user", "assistant", "tool", "tool", "assistant"]
    assert [c.name for c in rows[1].tool_calls] == ["get_weather", "fail_always"]
    assert rows[4].content == "Sunny in Paris."


async def test_a_bad_functions_file_is_one_error_line(cli: Cli, fault: FaultServer, tmp_path: Path) -> None:
    missing = await cli("chat", "--base-url", fault.base_url, "--functions", str(tmp_path / "nope.py"), "hi")
    assert "no such file" in one_error_line(missing)
    bad = tmp_path / "bad.py"
    bad.write_text("def f(*args): return 1\n")
    assert "cannot be described to a model" in one_error_line(
        await cli("chat", "--base-url", fault.base_url, "--functions", str(bad), "hi"))
    broken = tmp_path / "broken.py"
    broken.write_text("raise ValueError('oops')\n")
    assert "ValueError: oops" in one_error_line(
        await cli("chat", "--base-url", fault.base_url, "--functions", str(broken), "hi"))
    assert fault.requests == []
