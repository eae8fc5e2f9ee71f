"""The conv2d op (pycnn.ops, kind 'conv2d': strided, 'same'/'valid', dilated, grouped, every
activation fused or applied after the kernel) against the float64 oracle.

Every test runs on the CPU's best SIMD path, on AVX2 and on the portable baseline (``isa``
fixture). Backward is driven by a random upstream gradient G (loss = sum(out * G)); an
all-ones dout would hide transposition bugs. The oracle's own finite-difference checks
are in test_oracle.py; 1 vs 2 threads in test_threads.py.
"""
from __future__ import annotations

import numpy as np
import pytest

import oracle
from op_harness import BWD, BWD_SUM, check_backward, check_forward, check_spot_fd, f32, make_call
from pycnn import ops

pytestmark = pytest.mark.usefixtures("isa")


def case(N, H, W, C, KH, KW, F, strides=1, padding="valid", note=""):
    sid = f"{N}x{H}x{W}x{C}-k{KH}x{KW}x{F}-s{strides}-{padding}" + (f"-{note}" if note else "")
    return pytest.param(N, H, W, C, KH, KW, F, strides, padding, id=sid.replace(" ", ""))


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
    case(2, 6, 7, 80, 3, 3, 32, 1, "same", note="overf-dinp-C-blocks-tail"),
    case(2, 7, 9, 16, 4, 4, 16, 1, "same", note="overf-even-kernel-asym-pad"),
    case(2, 9, 10, 8, 3, 2, 32, (2, 1), "same", note="overf-rect-strides-padded"),
    case(2, 5, 7, 16, 1, 1, 32, 1, "valid", note="overf-1x1"),
    case(1, 4, 4, 32, 3, 3, 64, 1, "valid", note="overf-batch1-out2x2"),
    # The input gradient's pixel-pair kernel: C an odd multiple of half a vector (AVX-512:
    # 8, 24, 40; AVX2: 12, 20; baseline: 6), odd and even pixel counts, > 1,024 pixels.
    case(3, 7, 9, 24, 3, 3, 32, 1, "same", note="pairs-C24-odd-pixels"),
    case(2, 6, 8, 8, 3, 3, 16, 1, "same", note="pairs-C8"),
    case(2, 5, 7, 40, 3, 2, 16, 1, "valid", note="pairs-C40"),
    case(2, 7, 8, 12, 3, 3, 16, 1, "same", note="pairs-C12"),
    case(2, 6, 9, 20, 2, 3, 16, 1, "same", note="pairs-C20"),
    case(2, 8, 7, 6, 3, 3, 16, 1, "same", note="pairs-C6"),
    case(2, 41, 33, 24, 3, 3, 16, 1, "same", note="pairs-C24-many-pixels"),
]
ARGS = "N,H,W,C,KH,KW,F,strides,padding"


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def make_conv(rng, N, H, W, C, KH, KW, F, groups=1):
    """float32 input U(-1, 1), kernel scaled by 1/sqrt(fan_in) so outputs stay O(1), small bias."""
    Cg = C // groups
    x = f32(rng.uniform(-1, 1, (N, H, W, C)))
    w = f32(rng.standard_normal((KH, KW, Cg, F)) / np.sqrt(KH * KW * Cg))
    b = f32(rng.standard_normal(F) * 0.1)
    return x, w, b


def attrs_of(strides=1, padding="valid", activation="linear", dilation=1, groups=1):
    return dict(strides=_pair(strides), padding=padding, activation=activation, dilation_rate=_pair(dilation),
                groups=groups)


@pytest.mark.parametrize(ARGS, CASES)
def test_conv2d_forward(N, H, W, C, KH, KW, F, strides, padding, rng):
    x, w, b = make_conv(rng, N, H, W, C, KH, KW, F)
    check_forward("conv2d", [x], [w, b], attrs_of(strides, padding))


@pytest.mark.parametrize(ARGS, CASES)
def test_conv2d_backward(N, H, W, C, KH, KW, F, strides, padding, rng):
    x, w, b = make_conv(rng, N, H, W, C, KH, KW, F)
    check_backward("conv2d", [x], [w, b], attrs_of(strides, padding), rng)


ACT_CASES = [
    case(2, 7, 6, 3, 3, 3, 4, 1, "same"),
    case(2, 10, 13, 3, 4, 4, 5, 1, "same", note="direct"),
    case(3, 9, 8, 24, 3, 2, 40, 2, "valid"),
    case(2, 8, 9, 16, 3, 3, 32, 1, "same", note="overf"),
]


@pytest.mark.parametrize("activation", oracle.ACTIVATIONS)
@pytest.mark.parametrize(ARGS, ACT_CASES)
def test_conv2d_activation(N, H, W, C, KH, KW, F, strides, padding, activation, rng):
    """relu / sigmoid / tanh run inside the kernel; softmax (over the filters) and leaky_relu after it."""
    x, w, b = make_conv(rng, N, H, W, C, KH, KW, F)
    attrs = attrs_of(strides, padding, activation)
    check_forward("conv2d", [x], [w, b], attrs)
    check_backward("conv2d", [x], [w, b], attrs, rng)


