"""Keras's image preprocessing layers: Rescaling (always on, a native kernel) and the random
augmentations RandomFlip, RandomCrop and RandomTranslation (training only).

The random layers draw from :func:`pycnn.utils.get_rng` unless given a ``seed`` (then from
their own generator), so :func:`pycnn.utils.set_random_seed` makes a run repeat. They are
vectorised NumPy over the batch (no per-image loop), have no weights, and are the identity
at inference, except RandomCrop, which then takes the centre window. They carry
``_preprocessing = True``: a trainer may run such layers at the front of a graph in NumPy
and hand the rest to the native step; while training they have no native twin.

Pixel semantics of RandomTranslation follow Keras 3's ``affine_transform`` (its NumPy
backend, which agrees with the TensorFlow one for every mode except 'wrap' at fractional
shifts): output pixel (i, j) of an image shifted by (dy, dx) pixels samples the input at
(i - dy, j - dx), the input extended by ``fill_mode`` beyond its borders:

* 'reflect'  ``(d c b a | a b c d | d c b a)``: mirrored about the edge of the last pixel;
* 'wrap'     ``(a b c d | a b c d | a b c d)``;
* 'nearest'  ``(a a a a | a b c d | d d d d)``;
* 'constant' ``(k k k k | a b c d | k k k k)`` with ``k = fill_value``;

and 'bilinear' interpolation between the four pixels around a fractional position of this
extended image (or 'nearest': the pixel at ``floor(position + 0.5)``).
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from .. import ops, utils
from .base import Layer, Shape
from .reshaping import _check_data_format

__all__ = ["Rescaling", "RandomFlip", "RandomCrop", "RandomTranslation"]


class Rescaling(Layer):
    """``x * scale + offset``, like ``keras.layers.Rescaling``: ``Rescaling(1 / 255)`` maps
    pixels to [0, 1], ``Rescaling(1 / 127.5, offset=-1)`` to [-1, 1]. Active at inference too.

    Args:
        scale: a number, or per-channel values broadcast over the last axis (shape (C,),
            or (1, 1, C) and the like).
        offset: the same kinds as ``scale``.

    Raises:
        ValueError: for values that are not real numbers, shapes that do not broadcast over
            the last axis, or (at build) a channel count that differs from theirs.
    """

    def __init__(self, scale: Any, offset: Any = 0.0, name: Optional[str] = None,
                 input_shape: Optional[Sequence[Optional[int]]] = None, trainable: bool = True) -> None:
        s = self._values(scale, "scale")
        o = self._values(offset, "offset")
        if s.size > 1 and o.size > 1 and s.size != o.size:
            raise ValueError("Rescaling expected 'scale' and 'offset' with the same number of channels. "
                             f"Received: scale={scale!r}, offset={offset!r}.")
        self.scale = float(s[0]) if np.ndim(scale) == 0 else s.tolist()
        self.offset = float(o[0]) if np.ndim(offset) == 0 else o.tolist()
        # Both of one length, 1 or K: the op's attributes.
        k = max(s.size, o.size)
        self._scale = tuple(float(v) for v in np.broadcast_to(s, (k,)))
        self._offset = tuple(float(v) for v in np.broadcast_to(o, (k,)))
        super().__init__(name=name, input_shape=input_shape, trainable=trainable)

    @staticmethod
    def _values(value: Any, arg: str) -> np.ndarray:
        try:
            a = np.asarray(value)
        except Exception:  # noqa: BLE001 - anything NumPy cannot read is a bad value
            a = None
        if a is None or a.dtype.kind not in "iuf" or a.size < 1 or not np.all(np.isfinite(a)) or \
                (a.ndim > 1 and any(d != 1 for d in a.shape[:-1])):
            raise ValueError(f"Invalid value for argument '{arg}' of Rescaling: expected a finite number or "
                             f"per-channel numbers broadcast over the last axis, e.g. shape (C,). "
                             f"Received: {arg}={value!r}.")
        return a.astype(np.float64).reshape(-1)

    def _check_input(self, shape: Shape) -> None:
        k = len(self._scale)
        if k > 1 and shape[-1] is not None and shape[-1] != k:
            raise ValueError(f"Layer '{self.name}' expected input with {k} channels on the last axis (one per "
                             f"scale/offset value), but received input with shape {utils.shape_str(shape)}.")

    def build(self, input_shape: Shape) -> None:
        self._check_input(input_shape)

    def spec(self, training: bool = False) -> ops.OpSpec:
        return ops.OpSpec("rescaling", {"scale": self._scale, "offset": self._offset})

    def get_config(self) -> Dict[str, Any]:
        config = super().get_config()
        config.update(scale=self.scale, offset=self.offset)
        return config


class _RandomImageLayer(Layer):
    """Shared by the random augmentation layers: seed, generator, training-only behaviour."""

    _input_ndim = 4
    #: Runs in NumPy at the front of a model while training (see the module docstring).
    _preprocessing = True

    def __init__(self, seed: Optional[int], data_format: Optional[str], name: Optional[str],
                 input_shape: Optional[Sequence[Optional[int]]], trainable: bool) -> None:
        cls = type(self).__name__
        if seed is not None and (not utils.is_int(seed) or seed < 0):
            raise ValueError(f"Invalid value for argument 'seed' of {cls}: expected a non-negative integer or "
                             f"None. Received: seed={seed!r}.")
        self.seed = None if seed is None else int(seed)
        self.data_format = _check_data_format(data_format, cls)
        self._rng = None if seed is None else np.random.default_rng(seed)
        super().__init__(name=name, input_shape=input_shape, trainable=trainable)

    def _generator(self) -> np.random.Generator:
        return self._rng if self._rng is not None else utils.get_rng()

    def compute_output_shape(self, input_shape: Sequence[Optional[int]]) -> Shape:
        return tuple(input_shape)

    def spec(self, training: bool = False) -> Optional[ops.OpSpec]:
        # The draws are NumPy's: in training the layer runs in Python (call / gradient).
        return None if training else ops.OpSpec("identity", {})

    def get_config(self) -> Dict[str, Any]:
        config = super().get_config()
        config.update(seed=self.seed, data_format=self.data_format)
        return config


_FLIP_MODES = ("horizontal", "vertical", "horizontal_and_vertical")


class RandomFlip(_RandomImageLayer):
    """Randomly mirrors images while training, like ``keras.layers.RandomFlip``.

    Each image is flipped with probability 1/2 (a uniform draw <= 0.5, as Keras). As in
    Keras 3, 'horizontal_and_vertical' uses one draw per image for both axes: an image is
    either left as it is or flipped both left-right and upside-down (rotated by 180
    degrees). Backward flips the gradient of each image the same way.

    Args:
        mode: 'horizontal' (left-right), 'vertical' (upside-down) or
            'horizontal_and_vertical'.
        seed: seeds this layer's own generator; default draws from :func:`pycnn.utils.get_rng`.
        data_format: 'channels_last' or None.
    """

    def __init__(self, mode: str = "horizontal_and_vertical", seed: Optional[int] = None,
                 data_format: Optional[str] = None, name: Optional[str] = None,
                 input_shape: Optional[Sequence[Optional[int]]] = None, trainable: bool = True) -> None:
        if not isinstance(mode, str) or mode.lower() not in _FLIP_MODES:
            raise ValueError(f"Invalid value for argument 'mode' of RandomFlip: expected one of "
                             f"{', '.join(repr(m) for m in _FLIP_MODES)}. Received: mode={mode!r}.")
        self.mode = mode.lower()
        super().__init__(seed, data_format, name, input_shape, trainable)

    def _flip(self, x: np.ndarray, flips: np.ndarray) -> np.ndarray:
        rows = slice(None, None, -1) if self.mode != "horizontal" else slice(None)
        cols = slice(None, None, -1) if self.mode != "vertical" else slice(None)
        out = x.copy()
        out[flips] = x[flips][:, rows, cols]
        return out

    def call(self, inputs: np.ndarray, training: bool = False) -> np.ndarray:
        if not training:
            return inputs
        flips = self._generator().random(inputs.shape[0]) <= 0.5
        out = self._flip(inputs, flips)
        self._keep_for_gradient(out, flips)
        return out

    def gradient(self, inputs: np.ndarray, outputs: np.ndarray, doutputs: np.ndarray) -> Tuple[np.ndarray, list]:
        return self._flip(doutputs, self._kept_for_gradient(outputs)), []

    def get_config(self) -> Dict[str, Any]:
        config = super().get_config()
        config["mode"] = self.mode
        return config


class RandomCrop(_RandomImageLayer):
    """Cuts a ``height`` x ``width`` window out of each image, like ``keras.layers.RandomCrop``.

    Training: a uniformly random window per image (top row in [0, H - height], left column
    in [0, W - width]). Keras 3 draws one window per batch; pycnn draws one per image, the
    usual CIFAR augmentation (ZeroPadding2D(4), RandomCrop(32, 32)).

    Inference: the centre window, top row ``(H - height) // 2`` and left column
    ``(W - width) // 2`` (what ``keras.layers.CenterCrop`` does for inputs at least the
    target size; it keeps the model's shapes those of training). Keras 3's RandomCrop
    resizes instead when the input is smaller than the target or, in training, not larger
    on both axes; pycnn does not resize, and such inputs raise ValueError.

    Backward puts each image's gradient back at its window, zeros elsewhere.

    Args:
        height, width: the window's size, positive integers.
        seed: seeds this layer's own generator; default draws from :func:`pycnn.utils.get_rng`.
        data_format: 'channels_last' or None.
    """

    def __init__(self, height: int, width: int, seed: Optional[int] = None, data_format: Optional[str] = None,
                 name: Optional[str] = None, input_shape: Optional[Sequence[Optional[int]]] = None,
                 trainable: bool = True) -> None:
        self.height = utils.positive_int(height, "height", "RandomCrop")
        self.width = utils.positive_int(width, "width", "RandomCrop")
        super().__init__(seed, data_format, name, input_shape, trainable)

    def compute_output_shape(self, input_shape: Sequence[Optional[int]]) -> Shape:
        shape = tuple(input_shape)
        self._check_ndim(shape)
        n, h, w, c = shape
        if (h is not None and h < self.height) or (w is not None and w < self.width):
            raise ValueError(f"Layer '{self.name}' (RandomCrop) expected images of at least {self.height}x"
                             f"{self.width} pixels (height x width), but received input with shape "
                             f"{utils.shape_str(shape)}. pycnn's RandomCrop does not resize smaller images "
                             "(Keras does); pad them first, e.g. with ZeroPadding2D.")
        return (n, self.height, self.width, c)

    def _centre(self, h: int, w: int) -> Tuple[int, int, int, int]:
        top, left = (h - self.height) // 2, (w - self.width) // 2
        return (top, h - self.height - top, left, w - self.width - left)

    def call(self, inputs: np.ndarray, training: bool = False) -> np.ndarray:
        n, h, w, _ = inputs.shape
        if not training:
            top, _, left, _ = self._centre(h, w)
            out = np.ascontiguousarray(inputs[:, top:top + self.height, left:left + self.width])
            self._keep_for_gradient(out, (inputs.shape, np.full(n, top), np.full(n, left)))
            return out
        rng = self._generator()
        tops = rng.integers(0, h - self.height + 1, size=n)
        lefts = rng.integers(0, w - self.width + 1, size=n)
        # Each image's window through a strided view: one gather of whole windows, about 10x
        # faster than fancy indexing with per-pixel index arrays (measured: 0.15 vs 1.7 ms for
        # 64 CIFAR images); same values.
        windows = np.lib.stride_tricks.sliding_window_view(inputs, (self.height, self.width), axis=(1, 2))
        out = np.ascontiguousarray(windows[np.arange(n), tops, lefts].transpose(0, 2, 3, 1))
        self._keep_for_gradient(out, (inputs.shape, tops, lefts))
        return out

    def _index(self, n: int, tops: np.ndarray, lefts: np.ndarray) -> tuple:
        rows = tops[:, None] + np.arange(self.height)   # (N, height)
        cols = lefts[:, None] + np.arange(self.width)   # (N, width)
        return (np.arange(n)[:, None, None], rows[:, :, None], cols[:, None, :])

    def gradient(self, inputs: np.ndarray, outputs: np.ndarray, doutputs: np.ndarray) -> Tuple[np.ndarray, list]:
        shape, tops, lefts = self._kept_for_gradient(outputs)
        dinp = np.zeros(shape, dtype=np.float32)
        dinp[self._index(shape[0], tops, lefts)] = doutputs  # one image's window: assignment, not a sum
        return dinp, []

    def spec(self, training: bool = False) -> Optional[ops.OpSpec]:
        shape = self.input_shape
        if training or shape is None or shape[1] is None or shape[2] is None:
            return None  # random draws, or a centre window that depends on a size only the data knows
        return ops.OpSpec("cropping2d", {"cropping": self._centre(shape[1], shape[2])})

    def get_config(self) -> Dict[str, Any]:
        config = super().get_config()
        config.update(height=self.height, width=self.width)
        return config


_FILL_MODES = ("reflect", "wrap", "constant", "nearest")
_INTERPOLATIONS = ("nearest", "bilinear")


def _factor(value: Any, arg: str) -> Tuple[float, float]:
    """Keras's translation factor: a number f in [-1, 1] -> (-|f|, |f|); a pair in [-1, 1] -> sorted."""
    def number(v: Any) -> bool:
        return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_)) \
            and -1.0 <= float(v) <= 1.0

    if isinstance(value, (tuple, list)) and len(value) == 2 and all(number(v) for v in value):
        lower, upper = sorted(float(v) for v in value)
        return lower, upper
    if number(value):
        return -abs(float(value)), abs(float(value))
    raise ValueError(f"Invalid value for argument '{arg}' of RandomTranslation: expected a number (or a list of "
                     f"two numbers) in the range [-1.0, 1.0], fractions of the image size. Received: {arg}={value!r}.")


