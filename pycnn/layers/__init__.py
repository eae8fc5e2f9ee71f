"""Keras-style layers on NHWC float32 NumPy arrays, each its weights plus one native op.

Called on a NumPy array a layer runs at once (``layer(x)``; ``layer.backward(dout)`` then
returns the input gradient and keeps the weight gradients for ``get_gradients()``). Called
on a symbolic tensor (``Input(shape)`` or another layer's output) it adds a node to a
graph that ``pycnn.Model(inputs, outputs)`` turns into a model. Subclass :class:`Layer` for
your own (``build`` / ``call`` / ``gradient``, see pycnn/layers/base.py).

Every layer class registers itself by name (:func:`get`) when it is defined.
"""
from __future__ import annotations

from .advanced_activations import LeakyReLU
from .base import Layer, get
from .conv import Conv2D, Convolution2D, DepthwiseConv2D, SeparableConv2D
from .core import Activation, Dense, Dropout, Flatten, Input, InputLayer
from .image import ImageGradient, SobelEdges
from .merge import Add, Concatenate, Multiply
from .normalization import BatchNormalization
from .pooling import (AveragePooling2D, AvgPool2D, GlobalAveragePooling2D, GlobalAvgPool2D, GlobalMaxPool2D,
                      GlobalMaxPooling2D, MaxPool2D, MaxPooling2D)
from .preprocessing import RandomCrop, RandomFlip, RandomTranslation, Rescaling
from .reshaping import Cropping2D, Reshape, ZeroPadding2D

__all__ = [
    "Layer", "Input", "InputLayer", "Conv2D", "Convolution2D", "DepthwiseConv2D",
    "SeparableConv2D", "MaxPooling2D", "MaxPool2D",
    "AveragePooling2D", "AvgPool2D", "GlobalAveragePooling2D", "GlobalAvgPool2D", "GlobalMaxPooling2D",
    "GlobalMaxPool2D", "Flatten", "Reshape", "Dense", "Activation", "Dropout", "Concatenate", "Add", "Multiply",
    "SobelEdges", "ImageGradient", "BatchNormalization", "ZeroPadding2D", "Cropping2D", "Rescaling", "LeakyReLU",
    "RandomFlip", "RandomCrop", "RandomTranslation", "get",
]
