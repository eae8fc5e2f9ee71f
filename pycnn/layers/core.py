"""Input, Dense, Flatten, Activation and Dropout layers."""
from __future__ import annotations

from typing import Any, Callable, Dict, Optional, Sequence, Union

import numpy as np

from .. import _core, activations, initializers, utils
from .base import KernelLayer, Layer, Shape, _sample_shape


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

    def _call(self, x: np.ndarray, training: bool, logits: bool) -> np.ndarray:
        self._cache = {}
        return x

    def _backward(self, dout: np.ndarray, need_input_grad: bool) -> Optional[np.ndarray]:
        return dout if need_input_grad else None

    def get_config(self) -> Dict[str, Any]:
        return {"shape": self.shape, "batch_size": self.batch_size, "name": self.name}


#: ``keras.Input``: in pycnn an InputLayer that ``Sequential`` accepts as its first entry.
Input = InputLayer


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
        name, input_shape, trainable: see :class:`Layer`.

    Weights ``[kernel (in, units), bias (units,)]``.

    Raises:
        ValueError: at build time if the last input dimension is undefined (e.g. after
            Flatten on a model with ``Input((None, None, C))``).
    """

    _default_name = "dense"

    def __init__(self, units: int, activation: Union[None, str, Callable] = None, use_bias: bool = True,
                 kernel_initializer: Union[str, Callable] = "glorot_uniform",
                 bias_initializer: Union[str, Callable] = "zeros", name: Optional[str] = None,
                 input_shape: Optional[Sequence[Optional[int]]] = None, trainable: bool = True) -> None:
        owner = "Dense"
        self.units = utils.positive_int(units, "units", owner)
        self.activation = activations.get(activation, owner)
        if not isinstance(use_bias, (bool, np.bool_)):
            raise ValueError(f"Invalid value for argument 'use_bias' of {owner}: expected True or False. "
                             f"Received: use_bias={use_bias!r}.")
        self.use_bias = bool(use_bias)
        self.kernel_initializer = initializers.get(kernel_initializer, "kernel_initializer", owner)
        self.bias_initializer = initializers.get(bias_initializer, "bias_initializer", owner)
        super().__init__(name=name, input_shape=input_shape, trainable=trainable)

    def _create_weights(self, input_shape: Shape) -> None:
        if input_shape[-1] is None:
            raise ValueError(
                f"Dense layer '{self.name}' needs a defined last input dimension, but received input shape "
                f"{utils.shape_str(input_shape)}. Give the model a fixed input size, e.g. "
                "Input(shape=(32, 32, 3)), or replace Flatten + Dense with convolutions (a Conv2D whose kernel "
                "covers the remaining feature map, then 1x1 Conv2D) to accept any input size.")
        self._add_weight("kernel", (int(input_shape[-1]), self.units), self.kernel_initializer)
        if self.use_bias:
            self._add_weight("bias", (self.units,), self.bias_initializer)

    def compute_output_shape(self, input_shape: Sequence[Optional[int]]) -> Shape:
        shape = tuple(input_shape)
        self._check_ndim(shape)
        return shape[:-1] + (self.units,)

    def _check_input(self, shape: Shape) -> None:
        features = self.kernel.shape[0]
        if shape[-1] != features:
            raise ValueError(f"Layer '{self.name}' expected input with {features} features on the last axis, but "
                             f"received input with shape {utils.shape_str(shape)}.")

    def _call(self, x: np.ndarray, training: bool, logits: bool) -> np.ndarray:
        fused = self._fused_activation
        x2 = x.reshape(-1, x.shape[-1])
        out = _core.dense_forward(x2, self.kernel, self.bias, activation=fused)
        out, softmax_out = self._softmax_forward(out, logits)
        self._cache = {"x": x2, "shape": x.shape, "out": out if fused != "linear" else None,
                       "softmax_out": softmax_out, "fused": fused}
        return out.reshape(x.shape[:-1] + (self.units,))

    def _backward(self, dout: np.ndarray, need_input_grad: bool) -> Optional[np.ndarray]:
        cache = self._cache
        dout = self._softmax_backward(dout.reshape(-1, self.units), cache["softmax_out"])
        dinp, dkernel, dbias = _core.dense_backward(
            dout, cache["x"], self.kernel, out=cache["out"], activation=cache["fused"], has_bias=self.use_bias,
            need_dinp=need_input_grad)
        self._grads = [dkernel, dbias] if self.use_bias else [dkernel]
        return None if dinp is None else dinp.reshape(cache["shape"])

    def get_config(self) -> Dict[str, Any]:
        config = super().get_config()
        config.update(units=self.units, activation=self.activation, use_bias=self.use_bias,
                      kernel_initializer=self.kernel_initializer, bias_initializer=self.bias_initializer)
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

    def _call(self, x: np.ndarray, training: bool, logits: bool) -> np.ndarray:
        self._cache = {"shape": x.shape}
        return x.reshape(x.shape[0], -1)

    def _backward(self, dout: np.ndarray, need_input_grad: bool) -> Optional[np.ndarray]:
        return dout.reshape(self._cache["shape"]) if need_input_grad else None


class Activation(Layer):
    """Applies an activation: 'relu', 'sigmoid', 'tanh', 'softmax' (last axis) or 'linear'.

    Args:
        activation: the activation's name (or a :mod:`pycnn.activations` function).
    """

    def __init__(self, activation: Union[str, Callable], name: Optional[str] = None,
                 input_shape: Optional[Sequence[Optional[int]]] = None, trainable: bool = True) -> None:
        if activation is None:
            raise ValueError("Invalid value for argument 'activation' of Activation: expected one of 'relu', "
                             "'sigmoid', 'tanh', 'softmax', 'linear'. Received: activation=None.")
        self.activation = activations.get(activation, "Activation")
        super().__init__(name=name, input_shape=input_shape, trainable=trainable)

    def _check_ndim(self, shape: Shape) -> None:
        if len(shape) < 1:
            super()._check_ndim(shape)

    def _call(self, x: np.ndarray, training: bool, logits: bool) -> np.ndarray:
        name = "linear" if (logits and self.activation == "softmax") else self.activation
        out = activations.forward(name, x)
        self._cache = {"name": name, "out": out}
        return out

    def _backward(self, dout: np.ndarray, need_input_grad: bool) -> Optional[np.ndarray]:
        if not need_input_grad:
            return None
        return activations.backward(self._cache["name"], dout, self._cache["out"])

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

    def _call(self, x: np.ndarray, training: bool, logits: bool) -> np.ndarray:
        if not training or self.rate == 0.0:
            self._cache = {"mask": None}
            return x
        rng = self._rng if self._rng is not None else utils.get_rng()
        keep = rng.random(self._mask_shape(x.shape), dtype=np.float32) >= self.rate
        mask = keep.astype(np.float32) * np.float32(1.0 / (1.0 - self.rate))
        self._cache = {"mask": mask}
        return x * mask

    def _backward(self, dout: np.ndarray, need_input_grad: bool) -> Optional[np.ndarray]:
        if not need_input_grad:
            return None
        mask = self._cache["mask"]
        return dout if mask is None else dout * mask

    def get_config(self) -> Dict[str, Any]:
        config = super().get_config()
        config.update(rate=self.rate, noise_shape=self.noise_shape, seed=self.seed)
        return config