def _extend(k: np.ndarray, n: int, fill_mode: str) -> Tuple[np.ndarray, Optional[np.ndarray]]:
    """Integer positions ``k`` on an axis of ``n`` pixels extended by ``fill_mode`` -> the pixel
    each reads, and for 'constant' the mask of positions inside the image (else None)."""
    if fill_mode == "reflect":
        m = k % (2 * n)
        return np.where(m >= n, 2 * n - 1 - m, m), None
    if fill_mode == "wrap":
        return k % n, None
    inside = (k >= 0) & (k < n) if fill_mode == "constant" else None
    return np.clip(k, 0, n - 1), inside


def _taps(coord: np.ndarray, n: int, fill_mode: str, interpolation: str) -> List[Tuple[np.ndarray, np.ndarray, Any]]:
    """One axis of the sampling: positions ``coord`` (N, L) -> [(pixel (N, L), weight of the
    pixel (N, L), weight of the fill value (N, L) or None)], one entry per interpolation tap."""
    if interpolation == "nearest":
        parts = [(np.floor(coord + 0.5).astype(np.int64), np.ones_like(coord))]
    else:
        k0 = np.floor(coord)
        frac = coord - k0
        k0 = k0.astype(np.int64)
        parts = [(k0, 1.0 - frac), (k0 + 1, frac)]
    taps = []
    for k, wgt in parts:
        pixel, inside = _extend(k, n, fill_mode)
        if inside is None:
            taps.append((pixel, wgt, None))
        else:
            taps.append((pixel, np.where(inside, wgt, 0.0), np.where(inside, 0.0, wgt)))
    return taps


