"""2-D convolution layer (NHWC input, kernel (KH, KW, C, F), as in Keras)."""
from __future__ import annotations

from typing import Any, Callable, Dict, Optional, Sequence, Tuple, Union

import numpy as np

from .. import activations, initializers, ops, regularizers, utils
from .base import KernelLayer, Layer, NativeTwin, Shape


def conv_output_length(length: Optional[int], k: int, s: int, padding: str) -> Optional[int]:
    """TensorFlow's output size: 'same' -> ceil(length / s); 'valid' -> (length - k) // s + 1.

    Returns None for an undefined input length and a value < 1 when the window does not fit.
    """
    if length is None:
        return None
    if padding == "same":
        return (length + s - 1) // s
    return (length - k) // s + 1 if length >= k else 0


def window_output_shape(layer: Layer, input_shape: Shape, window: Tuple[int, int], strides: Tuple[int, int],
                        padding: str, channels: int, window_arg: str) -> Shape:
    """(N, OH, OW, channels) for a sliding window; raises the STYLE.md message when OH or OW < 1."""
    n, h, w = input_shape[0], input_shape[1], input_shape[2]
    oh = conv_output_length(h, window[0], strides[0], padding)
    ow = conv_output_length(w, window[1], strides[1], padding)
    if (oh is not None and oh < 1) or (ow is not None and ow < 1):
        raise ValueError(
            f"Computed output size would be zero or negative for layer '{layer.name}'. Received: input "
            f"shape={utils.shape_str(input_shape)}, {window_arg}={window}, strides={strides}, padding='{padding}'. "
            "Use a smaller window or stride, padding='same', or a larger input.")
    return (n, oh, ow, channels)


