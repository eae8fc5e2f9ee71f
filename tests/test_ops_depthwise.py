"""The depthwise_conv2d and separable_conv2d ops (pycnn.ops) against the float64 oracle:
strides, 'same'/'valid', dilation, depth multipliers (M = 1..4 have unrolled loops, M > 4
the generic one), optional bias, every activation.

Every test runs through the ``isa`` fixture (best SIMD path, AVX2, portable baseline).
Backward is driven by a random upstream gradient. The oracle's finite differences are in
test_oracle.py; 1 vs 2 threads in test_threads.py.
"""
from __future__ import annotations

import numpy as np
import pytest

import oracle
from op_harness import check_backward, check_forward, check_spot_fd, f32
from pycnn import ops

pytestmark = pytest.mark.usefixtures("isa")


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def dcase(N, H, W, C, KH, KW, M, strides=1, padding="valid", dilation=1, note=""):
    sid = f"{N}x{H}x{W}x{C}-k{KH}x{KW}-m{M}-s{strides}-d{dilation}-{padding}" + (f"-{note}" if note else "")
    return pytest.param(N, H, W, C, KH, KW, M, strides, padding, dilation, id=sid.replace(" ", ""))


DEPTHWISE = [
    dcase(1, 5, 5, 1, 3, 3, 1, note="batch1-C1"),
    dcase(2, 7, 6, 3, 3, 3, 1, 1, "same", note="odd"),
    dcase(2, 8, 9, 5, 3, 3, 2, 2, "same", note="M2-stride2"),
    dcase(2, 6, 7, 4, 4, 2, 3, 1, "same", note="even-kernel-M3"),
    dcase(2, 9, 8, 3, 3, 3, 1, 1, "same", 2, note="dilated-same"),
    dcase(2, 9, 10, 2, 2, 3, 2, 1, "valid", (3, 2), note="rect-dilated-M2"),
    dcase(2, 9, 9, 3, 3, 3, 1, 2, "same", 2, note="stride-and-dilation"),
    dcase(1, 1, 1, 6, 3, 3, 2, 1, "same", note="1x1-input"),
    dcase(2, 5, 4, 3, 5, 4, 1, note="out1x1"),
    dcase(2, 11, 13, 37, 3, 3, 1, (2, 3), "same", note="odd-channels-rect-strides"),
    dcase(4, 12, 12, 64, 3, 3, 1, 1, "same", note="vector-channels-parallel"),
    dcase(3, 10, 9, 24, 5, 5, 2, 1, "same", note="5x5-M2-parallel"),
    # M = 1..4 have their own unrolled loops; M > 4 spreads the pixel over a scratch row
    dcase(2, 7, 8, 5, 3, 3, 4, 1, "same", note="M4"),
    dcase(2, 7, 8, 3, 3, 2, 5, 2, "same", 2, note="M5-generic"),
    dcase(2, 6, 6, 17, 3, 3, 8, 1, "valid", note="M8-generic-odd-C"),
]
DARGS = "N,H,W,C,KH,KW,M,strides,padding,dilation"


def make(rng, N, H, W, C, KH, KW, M, F=None):
    x = f32(rng.uniform(-1, 1, (N, H, W, C)))
    w = f32(rng.standard_normal((KH, KW, C, M)) / np.sqrt(KH * KW))
    b = f32(rng.standard_normal(C * M if F is None else F) * 0.1)
    return x, w, b


def window(strides=1, padding="valid", dilation=1, activation="linear"):
    return dict(strides=_pair(strides), padding=padding, dilation_rate=_pair(dilation), activation=activation)


@pytest.mark.parametrize("activation", ["linear", "sigmoid"])
@pytest.mark.parametrize(DARGS, DEPTHWISE)
def test_depthwise_forward_backward(N, H, W, C, KH, KW, M, strides, padding, dilation, activation, rng):
    x, w, b = make(rng, N, H, W, C, KH, KW, M)
    attrs = window(strides, padding, dilation, activation)
    check_forward("depthwise_conv2d", [x], [w, b], attrs)
    check_backward("depthwise_conv2d", [x], [w, b], attrs, rng)


@pytest.mark.parametrize("activation", oracle.ACTIVATIONS)
@pytest.mark.parametrize(DARGS, [DEPTHWISE[2], DEPTHWISE[5], DEPTHWISE[13]])
def test_depthwise_every_activation(N, H, W, C, KH, KW, M, strides, padding, dilation, activation, rng):
    x, w, b = make(rng, N, H, W, C, KH, KW, M)
    attrs = window(strides, padding, dilation, activation)
    check_forward("depthwise_conv2d", [x], [w, b], attrs)
    check_backward("depthwise_conv2d", [x], [w, b], attrs, rng)


