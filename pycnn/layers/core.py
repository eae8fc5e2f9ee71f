"""Input, Dense, Flatten, Activation and Dropout layers."""
from __future__ import annotations

from typing import Any, Callable, Dict, Optional, Sequence, Tuple, Union

import numpy as np

from .. import activations, initializers, ops, regularizers, symbolic, utils
from .base import KernelLayer, Layer, Shape, _sample_shape

__all__ = ["InputLayer", "Input", "Dense", "Flatten", "Activation", "Dropout"]


class InputLayer(Layer):
    """Declares a model's input shape; the identity in forward and backward.

    ``Sequential([Input((28, 28, 1)), ...])`` builds every layer as it is added, so
    ``summary()`` works before any data is seen. Dimensions may be None
    (``Input((None, None, 1))``) for fully convolutional models that accept any size.

    Args:
        shape: shape of one sample, without the batch axis, e.g. (32, 32, 3).
        batch_size: optional fixed batch size (shown in shapes instead of None).
        name: default ``input_layer``.
    """

    _default_name = "input_layer"

    def __init__(self, shape: Sequence[Optional[int]], batch_size: Optional[int] = None,
                 name: Optional[str] = None) -> None:
        sample = _sample_shape(shape, "shape", "Input")
        if batch_size is not None:
            batch_size = utils.positive_int(batch_size, "batch_size", "Input")
        super().__init__(name=name, input_shape=sample)
        self.shape = sample
        self.batch_size = batch_size
        self.build((batch_size,) + sample)

    @property
    def batch_input_shape(self) -> Shape:
        return (self.batch_size,) + self.shape

    def spec(self, training: bool = False) -> ops.OpSpec:
        return ops.OpSpec("identity", {})

    def get_config(self) -> Dict[str, Any]:
        return {"shape": self.shape, "batch_size": self.batch_size, "name": self.name}


def Input(shape: Sequence[Optional[int]], batch_size: Optional[int] = None,
          name: Optional[str] = None) -> symbolic.KerasTensor:
    """A symbolic input tensor, like ``keras.Input``: the start of a graph model.

    ``x = Input((32, 32, 3))`` is a KerasTensor of shape ``(None, 32, 32, 3)``; layers called
    on it return KerasTensors, and ``pycnn.Model(inputs=x, outputs=...)`` makes the model.
    ``Sequential([Input((32, 32, 3)), ...])`` takes it as the model's input shape.

    Args:
        shape: shape of one sample, without the batch axis; dimensions may be None.
        batch_size: optional fixed batch size.
        name: the InputLayer's name (default ``input_layer``, ``input_layer_1``, ...).
    """
    layer = InputLayer(shape, batch_size=batch_size, name=name)
    return symbolic.Node(layer, [], layer.batch_input_shape).output


