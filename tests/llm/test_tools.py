"""Tools from plain functions: the schema the model sees, the errors for what cannot be described, and a
call's JSON arguments validated into the function's parameters."""

from __future__ import annotations

import asyncio
import enum
from typing import Annotated, Any, Literal

import pytest
from pydantic import BaseModel, Field

from mofa_sdk.errors import ConfigError, ToolArgumentsError
from mofa_sdk.llm import Tool, ToolCall, ToolResult, ToolSpec, tool


class Unit(enum.Enum):
    C = "celsius"
    F = "fahrenheit"


class Place(BaseModel):
    city: str
    country: str = "FR"


def get_weather(
    place: Place,
    days: Annotated[int, Field(description="How many days ahead", ge=1, le=7)] = 1,
    unit: Unit = Unit.C,
    detail: Literal["short", "long"] = "short",
    tags: list[str] | None = None,
    extra: dict[str, float] | None = None,
) -> dict[str, Any]:
    """Get the weather forecast for a place.

    Looks it up in the forecast service.

    Args:
        place: Where to look.
        days: Ignored here, the Field wins.
        unit: The temperature unit,
            celsius or fahrenheit.
        tags: Labels for the answer.

    Returns:
        The forecast.
    """
    return {"city": place.city, "days": days, "unit": unit.value, "detail": detail, "tags": tags}


def test_schema_from_signature_and_docstring() -> None:
    t = tool(get_weather)
    assert t.name == "get_weather"
    assert t.description == "Get the weather forecast for a place.\n\nLooks it up in the forecast service."
    p = t.parameters
    assert p["type"] == "object" and p["required"] == ["place"]
    assert p["additionalProperties"] is False
    props = p["properties"]
    assert list(props) == ["place", "days", "unit", "detail", "tags", "extra"]
    assert props["place"]["description"] == "Where to look."
    assert props["days"] == {"default": 1, "description": "How many days ahead", "maximum": 7, "minimum": 1,
                             "type": "integer"}
    assert props["unit"]["description"] == "The temperature unit, celsius or fahrenheit."
    assert props["detail"]["enum"] == ["short", "long"]
    assert props["tags"]["description"] == "Labels for the answer."
    assert p["$defs"]["Unit"]["enum"] == ["celsius", "fahrenheit"]
    assert p["$defs"]["Place"]["required"] == ["city"]
    assert "title" not in repr(p)  # generated titles are noise to a model
    assert t.openai_schema() == {"type": "function", "function": {
        "name": "get_weather", "description": t.description, "parameters": p}}


def test_sphinx_docstrings_and_a_parameter_called_json() -> None:
    def lookup(json: str, limit: int = 3) -> str:
        """Look a thing up.

        :param json: The query, as JSON text.
        :param int limit: At most this many.
        """
        return json * limit

    t = Tool.from_function(lookup, name="look-up", description="Custom.")
    assert (t.name, t.description) == ("look-up", "Custom.")
    assert t.parameters["properties"]["json"]["description"] == "The query, as JSON text."
    assert t.parameters["properties"]["limit"]["description"] == "At most this many."
    assert t.validate_arguments('{"json": "ab", "limit": 2}') == {"json": "ab", "limit": 2}


def test_a_function_without_parameters_takes_blank_or_empty_arguments() -> None:
    def now() -> str:
        return "noon"

    t = tool(now)
    assert t.parameters == {"additionalProperties": False, "properties": {}, "type": "object"}
    assert t.validate_arguments("") == {} == t.validate_arguments("{}")


def test_arguments_are_validated_into_the_parameters() -> None:
    t = tool(get_weather)
    kwargs = t.validate_arguments(ToolCall("c1", "get_weather", '{"place": {"city": "Paris"}, "unit": "fahrenheit"}'))
    assert kwargs["place"] == Place(city="Paris") and kwargs["unit"] is Unit.F
    assert (kwargs["days"], kwargs["detail"], kwargs["tags"]) == (1, "short", None)  # the signature's defaults


