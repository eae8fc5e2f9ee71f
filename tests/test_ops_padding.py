"""The zero_padding2d and cropping2d ops (pycnn.ops) against the float64 oracle. Their
argument errors are in test_ops_errors.py; the layers in test_layers_reshaping.py."""
from __future__ import annotations

import numpy as np
import pytest

import oracle
from op_harness import check_backward, check_forward, check_spot_fd, f32
from pycnn import ops

pytestmark = pytest.mark.usefixtures("isa")

SHAPES = [(1, 1, 1, 1), (2, 5, 3, 3), (3, 4, 7, 1), (64, 9, 8, 16)]
SIDES = [(0, 0, 0, 0), (1, 1, 1, 1), (2, 0, 1, 3), (0, 3, 2, 0)]


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("sides", SIDES, ids=str)
def test_zero_padding2d(shape, sides, rng):
    x = f32(rng.standard_normal(shape))
    out, _, _ = check_forward("zero_padding2d", [x], [], {"padding": sides})
    np.testing.assert_array_equal(out, oracle.zero_padding2d_forward(x, *sides))  # a copy is exact
    check_backward("zero_padding2d", [x], [], {"padding": sides}, rng)


def test_zero_padding2d_default_is_one_pixel_all_round(rng):
    x = f32(rng.standard_normal((2, 3, 4, 2)))
    np.testing.assert_array_equal(ops.run("zero_padding2d", [x]), oracle.zero_padding2d_forward(x, 1, 1, 1, 1))
    np.testing.assert_array_equal(ops.run("cropping2d", [x]), x)  # default: nothing cropped


@pytest.mark.parametrize("shape", [(2, 5, 4, 3), (1, 3, 6, 1), (64, 9, 8, 16)], ids=str)
@pytest.mark.parametrize("sides", [(0, 0, 0, 0), (1, 1, 1, 1), (2, 0, 1, 2), (0, 2, 0, 3)], ids=str)
def test_cropping2d(shape, sides, rng):
    x = f32(rng.standard_normal(shape))
    out, _, _ = check_forward("cropping2d", [x], [], {"cropping": sides})
    np.testing.assert_array_equal(out, oracle.cropping2d_forward(x, *sides))
    check_backward("cropping2d", [x], [], {"cropping": sides}, rng)


def test_cropping_to_one_pixel(rng):
    x = f32(rng.standard_normal((2, 4, 4, 3)))
    out = ops.run("cropping2d", [x], attrs={"cropping": (1, 2, 3, 0)})
    np.testing.assert_array_equal(out, x[:, 1:2, 3:4])


def test_float32_finite_difference_spot_check(rng):
    x = f32(rng.standard_normal((2, 3, 4, 2)))
    check_spot_fd("zero_padding2d", [x], [], {"padding": (1, 2, 2, 0)}, rng)
    check_spot_fd("cropping2d", [x], [], {"cropping": (1, 0, 1, 2)}, rng)