# ----------------------------------------------------------------------------- dilated, grouped


def gcase(N, H, W, C, KH, KW, F, strides=1, padding="valid", dilation=1, groups=1, note=""):
    sid = f"{N}x{H}x{W}x{C}-k{KH}x{KW}x{F}-s{strides}-d{dilation}-g{groups}-{padding}" + (f"-{note}" if note else "")
    return pytest.param(N, H, W, C, KH, KW, F, strides, padding, dilation, groups, id=sid.replace(" ", ""))


GROUPED = [
    gcase(2, 7, 6, 3, 3, 3, 4, dilation=2, note="dilated"),
    gcase(2, 9, 8, 4, 3, 2, 6, 1, "same", (2, 3), note="rect-dilation-same"),
    gcase(1, 6, 7, 2, 2, 2, 3, 1, "same", 3, note="even-kernel-dilated-same"),
    gcase(2, 7, 6, 4, 3, 3, 6, groups=2, note="groups2"),
    gcase(2, 8, 9, 6, 3, 3, 6, 2, "same", groups=3, note="groups3-stride2"),
    gcase(2, 5, 6, 4, 3, 3, 8, 1, "same", groups=4, note="groups=C"),
    gcase(2, 9, 9, 6, 3, 3, 4, 1, "same", 2, groups=2, note="groups-and-dilation"),
    gcase(1, 1, 1, 4, 1, 1, 6, groups=2, note="1x1-input"),
    gcase(1, 1, 1, 2, 3, 3, 2, 1, "same", 2, groups=2, note="1x1-input-same-dilated"),
    gcase(2, 5, 5, 2, 3, 3, 2, 1, "valid", 2, note="out1x1-dilated"),
    gcase(2, 7, 5, 3, 2, 2, 6, (2, 1), "valid", (1, 2), note="stride-h-dilation-w"),
    gcase(3, 5, 7, 8, 1, 1, 4, 2, "valid", groups=4, note="pointwise-grouped-stride2"),
    gcase(5, 9, 11, 16, 3, 3, 32, 1, "same", 2, groups=4, note="parallel-blocks"),
    gcase(2, 8, 7, 3, 2, 2, 3, 3, "valid", note="strided-rows-read-by-no-window"),
    # an axis with stride > 1 and dilation > 1 (not reachable from Conv2D, as in Keras): the
    # im2col path instead of the phase rewriting
    gcase(2, 9, 9, 4, 3, 3, 4, 2, "same", 2, groups=2, note="im2col-stride-and-dilation"),
    gcase(2, 10, 9, 3, 2, 3, 5, (3, 1), "valid", (2, 1), note="im2col-one-axis"),
    gcase(5, 9, 11, 8, 3, 3, 8, 2, "same", 2, groups=2, note="im2col-parallel-blocks"),
]
GARGS = "N,H,W,C,KH,KW,F,strides,padding,dilation,groups"


@pytest.mark.parametrize("activation", ["linear", "relu", "softmax"])
@pytest.mark.parametrize(GARGS, GROUPED)
def test_conv2d_dilated_grouped(N, H, W, C, KH, KW, F, strides, padding, dilation, groups, activation, rng):
    x, w, b = make_conv(rng, N, H, W, C, KH, KW, F, groups)
    attrs = attrs_of(strides, padding, activation, dilation, groups)
    check_forward("conv2d", [x], [w, b], attrs)
    check_backward("conv2d", [x], [w, b], attrs, rng)


# ----------------------------------------------------------------------------- optional bias, frozen weights, no dinp


OPTIONAL_CASES = [case(2, 7, 6, 3, 3, 3, 4, 1, "same"), case(4, 14, 14, 64, 3, 3, 128, 2, "same"),
                  case(2, 10, 13, 3, 4, 4, 5, 1, "same", note="direct")]


@pytest.mark.parametrize("groups,dilation", [(1, 1), (1, 2)])
@pytest.mark.parametrize(ARGS, OPTIONAL_CASES)
def test_conv2d_without_bias(N, H, W, C, KH, KW, F, strides, padding, groups, dilation, rng):
    x, w, _ = make_conv(rng, N, H, W, C, KH, KW, F)
    attrs = attrs_of(1 if dilation > 1 else strides, padding, "relu", dilation, groups)
    check_forward("conv2d", [x], [w, None], attrs)
    check_backward("conv2d", [x], [w, None], attrs, rng)


@pytest.mark.parametrize("trained,input_grads", [([True, True], False), ([False, True], True), ([True, False], True),
                                                 ([False, False], True), ([True, False], False)])
@pytest.mark.parametrize(ARGS, OPTIONAL_CASES)
def test_conv2d_backward_of_a_subset(N, H, W, C, KH, KW, F, strides, padding, trained, input_grads, rng):
    """Frozen parameters get no gradient and input_grads=False no input gradient; what is
    computed equals the full backward's (the first layer of a network skips dinp)."""
    x, w, b = make_conv(rng, N, H, W, C, KH, KW, F)
    check_backward("conv2d", [x], [w, b], attrs_of(strides, padding, "tanh"), rng, trained=trained,
                   input_grads=input_grads)


