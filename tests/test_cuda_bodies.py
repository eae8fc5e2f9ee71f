"""The CUDA kernels' arithmetic, checked on the CPU.

csrc/cuda/bodies.h holds the per-element body of every CUDA kernel (one thread per output
element on the GPU). Each op registers those bodies, looped over all outputs on the host, as
its DeviceBodies (csrc/op_registry.h); a network compiled with ``device_bodies=True`` runs
them instead of the CPU kernels. These tests compare the two, and both with the float64
oracle, everywhere (no GPU, no CUDA build). They do not check launch, memory or
synchronisation: those need a device (tests for pycnn._cuda itself skip without one).
"""
from __future__ import annotations

import numpy as np
import pytest

import oracle as ref
from pycnn import ops

FWD = dict(rtol=1e-5, atol=1e-5)
BWD = dict(rtol=1e-4, atol=1e-4)


def both(spec, xs, dout_seed=None):
    """(CPU forward, bodies forward) and, with a seed, (CPU backward, bodies backward) for a
    random upstream gradient: each backward is (input gradients, parameter gradients)."""
    shapes = [x.shape[1:] for x in xs]
    cpu, dev = ops.OpCall(spec, shapes), ops.OpCall(spec, shapes, device_bodies=True)
    (out_c, tape_c), (out_d, tape_d) = cpu.forward(xs), dev.forward(xs)
    if dout_seed is None:
        return (out_c, out_d), None
    G = np.random.default_rng(dout_seed).standard_normal(out_c.shape).astype(np.float32)
    return (out_c, out_d), (G, cpu.backward(tape_c, G), dev.backward(tape_d, G))


CONV_CASES = [  # N, H, W, C, F, KH, KW, strides, padding
    pytest.param(1, 5, 5, 1, 1, 3, 3, (1, 1), "valid", id="batch1-C1"),
    pytest.param(2, 7, 6, 3, 4, 3, 3, (1, 1), "same", id="same-odd-kernel"),
    pytest.param(2, 6, 7, 3, 2, 2, 4, (1, 1), "same", id="same-even-kernel"),
    pytest.param(2, 9, 8, 2, 3, 3, 2, (2, 3), "valid", id="stride!=kernel"),
    pytest.param(3, 8, 9, 3, 5, 3, 3, (2, 2), "same", id="stride2-same"),
    pytest.param(2, 4, 5, 3, 2, 4, 5, (1, 1), "valid", id="out1x1"),
    pytest.param(2, 12, 12, 6, 16, 5, 5, (1, 1), "valid", id="lenet-conv2"),
]


@pytest.mark.parametrize("N,H,W,C,F,KH,KW,strides,padding", CONV_CASES)
@pytest.mark.parametrize("activation", ["linear", "relu", "tanh"])
def test_conv2d_bodies(N, H, W, C, F, KH, KW, strides, padding, activation):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((N, H, W, C)).astype(np.float32)
    w = rng.standard_normal((KH, KW, C, F)).astype(np.float32) * 0.3
    b = rng.standard_normal(F).astype(np.float32)
    spec = ops.OpSpec("conv2d", {"strides": strides, "padding": padding, "activation": activation}, (w, b))
    (cpu, dev), (G, (cdx, cdp), (ddx, ddp)) = both(spec, [x], dout_seed=1)
    want = ref.conv2d_forward(x, w, b, strides, padding, activation)
    np.testing.assert_allclose(dev, want, **FWD)
    np.testing.assert_allclose(dev, cpu, **FWD)
    rdx, rdw, rdb = ref.conv2d_backward(G, x, w, b, strides, padding, activation=activation)
    for name, got, r, c in zip(("dinp", "dweight", "dbias"), (ddx[0], ddp[0], ddp[1]), (rdx, rdw, rdb),
                               (cdx[0], cdp[0], cdp[1])):
        np.testing.assert_allclose(got, r, **BWD, err_msg=name)
        np.testing.assert_allclose(got, c, **BWD, err_msg=name)


