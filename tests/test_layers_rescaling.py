"""The Rescaling layer: forward and backward against the float64 oracle, integer images and any
rank, per-channel values, its op spec and its errors. The op itself: test_ops_rescaling.py."""
from __future__ import annotations

import numpy as np
import pytest

import oracle
from pycnn import layers, ops

FWD = dict(rtol=1e-5, atol=1e-5)
BWD = dict(rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("scale, offset", [(1 / 255, 0.0), (2.0, -1.0), ([0.5, 2.0, -1.0], 0.25),
                                           (0.5, [1.0, 2.0, 3.0]), ([1.0, 2.0, 3.0], [0.0, -1.0, 1.0])])
def test_rescaling_layer_matches_the_oracle(scale, offset, rng):
    x = (rng.random((2, 5, 4, 3)) * 255).astype(np.float32)
    layer = layers.Rescaling(scale, offset)
    oracle.assert_close(layer(x), oracle.rescaling_forward(x, scale, offset), **FWD)
    G = rng.standard_normal(x.shape).astype(np.float32)
    oracle.assert_close(layer.backward(G), oracle.rescaling_backward(G, scale), **BWD)
    spec = layer.spec()
    assert spec.kind == "rescaling" and len(spec.attrs["scale"]) == len(spec.attrs["offset"])
    oracle.assert_close(ops.run("rescaling", [x], attrs=spec.attrs), oracle.rescaling_forward(x, scale, offset), **FWD)


def test_rescaling_of_uint8_and_any_rank(rng):
    x = rng.integers(0, 256, (3, 4, 4, 3)).astype(np.uint8)
    oracle.assert_close(layers.Rescaling(1 / 255)(x), x / 255.0, **FWD)
    v = rng.standard_normal((5, 7)).astype(np.float32)
    oracle.assert_close(layers.Rescaling(3.0, 1.0)(v), v * 3.0 + 1.0, **FWD)
    # shape (1, 1, C) broadcasts like (C,)
    oracle.assert_close(layers.Rescaling(np.array([[[1.0, 2.0, 3.0]]]))(x), x * np.array([1.0, 2.0, 3.0]), **FWD)


def test_specs_describe_the_op():
    assert layers.Rescaling(0.5, 1.0).spec() == ops.OpSpec("rescaling", {"scale": (0.5,), "offset": (1.0,)})
    assert layers.Rescaling([1.0, 2.0], 1.0).spec() == ops.OpSpec("rescaling", {"scale": (1.0, 2.0),
                                                                              "offset": (1.0, 1.0)})


def test_rescaling_errors():
    with pytest.raises(ValueError, match=r"'scale' of Rescaling.*Received: scale='a'"):
        layers.Rescaling("a")
    with pytest.raises(ValueError, match=r"'offset' of Rescaling"):
        layers.Rescaling(1.0, offset=np.ones((2, 3)))
    with pytest.raises(ValueError, match=r"same number of channels"):
        layers.Rescaling([1.0, 2.0], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match=r"expected input with 2 channels on the last axis.*\(None, 3, 3, 3\)"):
        layers.Rescaling([1.0, 2.0])(np.zeros((4, 3, 3, 3), np.float32))