# ----------------------------------------------------------------------------- float32 finite differences


@pytest.mark.parametrize("activation", oracle.ACTIVATIONS)
@pytest.mark.parametrize(GARGS, [gcase(2, 6, 7, 3, 4, 2, 3, 1, "same"), gcase(2, 9, 8, 3, 3, 3, 5, 2, "valid"),
                                 gcase(2, 7, 10, 2, 3, 2, 4, 1, "same", note="direct"),
                                 gcase(2, 7, 6, 4, 3, 3, 4, 1, "same", 2, 2, note="dilated-grouped")])
def test_conv2d_float32_finite_difference_spot_check(N, H, W, C, KH, KW, F, strides, padding, dilation, groups,
                                                     activation, rng):
    """~20 coordinates of each of input, kernel, bias: the float32 op's gradients vs its own
    finite differences (coordinates at a relu / leaky_relu kink skipped)."""
    x, w, b = make_conv(rng, N, H, W, C, KH, KW, F, groups)
    check_spot_fd("conv2d", [x], [w, b], attrs_of(strides, padding, activation, dilation, groups), rng,
                  skip_kinks=activation in ("relu", "leaky_relu"))


# ----------------------------------------------------------------------------- worked example, outputs written


def test_conv2d_lecture_walkthrough():
    """The lecture's Conv2D(1, (2, 2), activation='relu') example with its printed weights and results."""
    x = np.array([[1, 1, 2], [1, 2, 1], [2, 1, 1]], dtype=np.float32).reshape(1, 3, 3, 1)
    w = np.array([[0.6779961, -0.3282364], [0.61954254, -0.02001727]], dtype=np.float32).reshape(2, 2, 1, 1)
    b = np.zeros(1, dtype=np.float32)
    y = np.ones((1, 2, 2, 1))
    call = make_call("conv2d", [x], [w, b], {"activation": "relu"})
    out, tape = call.forward([x])
    np.testing.assert_allclose(out[0, :, :, 0], [[0.9292677, 1.2405912], [1.2405912, 1.6272811]], rtol=1e-6)
    loss = np.mean((out.astype(np.float64) - y) ** 2)
    assert loss == pytest.approx(0.12856321, rel=1e-6)
    dout = (2 * (out.astype(np.float64) - y) / out.size).astype(np.float32)
    np.testing.assert_allclose(dout[0, :, :, 0], [[-0.03536615, 0.12029558], [0.12029558, 0.31364053]], rtol=1e-5)
    _, (dweight, dbias) = call.backward(tape, dout)
    np.testing.assert_allclose(dweight[:, :, 0, 0], [[0.83250606, 0.75945675], [0.75945675, 0.4834994]], rtol=1e-5)
    np.testing.assert_allclose(dbias, [0.5188656], rtol=1e-5)


@pytest.mark.parametrize("groups,dilation", [(1, 1), (2, 2)])
def test_conv2d_backward_writes_every_output(groups, dilation, rng):
    """Backward writes its gradients, never adds to them: parameter gradients handed in full of
    NaN come back right, and so do input gradients in memory that NumPy's small-block cache
    hands back after NaN-filled blocks of exactly that size were freed just before the call.
    A second backward on the same tape gives the same result."""
    x, w, b = make_conv(rng, 2, 6, 5, 4, 3, 3, 4, groups)
    attrs = attrs_of(1, "same", "tanh", dilation, groups)
    call = make_call("conv2d", [x], [w, b], attrs)
    out, tape = call.forward([x])
    G = f32(rng.standard_normal(out.shape))
    (rdinp,), (rdw, rdb) = oracle.backward("conv2d", G, [x], [w, b], attrs)
    first = None
    for _ in range(3):
        grads = [np.full_like(w, np.nan), np.full_like(b, np.nan)]
        junk = [np.full(x.size, np.nan, dtype=np.float32)]
        del junk
        (dinp,) = call.network.backward(tape, [G], grads)
        oracle.assert_close(dinp, rdinp, name="dinp", **BWD)
        oracle.assert_close(grads[0], rdw, name="dkernel", **BWD_SUM)
        oracle.assert_close(grads[1], rdb, name="dbias", **BWD_SUM)
        if first is None:
            first = [dinp.copy()] + [g.copy() for g in grads]
        else:
            for a, c in zip(first, [dinp] + grads):
                np.testing.assert_array_equal(a, c)


def test_run_and_opcall_agree_and_batches_are_independent(rng):
    """ops.run (inference) on a batch equals OpCall.forward, and each sample's output is what
    it gets alone (no sample reads another's rows, whatever the thread split)."""
    x, w, b = make_conv(rng, 5, 9, 8, 3, 3, 3, 7)
    attrs = attrs_of(2, "same", "sigmoid")
    whole = ops.run("conv2d", [x], [w, b], attrs)
    out, _, _ = check_forward("conv2d", [x], [w, b], attrs)
    np.testing.assert_array_equal(whole, out)
    for n in range(5):
        np.testing.assert_array_equal(ops.run("conv2d", [x[n:n + 1]], [w, b], attrs)[0], whole[n])