def _sample_axis(x: np.ndarray, taps: list, axis: int, fill_value: float) -> np.ndarray:
    """out[n, .., l, ..] = sum over taps of weight * x[n, .., pixel[n, l], ..] (+ fill weight * fill)."""
    xm = np.moveaxis(x, axis, 1)                          # (N, L, other, C)
    batch = np.arange(x.shape[0])[:, None]
    out = None
    for pixel, wgt, fill_w in taps:
        term = xm[batch, pixel] * wgt[:, :, None, None].astype(np.float32)
        if fill_w is not None and fill_value != 0.0:
            term += (fill_w * fill_value)[:, :, None, None].astype(np.float32)
        out = term if out is None else out + term
    return np.moveaxis(out, 1, axis)


def _sample_axis_adjoint(dout: np.ndarray, taps: list, axis: int, size: int) -> np.ndarray:
    """The transpose of :func:`_sample_axis` in its input (the fill term is a constant)."""
    shape = list(dout.shape)
    shape[axis] = size
    dx = np.zeros(shape, dtype=np.float32)
    dxm = np.moveaxis(dx, axis, 1)                        # a view: writes go to dx
    dm = np.moveaxis(dout, axis, 1)
    batch = np.arange(dout.shape[0])[:, None]
    for pixel, wgt, _ in taps:
        np.add.at(dxm, (batch, pixel), dm * wgt[:, :, None, None].astype(np.float32))
    return dx