class Dense(KernelLayer):
    """Fully connected layer ``out = act(x @ kernel + bias)``, like ``keras.layers.Dense``.

    Applies to the last axis: input ``(N, ..., in)`` -> output ``(N, ..., units)``
    (usually ``(N, in)`` after :class:`Flatten`).

    Args:
        units: output features.
        activation: 'relu', 'sigmoid', 'tanh', 'softmax', 'linear' or None (linear).
            relu/sigmoid/tanh run inside the dense kernel.
        use_bias: add a learned bias.
        kernel_initializer, bias_initializer: initialiser names or callables.
        kernel_regularizer, bias_regularizer: penalties (:mod:`pycnn.regularizers`) that
            training adds to the loss.
        name, input_shape, trainable: see :class:`Layer`.

    Weights ``[kernel (in, units), bias (units,)]``.

    Raises:
        ValueError: at build time if the last input dimension is undefined (e.g. after
            Flatten on a model with ``Input((None, None, C))``).
    """

    _default_name = "dense"

    def __init__(self, units: int, activation: Union[None, str, Callable] = None, use_bias: bool = True,
                 kernel_initializer: Union[str, Callable] = "glorot_uniform",
                 bias_initializer: Union[str, Callable] = "zeros", kernel_regularizer: Any = None,
                 bias_regularizer: Any = None, name: Optional[str] = None,
                 input_shape: Optional[Sequence[Optional[int]]] = None, trainable: bool = True) -> None:
        owner = "Dense"
        self.units = utils.positive_int(units, "units", owner)
        self.activation = activations.get(activation, owner)
        self.use_bias = utils.boolean(use_bias, "use_bias", owner)
        self.kernel_initializer = initializers.get(kernel_initializer, "kernel_initializer", owner)
        self.bias_initializer = initializers.get(bias_initializer, "bias_initializer", owner)
        self.kernel_regularizer = regularizers.get(kernel_regularizer, "kernel_regularizer", owner)
        self.bias_regularizer = regularizers.get(bias_regularizer, "bias_regularizer", owner)
        super().__init__(name=name, input_shape=input_shape, trainable=trainable)

    def build(self, input_shape: Shape) -> None:
        if input_shape[-1] is None:
            raise ValueError(
                f"Dense layer '{self.name}' needs a defined last input dimension, but received input shape "
                f"{utils.shape_str(input_shape)}. Give the model a fixed input size, e.g. "
                "Input(shape=(32, 32, 3)), or replace Flatten + Dense with convolutions (a Conv2D whose kernel "
                "covers the remaining feature map, then 1x1 Conv2D) to accept any input size.")
        self.add_weight("kernel", (int(input_shape[-1]), self.units), self.kernel_initializer,
                        regularizer=self.kernel_regularizer)
        if self.use_bias:
            self.add_weight("bias", (self.units,), self.bias_initializer, regularizer=self.bias_regularizer)

    def compute_output_shape(self, input_shape: Sequence[Optional[int]]) -> Shape:
        shape = tuple(input_shape)
        self._check_ndim(shape)
        return shape[:-1] + (self.units,)

    def _check_input(self, shape: Shape) -> None:
        features = self.kernel.shape[0]
        if shape[-1] != features:
            raise ValueError(f"Layer '{self.name}' expected input with {features} features on the last axis, but "
                             f"received input with shape {utils.shape_str(shape)}.")

    def spec(self, training: bool = False) -> ops.OpSpec:
        return ops.OpSpec("dense", {"activation": self.activation}, (self.kernel, self.bias))

    def get_config(self) -> Dict[str, Any]:
        config = super().get_config()
        config.update(units=self.units, activation=self.activation, use_bias=self.use_bias,
                      kernel_initializer=self.kernel_initializer, bias_initializer=self.bias_initializer,
                      kernel_regularizer=regularizers.serialize(self.kernel_regularizer),
                      bias_regularizer=regularizers.serialize(self.bias_regularizer))
        return config


class Flatten(Layer):
    """Reshape ``(N, d1, d2, ...)`` to ``(N, d1*d2*...)`` (row-major, NHWC order, like Keras).

    The flattened size is None when any input dimension is undefined.
    """

    def compute_output_shape(self, input_shape: Sequence[Optional[int]]) -> Shape:
        shape = tuple(input_shape)
        self._check_ndim(shape)
        rest = shape[1:]
        return (shape[0], None if any(d is None for d in rest) else int(np.prod(rest, dtype=np.int64)))

    def spec(self, training: bool = False) -> ops.OpSpec:
        return ops.OpSpec("flatten", {})


class Activation(Layer):
    """Applies an activation: 'relu', 'sigmoid', 'tanh', 'softmax' (last axis), 'leaky_relu'
    (slope 0.2, Keras's activation default; see LeakyReLU for other slopes) or 'linear'.

    Args:
        activation: the activation's name (or a :mod:`pycnn.activations` function).
    """

    def __init__(self, activation: Union[str, Callable], name: Optional[str] = None,
                 input_shape: Optional[Sequence[Optional[int]]] = None, trainable: bool = True) -> None:
        if activation is None:
            raise ValueError("Invalid value for argument 'activation' of Activation: expected one of 'relu', "
                             "'sigmoid', 'tanh', 'softmax', 'leaky_relu', 'linear'. Received: activation=None.")
        self.activation = activations.get(activation, "Activation")
        super().__init__(name=name, input_shape=input_shape, trainable=trainable)

    def _check_ndim(self, shape: Shape) -> None:
        if len(shape) < 1:
            super()._check_ndim(shape)

    def spec(self, training: bool = False) -> ops.OpSpec:
        return ops.OpSpec("activation", {"activation": self.activation})

    def get_config(self) -> Dict[str, Any]:
        config = super().get_config()
        config["activation"] = self.activation
        return config




