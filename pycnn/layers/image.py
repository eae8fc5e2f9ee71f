"""Fixed image filters as layers, with TensorFlow's ``tf.image`` definitions: Sobel edges
and forward-difference gradients. :mod:`pycnn.image` calls them on arrays or tensors."""
from __future__ import annotations

from typing import Any, Dict, Optional, Sequence

from .. import ops, utils
from .base import Layer, Shape

__all__ = ["SobelEdges", "ImageGradient"]


class SobelEdges(Layer):
    """``tf.image.sobel_edges``: (N, H, W, C) -> (N, H, W, C, 2), last axis [dy, dx].

    Each channel is REFLECT-padded by one pixel and correlated with the 3x3 Sobel kernels
    ``[[-1, -2, -1], [0, 0, 0], [1, 2, 1]]`` (dy) and its transpose (dx). Needs H, W >= 2.
    No weights.
    """

    _input_ndim = 4

    def compute_output_shape(self, input_shape: Sequence[Optional[int]]) -> Shape:
        shape = tuple(input_shape)
        self._check_ndim(shape)
        if any(d is not None and d < 2 for d in shape[1:3]):
            raise ValueError(f"Layer '{self.name}' (sobel_edges) needs images of at least 2x2 pixels (the "
                             f"reflect padding mirrors one pixel). Received: input shape {utils.shape_str(shape)}.")
        return shape + (2,)

    def spec(self, training: bool = False) -> ops.OpSpec:
        return ops.OpSpec("sobel_edges", {})


class ImageGradient(Layer):
    """One half of ``tf.image.image_gradients``: forward differences along ``axis``
    (0: dy, rows; 1: dx, columns), zero in the last row / column. (N, H, W, C) -> same.

    Args:
        axis: 0 for dy[n, y, x, c] = img[n, y+1, x, c] - img[n, y, x, c], 1 for dx.
    """

    _input_ndim = 4

    def __init__(self, axis: int, name: Optional[str] = None, trainable: bool = True) -> None:
        if isinstance(axis, bool) or axis not in (0, 1):
            raise ValueError(f"Invalid value for argument 'axis' of ImageGradient: expected 0 (dy) or 1 (dx). "
                             f"Received: axis={axis!r}.")
        self.axis = int(axis)
        super().__init__(name=name, trainable=trainable)

    def spec(self, training: bool = False) -> ops.OpSpec:
        return ops.OpSpec("image_gradient", {"axis": self.axis})

    def get_config(self) -> Dict[str, Any]:
        config = super().get_config()
        config["axis"] = self.axis
        return config
