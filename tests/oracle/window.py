"""Window arithmetic of the oracle (TensorFlow / Keras rules), written out on its own on
purpose: the C++ core has its own, and the two are checked against each other through every
op's output shape.

'valid': out = floor((in - extent) / stride) + 1. 'same': out = ceil(in / stride), with the
total padding whatever the last window needs (never negative) and the odd pixel after
(bottom / right). A dilated window of k taps covers extent = (k - 1) * dilation + 1 pixels.
"""
from __future__ import annotations

import numpy as np


def _pair(value) -> tuple:
    """An int or a 2-sequence of ints as an (h, w) tuple."""
    if isinstance(value, (int, np.integer)):
        return int(value), int(value)
    h, w = value
    return int(h), int(w)


def same_padding(in_size: int, k: int, s: int) -> tuple:
    """Padding (before, after) of one axis for padding='same' (k: the window's extent)."""
    out = -(-in_size // s)
    total = max((out - 1) * s + k - in_size, 0)
    return total // 2, total - total // 2


def output_size(in_size: int, k: int, s: int, padding: str = "valid") -> int:
    """Output length of one axis: 'valid' floor((in - k) / s) + 1, 'same' ceil(in / s)."""
    if padding == "same":
        return -(-in_size // s)
    if padding == "valid":
        return (in_size - k) // s + 1
    raise ValueError(f"padding must be 'valid' or 'same'. Received: padding={padding!r}.")


def geometry(H, W, KH, KW, SH, SW, padding, DH=1, DW=1):
    """(OH, OW, PT, PB, PL, PR) of a window op with KH x KW taps dilated by (DH, DW);
    raises ValueError if an output size is below 1."""
    EKH, EKW = (KH - 1) * DH + 1, (KW - 1) * DW + 1
    OH, OW = output_size(H, EKH, SH, padding), output_size(W, EKW, SW, padding)
    if OH < 1 or OW < 1:
        raise ValueError(f"output size would be {OH}x{OW} for input {H}x{W}, window {EKH}x{EKW}, "
                         f"strides ({SH}, {SW}), padding={padding!r}.")
    if padding == "same":
        PT, PB = same_padding(H, EKH, SH)
        PL, PR = same_padding(W, EKW, SW)
    else:
        PT = PB = PL = PR = 0
    return OH, OW, PT, PB, PL, PR
