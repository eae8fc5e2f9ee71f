"""The dense, activation and leaky_relu ops (pycnn.ops) against the float64 oracle.

Every test runs through the ``isa`` fixture (best SIMD path, AVX2, portable baseline).
Backward is driven by a random upstream gradient. The oracle's finite differences are in
test_oracle.py; 1 vs 2 threads in test_threads.py.
"""
from __future__ import annotations

import numpy as np
import pytest

import oracle
from op_harness import check_backward, check_forward, check_spot_fd, f32, make_call
from pycnn import ops

pytestmark = pytest.mark.usefixtures("isa")

DENSE_SHAPES = [
    pytest.param((1, 1), 1, id="1x1x1"),
    pytest.param((1, 5), 3, id="batch1"),
    pytest.param((7, 13), 9, id="odd"),
    pytest.param((64, 576), 120, id="lenet-fc1"),
    pytest.param((64, 120), 84, id="lenet-fc2"),
    pytest.param((64, 84), 10, id="lenet-fc3"),
    pytest.param((33, 257), 129, id="odd-blocked"),
    pytest.param((256, 700), 300, id="large"),
    pytest.param((8, 300), 4100, id="out>4096-gemm-NC-panel"),
    pytest.param((3, 4, 7), 5, id="rank3-rows-per-sample"),
    pytest.param((2, 3, 5, 6), 4, id="rank4"),
]


def make_dense(rng, shape, OUT):
    IN = shape[-1]
    x = f32(rng.uniform(-1, 1, shape))
    w = f32(rng.standard_normal((IN, OUT)) / np.sqrt(IN))
    b = f32(rng.standard_normal(OUT) * 0.1)
    return x, w, b


@pytest.mark.parametrize("shape,OUT", DENSE_SHAPES)
def test_dense_forward(shape, OUT, rng):
    x, w, b = make_dense(rng, shape, OUT)
    check_forward("dense", [x], [w, b])
    check_forward("dense", [x], [w, None], name="out (no bias)")


@pytest.mark.parametrize("shape,OUT", DENSE_SHAPES)
def test_dense_backward(shape, OUT, rng):
    x, w, b = make_dense(rng, shape, OUT)
    check_backward("dense", [x], [w, b], {}, rng)


@pytest.mark.parametrize("activation", oracle.ACTIVATIONS)
@pytest.mark.parametrize("shape,OUT", [pytest.param((5, 7), 6, id="small"),
                                       pytest.param((64, 576), 120, id="lenet-fc1"),
                                       pytest.param((3, 2, 7), 5, id="rank3")])
def test_dense_activation(shape, OUT, activation, rng):
    """relu / sigmoid / tanh inside the kernel; softmax (over the units) and leaky_relu after it."""
    x, w, b = make_dense(rng, shape, OUT)
    check_forward("dense", [x], [w, b], {"activation": activation})
    check_backward("dense", [x], [w, b], {"activation": activation}, rng)


@pytest.mark.parametrize("trained,input_grads", [([True, True], False), ([False, True], True), ([True, False], True),
                                                 ([False, False], True)])
def test_dense_without_bias_and_backward_of_a_subset(trained, input_grads, rng):
    x, w, b = make_dense(rng, (9, 30), 17)
    check_backward("dense", [x], [w, None], {"activation": "tanh"}, rng, input_grads=input_grads)
    check_backward("dense", [x], [w, b], {"activation": "tanh"}, rng, trained=trained, input_grads=input_grads)


@pytest.mark.parametrize("activation", oracle.ACTIVATIONS)
def test_dense_float32_finite_difference_spot_check(activation, rng):
    x, w, b = make_dense(rng, (6, 11), 7)
    check_spot_fd("dense", [x], [w, b], {"activation": activation}, rng,
                  skip_kinks=activation in ("relu", "leaky_relu"))


# ----------------------------------------------------------------------------- the activation op

ACT_SHAPES = [(1, 1), (1, 1000), (3, 4, 5), (2, 3, 4, 5), (64, 32, 32, 6), (3, 1000), (33, 17), (4, 1)]


