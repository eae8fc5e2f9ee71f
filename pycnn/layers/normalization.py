"""BatchNormalization, as ``keras.layers.BatchNormalization``."""
from __future__ import annotations

from typing import Any, Callable, Dict, Optional, Sequence, Union

import numpy as np

from .. import initializers, ops, utils
from .base import Layer, Shape

__all__ = ["BatchNormalization"]


def _number(value: Any, arg: str, ok: Callable[[float], bool], want: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) or not ok(float(value)):
        raise ValueError(f"Invalid value for argument '{arg}' of BatchNormalization: expected {want}. "
                         f"Received: {arg}={value!r}.")
    return float(value)


def _flag(value: Any, arg: str) -> bool:
    return utils.boolean(value, arg, "BatchNormalization")


class BatchNormalization(Layer):
    """Normalizes each channel (the last axis) with batch statistics in training and with
    moving statistics at inference, like ``keras.layers.BatchNormalization``.

    Training (``fit``, or ``layer(x, training=True)`` on a trainable layer)::

        mean, var = moments of x over every axis but the last (biased variance)
        out = gamma * (x - mean) / sqrt(var + epsilon) + beta
        moving_mean = moving_mean * momentum + mean * (1 - momentum)   (and moving_variance)

    Inference (``predict``, ``evaluate``, and training when ``trainable=False``, as in
    Keras 3) uses ``moving_mean`` and ``moving_variance`` instead of the batch's moments.

    Args:
        axis: the channel axis; pycnn normalizes the last axis only (-1, Keras's default).
        momentum: of the moving averages, in [0, 1].
        epsilon: added to the variance, > 0.
        center: learn an offset ``beta``.
        scale: learn a factor ``gamma``.
        beta_initializer, gamma_initializer, moving_mean_initializer,
            moving_variance_initializer: initialiser names or callables.
        name, input_shape, trainable: see :class:`Layer`.

    Weights, in Keras's order: ``[gamma (C,), beta (C,), moving_mean (C,), moving_variance
    (C,)]`` (gamma without ``scale``, beta without ``center`` left out). The moving
    statistics are non-trainable weights: saved and loaded, never given to the optimizer.
    """

    _default_name = "batch_normalization"

    def __init__(self, axis: int = -1, momentum: float = 0.99, epsilon: float = 1e-3, center: bool = True,
                 scale: bool = True, beta_initializer: Union[str, Callable] = "zeros",
                 gamma_initializer: Union[str, Callable] = "ones",
                 moving_mean_initializer: Union[str, Callable] = "zeros",
                 moving_variance_initializer: Union[str, Callable] = "ones", name: Optional[str] = None,
                 input_shape: Optional[Sequence[Optional[int]]] = None, trainable: bool = True) -> None:
        owner = "BatchNormalization"
        if isinstance(axis, (list, tuple)) and len(axis) == 1:
            axis = axis[0]
        if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
            raise ValueError(f"Invalid value for argument 'axis' of {owner}: expected an integer. "
                             f"Received: axis={axis!r}.")
        self.axis = int(axis)
        self.momentum = _number(momentum, "momentum", lambda v: 0.0 <= v <= 1.0, "a number in [0, 1]")
        self.epsilon = _number(epsilon, "epsilon", lambda v: v > 0.0 and np.isfinite(v), "a finite number > 0")
        self.center = _flag(center, "center")
        self.scale = _flag(scale, "scale")
        self.beta_initializer = initializers.get(beta_initializer, "beta_initializer", owner)
        self.gamma_initializer = initializers.get(gamma_initializer, "gamma_initializer", owner)
        self.moving_mean_initializer = initializers.get(moving_mean_initializer, "moving_mean_initializer", owner)
        self.moving_variance_initializer = initializers.get(moving_variance_initializer,
                                                            "moving_variance_initializer", owner)
        super().__init__(name=name, input_shape=input_shape, trainable=trainable)

    # ----------------------------------------------------------------- shapes and weights

    def _check_ndim(self, shape: Shape) -> None:
        super()._check_ndim(shape)
        if self.axis not in (-1, len(shape) - 1):
            raise ValueError(f"Layer '{self.name}' normalizes the last axis only (axis=-1, the channels of NHWC "
                             f"data). Received: axis={self.axis} for input shape {utils.shape_str(shape)}.")

    def build(self, input_shape: Shape) -> None:
        c = input_shape[-1]
        if c is None:
            raise ValueError(f"BatchNormalization layer '{self.name}' needs a defined channel axis, but received "
                             f"input shape {utils.shape_str(input_shape)}.")
        shape = (int(c),)
        if self.scale:
            self.add_weight("gamma", shape, self.gamma_initializer)
        if self.center:
            self.add_weight("beta", shape, self.beta_initializer)
        self.add_weight("moving_mean", shape, self.moving_mean_initializer, trainable=False)
        self.add_weight("moving_variance", shape, self.moving_variance_initializer, trainable=False)

    def _check_input(self, shape: Shape) -> None:
        c = self.moving_mean.shape[0]
        if shape[-1] != c:
            raise ValueError(f"Layer '{self.name}' expected input with {c} channels on the last axis, but "
                             f"received input with shape {utils.shape_str(shape)}.")

    @property
    def gamma(self) -> Optional[np.ndarray]:
        return self._params[0] if self.scale else None

    @property
    def beta(self) -> Optional[np.ndarray]:
        return self._params[int(self.scale)] if self.center else None

    @property
    def moving_mean(self) -> np.ndarray:
        return self._params[-2]

    @property
    def moving_variance(self) -> np.ndarray:
        return self._params[-1]

    # ----------------------------------------------------------------- the op

    def spec(self, training: bool = False) -> ops.OpSpec:
        # Keras 3: a frozen layer normalizes with its moving statistics even in training.
        return ops.OpSpec("batchnorm", {"epsilon": self.epsilon, "momentum": self.momentum,
                                        "training": int(bool(training) and self.trainable)},
                          (self.gamma, self.beta, self.moving_mean, self.moving_variance))

    def get_config(self) -> Dict[str, Any]:
        config = super().get_config()
        config.update(axis=self.axis, momentum=self.momentum, epsilon=self.epsilon, center=self.center,
                      scale=self.scale, beta_initializer=self.beta_initializer,
                      gamma_initializer=self.gamma_initializer,
                      moving_mean_initializer=self.moving_mean_initializer,
                      moving_variance_initializer=self.moving_variance_initializer)
        return config