@pytest.mark.parametrize(
    ("arguments", "words"),
    [
        ('{"place": {"city": "Par', r"call 'c1'\): the arguments are not valid JSON"),
        ("[1]", "must be a JSON object, got list"),
        ("{}", "place: Field required"),
        ('{"place": {"city": "P"}, "days": 9}', "days: Input should be less than or equal to 7"),
        ('{"place": {"city": "P"}, "days": "many"}', "days: Input should be a valid integer"),
        ('{"place": {"city": "P"}, "unit": "kelvin"}', "unit: Input should be 'celsius' or 'fahrenheit'"),
        ('{"place": {"city": "P"}, "color": "red"}', "color: no such parameter"),
        ('{"place": {"town": "P"}}', "place.city: Field required"),
    ],
)
def test_bad_arguments_say_what_did_not_fit(arguments: str, words: str) -> None:
    with pytest.raises(ToolArgumentsError, match=words) as info:
        tool(get_weather).validate_arguments(ToolCall("c1", "get_weather", arguments))
    assert str(info.value).startswith("tool get_weather (call 'c1')")


def _star(*values: int) -> None: ...
def _kw(**values: int) -> None: ...
def _positional(a: int, /) -> None: ...
def _bare(a, b: int) -> None: ...  # type: ignore[no-untyped-def]
def _unsupported(when: asyncio.Event) -> None: ...
def _private(_hidden: int) -> None: ...


@pytest.mark.parametrize(
    ("function", "words"),
    [
        (_star, r"\*values cannot be described"),
        (_kw, r"\*\*values cannot be described"),
        (_positional, "positional-only"),
        (_bare, "parameter 'a' of _bare has no type annotation"),
        (_unsupported, "has no JSON schema"),
        (lambda x: x, "the name '<lambda>' must be"),
        ("not a function", "must be a function"),
    ],
)
def test_what_cannot_be_described_is_a_config_error(function: Any, words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        tool(function)


def test_a_parameter_with_a_leading_underscore_is_fine() -> None:
    assert tool(_private).validate_arguments('{"_hidden": 2}') == {"_hidden": 2}


async def test_call_runs_sync_and_async_functions_and_run_turns_failures_into_error_results() -> None:
    async def add(a: int, b: int = 1) -> int:
        await asyncio.sleep(0)
        return a + b

    def fail(reason: str) -> str:
        raise RuntimeError(reason)

    assert await tool(add).call('{"a": 2}') == 3
    assert await tool(get_weather).call('{"place": {"city": "Oslo"}}') == {
        "city": "Oslo", "days": 1, "unit": "celsius", "detail": "short", "tags": None}
    assert await tool(add).run(ToolCall("c", "add", '{"a": 1, "b": 2}')) == ToolResult("c", "3")
    weather = await tool(get_weather).run(ToolCall("w", "get_weather", '{"place": {"city": "Oslo"}}'))
    assert weather.content == '{"city":"Oslo","days":1,"unit":"celsius","detail":"short","tags":null}'
    failed = await tool(fail).run(ToolCall("c", "fail", '{"reason": "disk full"}'))
    assert failed == ToolResult("c", "tool fail failed: RuntimeError: disk full", is_error=True)
    bad = await tool(add).run(ToolCall("c", "add", '{"a": "x"}'))
    assert bad.is_error and "a: Input should be a valid integer" in bad.content


def test_a_spec_from_an_openai_tools_entry() -> None:
    parameters = {"type": "object", "properties": {"q": {"type": "string"}}}
    entry = {"type": "function", "function": {"name": "lookup", "description": "Find.", "parameters": parameters}}
    spec = ToolSpec.from_openai(entry)
    assert (spec.name, spec.description) == ("lookup", "Find.") and spec.openai_schema() == entry
    assert ToolSpec.from_openai({"type": "function", "function": {"name": "now"}}).parameters["type"] == "object"
    bad: object
    for bad in ({"type": "custom", "custom": {}}, {"type": "function", "function": {"name": "a b"}}, []):
        with pytest.raises(ConfigError):
            ToolSpec.from_openai(bad)