def translate(images: np.ndarray, dy: np.ndarray, dx: np.ndarray, fill_mode: str = "reflect",
              interpolation: str = "bilinear", fill_value: float = 0.0) -> Tuple[np.ndarray, Any]:
    """Shifts image n down by ``dy[n]`` and right by ``dx[n]`` pixels (floats), Keras 3's
    pixel semantics (module docstring). Returns ``(out float32 (N, H, W, C), taps for
    :func:`translate_backward`)``. The shift is separable: rows are sampled, then columns."""
    n, h, w, _ = images.shape
    # Positions in float32, as Keras computes them.
    rows = (np.arange(h, dtype=np.float32)[None, :] - np.asarray(dy, np.float32)[:, None]).astype(np.float64)
    cols = (np.arange(w, dtype=np.float32)[None, :] - np.asarray(dx, np.float32)[:, None]).astype(np.float64)
    row_taps = _taps(rows, h, fill_mode, interpolation)
    col_taps = _taps(cols, w, fill_mode, interpolation)
    tmp = _sample_axis(images, row_taps, 1, fill_value)
    out = _sample_axis(tmp, col_taps, 2, fill_value)
    return np.ascontiguousarray(out, dtype=np.float32), (row_taps, col_taps, h, w)


def translate_backward(dout: np.ndarray, taps: Any) -> np.ndarray:
    """Gradient of :func:`translate`'s output w.r.t. its images (the sampling's transpose)."""
    row_taps, col_taps, h, w = taps
    dtmp = _sample_axis_adjoint(dout, col_taps, 2, w)
    return _sample_axis_adjoint(dtmp, row_taps, 1, h)


