"""The sobel_edges and image_gradient ops (tf.image.sobel_edges / image_gradients), forward
and backward, against the float64 oracle; TensorFlow itself when installed.

Sizes cover the reflect padding's corner cases: 2 pixels (each border mirrors the other
pixel), odd and even sizes, one and several channels, batch 1 and more. Their argument
errors are in test_ops_errors.py.
"""
from __future__ import annotations

import numpy as np
import pytest

import oracle
from op_harness import FWD, check_backward, check_forward, check_spot_fd, f32, make_call
from pycnn import ops

pytestmark = pytest.mark.usefixtures("isa")

# the outputs are sums of 6 terms of magnitude up to 2 |x|: atol scaled by their RMS
SOBEL_TOL = dict(FWD, scale_atol=True)

SHAPES = [
    pytest.param((1, 2, 2, 1), id="2x2-C1"),
    pytest.param((2, 2, 5, 3), id="H2"),
    pytest.param((2, 5, 2, 3), id="W2"),
    pytest.param((3, 3, 3, 1), id="3x3"),
    pytest.param((2, 7, 4, 3), id="odd-even"),
    pytest.param((2, 8, 9, 2), id="even-odd"),
    pytest.param((4, 32, 32, 3), id="cifar"),
    pytest.param((1, 13, 11, 17), id="many-channels"),
]


def _data(rng, shape):
    return f32(rng.standard_normal(shape))


@pytest.mark.parametrize("shape", SHAPES)
def test_sobel_edges_forward_and_backward_match_the_oracle(rng, shape):
    x = _data(rng, shape)
    out, _, _ = check_forward("sobel_edges", [x], [], {}, tol=SOBEL_TOL)
    assert out.shape == shape + (2,)
    check_backward("sobel_edges", [x], [], {}, rng, input_tol=SOBEL_TOL)


@pytest.mark.parametrize("shape", SHAPES + [pytest.param((2, 1, 6, 2), id="H1"), pytest.param((2, 6, 1, 2), id="W1")])
@pytest.mark.parametrize("axis", [0, 1])
def test_image_gradient_forward_and_backward_match_the_oracle(rng, shape, axis):
    x = _data(rng, shape)
    out, _, _ = check_forward("image_gradient", [x], [], {"axis": axis})
    last = out[:, -1] if axis == 0 else out[:, :, -1]
    assert not last.any(), "the last row / column must be exactly zero, as in TensorFlow"
    check_backward("image_gradient", [x], [], {"axis": axis}, rng, input_tol=FWD)


def _forward_backward(kind, attrs, x, d):
    call = make_call(kind, [x], [], attrs)
    out, tape = call.forward([x])
    (dinp,), _ = call.backward(tape, d)
    return out, dinp


def test_backward_is_the_adjoint_of_forward(rng):
    # <forward(x), d> == <x, backward(d)> for a linear op: checks the two against each other
    # independently of the oracle.
    x = _data(rng, (2, 6, 5, 3))
    d5 = _data(rng, (2, 6, 5, 3, 2))
    out, back = _forward_backward("sobel_edges", {}, x, d5)
    lhs, rhs = np.vdot(out.astype(np.float64), d5), np.vdot(x.astype(np.float64), back)
    assert abs(lhs - rhs) <= 1e-4 * max(1.0, abs(lhs))
    d4 = _data(rng, x.shape)
    for axis in (0, 1):
        out, back = _forward_backward("image_gradient", {"axis": axis}, x, d4)
        lhs, rhs = np.vdot(out.astype(np.float64), d4), np.vdot(x.astype(np.float64), back)
        assert abs(lhs - rhs) <= 1e-4 * max(1.0, abs(lhs))


def test_a_constant_image_has_no_edges_and_a_ramp_has_the_textbook_response():
    flat = np.full((1, 5, 6, 2), 3.5, np.float32)
    assert not ops.run("sobel_edges", [flat]).any()
    ramp = np.broadcast_to(np.arange(6, dtype=np.float32)[None, None, :, None], (1, 5, 6, 1)).copy()
    edges = ops.run("sobel_edges", [ramp])
    assert not edges[..., 0].any()                       # nothing changes along H
    np.testing.assert_array_equal(edges[0, :, 1:-1, 0, 1], 8.0)  # (1 + 2 + 1) * (x+1 - (x-1))
    np.testing.assert_array_equal(edges[0, :, 0, 0, 1], 0.0)     # reflect: column -1 mirrors column 1
    np.testing.assert_array_equal(ops.run("image_gradient", [ramp], attrs={"axis": 1})[0, :, :-1, 0], 1.0)


def test_non_contiguous_and_float64_inputs_are_converted(rng):
    x = rng.standard_normal((2, 6, 10, 3))[:, :, ::2]  # float64, strided
    assert not x.flags.c_contiguous
    oracle.assert_close(ops.run("sobel_edges", [x]), oracle.sobel_edges_forward(x), **SOBEL_TOL)
    oracle.assert_close(ops.run("image_gradient", [x], attrs={"axis": 1}), oracle.image_gradient_forward(x, 1), **FWD)


def test_float32_finite_difference_spot_check(rng):
    x = _data(rng, (2, 5, 6, 2))
    check_spot_fd("sobel_edges", [x], [], {}, rng)
    for axis in (0, 1):
        check_spot_fd("image_gradient", [x], [], {"axis": axis}, rng)


def test_matches_tensorflow_when_installed(rng):
    tf = pytest.importorskip("tensorflow", reason="TensorFlow is an optional cross-check")
    for shape in [(2, 7, 6, 3), (1, 2, 2, 1), (3, 32, 32, 3)]:
        x = _data(rng, shape)
        xt = tf.constant(x)
        np.testing.assert_allclose(ops.run("sobel_edges", [x]), tf.image.sobel_edges(xt).numpy(), rtol=1e-5,
                                   atol=1e-5)
        dy, dx = tf.image.image_gradients(xt)
        np.testing.assert_allclose(ops.run("image_gradient", [x], attrs={"axis": 0}), dy.numpy(), rtol=1e-6,
                                   atol=1e-6)
        np.testing.assert_allclose(ops.run("image_gradient", [x], attrs={"axis": 1}), dx.numpy(), rtol=1e-6,
                                   atol=1e-6)
        d5 = _data(rng, shape + (2,))
        with tf.GradientTape() as tape:
            tape.watch(xt)
            y = tf.reduce_sum(tf.image.sobel_edges(xt) * d5)
        np.testing.assert_allclose(_forward_backward("sobel_edges", {}, x, d5)[1], tape.gradient(y, xt).numpy(),
                                   rtol=1e-4, atol=1e-4)
