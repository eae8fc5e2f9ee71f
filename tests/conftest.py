"""Shared pytest configuration: build info in the report header, seeded RNG, SIMD-level fixture."""
from __future__ import annotations

import os
import sys

import numpy as np
import pytest

# The tests import the NumPy oracle as `import oracle`; make that work whether pytest is
# run from the repository root or from tests/, and whether or not tests/ is a package.
_TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
if _TESTS_DIR not in sys.path:
    sys.path.insert(0, _TESTS_DIR)


def pytest_report_header(config):
    try:
        import pycnn
    except Exception as exc:  # the header must not hide the real import error the tests will show
        return f"pycnn: not importable ({type(exc).__name__}: {exc})"
    info = pycnn.build_info()
    return "pycnn build_info: " + ", ".join(f"{k}={v}" for k, v in info.items())


@pytest.fixture
def rng() -> np.random.Generator:
    """A fresh generator with a fixed seed for every test, so each test is reproducible alone."""
    return np.random.default_rng(20240607)


@pytest.fixture(params=["native", "avx2", "baseline"])
def isa(request):
    """Runs a test on the CPU's best SIMD path, on the AVX2 path (when the CPU has AVX2 and
    something better, so that it is not the same run twice) and on the portable baseline.

    set_isa() is a cap: 'avx512' lets the kernels use the best level this CPU and build
    support, which is the state every other test expects, so it is restored afterwards.
    """
    from pycnn import _core

    if request.param == "avx2" and _core.build_info()["isa_detected"] != "avx512":
        pytest.skip("the AVX2 path is the native path (or unavailable) on this CPU")
    if request.param in ("baseline", "avx2"):
        _core.set_isa(request.param)
        assert _core.get_isa() == request.param
    else:
        _core.set_isa("avx512")
    try:
        yield request.param
    finally:
        _core.set_isa("avx512")


@pytest.fixture
def native_step_calls(monkeypatch):
    """Counts one-call training steps (forward, fused loss, backward and update in one native
    call: CompiledGraph.fused_step): ``calls["n"]``."""
    from pycnn import executor

    calls = {"n": 0}
    real = executor.CompiledGraph.fused_step

    def counting(self, *args, **kwargs):
        calls["n"] += 1
        return real(self, *args, **kwargs)

    monkeypatch.setattr(executor.CompiledGraph, "fused_step", counting)
    return calls


def pytest_sessionstart(session):
    # .ci/sanitize.sh runs the suite on a sanitized copy of the package: make sure it is that
    # copy, not the working tree's, that the tests import.
    expected = os.environ.get("PYCNN_EXPECT_PACKAGE_UNDER")
    if expected:
        import pycnn

        if not os.path.abspath(pycnn.__file__).startswith(os.path.abspath(expected)):
            raise pytest.UsageError(f"expected pycnn from {expected}, imported {pycnn.__file__}")