def test_conv2d_bodies_without_bias():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 6, 5, 3)).astype(np.float32)
    w = rng.standard_normal((3, 3, 3, 4)).astype(np.float32)
    (cpu, dev), _ = both(ops.OpSpec("conv2d", {"padding": "same"}, (w, None)), [x])
    np.testing.assert_allclose(dev, ref.conv2d_forward(x, w, None, (1, 1), "same"), **FWD)
    np.testing.assert_allclose(dev, cpu, **FWD)


POOL_CASES = [  # N, H, W, C, pool, strides, padding
    pytest.param(1, 4, 4, 1, (2, 2), (2, 2), "valid", id="batch1-C1"),
    pytest.param(3, 7, 5, 3, (2, 2), (2, 2), "valid", id="non-tiling-odd"),
    pytest.param(2, 6, 7, 3, (3, 3), (1, 1), "valid", id="overlapping"),
    pytest.param(2, 9, 8, 2, (3, 2), (2, 3), "valid", id="rect-stride!=pool"),
    pytest.param(2, 5, 4, 3, (5, 4), (5, 4), "valid", id="out1x1"),
    pytest.param(2, 5, 5, 3, (2, 2), (2, 2), "same", id="asym-pad"),
    pytest.param(2, 7, 6, 3, (3, 3), (2, 2), "same", id="odd-window"),
    pytest.param(2, 6, 7, 2, (2, 4), (1, 1), "same", id="even-window-overlap"),
    pytest.param(1, 3, 3, 2, (4, 4), (1, 1), "same", id="window-larger-than-input"),
]


def distinct(shape, seed):
    """Distinct values (no ties), many negative so a padded zero would win if allowed to."""
    rng = np.random.default_rng(seed)
    n = int(np.prod(shape))
    return (rng.permutation(n).reshape(shape) - n / 2 + rng.uniform(0, 0.5, shape)).astype(np.float32)


@pytest.mark.parametrize("N,H,W,C,pool,strides,padding", POOL_CASES)
def test_maxpool2d_bodies(N, H, W, C, pool, strides, padding):
    x = distinct((N, H, W, C), 2)
    spec = ops.OpSpec("maxpool2d", {"pool_size": pool, "strides": strides, "padding": padding})
    (cpu, dev), (G, (cdx, _), (ddx, _)) = both(spec, [x], dout_seed=3)
    rout = ref.maxpool2d_forward(x, pool, strides, padding)
    np.testing.assert_allclose(dev, rout, **FWD)
    np.testing.assert_array_equal(dev, cpu)
    np.testing.assert_allclose(ddx[0], ref.maxpool2d_backward(G, x, pool, strides, padding), **BWD)
    # The gather adds in the CPU scatter's order: bit-identical.
    np.testing.assert_array_equal(ddx[0], cdx[0])


def test_maxpool2d_bodies_ties_go_to_the_first_maximum():
    x = np.zeros((1, 4, 4, 2), np.float32)  # every window is a tie
    (_, _), (G, (cdx, _), (ddx, _)) = both(ops.OpSpec("maxpool2d", {}), [x], dout_seed=4)
    np.testing.assert_array_equal(ddx[0], cdx[0])
    first = np.zeros_like(x)
    first[0, ::2, ::2, :] = G[0]  # each window's gradient goes to its top-left (first) element
    np.testing.assert_array_equal(ddx[0], first)


def test_maxpool2d_bodies_nan_wins_like_the_cpu():
    x = distinct((1, 4, 4, 1), 4)
    x[0, 1, 0, 0] = np.nan
    (cpu, dev), (_, (cdx, _), (ddx, _)) = both(ops.OpSpec("maxpool2d", {}), [x], dout_seed=5)
    np.testing.assert_array_equal(np.isnan(dev), np.isnan(cpu))
    np.testing.assert_array_equal(ddx[0], cdx[0])