class Dropout(Layer):
    """Inverted dropout: in training, zero each input with probability ``rate`` and scale
    the rest by ``1 / (1 - rate)``; the identity at inference (``training=False``).

    Args:
        rate: drop probability in [0, 1).
        noise_shape: optional shape the mask is broadcast from, e.g. (None, 1, 1, C) to
            drop whole channels; None entries take the input's size.
        seed: seeds this layer's own generator; default draws from
            :func:`pycnn.utils.get_rng`, so :func:`pycnn.utils.set_random_seed` fixes it.
    """

    def __init__(self, rate: float, noise_shape: Optional[Sequence[Optional[int]]] = None,
                 seed: Optional[int] = None, name: Optional[str] = None,
                 input_shape: Optional[Sequence[Optional[int]]] = None, trainable: bool = True) -> None:
        if isinstance(rate, bool) or not isinstance(rate, (int, float, np.integer, np.floating)) \
                or not 0.0 <= float(rate) < 1.0:
            raise ValueError("Invalid value for argument 'rate' of Dropout: expected a number in [0, 1). "
                             f"Received: rate={rate!r}.")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0):
            raise ValueError("Invalid value for argument 'seed' of Dropout: expected a non-negative integer or "
                             f"None. Received: seed={seed!r}.")
        self.rate = float(rate)
        self.noise_shape = None if noise_shape is None else tuple(noise_shape)
        self.seed = seed
        self._rng = None if seed is None else np.random.default_rng(seed)
        super().__init__(name=name, input_shape=input_shape, trainable=trainable)

    def _check_ndim(self, shape: Shape) -> None:
        if len(shape) < 1:
            super()._check_ndim(shape)

    def _mask_shape(self, shape: Sequence[int]):
        if self.noise_shape is None:
            return tuple(shape)
        if len(self.noise_shape) != len(shape):
            raise ValueError(f"Layer '{self.name}' expected inputs of rank {len(self.noise_shape)} to match "
                             f"noise_shape={self.noise_shape}. Received: input shape {tuple(shape)}.")
        return tuple(s if d is None else int(d) for d, s in zip(self.noise_shape, shape))

    def compute_output_shape(self, input_shape: Sequence[Optional[int]]) -> Shape:
        return tuple(input_shape)

    def spec(self, training: bool = False) -> Optional[ops.OpSpec]:
        # In training the mask is drawn in NumPy (call / gradient), so that the random stream
        # is pycnn's seeded generator; at inference it is the identity.
        return None if (training and self.rate > 0.0) else ops.OpSpec("identity", {})

    def call(self, inputs: np.ndarray, training: bool = False) -> np.ndarray:
        rng = self._rng if self._rng is not None else utils.get_rng()
        keep = rng.random(self._mask_shape(inputs.shape), dtype=np.float32) >= self.rate
        mask = keep.astype(np.float32) * np.float32(1.0 / (1.0 - self.rate))
        out = inputs * mask
        self._keep_for_gradient(out, mask)
        return out

    def gradient(self, inputs: np.ndarray, outputs: np.ndarray, doutputs: np.ndarray) -> Tuple[np.ndarray, list]:
        return doutputs * self._kept_for_gradient(outputs), []

    def get_config(self) -> Dict[str, Any]:
        config = super().get_config()
        config.update(rate=self.rate, noise_shape=self.noise_shape, seed=self.seed)
        return config
