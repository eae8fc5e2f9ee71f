"""Activations with a parameter, as their own layers: LeakyReLU (``keras.layers.LeakyReLU``)
and GELU (exact or approximate)."""
from __future__ import annotations

import warnings
from typing import Any, Dict, Optional, Sequence

import numpy as np

from .. import ops, utils
from .base import Layer, Shape

__all__ = ["LeakyReLU", "GELU"]


class LeakyReLU(Layer):
    """``x`` where ``x > 0``, else ``negative_slope * x``, element-wise, like
    ``keras.layers.LeakyReLU`` (Keras 3 names and default).

    Args:
        negative_slope: slope for ``x <= 0``, a number >= 0 (default 0.3, Keras's layer
            default; ``activation='leaky_relu'`` uses 0.2, Keras's activation default).
        alpha: the Keras 2 name of ``negative_slope``; accepted with a DeprecationWarning-
            style ``UserWarning`` as Keras 3 does, and then takes precedence.

    Raises:
        ValueError: for a negative, None or non-numeric slope.
        TypeError: for an unknown keyword argument.
    """

    def __init__(self, negative_slope: float = 0.3, name: Optional[str] = None,
                 input_shape: Optional[Sequence[Optional[int]]] = None, trainable: bool = True,
                 **kwargs: Any) -> None:
        if "alpha" in kwargs:
            negative_slope = kwargs.pop("alpha")
            warnings.warn("Argument `alpha` is deprecated. Use `negative_slope` instead.", stacklevel=2)
        if kwargs:
            raise TypeError(f"LeakyReLU got unexpected keyword arguments: {', '.join(sorted(kwargs))}. "
                            "Expected negative_slope (or its old name alpha), name, input_shape, trainable.")
        ok = isinstance(negative_slope, (int, float, np.integer, np.floating)) and \
            not isinstance(negative_slope, (bool, np.bool_)) and np.isfinite(negative_slope) and negative_slope >= 0
        if not ok:
            raise ValueError("The negative_slope value of a Leaky ReLU layer cannot be None or negative value. "
                             f"Expected a float. Received: negative_slope={negative_slope!r}.")
        self.negative_slope = float(negative_slope)
        super().__init__(name=name, input_shape=input_shape, trainable=trainable)

    def _check_ndim(self, shape: Shape) -> None:
        if len(shape) < 1:
            super()._check_ndim(shape)

    def spec(self, training: bool = False) -> ops.OpSpec:
        return ops.OpSpec("leaky_relu", {"negative_slope": self.negative_slope})

    def get_config(self) -> Dict[str, Any]:
        config = super().get_config()
        config["negative_slope"] = self.negative_slope
        return config


class GELU(Layer):
    """The Gaussian error linear unit ``x * P(X <= x)`` for a standard normal X, element-wise:
    Keras's ``keras.activations.gelu(x, approximate)`` as a layer (PyTorch's ``nn.GELU``).

    ``activation="gelu"`` (any layer with an activation argument) and ``Activation("gelu")``
    are the exact form too; ``"gelu_approximate"`` names the other.

    Args:
        approximate: False (default, as Keras): ``0.5 x (1 + erf(x / sqrt(2)))``; True:
            ``0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3)))``.

    Raises:
        ValueError: for an ``approximate`` that is not True or False.
    """

    def __init__(self, approximate: bool = False, name: Optional[str] = None,
                 input_shape: Optional[Sequence[Optional[int]]] = None, trainable: bool = True) -> None:
        self.approximate = utils.boolean(approximate, "approximate", "GELU")
        super().__init__(name=name, input_shape=input_shape, trainable=trainable)

    def _check_ndim(self, shape: Shape) -> None:
        if len(shape) < 1:
            super()._check_ndim(shape)

    def spec(self, training: bool = False) -> ops.OpSpec:
        return ops.OpSpec("activation", {"activation": "gelu_approximate" if self.approximate else "gelu"})

    def get_config(self) -> Dict[str, Any]:
        config = super().get_config()
        config["approximate"] = self.approximate
        return config
