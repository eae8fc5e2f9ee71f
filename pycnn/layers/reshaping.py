"""Reshape (a new per-sample shape for the same values, row-major, as Keras), and
ZeroPadding2D / Cropping2D (zeros around, or rows and columns off, the spatial axes)."""
from __future__ import annotations

from typing import Any, Dict, Optional, Sequence, Tuple, Union

import numpy as np

from .. import ops, utils
from .base import Layer, Shape

__all__ = ["Reshape", "ZeroPadding2D", "Cropping2D"]


class Reshape(Layer):
    """Reshapes each sample to ``target_shape``, like ``keras.layers.Reshape``.

    ``Reshape((32, 32, 6))`` turns ``(N, 32, 32, 3, 2)`` into ``(N, 32, 32, 6)``. One entry
    may be -1: it is inferred from the input's size.

    Args:
        target_shape: the per-sample output shape (no batch axis); positive ints, at most
            one -1.
    """

    def __init__(self, target_shape: Sequence[int], name: Optional[str] = None,
                 input_shape: Optional[Sequence[Optional[int]]] = None, trainable: bool = True) -> None:
        try:
            dims = tuple(target_shape)
        except TypeError:
            dims = None
        ok = dims is not None and len(dims) >= 1 and all(
            isinstance(d, (int, np.integer)) and not isinstance(d, bool) and (d >= 1 or d == -1) for d in dims)
        if not ok or dims.count(-1) > 1:
            raise ValueError("Invalid value for argument 'target_shape' of Reshape: expected a tuple of positive "
                             f"integers with at most one -1. Received: target_shape={target_shape!r}.")
        self.target_shape: Tuple[int, ...] = tuple(int(d) for d in dims)
        super().__init__(name=name, input_shape=input_shape, trainable=trainable)

    def _check_ndim(self, shape: Shape) -> None:
        if len(shape) < 2:
            super()._check_ndim(shape)

    def compute_output_shape(self, input_shape: Sequence[Optional[int]]) -> Shape:
        shape = tuple(input_shape)
        self._check_ndim(shape)
        rest = shape[1:]
        known = int(np.prod([d for d in self.target_shape if d != -1], dtype=np.int64))
        if any(d is None for d in rest):
            out = tuple(None if d == -1 else d for d in self.target_shape)
            return (shape[0],) + out
        size = int(np.prod(rest, dtype=np.int64))
        out = list(self.target_shape)
        if -1 in out and known > 0 and size % known == 0:
            out[out.index(-1)] = size // known
        if -1 in out or int(np.prod(out, dtype=np.int64)) != size:
            raise ValueError(f"Layer '{self.name}' (Reshape): the total size of the tensor must be unchanged. "
                             f"Received: input_shape={utils.shape_str(shape)} ({size} values per sample), "
                             f"target_shape={self.target_shape}.")
        return (shape[0],) + tuple(out)

    def spec(self, training: bool = False) -> ops.OpSpec:
        return ops.OpSpec("reshape", {"target_shape": self.target_shape})

    def get_config(self) -> Dict[str, Any]:
        config = super().get_config()
        config["target_shape"] = self.target_shape
        return config


def _check_data_format(data_format: Optional[str], owner: str) -> str:
    """pycnn is channels-last only; None means that, as Keras's default image_data_format."""
    if data_format is None or (isinstance(data_format, str) and data_format.lower() == "channels_last"):
        return "channels_last"
    raise ValueError(f"Invalid value for argument 'data_format' of {owner}: pycnn layers are channels-last "
                     f"(N, H, W, C), so expected 'channels_last' or None. Received: data_format={data_format!r}.")


def _two_sides(value: Any, arg: str, owner: str) -> Tuple[Tuple[int, int], Tuple[int, int]]:
    """Keras's padding/cropping argument: int, (sym_h, sym_w) or ((top, bottom), (left, right)),
    every entry an integer >= 0 -> ((top, bottom), (left, right))."""
    def fail() -> None:
        raise ValueError(f"The '{arg}' argument of {owner} must be an int, a tuple of 2 ints "
                         f"(symmetric_height_{arg}, symmetric_width_{arg}) or a tuple of 2 tuples of 2 ints "
                         f"((top, bottom), (left, right)), all >= 0. Received: {arg}={value!r}.")

    def pair(v: Any) -> Tuple[int, int]:
        if utils.is_int(v):
            out = (int(v), int(v))
        else:
            try:
                items = tuple(v)
            except TypeError:
                fail()
            if len(items) != 2 or not all(utils.is_int(i) for i in items):
                fail()
            out = (int(items[0]), int(items[1]))
        if min(out) < 0 or max(out) > utils.MAX_WINDOW:
            fail()
        return out

    if utils.is_int(value):
        return pair(value), pair(value)
    try:
        items = tuple(value)
    except TypeError:
        fail()
    if len(items) != 2:
        fail()
    return pair(items[0]), pair(items[1])


