"""Keras-style layers on NHWC float32 NumPy arrays, each its weights plus one native op.

Called on a NumPy array a layer runs at once (``layer(x)``; ``layer.backward(dout)`` then
returns the input gradient and keeps the weight gradients for ``get_gradients()``). Called
on a symbolic tensor (``Input(shape)`` or another layer's output) it adds a node to a
graph that ``pycnn.Model(inputs, outputs)`` turns into a model. Subclass :class:`Layer` for
your own (``build`` / ``call`` / ``gradient``, see pycnn/layers/base.py).

Every layer class registers itself by name (:func:`get`) when it is defined.
"""
from __future__ import annotations

from . import advanced_activations, conv, core, image, merge, normalization, pooling, preprocessing, reshaping
from .advanced_activations import *  # noqa: F401,F403 - each family's __all__ is the public list
from .base import Layer, custom_object_scope, get
from .conv import *  # noqa: F401,F403
from .core import *  # noqa: F401,F403
from .image import *  # noqa: F401,F403
from .merge import *  # noqa: F401,F403
from .normalization import *  # noqa: F401,F403
from .pooling import *  # noqa: F401,F403
from .preprocessing import *  # noqa: F401,F403
from .reshaping import *  # noqa: F401,F403

__all__ = ["Layer", "get", "custom_object_scope"] + [
    name for family in (advanced_activations, conv, core, image, merge, normalization, pooling, preprocessing,
                        reshaping) for name in family.__all__]