@pytest.mark.parametrize("N,H,W,C,pool,strides,padding", POOL_CASES)
def test_avgpool2d_bodies(N, H, W, C, pool, strides, padding):
    x = np.random.default_rng(5).standard_normal((N, H, W, C)).astype(np.float32)
    spec = ops.OpSpec("avgpool2d", {"pool_size": pool, "strides": strides, "padding": padding})
    (cpu, dev), (G, (cdx, _), (ddx, _)) = both(spec, [x], dout_seed=6)
    np.testing.assert_allclose(dev, ref.avgpool2d_forward(x, pool, strides, padding), **FWD)
    np.testing.assert_allclose(dev, cpu, **FWD)
    np.testing.assert_allclose(ddx[0], ref.avgpool2d_backward(G, x.shape, pool, strides, padding), **BWD)
    np.testing.assert_allclose(ddx[0], cdx[0], **BWD)


@pytest.mark.parametrize("kind", ["global_maxpool2d", "global_avgpool2d"])
def test_global_pooling_bodies(kind):
    x = distinct((3, 5, 4, 2), 7)
    (cpu, dev), (_, (cdx, _), (ddx, _)) = both(ops.OpSpec(kind, {}), [x], dout_seed=8)
    np.testing.assert_allclose(dev, cpu, **FWD)
    np.testing.assert_allclose(ddx[0], cdx[0], **BWD)


@pytest.mark.parametrize("N,K", [(1, 1), (1, 10), (7, 3), (64, 10)])
@pytest.mark.parametrize("weighted", [False, True])
def test_softmax_crossentropy_bodies(N, K, weighted):
    rng = np.random.default_rng(6)
    logits = (rng.standard_normal((N, K)) * 4).astype(np.float32)
    labels = rng.integers(0, K, N)
    w = rng.random(N).astype(np.float32) if weighted else None
    loss, hits, grad = ops.loss("sparse_softmax_crossentropy", logits, labels, w, device_bodies=True)
    closs, chits, cgrad = ops.loss("sparse_softmax_crossentropy", logits, labels, w)
    rloss, rprobs = ref.softmax_crossentropy_forward(logits, labels)
    if not weighted:
        assert loss == pytest.approx(rloss, rel=1e-5, abs=1e-5)
        np.testing.assert_allclose(grad, ref.softmax_crossentropy_backward(rprobs, labels), **FWD)
    assert loss == pytest.approx(closs, rel=1e-6, abs=1e-6)
    assert hits == chits == int((logits.argmax(axis=1) == labels).sum())
    np.testing.assert_allclose(grad, cgrad, **FWD)


def test_softmax_crossentropy_bodies_large_logits_stay_finite():
    logits = np.array([[1000.0, 0.0, -1000.0], [-5e4, 5e4, 0.0]], np.float32)
    labels = np.array([2, 0])
    loss, _, grad = ops.loss("sparse_softmax_crossentropy", logits, labels, device_bodies=True)
    assert np.isfinite(loss) and np.all(np.isfinite(grad))
    assert loss == pytest.approx(ref.softmax_crossentropy_forward(logits, labels)[0], rel=1e-6)


@pytest.mark.parametrize("N,IN,OUT", [(1, 1, 1), (3, 7, 5), (64, 400, 120), (5, 84, 10)])
@pytest.mark.parametrize("activation", ["linear", "relu", "sigmoid", "tanh"])
def test_dense_bodies(N, IN, OUT, activation):
    rng = np.random.default_rng(7)
    x = rng.standard_normal((N, IN)).astype(np.float32)
    w = (rng.standard_normal((IN, OUT)) / np.sqrt(IN)).astype(np.float32)
    b = rng.standard_normal(OUT).astype(np.float32)
    (cpu, dev), (G, (cdx, cdp), (ddx, ddp)) = both(ops.OpSpec("dense", {"activation": activation}, (w, b)), [x], 9)
    want = ref.dense_forward(x, w, b, activation)
    np.testing.assert_allclose(dev, want, **FWD)
    np.testing.assert_allclose(dev, cpu, **FWD)
    rdx, rdw, rdb = ref.dense_backward(G, x, w, b, activation)
    for name, got, r, c in zip(("dinp", "dweight", "dbias"), (ddx[0], ddp[0], ddp[1]), (rdx, rdw, rdb),
                               (cdx[0], cdp[0], cdp[1])):
        np.testing.assert_allclose(got, r, **BWD, err_msg=name)
        np.testing.assert_allclose(got, c, **BWD, err_msg=name)


