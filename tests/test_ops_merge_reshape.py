"""The merging ops (concatenate along a per-sample axis, add, multiply: two or more inputs)
and the shape-only ops (flatten, reshape, identity) against the float64 oracle. Their
argument errors are in test_ops_errors.py; in networks in test_native_graph_ops.py."""
from __future__ import annotations

import numpy as np
import pytest

import oracle
from op_harness import check_backward, check_forward, check_spot_fd, f32
from pycnn import ops

pytestmark = pytest.mark.usefixtures("isa")


def _inputs(rng, shapes):
    return [f32(rng.standard_normal(s)) for s in shapes]


@pytest.mark.parametrize("axis", [0, 1, 2])
@pytest.mark.parametrize("count", [2, 3])
@pytest.mark.parametrize("N", [1, 5])
def test_concatenate_4d(axis, count, N, rng):
    shapes = []
    for j in range(count):
        s = [N, 3, 4, 2]
        s[axis + 1] = j + 1
        shapes.append(tuple(s))
    xs = _inputs(rng, shapes)
    out, _, _ = check_forward("concatenate", xs, [], {"axis": axis})
    np.testing.assert_array_equal(out, np.concatenate(xs, axis=axis + 1))
    check_backward("concatenate", xs, [], {"axis": axis}, rng)


@pytest.mark.parametrize("shapes,axis", [([(4, 3), (4, 5)], 0), ([(2, 1, 7), (2, 2, 7), (2, 3, 7)], 0),
                                         ([(2, 3, 1), (2, 3, 6)], 1), ([(64, 100), (64, 28)], 0)])
def test_concatenate_other_ranks(shapes, axis, rng):
    xs = _inputs(rng, shapes)
    check_forward("concatenate", xs, [], {"axis": axis})
    check_backward("concatenate", xs, [], {"axis": axis}, rng)


@pytest.mark.parametrize("kind", ["add", "multiply"])
@pytest.mark.parametrize("count", [2, 3, 5])
@pytest.mark.parametrize("shape", [(1, 3), (4, 5, 6), (64, 8, 8, 3)], ids=str)
def test_add_and_multiply(kind, count, shape, rng):
    xs = _inputs(rng, [shape] * count)
    check_forward(kind, xs, [], {})
    check_backward(kind, xs, [], {}, rng)


def test_multiply_gradient_with_zeros(rng):
    """d/dx_j of a product is the product of the others, also where another factor is 0."""
    xs = _inputs(rng, [(3, 4)] * 3)
    xs[0][0, :2] = 0.0
    xs[1][1, 1] = 0.0
    check_backward("multiply", xs, [], {}, rng)


@pytest.mark.parametrize("shape", [(2, 3, 4, 5), (1, 7), (3, 2, 2)], ids=str)
def test_flatten_and_identity(shape, rng):
    x = f32(rng.standard_normal(shape))
    out, _, _ = check_forward("flatten", [x], [], {})
    np.testing.assert_array_equal(out, x.reshape(shape[0], -1))  # NHWC order
    check_backward("flatten", [x], [], {}, rng)
    out, _, _ = check_forward("identity", [x], [], {})
    np.testing.assert_array_equal(out, x)
    check_backward("identity", [x], [], {}, rng)


@pytest.mark.parametrize("target", [(60,), (5, -1), (-1, 3, 4), (3, 4, 5), (2, 2, 15)], ids=str)
def test_reshape(target, rng):
    x = f32(rng.standard_normal((2, 3, 4, 5)))
    out, _, _ = check_forward("reshape", [x], [], {"target_shape": target})
    np.testing.assert_array_equal(out, x.reshape((2,) + target))
    check_backward("reshape", [x], [], {"target_shape": target}, rng)


def test_float32_finite_difference_spot_check(rng):
    xs = _inputs(rng, [(2, 3, 2, 2), (2, 3, 1, 2)])
    check_spot_fd("concatenate", xs, [], {"axis": 1}, rng)
    xs = _inputs(rng, [(2, 3, 4)] * 3)
    check_spot_fd("add", xs, [], {}, rng)
    check_spot_fd("multiply", xs, [], {}, rng)
    check_spot_fd("reshape", [xs[0]], [], {"target_shape": (4, 3)}, rng)


def test_a_value_read_twice_gets_both_gradients(rng):
    """One network input fed to both inputs of add and of concatenate: its gradient is the sum."""
    x = f32(rng.standard_normal((3, 2, 4)))
    for kind, attrs in [("add", {}), ("multiply", {}), ("concatenate", {"axis": 1})]:
        net = ops.Network([(2, 4)], [ops.node(ops.OpSpec(kind, attrs), None, [0, 0])], [1], input_grads=True)
        (out,), tape = net.forward([x])
        np.testing.assert_array_equal(out, f32(oracle.forward(kind, [x, x], [], attrs)))
        G = f32(rng.standard_normal(out.shape))
        (dx,) = net.backward(tape, [G], [])
        want = sum(oracle.backward(kind, G, [x, x], [], attrs)[0])
        oracle.assert_close(dx, want, name=kind, rtol=1e-5, atol=1e-6)
