"""Keras-style layers on NHWC float32 NumPy arrays, backed by the native kernels.

Every layer builds its weights lazily from the first input shape (or from the model's
``Input``), runs forward with ``layer(x, training=False)``, and after a forward returns the
input gradient from ``layer.backward(dout)`` while keeping the parameter gradients for
``get_gradients()`` (same order and shapes as ``get_weights()``: ``[kernel, bias]``).
"""
from __future__ import annotations

from .base import Layer
from .conv import Conv2D, Convolution2D
from .core import Activation, Dense, Dropout, Flatten, Input, InputLayer
from .pooling import AveragePooling2D, AvgPool2D, MaxPool2D, MaxPooling2D

__all__ = [
    "Layer", "Input", "InputLayer", "Conv2D", "Convolution2D", "MaxPooling2D", "MaxPool2D",
    "AveragePooling2D", "AvgPool2D", "Flatten", "Dense", "Activation", "Dropout", "get",
]

_BY_NAME = {cls.__name__: cls for cls in (InputLayer, Conv2D, MaxPooling2D, AveragePooling2D, Flatten, Dense,
                                          Activation, Dropout)}


def get(class_name: str) -> type:
    """Layer class by its class name (``'Conv2D'``), for rebuilding saved models.

    Raises:
        ValueError: for a name pycnn does not define.
    """
    if class_name not in _BY_NAME:
        raise ValueError(f"Unknown layer class. Expected one of {', '.join(sorted(_BY_NAME))}. "
                         f"Received: class_name={class_name!r}.")
    return _BY_NAME[class_name]
