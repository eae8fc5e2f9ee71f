"""Test-time augmentation: a model's outputs averaged over mirrored and shifted views of each
image (``model.predict(x, tta="flip")``, ``model.evaluate(x, y, tta="flip_translate")``).

Levels, as airbench's (Jordan, "94% on CIFAR-10 in 3.29 seconds", 2024):

* ``"flip"``: the mean of the outputs for the images and their left-right mirrors.
* ``"flip_translate"``: half the ``"flip"`` mean, plus half the mean of the ``"flip"`` means
  of two copies shifted by one pixel, down-right and up-left (borders reflected).

What is averaged is what :meth:`predict` returns (probabilities after a softmax, otherwise
the raw outputs); ``evaluate`` computes its loss and metrics from that average.
"""
from __future__ import annotations

from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np

from . import augment

LEVELS = ("flip", "flip_translate")


def check(tta: Optional[str], who: str) -> Optional[str]:
    if tta is None or tta in LEVELS:
        return tta
    raise ValueError(f"{who} expected tta to be None, {', '.join(repr(v) for v in LEVELS)}. Received: tta={tta!r}.")


def views(x: np.ndarray, level: str) -> List[Tuple[float, np.ndarray]]:
    """(weight, images) pairs whose weighted outputs sum to the level's average."""
    if x.ndim != 4:
        raise ValueError(f"Test-time augmentation expected images (N, H, W, C). Received: shape={x.shape}.")
    mirrored = [(0.5, x), (0.5, x[:, :, ::-1])]
    if level == "flip":
        return mirrored
    out = [(0.5 * w, v) for w, v in mirrored]
    n = x.shape[0]
    for shift in ((1, 1), (-1, -1)):
        shifted = augment.translate(x, np.tile(np.array(shift, np.int64), (n, 1)), mode="reflect")
        out += [(0.125, shifted), (0.125, shifted[:, :, ::-1])]
    return out


def average(infer: Callable[[List[np.ndarray]], List[np.ndarray]], xs: Sequence[np.ndarray],
            level: str) -> List[np.ndarray]:
    """The weighted mean of ``infer([view])`` over the views of the one input ``xs[0]``."""
    if len(xs) != 1:
        raise ValueError(f"Test-time augmentation expected a model with one image input. Received: {len(xs)} inputs.")
    total: Optional[List[np.ndarray]] = None
    for weight, view in views(xs[0], level):
        outs = infer([np.ascontiguousarray(view, dtype=np.float32)])
        if total is None:
            total = [np.float32(weight) * o for o in outs]
        else:
            for t, o in zip(total, outs):
                t += np.float32(weight) * o
    assert total is not None
    return total