class ZeroPadding2D(Layer):
    """Zero rows and columns around each image, like ``keras.layers.ZeroPadding2D``.

    ``(N, H, W, C)`` -> ``(N, top + H + bottom, left + W + right, C)``. Backward crops the
    gradient back to the input's window.

    Args:
        padding: an int (the same on every side), ``(symmetric_height_pad,
            symmetric_width_pad)`` or ``((top, bottom), (left, right))``; integers >= 0.
        data_format: 'channels_last' or None (pycnn is channels-last only).
    """

    _input_ndim = 4

    def __init__(self, padding: Union[int, Sequence[Any]] = (1, 1), data_format: Optional[str] = None,
                 name: Optional[str] = None, input_shape: Optional[Sequence[Optional[int]]] = None,
                 trainable: bool = True) -> None:
        self.padding = _two_sides(padding, "padding", "ZeroPadding2D")
        self.data_format = _check_data_format(data_format, "ZeroPadding2D")
        super().__init__(name=name, input_shape=input_shape, trainable=trainable)

    @property
    def _sides(self) -> Tuple[int, int, int, int]:
        (t, b), (l, r) = self.padding
        return (t, b, l, r)

    def compute_output_shape(self, input_shape: Sequence[Optional[int]]) -> Shape:
        shape = tuple(input_shape)
        self._check_ndim(shape)
        (t, b), (l, r) = self.padding
        n, h, w, c = shape
        return (n, None if h is None else h + t + b, None if w is None else w + l + r, c)

    def spec(self, training: bool = False) -> ops.OpSpec:
        return ops.OpSpec("zero_padding2d", {"padding": self._sides})

    def get_config(self) -> Dict[str, Any]:
        config = super().get_config()
        config.update(padding=self.padding, data_format=self.data_format)
        return config


class Cropping2D(Layer):
    """Removes rows and columns at the image borders, like ``keras.layers.Cropping2D``.

    ``(N, H, W, C)`` -> ``(N, H - top - bottom, W - left - right, C)``. Backward puts the
    gradient back in a zero frame of the input's size.

    Args:
        cropping: an int (the same on every side), ``(symmetric_height_crop,
            symmetric_width_crop)`` or ``((top, bottom), (left, right))``; integers >= 0.
        data_format: 'channels_last' or None (pycnn is channels-last only).

    Raises:
        ValueError: when the cropping leaves no rows or no columns.
    """

    _input_ndim = 4

    def __init__(self, cropping: Union[int, Sequence[Any]] = ((0, 0), (0, 0)), data_format: Optional[str] = None,
                 name: Optional[str] = None, input_shape: Optional[Sequence[Optional[int]]] = None,
                 trainable: bool = True) -> None:
        self.cropping = _two_sides(cropping, "cropping", "Cropping2D")
        self.data_format = _check_data_format(data_format, "Cropping2D")
        super().__init__(name=name, input_shape=input_shape, trainable=trainable)

    @property
    def _sides(self) -> Tuple[int, int, int, int]:
        (t, b), (l, r) = self.cropping
        return (t, b, l, r)

    def compute_output_shape(self, input_shape: Sequence[Optional[int]]) -> Shape:
        shape = tuple(input_shape)
        self._check_ndim(shape)
        (t, b), (l, r) = self.cropping
        n, h, w, c = shape
        oh = None if h is None else h - t - b
        ow = None if w is None else w - l - r
        if (oh is not None and oh < 1) or (ow is not None and ow < 1):
            raise ValueError(f"Computed output size would be zero or negative for layer '{self.name}'. Received: "
                             f"input shape={utils.shape_str(shape)}, cropping={self.cropping}.")
        return (n, oh, ow, c)

    def spec(self, training: bool = False) -> ops.OpSpec:
        return ops.OpSpec("cropping2d", {"cropping": self._sides})

    def get_config(self) -> Dict[str, Any]:
        config = super().get_config()
        config.update(cropping=self.cropping, data_format=self.data_format)
        return config
