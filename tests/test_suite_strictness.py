"""The suite's own rules (pyproject.toml) hold: a warning, a leaked file, an xfail that passes and a hang each
fail a run. Tried in a child pytest, under the project's config, on a throwaway file of probes."""

from __future__ import annotations

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


@pytest.mark.timeout(1)
def test_z_a_hang():
    time.sleep(60)
'''


def _pytest(probes: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], float]:
    cmd = [sys.executable, "-m", "pytest", "-c", str(ROOT / "pyproject.toml"), "-p", "no:cacheprovider", "-v",
           str(probes), *args]
    started = time.monotonic()
    run = subprocess.run(cmd, cwd=probes.parent, capture_output=True, text=True, timeout=120)
    return run, time.monotonic() - started


def test_warnings_leaks_passing_xfails_and_hangs_fail_the_run(tmp_path: Path) -> None:
    probes = tmp_path / "test_probes.py"
    probes.write_text(PROBES)
    run, _ = _pytest(probes, "-k", "not hang")
    out = run.stdout + run.stderr
    outcomes = dict(re.findall(r"::(test_\w+) (PASSED|FAILED)", run.stdout))
    assert outcomes == {"test_a_warning": "FAILED", "test_a_leaked_file": "FAILED",
                        "test_an_xfail_that_passes": "FAILED", "test_a_fine_one": "PASSED"}, out
    assert "DeprecationWarning: old API" in out and "ResourceWarning: unclosed file" in out, out
    assert "[XPASS(strict)] a known bug" in out, out

    # the thread method dumps every thread's stack and ends the run at once, not after the sleep
    run, took = _pytest(probes, "-k", "hang")
    out = run.stdout + run.stderr
    assert "+ Timeout +" in out and "in test_z_a_hang" in out and run.returncode != 0, out
    assert took < 45, f"the hang was not cut short ({took:.0f}s)"
