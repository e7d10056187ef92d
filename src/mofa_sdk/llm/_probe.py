"""Checks, in a child process, that the installed llama.cpp build can run a model on this CPU.

A llama-cpp-python wheel built with ``-march=native`` on one machine (or on this one, when the CPU advertises
AMX or AVX-512 that the virtual machine does not let a process use) dies with SIGILL on its first matrix
product. That kills the whole interpreter, so it is tried in a child first: ``LocalProvider`` asks
:func:`check_llama_build` before it loads a model in-process, and ``make setup`` runs this module to decide
whether to rebuild. The verdict is cached per build, CPU and model, so the child runs once per machine.

``python -m mofa_sdk.llm._probe [MODEL]`` exits 0 when the build works, with the signal's number when the
child died of one (and the child's own exit status otherwise).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from ..errors import ConfigError

__all__ = ["REBUILD_HINT", "check_llama_build", "run_probe"]

REBUILD_HINT = (
    "rebuild it portably with `make setup`, or: CMAKE_ARGS='-DGGML_NATIVE=OFF' "
    "pip install --force-reinstall --no-deps --no-cache-dir --no-binary llama-cpp-python llama-cpp-python"
)

#: what the child does: load the model and sample two tokens from a short chat (a prompt of a few dozen
#: tokens, enough for the batched matrix kernels that an unusable instruction set faults in)
_CHILD = """
import sys
import llama_cpp
llama = llama_cpp.Llama(model_path=sys.argv[1], n_ctx=256, n_threads=1, verbose=False)
llama.create_chat_completion(
    messages=[{"role": "system", "content": "You are a helpful assistant. Answer in one short sentence."},
              {"role": "user", "content": "What is the capital of France? Please answer briefly."}],
    max_tokens=2, temperature=0.0)
llama.close()
"""

#: the verdicts already reached, by build/CPU/model key (this process and, through the file, the machine)
_CHECKED: set[str] = set()


def _llama_lib_identity() -> str | None:
    """Names, sizes and mtimes of the installed llama_cpp package's native libraries (no import)."""
    spec = importlib.util.find_spec("llama_cpp")
    if spec is None or spec.origin is None:
        return None
    root = Path(spec.origin).parent
    parts = []
    for lib in sorted(root.rglob("*")):
        if lib.suffix in {".so", ".dylib", ".dll"} or ".so." in lib.name:
            st = lib.stat()
            parts.append(f"{lib.relative_to(root)}:{st.st_size}:{st.st_mtime_ns}")
    return f"{root}|{'|'.join(parts)}"


def _cpu_flags() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return f"{platform.machine()}|{platform.processor()}"


def _key(model: Path) -> str | None:
    lib = _llama_lib_identity()
    if lib is None:
        return None
    st = model.stat()
    raw = f"{lib}\n{_cpu_flags()}\n{model}:{st.st_size}:{st.st_mtime_ns}"
    return hashlib.sha256(raw.encode()).hexdigest()


def _verdict_file() -> Path:
    from platformdirs import user_cache_dir

    return Path(os.environ.get("MOFA_CACHE_DIR") or user_cache_dir("mofa")) / "llama-probe.json"


def _read_verdicts() -> set[str]:
    try:
        data = json.loads(_verdict_file().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return set()
    return {k for k in data.get("ok", []) if isinstance(k, str)} if isinstance(data, dict) else set()


def _remember(key: str) -> None:
    _CHECKED.add(key)
    path = _verdict_file()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        known = sorted(_read_verdicts() | {key})[-64:]
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"ok": known}), encoding="utf-8")
        tmp.replace(path)
    except OSError:  # an unwritable cache only costs a probe next time
        pass


def run_probe(model: Path, *, timeout: float = 300.0) -> tuple[int, str]:
    """Run the child: its return code (negative: killed by that signal, as ``subprocess`` reports it) and
    the last line it wrote to stderr."""
    try:
        done = subprocess.run(
            [sys.executable, "-c", _CHILD, str(model)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise ConfigError(f"the llama.cpp check did not finish within {timeout:.0f}s") from exc
    lines = done.stderr.decode("utf-8", "replace").strip().splitlines()
    return done.returncode, lines[-1] if lines else ""


def check_llama_build(model: Path) -> None:
    """Raise ``ConfigError`` naming the fix if the installed llama.cpp build cannot run ``model`` here."""
    key = _key(model)
    if key is None or key in _CHECKED:
        return
    if key in _read_verdicts():
        _CHECKED.add(key)
        return
    code, detail = run_probe(model)
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        raise ConfigError(
            f"the installed llama-cpp-python cannot run on this CPU: a test generation died with {name} "
            f"(a build made for another processor, e.g. with -march=native); {REBUILD_HINT}"
        )
    if code > 0:
        raise ConfigError(f"the local model {model} failed a test generation (exit {code}): {detail}")
    _remember(key)


def _main(argv: list[str]) -> int:
    if argv:
        model = Path(argv[0])
    else:
        from ._local import find_default_model

        model = find_default_model()
    key = _key(model)
    if key is not None and key in _read_verdicts():
        return 0  # this build already ran this model on this CPU
    code, detail = run_probe(model)
    if code < 0:
        print(f"llama.cpp check: died with signal {-code} running {model}", file=sys.stderr)
        return 128 - code
    if code > 0:
        print(f"llama.cpp check: failed (exit {code}) running {model}: {detail}", file=sys.stderr)
        return code
    if key is not None:
        _remember(key)
    print(f"llama.cpp check: this build runs {model.name} on this CPU")
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
