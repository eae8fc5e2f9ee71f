"""pycnn._core.conv2d_forward / conv2d_backward against the float64 NumPy reference.

Every test runs twice through the ``isa`` fixture: on the CPU's best SIMD path and on the
portable baseline path. Backward is driven by a random upstream gradient G (loss =
sum(out * G)); an all-ones dout would hide transposition bugs.
"""
from __future__ import annotations

import numpy as np
import pytest

import reference as ref
from pycnn import _core

pytestmark = pytest.mark.usefixtures("isa")

FWD = dict(rtol=1e-5, atol=1e-5)
BWD = dict(rtol=1e-4, atol=1e-4)
# dweight and dbias are float32 sums over all N*OH*OW output positions (65536 for LeNet's
# conv1 at batch 64), so their atol is scaled by the array's RMS; see ref.assert_close.
BWD_BATCH_SUM = dict(BWD, scale_atol=True)


def case(N, H, W, C, KH, KW, F, strides=1, padding="valid", note=""):
    sid = f"{N}x{H}x{W}x{C}-k{KH}x{KW}x{F}-s{strides}-{padding}" + (f"-{note}" if note else "")
    return pytest.param(N, H, W, C, KH, KW, F, strides, padding, id=sid)


CASES = [
    case(1, 5, 5, 1, 3, 3, 1, note="batch1-C1"),
    case(3, 7, 5, 3, 3, 3, 4, note="H!=W-odd"),
    case(2, 9, 8, 3, 3, 3, 5, 2, note="stride2-kernel3"),
    case(2, 8, 11, 2, 2, 4, 3, (2, 3), note="rect-kernel-rect-strides"),
    case(2, 5, 4, 3, 5, 4, 2, note="out1x1"),
    case(1, 6, 6, 2, 3, 3, 2, 4, note="out1x1-by-stride"),
    case(2, 6, 5, 8, 1, 1, 4, note="1x1"),
    case(2, 7, 6, 5, 1, 1, 3, 2, note="1x1-stride2"),
    case(2, 7, 6, 3, 3, 3, 4, 1, "same", note="odd-kernel"),
    case(2, 6, 7, 3, 4, 2, 3, 1, "same", note="even-kernel-asym-pad"),
    case(2, 8, 9, 3, 3, 3, 2, 2, "same", note="stride2-asym-pad"),
    case(1, 3, 2, 2, 5, 5, 2, 1, "same", note="kernel-larger-than-input"),
    case(2, 9, 9, 2, 2, 2, 3, 3, "same", note="stride>kernel"),
    # stride 1, few channels, wide output: the kernel's direct (non-im2col) path
    case(1, 9, 8, 1, 3, 3, 1, 1, "same", note="direct-C1-OW8"),
    case(2, 10, 13, 3, 4, 4, 5, 1, "same", note="direct-even-kernel"),
    case(3, 12, 20, 4, 3, 5, 17, 1, "valid", note="direct-rect"),
    case(2, 6, 27, 2, 1, 1, 33, 1, "valid", note="direct-1x1"),
    case(2, 5, 11, 3, 5, 3, 9, 1, "same", note="direct-tall-kernel"),
    case(1, 3, 40, 2, 3, 2, 7, 1, "valid", note="direct-OH1"),
    case(64, 32, 32, 3, 5, 5, 6, 1, "same", note="lenet-conv1"),
    case(64, 16, 16, 6, 5, 5, 16, 1, "valid", note="lenet-conv2"),
    case(8, 14, 14, 64, 3, 3, 128, 1, "same", note="64to128"),
    case(4, 22, 22, 32, 7, 7, 64, 1, "valid", note="7x7-32to64"),
    case(2, 11, 13, 67, 3, 3, 131, 1, "same", note="odd-channels"),
    case(3, 15, 17, 48, 3, 3, 96, 2, "same", note="stride2-wide"),
    case(1, 5, 6, 520, 3, 3, 8, 1, "same", note="K>4096-gemm-NC-panel"),
    # F a multiple of the vector width (16 floats on AVX-512, 4 on the baseline path): the
    # direct NHWC path vectorised over output channels. Channel blocks of 3 and 4+1 vectors,
    # pixel tiles within a row (with a short last tile) and across rows (OW smaller than a
    # tile), the input gradient through the rotated kernel (stride 1, C a multiple of the
    # vector width, also with C split into several channel blocks) and through GEMM + col2im.
    case(2, 7, 9, 24, 3, 3, 48, 1, "same", note="overf-3-vectors"),
    case(2, 11, 15, 32, 5, 3, 80, 1, "valid", note="overf-4+1-vectors-row-tail"),
    case(3, 9, 6, 16, 3, 3, 32, 1, "valid", note="overf-tiles-across-rows"),
    case(2, 6, 7, 128, 3, 3, 16, 1, "same", note="overf-dinp-C-blocks"),
    case(2, 7, 9, 16, 4, 4, 16, 1, "same", note="overf-even-kernel-asym-pad"),
    case(2, 9, 10, 8, 3, 2, 32, (2, 1), "same", note="overf-rect-strides-padded"),
    case(2, 5, 7, 16, 1, 1, 32, 1, "valid", note="overf-1x1"),
    case(1, 4, 4, 32, 3, 3, 64, 1, "valid", note="overf-batch1-out2x2"),
]
ARGS = "N,H,W,C,KH,KW,F,strides,padding"


