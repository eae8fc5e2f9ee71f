"""Merging ops, float64: concatenate, add, multiply, on batches (N, ...). ``axis`` here is a
NumPy axis of the batch arrays; the concatenate op's attribute counts the axes of one sample
(its axis a is NumPy axis a + 1: oracle.ops converts)."""
from __future__ import annotations

import numpy as np

from .numeric import _f64


def concatenate_forward(inputs, axis: int) -> np.ndarray:
    return np.concatenate([_f64(x) for x in inputs], axis=axis)


def concatenate_backward(dout, sizes, axis: int) -> list:
    """dout split back into the inputs' ``sizes`` along ``axis``."""
    return [p.copy() for p in np.split(_f64(dout), np.cumsum(sizes)[:-1], axis=axis)]


def add_forward(inputs) -> np.ndarray:
    return sum(_f64(x) for x in inputs)


def add_backward(dout, count: int) -> list:
    return [_f64(dout).copy() for _ in range(count)]


def multiply_forward(inputs) -> np.ndarray:
    out = np.ones_like(_f64(inputs[0]))
    for x in inputs:
        out = out * _f64(x)
    return out


def multiply_backward(dout, inputs) -> list:
    """d/d x_j of prod_k x_k is the product of the others (no division: zeros are fine)."""
    grads = []
    for j in range(len(inputs)):
        g = _f64(dout).copy()
        for k, x in enumerate(inputs):
            if k != j:
                g = g * _f64(x)
        grads.append(g)
    return grads