@pytest.mark.parametrize("shape", ACT_SHAPES, ids=str)
@pytest.mark.parametrize("activation", oracle.ACTIVATIONS)
def test_activation_forward_backward(activation, shape, rng):
    x = f32(rng.standard_normal(shape) * 3)
    out, _, _ = check_forward("activation", [x], [], {"activation": activation})
    if activation == "softmax":
        np.testing.assert_allclose(out.sum(axis=-1), 1.0, rtol=1e-5)
    check_backward("activation", [x], [], {"activation": activation}, rng)


def test_activation_extremes():
    x = np.array([[-1e4, -100.0, -20.0, -1e-30, 0.0, 1e-30, 20.0, 100.0, 1e4]], dtype=np.float32)
    for name in oracle.ACTIVATIONS:
        out = ops.run("activation", [x], attrs={"activation": name})
        assert np.isfinite(out).all(), name
        oracle.assert_close(out, oracle.activate(x, name), name=name, rtol=1e-5, atol=1e-5)
    relu = ops.run("activation", [x], attrs={"activation": "relu"})
    np.testing.assert_array_equal(relu[0, :5], 0.0)
    # the derivative at exactly 0 is 0 for relu, the slope for leaky_relu (as Keras)
    z = np.array([[0.0, 0.0, 2.0]], np.float32)
    for name, want in [("relu", [0.0, 0.0, 1.0]), ("leaky_relu", [0.2, 0.2, 1.0])]:
        call = make_call("activation", [z], [], {"activation": name})
        _, tape = call.forward([z])
        (dinp,), _ = call.backward(tape, np.ones_like(z))
        np.testing.assert_allclose(dinp[0], want, rtol=1e-7)


def test_linear_activation_is_the_identity(rng):
    x = f32(rng.standard_normal((3, 4)))
    call = make_call("activation", [x], [], {"activation": "linear"})
    out, tape = call.forward([x])
    np.testing.assert_array_equal(out, x)
    G = f32(rng.standard_normal(x.shape))
    np.testing.assert_array_equal(call.backward(tape, G)[0][0], G)


@pytest.mark.parametrize("activation", oracle.ACTIVATIONS)
def test_activation_float32_finite_difference_spot_check(activation, rng):
    x = f32(rng.uniform(-3, 3, (4, 9)))
    x[np.abs(x) < 0.05] = 0.5  # a 1e-2 step must not cross the relu / leaky_relu kink
    check_spot_fd("activation", [x], [], {"activation": activation}, rng)


# ----------------------------------------------------------------------------- the leaky_relu op


def kinkless(rng, shape):
    """Inputs with |x| >= 1e-3, so finite differences never straddle the kink at 0."""
    x = rng.standard_normal(shape)
    return f32(np.where(np.abs(x) < 1e-3, 0.5, x))


@pytest.mark.parametrize("slope", [0.0, 0.2, 0.3, 1.5])
@pytest.mark.parametrize("shape", [(3, 4, 5, 2), (1, 7), (64, 33)], ids=str)
def test_leaky_relu_op(slope, shape, rng):
    x = kinkless(rng, shape)
    x.flat[0] = 0.0
    check_forward("leaky_relu", [x], [], {"negative_slope": slope})
    check_backward("leaky_relu", [x], [], {"negative_slope": slope}, rng)


def test_leaky_relu_default_slope_and_spot_check(rng):
    x = kinkless(rng, (2, 3, 3, 2))
    np.testing.assert_allclose(ops.run("leaky_relu", [x]), oracle.leaky_relu_forward(x, 0.3), rtol=1e-6)
    x[np.abs(x) < 0.05] = 0.5
    check_spot_fd("leaky_relu", [x], [], {"negative_slope": 0.3}, rng)


def test_leaky_relu_keeps_nan():
    out = ops.run("leaky_relu", [np.array([[np.nan, -1.0, 2.0]], np.float32)], attrs={"negative_slope": 0.5})
    assert np.isnan(out[0, 0]) and out[0, 1] == -0.5 and out[0, 2] == 2.0
