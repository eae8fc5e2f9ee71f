"""Runs the hypothesis fuzz suite (tests/fuzz_core.py: pycnn.ops' entry points on hostile
arrays and attributes, against the float64 oracle) in a child process: a crash there fails
this test with the case that caused it, instead of taking pytest down."""
from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

pytest.importorskip("hypothesis", reason="the fuzz suite needs hypothesis (pip install '.[test]')")


def test_fuzz_the_entry_points_in_a_child_process(tmp_path):
    log = tmp_path / "case.txt"
    here = os.path.dirname(os.path.abspath(__file__))
    examples = int(os.environ.get("FUZZ_EXAMPLES", "600"))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([p for p in sys.path if p]), FUZZ_EXAMPLES=str(examples))
    proc = subprocess.run([sys.executable, os.path.join(here, "fuzz_core.py"), "--log", str(log)],
                          capture_output=True, text=True, env=env, timeout=1200)
    last = log.read_text() if log.exists() else "(none)"
    assert proc.returncode == 0, (f"fuzz run ended with status {proc.returncode} (negative: killed by that signal); "
                                  f"last case: {last}\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}")
    summary = proc.stdout.strip().splitlines()[-1]
    print(summary)
    assert summary.startswith("cases ") and int(summary.split()[1]) >= 6 * examples
    # not only refusals: a good share of the cases reached the kernels and matched the oracle
    matched = {k: int(v) for k, v in re.findall(r"(\w+) matched: (\d+)", summary)}
    for kind in ("maxpool2d", "avgpool2d", "conv2d", "dense", "activation", "loss"):
        assert matched.get(kind, 0) >= examples // 40, (kind, summary)