@pytest.mark.parametrize("activation", ["relu", "sigmoid", "tanh", "linear"])
def test_activation_bodies(activation):
    rng = np.random.default_rng(8)
    x = rng.standard_normal((4, 5, 3)).astype(np.float32) * 3
    x[np.abs(x) < 1e-3] = 0.5  # away from relu's kink
    (cpu, dev), (G, (cdx, _), (ddx, _)) = both(ops.OpSpec("activation", {"activation": activation}), [x], 10)
    np.testing.assert_allclose(dev, ref.activate(x, activation), **FWD)
    np.testing.assert_allclose(dev, cpu, **FWD)
    np.testing.assert_allclose(ddx[0], G * ref.activation_grad(dev, activation), **FWD)
    np.testing.assert_allclose(ddx[0], cdx[0], **FWD)


def test_a_whole_network_on_the_bodies_matches_the_cpu_step():
    """LeNet-like chain compiled on the bodies: loss, hits and every gradient as the CPU's."""
    rng = np.random.default_rng(11)
    x = rng.standard_normal((6, 12, 12, 3)).astype(np.float32)
    y = rng.integers(0, 5, 6)
    k1, b1 = (rng.standard_normal((3, 3, 3, 4)) * 0.3).astype(np.float32), np.zeros(4, np.float32)
    k2, b2 = (rng.standard_normal((100, 5)) * 0.1).astype(np.float32), np.zeros(5, np.float32)
    nodes = [("conv2d", "c", [0], [k1, b1], {"activation": "relu"}, [0, 1]),
             ("maxpool2d", "p", [1], [], {}, []), ("flatten", "f", [2], [], {}, []),
             ("dense", "d", [3], [k2, b2], {}, [2, 3])]
    results = []
    for device in (False, True):
        grads = [np.empty_like(a) for a in (k1, b1, k2, b2)]
        net = ops.Network([(12, 12, 3)], nodes, [4], device_bodies=device)
        loss, hits = net.train_step(x, y, "sparse_softmax_crossentropy", grads)
        results.append((loss, hits, grads))
    assert results[1][0] == pytest.approx(results[0][0], rel=1e-5)
    assert results[1][1] == results[0][1]
    for d, c in zip(results[1][2], results[0][2]):
        np.testing.assert_allclose(d, c, rtol=1e-4, atol=1e-5 * np.abs(c).max())


def test_what_the_bodies_cannot_run_is_refused_by_name():
    x = np.zeros((1, 4, 4, 3), np.float32)
    w = np.zeros((3, 3, 3, 4), np.float32)
    with pytest.raises(ValueError, match=r"\(op 'conv2d'\) cannot run on the CUDA bodies: dilated and grouped"):
        ops.OpCall(ops.OpSpec("conv2d", {"dilation_rate": (2, 2), "padding": "same"}, (w, None)), [x.shape[1:]],
                   device_bodies=True)
    with pytest.raises(ValueError, match=r"cannot run on the CUDA bodies: only relu, sigmoid and tanh"):
        ops.OpCall(ops.OpSpec("conv2d", {"activation": "softmax"}, (w, None)), [x.shape[1:]], device_bodies=True)
    with pytest.raises(ValueError, match=r"\(op 'sobel_edges'\) has no CUDA bodies"):
        ops.OpCall(ops.OpSpec("sobel_edges", {}), [x.shape[1:]], device_bodies=True)
    with pytest.raises(ValueError, match=r"computed output size would be zero or negative"):
        ops.OpCall(ops.OpSpec("maxpool2d", {"pool_size": (5, 5)}), [x.shape[1:]], device_bodies=True)
