"""The rescaling op (x * scale + offset, one value or one per channel of the last axis)
against the float64 oracle. Its argument errors are in test_ops_errors.py; the layer in
test_layers_rescaling.py."""
from __future__ import annotations

import numpy as np
import pytest

import oracle
from op_harness import check_backward, check_forward, check_spot_fd, f32
from pycnn import ops

pytestmark = pytest.mark.usefixtures("isa")


@pytest.mark.parametrize("scale, offset", [(1 / 255, 0.0), (2.0, -1.0), ((0.5, 2.0, -1.0), (0.25, 0.25, 0.25)),
                                           ((1.0, 2.0, 3.0), (0.0, -1.0, 1.0)), ([0.5], [1.0])])
@pytest.mark.parametrize("shape", [(2, 5, 4, 3), (1, 3), (64, 7, 3)], ids=str)
def test_rescaling(scale, offset, shape, rng):
    x = f32(rng.random(shape) * 255)
    attrs = {"scale": scale, "offset": offset}
    check_forward("rescaling", [x], [], attrs)
    check_backward("rescaling", [x], [], attrs, rng)


def test_rescaling_defaults_and_integer_images(rng):
    x = rng.integers(0, 256, (3, 4, 4, 3)).astype(np.uint8)
    np.testing.assert_array_equal(ops.run("rescaling", [x]), x.astype(np.float32))  # scale 1, offset 0
    oracle.assert_close(ops.run("rescaling", [x], attrs={"scale": 1 / 255}), x / 255.0, rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(ops.run("rescaling", [x], attrs={"scale": 2, "offset": 1}),
                                  x.astype(np.float32) * 2 + 1)  # integers are numbers too


def test_float32_finite_difference_spot_check(rng):
    x = f32(rng.standard_normal((2, 3, 2, 3)))
    check_spot_fd("rescaling", [x], [], {"scale": (0.5, -2.0, 3.0), "offset": (1.0, 0.0, -1.0)}, rng)
