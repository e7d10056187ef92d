"""The installed llama.cpp build really runs the local model on this machine, tried in a child process so
that a build for another CPU is a failure with a clear message, not a dead test runner; and a build that
crashes is reported as a ConfigError naming the fix, before the user's process loads it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from mofa_sdk.errors import ConfigError
from mofa_sdk.llm import _probe, find_default_model

pytestmark = pytest.mark.local_model

ROOT = Path(__file__).resolve().parents[2]

CHILD = textwrap.dedent(
    """
    import asyncio
    from mofa_sdk.llm import LLMAgentBuilder, LocalProvider

    async def main():
        agent = LLMAgentBuilder().with_provider(LocalProvider(seed=1)).with_max_tokens(16).build()
        stream = agent.chat_stream("What is the capital of France?")
        async for text in stream:
            print(text, end="", flush=True)
        print()
        print("completion_tokens", stream.usage.completion_tokens)

    asyncio.run(main())
    """
)


def test_the_local_model_generates_in_a_child_process(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}", "MOFA_CACHE_DIR": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=300, env=env,
                          check=False)
    if done.returncode < 0:
        pytest.fail(f"the local model killed its process with {signal.Signals(-done.returncode).name}: "
                    f"llama-cpp-python was built for another CPU; {_probe.REBUILD_HINT}")
    assert done.returncode == 0, done.stderr
    reply, _, count = done.stdout.rstrip("\n").rpartition("\n")
    assert reply.strip(), f"no text came back: {done.stdout!r}"
    assert 0 < int(count.split()[-1]) <= 16


def test_a_build_that_crashes_on_this_cpu_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MOFA_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(_probe, "_CHECKED", set())
    # what a native build does on a CPU that faults on its instructions
    monkeypatch.setattr(_probe, "_CHILD", "import os, signal; os.kill(os.getpid(), signal.SIGILL)")
    with pytest.raises(ConfigError) as info:
        _probe.check_llama_build(find_default_model())
    message = str(info.value)
    assert "SIGILL" in message and "make setup" in message and "GGML_NATIVE=OFF" in message
    assert not (tmp_path / "llama-probe.json").exists()  # a crash is never remembered as fine


def test_a_passing_check_is_remembered_per_build_and_cpu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MOFA_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(_probe, "_CHECKED", set())
    runs: list[Path] = []
    real = _probe.run_probe

    def counting(model: Path, **kw: float) -> tuple[int, str]:
        runs.append(model)
        return real(model, **kw)

    monkeypatch.setattr(_probe, "run_probe", counting)
    model = find_default_model()
    _probe.check_llama_build(model)
    _probe.check_llama_build(model)
    monkeypatch.setattr(_probe, "_CHECKED", set())  # a new process: the verdict file answers
    _probe.check_llama_build(model)
    assert runs == [model]
    monkeypatch.setattr(_probe, "_cpu_flags", lambda: "another cpu")
    _probe.check_llama_build(model)
    assert runs == [model, model]


def test_a_generation_that_fails_without_a_crash_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MOFA_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(_probe, "_CHECKED", set())
    monkeypatch.setattr(_probe, "_CHILD", "raise SystemExit('cannot map the model file')")
    with pytest.raises(ConfigError, match=r"exit 1.*cannot map the model file"):
        _probe.check_llama_build(find_default_model())