def test_depthwise_is_grouped_conv_with_groups_equal_channels(rng):
    """Keras's channel order: depthwise output channel c*M + m is grouped-conv filter c*M + m
    of group c, so the (KH, KW, C, M) kernel reshaped to (KH, KW, 1, C*M) gives the same result."""
    N, H, W, C, M = 2, 7, 8, 3, 2
    x, w, b = make(rng, N, H, W, C, 3, 3, M)
    attrs = window(1, "same", 2)
    dw = ops.run("depthwise_conv2d", [x], [w, b], attrs)
    gw = ops.run("conv2d", [x], [np.ascontiguousarray(w.reshape(3, 3, 1, C * M)), b], dict(attrs, groups=C))
    np.testing.assert_allclose(dw, gw, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("trained,input_grads", [([True, False], True), ([True, True], False), ([False, True], True)])
def test_depthwise_without_bias_and_backward_of_a_subset(trained, input_grads, rng):
    x, w, b = make(rng, 2, 6, 5, 4, 3, 3, 2)
    attrs = window(1, "same", 1, "relu")
    check_forward("depthwise_conv2d", [x], [w, None], attrs)
    check_backward("depthwise_conv2d", [x], [w, None], attrs, rng, input_grads=input_grads)
    check_backward("depthwise_conv2d", [x], [w, b], attrs, rng, trained=trained, input_grads=input_grads)


# ----------------------------------------------------------------------------- separable


def scase(N, H, W, C, KH, KW, M, F, strides=1, padding="valid", dilation=1, note=""):
    sid = f"{N}x{H}x{W}x{C}-k{KH}x{KW}-m{M}-f{F}-s{strides}-d{dilation}-{padding}" + (f"-{note}" if note else "")
    return pytest.param(N, H, W, C, KH, KW, M, F, strides, padding, dilation, id=sid.replace(" ", ""))


SEPARABLE = [
    scase(1, 5, 5, 1, 3, 3, 1, 1, note="batch1-C1"),
    scase(2, 9, 8, 3, 3, 3, 2, 5, 1, "same", note="M2"),
    scase(2, 9, 8, 3, 3, 3, 1, 4, 2, "same", note="stride2"),
    scase(2, 9, 10, 3, 3, 2, 1, 3, 1, "valid", 2, note="dilated"),
    scase(2, 6, 7, 4, 4, 2, 3, 6, 1, "same", note="even-kernel-asym-pad"),
    scase(3, 12, 11, 16, 3, 3, 2, 32, 1, "same", note="parallel"),
    scase(2, 7, 8, 3, 3, 2, 5, 4, 2, "same", 2, note="M5-stride-and-dilation"),
    scase(2, 5, 4, 3, 5, 4, 1, 2, note="out1x1"),
]
SARGS = "N,H,W,C,KH,KW,M,F,strides,padding,dilation"


def make_separable(rng, N, H, W, C, KH, KW, M, F):
    x, dw, b = make(rng, N, H, W, C, KH, KW, M, F)
    pw = f32(rng.standard_normal((1, 1, C * M, F)) / np.sqrt(C * M))
    return x, dw, pw, b


@pytest.mark.parametrize("activation", ["linear", "tanh"])
@pytest.mark.parametrize(SARGS, SEPARABLE)
def test_separable_forward_backward(N, H, W, C, KH, KW, M, F, strides, padding, dilation, activation, rng):
    x, dw, pw, b = make_separable(rng, N, H, W, C, KH, KW, M, F)
    attrs = window(strides, padding, dilation, activation)
    check_forward("separable_conv2d", [x], [dw, pw, b], attrs)
    check_backward("separable_conv2d", [x], [dw, pw, b], attrs, rng)


@pytest.mark.parametrize("activation", oracle.ACTIVATIONS)
def test_separable_every_activation_with_and_without_bias(activation, rng):
    x, dw, pw, b = make_separable(rng, 2, 9, 8, 3, 3, 3, 2, 5)
    attrs = window(2, "same", 1, activation)
    for bias in (b, None):
        check_forward("separable_conv2d", [x], [dw, pw, bias], attrs)
        check_backward("separable_conv2d", [x], [dw, pw, bias], attrs, rng)
    check_backward("separable_conv2d", [x], [dw, pw, b], attrs, rng, trained=[False, True, False], input_grads=False)


def test_separable_is_depthwise_then_pointwise(rng):
    x, dw, pw, b = make_separable(rng, 2, 9, 8, 3, 3, 2, 2, 4)
    attrs = window(1, "same", 2)
    mid = ops.run("depthwise_conv2d", [x], [dw, None], attrs)
    want = ops.run("conv2d", [mid], [pw, b], {})
    np.testing.assert_allclose(ops.run("separable_conv2d", [x], [dw, pw, b], attrs), want, rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------- float32 finite differences


@pytest.mark.parametrize("activation", ["linear", "tanh", "softmax", "relu"])
def test_float32_finite_difference_spot_check(activation, rng):
    """~20 coordinates of each input and parameter: the float32 ops' gradients vs their own
    finite differences. (A separable conv's parameter moves so many outputs that most steps
    cross a relu kink: its relu case is left to the comparison with the oracle.)"""
    kinks = activation == "relu"
    x, w, b = make(rng, 2, 7, 6, 3, 3, 3, 2)
    check_spot_fd("depthwise_conv2d", [x], [w, b], window(2, "same", 1, activation), rng, skip_kinks=kinks)
    if not kinks:
        x, dw, pw, b = make_separable(rng, 2, 7, 6, 3, 3, 2, 2, 4)
        check_spot_fd("separable_conv2d", [x], [dw, pw, b], window(1, "same", 2, activation), rng)
