"""Runs the hypothesis fuzz suite (tests/fuzz_core.py) in a child process: a crash there
fails this test with the case that caused it, instead of taking pytest down."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytest.importorskip("hypothesis", reason="the fuzz suite needs hypothesis (pip install '.[test]')")


def test_fuzz_core_functions_in_a_child_process(tmp_path):
    log = tmp_path / "case.txt"
    here = os.path.dirname(os.path.abspath(__file__))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([p for p in sys.path if p]),
               FUZZ_EXAMPLES=os.environ.get("FUZZ_EXAMPLES", "600"))
    proc = subprocess.run([sys.executable, os.path.join(here, "fuzz_core.py"), "--log", str(log)],
                          capture_output=True, text=True, env=env, timeout=1200)
    last = log.read_text() if log.exists() else "(none)"
    assert proc.returncode == 0, (f"fuzz run ended with status {proc.returncode} (negative: killed by that signal); "
                                  f"last case: {last}\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}")
    summary = proc.stdout.strip().splitlines()[-1]
    print(summary)
    assert summary.startswith("cases ") and int(summary.split()[1]) >= 5 * int(env["FUZZ_EXAMPLES"])
