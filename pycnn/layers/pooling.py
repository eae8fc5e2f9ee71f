"""2-D max and average pooling layers (NHWC, per channel), as in Keras."""
from __future__ import annotations

from typing import Any, Dict, Optional, Sequence, Union

from .. import ops, utils
from .base import Layer, Shape
from .conv import window_output_shape

__all__ = ["MaxPooling2D", "MaxPool2D", "AveragePooling2D", "AvgPool2D", "GlobalMaxPooling2D", "GlobalMaxPool2D", "GlobalAveragePooling2D", "GlobalAvgPool2D"]


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

    def spec(self, training: bool = False) -> ops.OpSpec:
        return ops.OpSpec("maxpool2d", {"pool_size": self.pool_size, "strides": self.strides,
                                        "padding": self.padding})


class AveragePooling2D(_Pooling2D):
    """Mean over each ``pool_size`` window, moved by ``strides`` (default: ``pool_size``).

    With padding='same' the mean counts only the real (unpadded) elements, like Keras.

    Args:
        pool_size: int or (KH, KW); default (2, 2).
        strides: int, (SH, SW) or None (= pool_size).
        padding: 'valid' or 'same'.

    Input ``(N, H, W, C)``; output ``(N, OH, OW, C)``; no weights.
    """

    def spec(self, training: bool = False) -> ops.OpSpec:
        return ops.OpSpec("avgpool2d", {"pool_size": self.pool_size, "strides": self.strides,
                                        "padding": self.padding})


#: Keras's short aliases.
MaxPool2D = MaxPooling2D
AvgPool2D = AveragePooling2D


class _GlobalPooling2D(Layer):
    """Pooling over the whole of H and W: ``(N, H, W, C)`` -> ``(N, C)`` (``(N, 1, 1, C)`` with
    ``keepdims=True``). Runs the 2-D pooling kernels with a window of the input's size."""

    _input_ndim = 4
    _kind = ""

    def __init__(self, data_format: Optional[str] = None, keepdims: bool = False, name: Optional[str] = None,
                 input_shape: Optional[Sequence[Optional[int]]] = None, trainable: bool = True) -> None:
        owner = type(self).__name__
        if data_format not in (None, "channels_last"):
            raise ValueError(f"Invalid value for argument 'data_format' of {owner}: pycnn supports only "
                             f"'channels_last' (NHWC). Received: data_format={data_format!r}.")
        self.keepdims = utils.boolean(keepdims, "keepdims", owner)
        super().__init__(name=name, input_shape=input_shape, trainable=trainable)

    def compute_output_shape(self, input_shape: Sequence[Optional[int]]) -> Shape:
        shape = tuple(input_shape)
        self._check_ndim(shape)
        return (shape[0], 1, 1, shape[3]) if self.keepdims else (shape[0], shape[3])

    def spec(self, training: bool = False) -> ops.OpSpec:
        return ops.OpSpec(self._kind, {"keepdims": int(self.keepdims)})

    def get_config(self) -> Dict[str, Any]:
        config = super().get_config()
        config["keepdims"] = self.keepdims
        return config


class GlobalMaxPooling2D(_GlobalPooling2D):
    """Maximum over H and W per channel, like ``keras.layers.GlobalMaxPooling2D``.

    Backward routes each gradient to the first maximum (row-major) of its channel.
    """

    _kind = "global_maxpool2d"


class GlobalAveragePooling2D(_GlobalPooling2D):
    """Mean over H and W per channel, like ``keras.layers.GlobalAveragePooling2D``."""

    _kind = "global_avgpool2d"


#: Keras's short aliases.
GlobalMaxPool2D = GlobalMaxPooling2D
GlobalAvgPool2D = GlobalAveragePooling2D
