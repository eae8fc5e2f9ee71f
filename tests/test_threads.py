"""Serial equals parallel: every op gives the same forward and backward with 1 thread and with
2 threads (within 1e-6 of the output's scale: parallel batch reductions may add partial sums
in another order). Shapes are large enough to reach the parallel code paths."""
from __future__ import annotations

import numpy as np
import pytest

import pycnn
from op_harness import assert_same, check_threads, f32
from pycnn import ops

OPENMP = ops.build_info()["openmp"]


@pytest.fixture(autouse=True)
def restore_threads():
    before = ops.get_num_threads()
    try:
        yield before
    finally:
        ops.set_num_threads(before)


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


CONV = [
    pytest.param(64, 32, 32, 3, 5, 5, 6, 1, "same", 1, 1, id="lenet-conv1"),
    pytest.param(64, 16, 16, 6, 5, 5, 16, 1, "valid", 1, 1, id="lenet-conv2"),
    pytest.param(8, 14, 14, 64, 3, 3, 128, 1, "same", 1, 1, id="64to128"),
    pytest.param(3, 15, 17, 48, 3, 3, 96, 2, "same", 1, 1, id="stride2"),
    pytest.param(5, 9, 8, 7, 1, 1, 9, 1, "valid", 1, 1, id="1x1"),
    pytest.param(6, 10, 10, 8, 3, 3, 8, 1, "same", 2, 2, id="dilated-grouped"),
    pytest.param(5, 9, 11, 8, 3, 3, 8, 2, "same", 2, 2, id="im2col-stride-and-dilation"),
]


@pytest.mark.parametrize("activation", ["linear", "relu", "softmax"])
@pytest.mark.parametrize("N,H,W,C,KH,KW,F,strides,padding,dilation,groups", CONV)
def test_conv2d_threads(N, H, W, C, KH, KW, F, strides, padding, dilation, groups, activation, rng):
    x = f32(rng.uniform(-1, 1, (N, H, W, C)))
    w = f32(rng.standard_normal((KH, KW, C // groups, F)) / np.sqrt(KH * KW * C))
    b = f32(rng.standard_normal(F) * 0.1)
    check_threads("conv2d", [x], [w, b], dict(strides=_pair(strides), padding=padding, dilation_rate=_pair(dilation),
                                              groups=groups, activation=activation), rng)


@pytest.mark.parametrize("activation", ["linear", "relu", "leaky_relu"])
def test_depthwise_and_separable_threads(activation, rng):
    x = f32(rng.uniform(-1, 1, (6, 12, 12, 32)))
    w = f32(rng.standard_normal((3, 3, 32, 2)) / 3)
    b = f32(rng.standard_normal(64) * 0.1)
    attrs = dict(padding="same", activation=activation)
    check_threads("depthwise_conv2d", [x], [w, b], attrs, rng)
    check_threads("depthwise_conv2d", [x], [w, None], dict(attrs, strides=(2, 2), dilation_rate=(1, 1)), rng)
    pw = f32(rng.standard_normal((1, 1, 64, 16)) / 8)
    check_threads("separable_conv2d", [x], [w, pw, b[:16]], dict(attrs, dilation_rate=(2, 2)), rng)


@pytest.mark.parametrize("pool,strides,padding", [(2, None, "valid"), (3, 1, "same"), (3, 2, "same")])
def test_pool_threads(pool, strides, padding, rng):
    x = f32(rng.standard_normal((64, 32, 32, 6)))
    attrs = dict(pool_size=_pair(pool), strides=_pair(pool if strides is None else strides), padding=padding)
    check_threads("maxpool2d", [x], [], attrs, rng)
    check_threads("avgpool2d", [x], [], attrs, rng)


@pytest.mark.parametrize("kind", ["global_maxpool2d", "global_avgpool2d"])
def test_global_pool_threads(kind, rng):
    check_threads(kind, [f32(rng.standard_normal((64, 16, 16, 24)))], [], {"keepdims": 1}, rng)


@pytest.mark.parametrize("activation", ["linear", "sigmoid", "softmax"])
@pytest.mark.parametrize("shape,OUT", [((64, 576), 120), ((256, 700), 300), ((3, 1000), 17), ((16, 9, 50), 20)])
def test_dense_threads(shape, OUT, activation, rng):
    x = f32(rng.uniform(-1, 1, shape))
    w = f32(rng.standard_normal((shape[-1], OUT)) / np.sqrt(shape[-1]))
    b = f32(rng.standard_normal(OUT))
    check_threads("dense", [x], [w, b], {"activation": activation}, rng)


@pytest.mark.parametrize("activation", ["relu", "sigmoid", "tanh", "softmax", "leaky_relu"])
def test_activation_threads(activation, rng):
    x = f32(rng.standard_normal((64, 32, 32, 6)) * 3)
    check_threads("activation", [x], [], {"activation": activation}, rng)
    if activation == "softmax":
        check_threads("activation", [f32(rng.standard_normal((4096, 10)))], [], {"activation": activation}, rng)


@pytest.mark.parametrize("N,K", [(512, 1000), (4096, 10), (3, 7)])
def test_loss_threads(N, K, rng):
    z = f32(rng.standard_normal((N, K)) * 3)
    labels = rng.integers(0, K, N)
    w = f32(rng.uniform(0, 2, N))
    results = []
    for n in (1, 2):
        ops.set_num_threads(n)
        results.append(ops.loss("sparse_softmax_crossentropy", z, labels, w))
    (l1, h1, d1), (l2, h2, d2) = results
    assert abs(l1 - l2) <= 1e-6 * max(1.0, abs(l1)) and h1 == h2
    assert_same(d1, d2, "dlogits")


@pytest.mark.parametrize("training", [1, 0])
@pytest.mark.parametrize("activation", ["linear", "relu"])
def test_batchnorm_threads(training, activation, rng):
    x = f32(rng.standard_normal((37, 9, 9, 6)) * 2 + 1)
    params = [f32(rng.standard_normal(6)), f32(rng.standard_normal(6)), f32(rng.standard_normal(6)),
              f32(rng.random(6) + 0.5)]
    check_threads("batchnorm", [x], params, {"training": training, "activation": activation}, rng)


@pytest.mark.parametrize("kind,attrs", [("sobel_edges", {}), ("image_gradient", {"axis": 0}),
                                        ("image_gradient", {"axis": 1}), ("zero_padding2d", {"padding": (1, 2, 3, 4)}),
                                        ("cropping2d", {"cropping": (1, 2, 3, 1)}), ("leaky_relu", {}),
                                        ("rescaling", {"scale": (0.5, 2.0, -1.0), "offset": (1.0, 0.0, 2.0)}),
                                        ("flatten", {}), ("reshape", {"target_shape": (-1, 3)}), ("identity", {})])
def test_small_ops_threads(kind, attrs, rng):
    check_threads(kind, [f32(rng.standard_normal((32, 17, 15, 3)))], [], attrs, rng)


@pytest.mark.parametrize("kind,attrs", [("concatenate", {"axis": 2}), ("add", {}), ("multiply", {})])
def test_merge_threads(kind, attrs, rng):
    xs = [f32(rng.standard_normal((32, 9, 11, 4))) for _ in range(3)]
    check_threads(kind, xs, [], attrs, rng)


@pytest.mark.skipif(not OPENMP, reason="serial build: the thread count is always 1")
def test_set_get_num_threads_round_trip():
    for n in (1, 2, 3, 1):
        ops.set_num_threads(n)
        assert ops.get_num_threads() == n
        assert pycnn.get_num_threads() == n
        assert ops.build_info()["num_threads"] == n