class RandomTranslation(_RandomImageLayer):
    """Randomly shifts images while training, like ``keras.layers.RandomTranslation``.

    Each image gets its own shift: ``dy = U(height_lower, height_upper) * H`` pixels down
    and ``dx = U(width_lower, width_upper) * W`` pixels right (fractional shifts are
    interpolated); pixel semantics and fill modes as Keras 3 (module docstring). The
    identity at inference. Backward is the transpose of the sampling.

    Args:
        height_factor: a number f (shifts in [-f, f] of the height) or a pair
            ``(lower, upper)``; values in [-1, 1], negative shifts up.
        width_factor: the same for the width; negative shifts left.
        fill_mode: 'reflect' (default), 'wrap', 'constant' or 'nearest'.
        interpolation: 'bilinear' (default) or 'nearest'.
        seed: seeds this layer's own generator; default draws from :func:`pycnn.utils.get_rng`.
        fill_value: the value outside the image for ``fill_mode='constant'``.
        data_format: 'channels_last' or None.
    """

    def __init__(self, height_factor: Union[float, Sequence[float]], width_factor: Union[float, Sequence[float]],
                 fill_mode: str = "reflect", interpolation: str = "bilinear", seed: Optional[int] = None,
                 fill_value: float = 0.0, data_format: Optional[str] = None, name: Optional[str] = None,
                 input_shape: Optional[Sequence[Optional[int]]] = None, trainable: bool = True) -> None:
        self.height_lower, self.height_upper = _factor(height_factor, "height_factor")
        self.width_lower, self.width_upper = _factor(width_factor, "width_factor")
        self.height_factor = tuple(height_factor) if isinstance(height_factor, (tuple, list)) else height_factor
        self.width_factor = tuple(width_factor) if isinstance(width_factor, (tuple, list)) else width_factor
        if not isinstance(fill_mode, str) or fill_mode not in _FILL_MODES:
            raise ValueError(f"Invalid value for argument 'fill_mode' of RandomTranslation: expected one of "
                             f"{', '.join(repr(m) for m in _FILL_MODES)}. Received: fill_mode={fill_mode!r}.")
        if not isinstance(interpolation, str) or interpolation not in _INTERPOLATIONS:
            raise ValueError(f"Invalid value for argument 'interpolation' of RandomTranslation: expected one of "
                             f"{', '.join(repr(m) for m in _INTERPOLATIONS)}. "
                             f"Received: interpolation={interpolation!r}.")
        if isinstance(fill_value, (bool, np.bool_)) or not isinstance(fill_value, (int, float, np.integer,
                                                                                   np.floating)):
            raise ValueError("Invalid value for argument 'fill_value' of RandomTranslation: expected a number. "
                             f"Received: fill_value={fill_value!r}.")
        self.fill_mode = fill_mode
        self.interpolation = interpolation
        self.fill_value = float(fill_value)
        super().__init__(seed, data_format, name, input_shape, trainable)

    def call(self, inputs: np.ndarray, training: bool = False) -> np.ndarray:
        if not training:
            return inputs
        n, h, w, _ = inputs.shape
        rng = self._generator()
        dy = rng.uniform(self.height_lower, self.height_upper, size=n) * h
        dx = rng.uniform(self.width_lower, self.width_upper, size=n) * w
        out, taps = translate(inputs, dy, dx, self.fill_mode, self.interpolation, self.fill_value)
        self._keep_for_gradient(out, taps)
        return out

    def gradient(self, inputs: np.ndarray, outputs: np.ndarray, doutputs: np.ndarray) -> Tuple[np.ndarray, list]:
        return translate_backward(doutputs, self._kept_for_gradient(outputs)), []

    def get_config(self) -> Dict[str, Any]:
        config = super().get_config()
        config.update(height_factor=self.height_factor, width_factor=self.width_factor, fill_mode=self.fill_mode,
                      interpolation=self.interpolation, fill_value=self.fill_value)
        return config
