"""The suite's own rules (pyproject.toml, tests/conftest.py) hold: a warning, a leaked file, an xfail that
passes, a skip in CI and a hang each fail a run. Tried in a child pytest on a throwaway file of probes."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

PROBES = '''
import gc
import time
import warnings

import pytest


def test_a_warning():
    warnings.warn("old API", DeprecationWarning)


def test_a_leaked_file():
    open(__file__)
    gc.collect()


@pytest.mark.xfail(reason="a known bug")
def test_an_xfail_that_passes():
    pass


def test_a_fine_one():
    pass


def test_a_skip():
    pytest.skip("no server here")


@pytest.mark.timeout(1)
def test_z_a_hang():
    time.sleep(60)
'''


def _pytest(probes: Path, *args: str, ci: str = "true") -> tuple[subprocess.CompletedProcess[str], float]:
    """pytest with the project's config and tests/conftest.py (as a plugin: the probes live elsewhere)."""
    cmd = [sys.executable, "-m", "pytest", "-c", str(ROOT / "pyproject.toml"), "-p", "no:cacheprovider",
           "-p", "tests.conftest", "-v", str(probes), *args]
    started = time.monotonic()
    env = {**os.environ, "CI": ci}
    run = subprocess.run(cmd, cwd=probes.parent, env=env, capture_output=True, text=True, timeout=120)
    return run, time.monotonic() - started


def test_warnings_leaks_passing_xfails_and_hangs_fail_the_run(tmp_path: Path) -> None:
    probes = tmp_path / "test_probes.py"
    probes.write_text(PROBES)
    run, _ = _pytest(probes, "-k", "not hang")
    out = run.stdout + run.stderr
    outcomes = dict(re.findall(r"::(test_\w+) (PASSED|FAILED|SKIPPED)", run.stdout))
    assert outcomes == {"test_a_warning": "FAILED", "test_a_leaked_file": "FAILED",
                        "test_an_xfail_that_passes": "FAILED", "test_a_fine_one": "PASSED",
                        "test_a_skip": "FAILED"}, out
    assert "DeprecationWarning: old API" in out and "ResourceWarning: unclosed file" in out, out
    assert "[XPASS(strict)] a known bug" in out, out
    assert "skipped under CI=true" in out and "no server here" in out, out
    # outside CI a skip stays a skip
    run, _ = _pytest(probes, "-k", "skip", ci="")
    assert re.findall(r"::(test_\w+) (PASSED|FAILED|SKIPPED)", run.stdout) == [("test_a_skip", "SKIPPED")], run.stdout

    # the thread method dumps every thread's stack and ends the run at once, not after the sleep
    run, took = _pytest(probes, "-k", "hang")
    out = run.stdout + run.stderr
    assert "+ Timeout +" in out and "in test_z_a_hang" in out and run.returncode != 0, out
    assert took < 45, f"the hang was not cut short ({took:.0f}s)"
