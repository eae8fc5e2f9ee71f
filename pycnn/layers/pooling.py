"""2-D max and average pooling layers (NHWC, per channel), as in Keras."""
from __future__ import annotations

from typing import Any, Dict, Optional, Sequence, Union

import numpy as np

from .. import _core, utils
from .base import Layer, Shape
from .conv import window_output_shape


class _Pooling2D(Layer):
    _input_ndim = 4

    def __init__(self, pool_size: Union[int, Sequence[int]] = (2, 2), strides: Union[None, int, Sequence[int]] = None,
                 padding: str = "valid", data_format: Optional[str] = None, name: Optional[str] = None,
                 input_shape: Optional[Sequence[Optional[int]]] = None, trainable: bool = True) -> None:
        owner = type(self).__name__
        self.pool_size = utils.normalize_tuple(pool_size, 2, "pool_size", owner)
        self.strides = self.pool_size if strides is None else utils.normalize_tuple(strides, 2, "strides", owner)
        self.padding = utils.normalize_padding(padding, owner)
        if data_format not in (None, "channels_last"):
            raise ValueError(f"Invalid value for argument 'data_format' of {owner}: pycnn supports only "
                             f"'channels_last' (NHWC). Received: data_format={data_format!r}.")
        super().__init__(name=name, input_shape=input_shape, trainable=trainable)

    def compute_output_shape(self, input_shape: Sequence[Optional[int]]) -> Shape:
        shape = tuple(input_shape)
        self._check_ndim(shape)
        return window_output_shape(self, shape, self.pool_size, self.strides, self.padding, shape[3], "pool_size")

    def get_config(self) -> Dict[str, Any]:
        config = super().get_config()
        config.update(pool_size=self.pool_size, strides=self.strides, padding=self.padding)
        return config


class MaxPooling2D(_Pooling2D):
    """Maximum over each ``pool_size`` window, moved by ``strides`` (default: ``pool_size``).

    Backward routes each output gradient to the input element that won the window (the
    first maximum in row-major window order on ties), through the argmax the forward
    caches.

    Args:
        pool_size: int or (KH, KW); default (2, 2).
        strides: int, (SH, SW) or None (= pool_size).
        padding: 'valid' or 'same' (padded positions never win).

    Input ``(N, H, W, C)``; output ``(N, OH, OW, C)``; no weights.
    """

    def _call(self, x: np.ndarray, training: bool, logits: bool) -> np.ndarray:
        out, argmax = _core.maxpool2d_forward(x, self.pool_size, strides=self.strides, padding=self.padding)
        self._cache = {"input_shape": x.shape, "argmax": argmax}
        return out

    def _backward(self, dout: np.ndarray, need_input_grad: bool) -> Optional[np.ndarray]:
        if not need_input_grad:
            return None
        return _core.maxpool2d_backward(dout, self._cache["argmax"], self._cache["input_shape"], self.pool_size,
                                        strides=self.strides, padding=self.padding)


class AveragePooling2D(_Pooling2D):
    """Mean over each ``pool_size`` window, moved by ``strides`` (default: ``pool_size``).

    With padding='same' the mean counts only the real (unpadded) elements, like Keras.

    Args:
        pool_size: int or (KH, KW); default (2, 2).
        strides: int, (SH, SW) or None (= pool_size).
        padding: 'valid' or 'same'.

    Input ``(N, H, W, C)``; output ``(N, OH, OW, C)``; no weights.
    """

    def _call(self, x: np.ndarray, training: bool, logits: bool) -> np.ndarray:
        self._cache = {"input_shape": x.shape}
        return _core.avgpool2d_forward(x, self.pool_size, strides=self.strides, padding=self.padding)

    def _backward(self, dout: np.ndarray, need_input_grad: bool) -> Optional[np.ndarray]:
        if not need_input_grad:
            return None
        return _core.avgpool2d_backward(dout, self._cache["input_shape"], self.pool_size, strides=self.strides,
                                        padding=self.padding)


#: Keras's short aliases.
MaxPool2D = MaxPooling2D
AvgPool2D = AveragePooling2D