def make_conv(rng, N, H, W, C, KH, KW, F):
    """float32 input U(-1, 1), weights scaled by 1/sqrt(fan_in) so outputs stay O(1), small bias."""
    x = rng.uniform(-1, 1, (N, H, W, C)).astype(np.float32)
    w = (rng.standard_normal((KH, KW, C, F)) / np.sqrt(KH * KW * C)).astype(np.float32)
    b = (rng.standard_normal(F) * 0.1).astype(np.float32)
    return x, w, b


@pytest.mark.parametrize(ARGS, CASES)
def test_conv2d_forward(N, H, W, C, KH, KW, F, strides, padding, rng):
    x, w, b = make_conv(rng, N, H, W, C, KH, KW, F)
    out = _core.conv2d_forward(x, w, b, strides=strides, padding=padding)
    assert out.dtype == np.float32
    ref.assert_close(out, ref.conv2d_forward(x, w, b, strides, padding), name="out", **FWD)


@pytest.mark.parametrize(ARGS, CASES)
def test_conv2d_backward(N, H, W, C, KH, KW, F, strides, padding, rng):
    x, w, b = make_conv(rng, N, H, W, C, KH, KW, F)
    out = _core.conv2d_forward(x, w, b, strides=strides, padding=padding)
    G = rng.standard_normal(out.shape).astype(np.float32)
    dinp, dweight, dbias = _core.conv2d_backward(G, x, w, strides=strides, padding=padding)
    rdinp, rdweight, rdbias = ref.conv2d_backward(G, x, w, None, strides, padding)
    for got, want, name in [(dinp, rdinp, "dinp"), (dweight, rdweight, "dweight"), (dbias, rdbias, "dbias")]:
        assert got.dtype == np.float32, name
        ref.assert_close(got, want, name=name, **(BWD if name == "dinp" else BWD_BATCH_SUM))


ACT_CASES = [
    case(2, 7, 6, 3, 3, 3, 4, 1, "same"),
    case(2, 10, 13, 3, 4, 4, 5, 1, "same", note="direct"),
    case(3, 9, 8, 24, 3, 2, 40, 2, "valid"),
    case(2, 8, 9, 16, 3, 3, 32, 1, "same", note="overf"),
]


@pytest.mark.parametrize("activation", ref.ACTIVATIONS)
@pytest.mark.parametrize(ARGS, ACT_CASES)
def test_conv2d_fused_activation(N, H, W, C, KH, KW, F, strides, padding, activation, rng):
    x, w, b = make_conv(rng, N, H, W, C, KH, KW, F)
    out = _core.conv2d_forward(x, w, b, strides=strides, padding=padding, activation=activation)
    ref.assert_close(out, ref.conv2d_forward(x, w, b, strides, padding, activation), name="out", **FWD)
    G = rng.standard_normal(out.shape).astype(np.float32)
    got = _core.conv2d_backward(G, x, w, out, strides=strides, padding=padding, activation=activation)
    # both sides differentiate through the same cached output, as a layer would
    want = ref.conv2d_backward(G, x, w, out, strides, padding, activation)
    for g, r, name in zip(got, want, ["dinp", "dweight", "dbias"]):
        ref.assert_close(g, r, name=name, **(BWD if name == "dinp" else BWD_BATCH_SUM))


@pytest.mark.parametrize(ARGS, [case(2, 7, 6, 3, 3, 3, 4, 1, "same"), case(4, 14, 14, 64, 3, 3, 128, 2, "same"),
                                 case(2, 10, 13, 3, 4, 4, 5, 1, "same", note="direct")])
