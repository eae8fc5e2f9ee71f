"""pycnn._core Sobel edges and image gradients (tf.image.sobel_edges / image_gradients),
forward and backward, against the float64 NumPy reference; TensorFlow itself when installed.

Sizes cover the reflect padding's corner cases: 2 pixels (each border mirrors the other
pixel), odd and even sizes, one and several channels, batch 1 and more.
"""
from __future__ import annotations

import numpy as np
import pytest

import reference as ref
from pycnn import _core

pytestmark = pytest.mark.usefixtures("isa")

TOL = dict(rtol=1e-5, atol=1e-5)

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
    return rng.standard_normal(shape).astype(np.float32)


@pytest.mark.parametrize("shape", SHAPES)
def test_sobel_edges_forward_and_backward_match_the_reference(rng, shape):
    x = _data(rng, shape)
    out = _core.sobel_edges_forward(x)
    assert out.dtype == np.float32 and out.shape == shape + (2,)
    ref.assert_close(out, ref.sobel_edges_forward(x), **TOL, name="sobel out", scale_atol=True)
    dout = _data(rng, shape + (2,))
    dinp = _core.sobel_edges_backward(dout)
    assert dinp.shape == shape
    ref.assert_close(dinp, ref.sobel_edges_backward(dout), **TOL, name="sobel dinp", scale_atol=True)


@pytest.mark.parametrize("shape", SHAPES + [pytest.param((2, 1, 6, 2), id="H1"), pytest.param((2, 6, 1, 2), id="W1")])
@pytest.mark.parametrize("axis", [0, 1])
def test_image_gradient_forward_and_backward_match_the_reference(rng, shape, axis):
    x = _data(rng, shape)
    out = _core.image_gradient_forward(x, axis)
    assert out.dtype == np.float32 and out.shape == shape
    ref.assert_close(out, ref.image_gradient_forward(x, axis), **TOL, name="gradient out")
    last = out[:, -1] if axis == 0 else out[:, :, -1]
    assert not last.any(), "the last row / column must be exactly zero, as in TensorFlow"
    dout = _data(rng, shape)
    ref.assert_close(_core.image_gradient_backward(dout, axis), ref.image_gradient_backward(dout, axis), **TOL,
                     name="gradient dinp")


def test_backward_is_the_adjoint_of_forward(rng):
    # <forward(x), d> == <x, backward(d)> for a linear op: checks the two against each other
    # independently of the reference.
    x = _data(rng, (2, 6, 5, 3))
    d5 = _data(rng, (2, 6, 5, 3, 2))
    lhs = np.vdot(_core.sobel_edges_forward(x).astype(np.float64), d5)
    rhs = np.vdot(x.astype(np.float64), _core.sobel_edges_backward(d5))
    assert abs(lhs - rhs) <= 1e-4 * max(1.0, abs(lhs))
    d4 = _data(rng, x.shape)
    for axis in (0, 1):
        lhs = np.vdot(_core.image_gradient_forward(x, axis).astype(np.float64), d4)
        rhs = np.vdot(x.astype(np.float64), _core.image_gradient_backward(d4, axis))
        assert abs(lhs - rhs) <= 1e-4 * max(1.0, abs(lhs))


def test_a_constant_image_has_no_edges_and_a_ramp_has_the_textbook_response():
    flat = np.full((1, 5, 6, 2), 3.5, np.float32)
    assert not _core.sobel_edges_forward(flat).any()
    ramp = np.broadcast_to(np.arange(6, dtype=np.float32)[None, None, :, None], (1, 5, 6, 1)).copy()
    edges = _core.sobel_edges_forward(ramp)
    assert not edges[..., 0].any()                       # nothing changes along H
    np.testing.assert_array_equal(edges[0, :, 1:-1, 0, 1], 8.0)  # (1 + 2 + 1) * (x+1 - (x-1))
    np.testing.assert_array_equal(edges[0, :, 0, 0, 1], 0.0)     # reflect: column -1 mirrors column 1
    np.testing.assert_array_equal(_core.image_gradient_forward(ramp, 1)[0, :, :-1, 0], 1.0)


def test_non_contiguous_and_float64_inputs_are_converted(rng):
    x = rng.standard_normal((2, 6, 10, 3))[:, :, ::2]  # float64, strided
    ref.assert_close(_core.sobel_edges_forward(x), ref.sobel_edges_forward(x), **TOL, scale_atol=True)
    ref.assert_close(_core.image_gradient_forward(x, 1), ref.image_gradient_forward(x, 1), **TOL)


def test_bad_input_is_refused_with_what_was_expected_and_what_was_got():
    with pytest.raises(ValueError, match=r"sobel_edges_forward\(\) needs images of at least 2x2 pixels.*\(2, 1, 5, 3\)"):
        _core.sobel_edges_forward(np.zeros((2, 1, 5, 3), np.float32))
    with pytest.raises(ValueError, match=r"at least 2x2 pixels.*\(2, 5, 1, 3, 2\)"):
        _core.sobel_edges_backward(np.zeros((2, 5, 1, 3, 2), np.float32))
    with pytest.raises(ValueError, match=r"sobel_edges_forward\(\).*4"):
        _core.sobel_edges_forward(np.zeros((5, 5, 3), np.float32))
    with pytest.raises(ValueError, match=r"last axis of 2"):
        _core.sobel_edges_backward(np.zeros((1, 5, 5, 3, 3), np.float32))
    with pytest.raises(ValueError, match=r"every dimension >= 1"):
        _core.image_gradient_forward(np.zeros((0, 5, 5, 3), np.float32), 0)
    for axis in (-1, 2):
        with pytest.raises(ValueError, match=rf"axis 0 \(dy, along H\) or 1 \(dx, along W\)\. Received: axis={axis}"):
            _core.image_gradient_forward(np.zeros((1, 5, 5, 3), np.float32), axis)
        with pytest.raises(ValueError, match="Received: axis="):
            _core.image_gradient_backward(np.zeros((1, 5, 5, 3), np.float32), axis)


def test_matches_tensorflow_when_installed(rng):
    tf = pytest.importorskip("tensorflow", reason="TensorFlow is an optional cross-check")
    for shape in [(2, 7, 6, 3), (1, 2, 2, 1), (3, 32, 32, 3)]:
        x = _data(rng, shape)
        xt = tf.constant(x)
        np.testing.assert_allclose(_core.sobel_edges_forward(x), tf.image.sobel_edges(xt).numpy(), rtol=1e-5, atol=1e-5)
        dy, dx = tf.image.image_gradients(xt)
        np.testing.assert_allclose(_core.image_gradient_forward(x, 0), dy.numpy(), rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(_core.image_gradient_forward(x, 1), dx.numpy(), rtol=1e-6, atol=1e-6)
        d5 = _data(rng, shape + (2,))
        with tf.GradientTape() as tape:
            tape.watch(xt)
            y = tf.reduce_sum(tf.image.sobel_edges(xt) * d5)
        np.testing.assert_allclose(_core.sobel_edges_backward(d5), tape.gradient(y, xt).numpy(), rtol=1e-4, atol=1e-4)
