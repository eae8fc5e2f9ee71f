"""``tf.image``'s Sobel edges and image gradients, on arrays or on symbolic tensors.

On a NumPy array these compute at once (C++ kernels, csrc/image.cpp); on a symbolic
tensor (``pycnn.Input``) they add graph nodes whose backward the model trains through, so
the lecture's case study runs with ``pycnn.image`` in place of ``tf.image``.
"""
from __future__ import annotations

from typing import Any, Tuple

from . import ops, symbolic, utils
from .layers.image import ImageGradient, SobelEdges


def _images(x: Any, who: str) -> Any:
    arr = utils.as_float32(x, who, "images")
    if arr.ndim != 4:
        raise ValueError(f"{who} expected images of shape (N, H, W, C). Received: images.shape={arr.shape}.")
    return arr


def sobel_edges(images: Any) -> Any:
    """Sobel edge maps, as ``tf.image.sobel_edges``: (N, H, W, C) -> (N, H, W, C, 2).

    The last axis is [dy, dx]: each channel, REFLECT-padded by one pixel, correlated with
    ``[[-1, -2, -1], [0, 0, 0], [1, 2, 1]]`` and with its transpose. Needs H, W >= 2.
    """
    if symbolic.is_symbolic(images):
        return SobelEdges()(images)
    arr = _images(images, "sobel_edges()")
    return ops.run("sobel_edges", [arr])


def image_gradients(images: Any) -> Tuple[Any, Any]:
    """Forward differences, as ``tf.image.image_gradients``: returns ``(dy, dx)``, each
    (N, H, W, C), with ``dy[:, y] = img[:, y + 1] - img[:, y]`` (0 in the last row) and
    ``dx`` likewise along the columns (0 in the last column)."""
    if symbolic.is_symbolic(images):
        return ImageGradient(axis=0)(images), ImageGradient(axis=1)(images)
    arr = _images(images, "image_gradients()")
    return (ops.run("image_gradient", [arr], attrs={"axis": 0}), ops.run("image_gradient", [arr], attrs={"axis": 1}))