def test_conv2d_without_bias_and_without_dinp(N, H, W, C, KH, KW, F, strides, padding, rng):
    x, w, _ = make_conv(rng, N, H, W, C, KH, KW, F)
    out = _core.conv2d_forward(x, w, None, strides=strides, padding=padding, activation="relu")
    ref.assert_close(out, ref.conv2d_forward(x, w, None, strides, padding, "relu"), name="out", **FWD)
    G = rng.standard_normal(out.shape).astype(np.float32)
    rdinp, rdweight, rdbias = ref.conv2d_backward(G, x, w, out, strides, padding, "relu")
    for has_bias, need_dinp in [(False, True), (True, False), (False, False)]:
        dinp, dweight, dbias = _core.conv2d_backward(G, x, w, out, strides=strides, padding=padding,
                                                     activation="relu", has_bias=has_bias, need_dinp=need_dinp)
        flags = f"(has_bias={has_bias}, need_dinp={need_dinp})"
        assert (dinp is None) == (not need_dinp), flags
        assert (dbias is None) == (not has_bias), flags
        ref.assert_close(dweight, rdweight, name="dweight" + flags, **BWD_BATCH_SUM)
        if need_dinp:
            ref.assert_close(dinp, rdinp, name="dinp" + flags, **BWD)
        if has_bias:
            ref.assert_close(dbias, rdbias, name="dbias" + flags, **BWD_BATCH_SUM)


@pytest.mark.parametrize("activation", ["linear", "tanh"])
@pytest.mark.parametrize(ARGS, [case(2, 6, 7, 3, 4, 2, 3, 1, "same"), case(2, 9, 8, 3, 3, 3, 5, 2, "valid"),
                                 case(2, 7, 10, 2, 3, 2, 4, 1, "same", note="direct")])
def test_conv2d_float32_finite_difference_spot_check(N, H, W, C, KH, KW, F, strides, padding, activation, rng):
    """~20 coordinates of each of inp, weight, bias: float32 kernel gradients vs its own finite differences."""
    x, w, b = make_conv(rng, N, H, W, C, KH, KW, F)
    out = _core.conv2d_forward(x, w, b, strides=strides, padding=padding, activation=activation)
    G = rng.standard_normal(out.shape)

    def loss():  # summed in float64 so the difference quotient sees only the kernel's rounding
        return np.sum(_core.conv2d_forward(x, w, b, strides=strides, padding=padding,
                                           activation=activation).astype(np.float64) * G)

    grads = _core.conv2d_backward(G, x, w, out, strides=strides, padding=padding, activation=activation)
    for arr, grad, name in zip([x, w, b], grads, ["dinp", "dweight", "dbias"]):
        idx = ref.random_indices(rng, arr.shape, 20)
        num = ref.numerical_gradient(loss, arr, eps=1e-2, indices=idx)
        ana = np.array([grad[i] for i in idx], dtype=np.float64)
        assert ref.rel_error(num, ana) < 1e-2, name


def test_conv2d_lecture_walkthrough():
    """The lecture's Conv2D(1, (2, 2), activation='relu') example with its printed weights and results."""
    x = np.array([[1, 1, 2], [1, 2, 1], [2, 1, 1]], dtype=np.float32).reshape(1, 3, 3, 1)
    w = np.array([[0.6779961, -0.3282364], [0.61954254, -0.02001727]], dtype=np.float32).reshape(2, 2, 1, 1)
    b = np.zeros(1, dtype=np.float32)
    y = np.ones((1, 2, 2, 1))
    out = _core.conv2d_forward(x, w, b, activation="relu")
    np.testing.assert_allclose(out[0, :, :, 0], [[0.9292677, 1.2405912], [1.2405912, 1.6272811]], rtol=1e-6)
    loss = np.mean((out.astype(np.float64) - y) ** 2)
    assert loss == pytest.approx(0.12856321, rel=1e-6)
    dout = (2 * (out.astype(np.float64) - y) / out.size).astype(np.float32)
    np.testing.assert_allclose(dout[0, :, :, 0], [[-0.03536615, 0.12029558], [0.12029558, 0.31364053]], rtol=1e-5)
    _, dweight, dbias = _core.conv2d_backward(dout, x, w, out, activation="relu")
    np.testing.assert_allclose(dweight[:, :, 0, 0], [[0.83250606, 0.75945675], [0.75945675, 0.4834994]], rtol=1e-5)
    np.testing.assert_allclose(dbias, [0.5188656], rtol=1e-5)


def test_conv2d_backward_writes_every_output(rng):
    """Outputs are allocated uninitialised. NaN-filled blocks of exactly the output sizes are freed
    just before the call, so NumPy's small-block cache hands them back as dinp/dweight/dbias: a
    kernel that accumulated into its output instead of writing it would return NaN."""
    x, w, _ = make_conv(rng, 2, 6, 5, 3, 3, 3, 4)
    G = rng.standard_normal((2, 6, 5, 4)).astype(np.float32)
    want = ref.conv2d_backward(G, x, w, None, 1, "same")
    for _ in range(3):
        junk = [np.full(n, np.nan, dtype=np.float32) for n in (x.size, w.size, 4)]
        del junk
        got = _core.conv2d_backward(G, x, w, padding="same")
        for g, r, name in zip(got, want, ["dinp", "dweight", "dbias"]):
            ref.assert_close(g, r, name=name, **BWD)