class Conv2D(KernelLayer):
    """2-D convolution (cross-correlation) with a fused activation, like ``keras.layers.Conv2D``.

    ``out[n, i, j, f] = act(bias[f] + sum_{kh, kw, c} x[n, i*SH + kh - PT, j*SW + kw - PL, c]
    * kernel[kh, kw, c, f])`` with zero padding. 'same' padding follows TensorFlow:
    ``OH = ceil(H / SH)``, the odd padding pixel goes bottom/right.

    Args:
        filters: number of output channels F.
        kernel_size: int or (KH, KW).
        strides: int or (SH, SW).
        padding: 'valid' or 'same'.
        activation: 'relu', 'sigmoid', 'tanh', 'softmax', 'linear' or None (linear).
            relu/sigmoid/tanh run inside the conv kernel; softmax runs over the channels.
        use_bias: add a learned bias per filter.
        kernel_initializer: initialiser name (see :mod:`pycnn.initializers`) or callable.
        bias_initializer: initialiser name or callable.
        data_format: only 'channels_last' (or None) is supported.
        dilation_rate: only 1 is supported.
        kernel_regularizer, bias_regularizer: penalties (:mod:`pycnn.regularizers`) that
            training adds to the loss, e.g. ``pycnn.regularizers.l2(1e-4)``.
        name, input_shape, trainable: see :class:`Layer`.

    Input shape ``(N, H, W, C)``; output ``(N, OH, OW, filters)``; weights
    ``[kernel (KH, KW, C, filters), bias (filters,)]``.
    """

    _input_ndim = 4
    _default_name = "conv2d"

    def __init__(self, filters: int, kernel_size: Union[int, Sequence[int]], strides: Union[int, Sequence[int]] = (1, 1),
                 padding: str = "valid", activation: Union[None, str, Callable] = None, use_bias: bool = True,
                 kernel_initializer: Union[str, Callable] = "glorot_uniform",
                 bias_initializer: Union[str, Callable] = "zeros", data_format: Optional[str] = None,
                 dilation_rate: Union[int, Sequence[int]] = (1, 1), kernel_regularizer: Any = None,
                 bias_regularizer: Any = None, name: Optional[str] = None,
                 input_shape: Optional[Sequence[Optional[int]]] = None, trainable: bool = True) -> None:
        owner = "Conv2D"
        self.filters = utils.positive_int(filters, "filters", owner)
        self.kernel_size = utils.normalize_tuple(kernel_size, 2, "kernel_size", owner)
        self.strides = utils.normalize_tuple(strides, 2, "strides", owner)
        self.padding = utils.normalize_padding(padding, owner)
        self.activation = activations.get(activation, owner)
        if not isinstance(use_bias, (bool, np.bool_)):
            raise ValueError(f"Invalid value for argument 'use_bias' of {owner}: expected True or False. "
                             f"Received: use_bias={use_bias!r}.")
        self.use_bias = bool(use_bias)
        self.kernel_initializer = initializers.get(kernel_initializer, "kernel_initializer", owner)
        self.bias_initializer = initializers.get(bias_initializer, "bias_initializer", owner)
        self.kernel_regularizer = regularizers.get(kernel_regularizer, "kernel_regularizer", owner)
        self.bias_regularizer = regularizers.get(bias_regularizer, "bias_regularizer", owner)
        if data_format not in (None, "channels_last"):
            raise ValueError(f"Invalid value for argument 'data_format' of {owner}: pycnn supports only "
                             f"'channels_last' (NHWC). Received: data_format={data_format!r}. "
                             "Transpose channels-first data with x.transpose(0, 2, 3, 1).")
        if utils.normalize_tuple(dilation_rate, 2, "dilation_rate", owner) != (1, 1):
            raise ValueError(f"Invalid value for argument 'dilation_rate' of {owner}: pycnn supports only "
                             f"dilation_rate=1. Received: dilation_rate={dilation_rate!r}.")
        super().__init__(name=name, input_shape=input_shape, trainable=trainable)

    def _channels(self, input_shape: Shape) -> int:
        if input_shape[-1] is None:
            raise ValueError(f"Conv2D layer '{self.name}' needs a defined number of input channels, but received "
                             f"input shape {utils.shape_str(input_shape)}. Give the model an input shape such as "
                             "Input(shape=(None, None, 3)).")
        return int(input_shape[-1])

    def _create_weights(self, input_shape: Shape) -> None:
        c = self._channels(input_shape)
        self._add_weight("kernel", self.kernel_size + (c, self.filters), self.kernel_initializer,
                         regularizer=self.kernel_regularizer)
        if self.use_bias:
            self._add_weight("bias", (self.filters,), self.bias_initializer, regularizer=self.bias_regularizer)

    def compute_output_shape(self, input_shape: Sequence[Optional[int]]) -> Shape:
        shape = tuple(input_shape)
        self._check_ndim(shape)
        return window_output_shape(self, shape, self.kernel_size, self.strides, self.padding, self.filters,
                                   "kernel_size")

    def _check_input(self, shape: Shape) -> None:
        c = self.kernel.shape[2]
        if shape[-1] != c:
            raise ValueError(f"Layer '{self.name}' expected input with {c} channels on the last axis, but "
                             f"received input with shape {utils.shape_str(shape)}.")

    def _call(self, x: np.ndarray, training: bool, logits: bool) -> Tuple[np.ndarray, Any]:
        fused = self._fused_activation
        out = ops.conv2d_forward(x, self.kernel, self.bias, strides=self.strides, padding=self.padding,
                                 activation=fused)
        out, softmax_out = self._softmax_forward(out, logits)
        return out, (x, out if fused != "linear" else None, softmax_out, fused)

    def _backward(self, ctx: Any, dout: np.ndarray, need_input_grad: bool) -> Tuple[Any, list]:
        x, out, softmax_out, fused = ctx
        dout = self._softmax_backward(dout, softmax_out)
        dinp, dkernel, dbias = ops.conv2d_backward(
            dout, x, self.kernel, out=out, strides=self.strides, padding=self.padding,
            activation=fused, has_bias=self.use_bias, need_dinp=need_input_grad)
        return dinp, ([dkernel, dbias] if self.use_bias else [dkernel])

    def native_twin(self, training: bool, logits: bool) -> Optional[NativeTwin]:
        act = self._twin_activation(logits)
        if act is None:
            return None
        return NativeTwin("conv2d", (self.kernel, self.bias), tuple(self.strides), (self.padding, act))

    def get_config(self) -> Dict[str, Any]:
        config = super().get_config()
        config.update(filters=self.filters, kernel_size=self.kernel_size, strides=self.strides,
                      padding=self.padding, activation=self.activation, use_bias=self.use_bias,
                      kernel_initializer=self.kernel_initializer, bias_initializer=self.bias_initializer,
                      kernel_regularizer=regularizers.serialize(self.kernel_regularizer),
                      bias_regularizer=regularizers.serialize(self.bias_regularizer))
        return config


#: The Keras 1/2 name the lecture's VGG16 uses.
Convolution2D = Conv2D
