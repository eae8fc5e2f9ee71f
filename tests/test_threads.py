"""Serial equals parallel: every kernel gives the same result with 1 thread and with 2 threads
(within 1e-6 of the output's scale: parallel batch reductions may add partial sums in another
order). Shapes are large enough to reach the parallel code paths."""
from __future__ import annotations

import numpy as np
import pytest

import pycnn
from pycnn import _core

OPENMP = pycnn.build_info()["openmp"]


@pytest.fixture
def restore_threads():
    before = _core.get_num_threads()
    try:
        yield before
    finally:
        _core.set_num_threads(before)


def assert_same(a, b, name):
    if a is None or b is None:
        assert a is None and b is None, name
        return
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    assert a.shape == b.shape, name
    scale = max(1.0, float(np.max(np.abs(a), initial=0.0)))
    err = float(np.max(np.abs(a - b), initial=0.0))
    assert err <= 1e-6 * scale, f"{name}: 1 vs 2 threads differ by {err:.3g} (scale {scale:.3g})"


def run_both(fn):
    """fn() with 1 thread and with 2 threads; both results as tuples."""
    results = []
    for n in (1, 2):
        _core.set_num_threads(n)
        r = fn()
        results.append(r if isinstance(r, tuple) else (r,))
    return results


CONV = [
    pytest.param(64, 32, 32, 3, 5, 5, 6, 1, "same", id="lenet-conv1"),
    pytest.param(64, 16, 16, 6, 5, 5, 16, 1, "valid", id="lenet-conv2"),
    pytest.param(8, 14, 14, 64, 3, 3, 128, 1, "same", id="64to128"),
    pytest.param(3, 15, 17, 48, 3, 3, 96, 2, "same", id="stride2"),
    pytest.param(5, 9, 8, 7, 1, 1, 9, 1, "valid", id="1x1"),
]


@pytest.mark.parametrize("activation", ["linear", "relu"])
@pytest.mark.parametrize("N,H,W,C,KH,KW,F,strides,padding", CONV)
def test_conv2d_threads(N, H, W, C, KH, KW, F, strides, padding, activation, rng, restore_threads):
    x = rng.uniform(-1, 1, (N, H, W, C)).astype(np.float32)
    w = (rng.standard_normal((KH, KW, C, F)) / np.sqrt(KH * KW * C)).astype(np.float32)
    b = rng.standard_normal(F).astype(np.float32) * 0.1
    fwd = run_both(lambda: _core.conv2d_forward(x, w, b, strides=strides, padding=padding, activation=activation))
    assert_same(fwd[0][0], fwd[1][0], "out")
    out = fwd[0][0]
    G = rng.standard_normal(out.shape).astype(np.float32)
    bwd = run_both(lambda: _core.conv2d_backward(G, x, w, out, strides=strides, padding=padding, activation=activation))
    for a, c, name in zip(bwd[0], bwd[1], ["dinp", "dweight", "dbias"]):
        assert_same(a, c, name)


@pytest.mark.parametrize("pool,strides,padding", [(2, None, "valid"), (3, 1, "same"), (3, 2, "same")])
def test_pool_threads(pool, strides, padding, rng, restore_threads):
    x = rng.standard_normal((64, 32, 32, 6)).astype(np.float32)
    mx = run_both(lambda: _core.maxpool2d_forward(x, pool, strides, padding))
    assert_same(mx[0][0], mx[1][0], "maxpool out")
    np.testing.assert_array_equal(mx[0][1], mx[1][1])
    G = rng.standard_normal(mx[0][0].shape).astype(np.float32)
    dmx = run_both(lambda: _core.maxpool2d_backward(G, mx[0][1], x.shape, pool, strides, padding))
    assert_same(dmx[0][0], dmx[1][0], "maxpool dinp")
    av = run_both(lambda: _core.avgpool2d_forward(x, pool, strides, padding))
    assert_same(av[0][0], av[1][0], "avgpool out")
    dav = run_both(lambda: _core.avgpool2d_backward(G, x.shape, pool, strides, padding))
    assert_same(dav[0][0], dav[1][0], "avgpool dinp")


@pytest.mark.parametrize("activation", ["linear", "sigmoid"])
@pytest.mark.parametrize("N,IN,OUT", [(64, 576, 120), (256, 700, 300), (3, 1000, 17)])
def test_dense_threads(N, IN, OUT, activation, rng, restore_threads):
    x = rng.uniform(-1, 1, (N, IN)).astype(np.float32)
    w = (rng.standard_normal((IN, OUT)) / np.sqrt(IN)).astype(np.float32)
    b = rng.standard_normal(OUT).astype(np.float32)
    fwd = run_both(lambda: _core.dense_forward(x, w, b, activation))
    assert_same(fwd[0][0], fwd[1][0], "out")
    G = rng.standard_normal((N, OUT)).astype(np.float32)
    bwd = run_both(lambda: _core.dense_backward(G, x, w, fwd[0][0], activation))
    for a, c, name in zip(bwd[0], bwd[1], ["dinp", "dweight", "dbias"]):
        assert_same(a, c, name)


@pytest.mark.parametrize("N,K", [(512, 1000), (4096, 10), (3, 7)])
def test_softmax_threads(N, K, rng, restore_threads):
    z = (rng.standard_normal((N, K)) * 3).astype(np.float32)
    labels = rng.integers(0, K, N)
    sm = run_both(lambda: _core.softmax_forward(z))
    assert_same(sm[0][0], sm[1][0], "softmax out")
    G = rng.standard_normal(z.shape).astype(np.float32)
    dsm = run_both(lambda: _core.softmax_backward(G, sm[0][0]))
    assert_same(dsm[0][0], dsm[1][0], "softmax dinp")
    ce = run_both(lambda: _core.softmax_crossentropy_forward(z, labels))
    assert abs(ce[0][0] - ce[1][0]) <= 1e-6 * max(1.0, abs(ce[0][0])), (ce[0][0], ce[1][0])
    assert_same(ce[0][1], ce[1][1], "probs")
    dce = run_both(lambda: _core.softmax_crossentropy_backward(ce[0][1], labels))
    assert_same(dce[0][0], dce[1][0], "dlogits")


@pytest.mark.parametrize("name", ["relu", "sigmoid", "tanh"])
def test_activation_threads(name, rng, restore_threads):
    x = (rng.standard_normal((64, 32, 32, 6)) * 3).astype(np.float32)
    fwd = run_both(lambda: getattr(_core, f"{name}_forward")(x))
    assert_same(fwd[0][0], fwd[1][0], "out")
    G = rng.standard_normal(x.shape).astype(np.float32)
    bwd = run_both(lambda: getattr(_core, f"{name}_backward")(G, fwd[0][0]))
    assert_same(bwd[0][0], bwd[1][0], "dinp")


@pytest.mark.skipif(not OPENMP, reason="serial build: the thread count is always 1")
def test_set_get_num_threads_round_trip(restore_threads):
    for n in (1, 2, 3, 1):
        pycnn.set_num_threads(n)
        assert pycnn.get_num_threads() == n
        assert _core.get_num_threads() == n
        assert pycnn.build_info()["num_threads"] == n

