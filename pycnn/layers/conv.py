"""2-D convolution layers (NHWC input), as in Keras: Conv2D (kernel (KH, KW, C // groups, F),
optionally dilated and grouped), DepthwiseConv2D (kernel (KH, KW, C, depth_multiplier)) and
SeparableConv2D (depthwise, then a 1x1 pointwise kernel (1, 1, C * depth_multiplier, filters))."""
from __future__ import annotations

from typing import Any, Callable, Dict, Optional, Sequence, Tuple, Union

import numpy as np

from .. import activations, initializers, ops, regularizers, utils
from .base import KernelLayer, Layer, Shape

__all__ = ["Conv2D", "Convolution2D", "DepthwiseConv2D", "SeparableConv2D"]


def conv_output_length(length: Optional[int], k: int, s: int, padding: str, dilation: int = 1) -> Optional[int]:
    """TensorFlow's output size: 'same' -> ceil(length / s); 'valid' -> (length - k) // s + 1,
    with k the dilated window extent (k - 1) * dilation + 1.

    Returns None for an undefined input length and a value < 1 when the window does not fit.
    """
    if length is None:
        return None
    k = (k - 1) * dilation + 1
    if padding == "same":
        return (length + s - 1) // s
    return (length - k) // s + 1 if length >= k else 0


def window_output_shape(layer: Layer, input_shape: Shape, window: Tuple[int, int], strides: Tuple[int, int],
                        padding: str, channels: int, window_arg: str,
                        dilation: Tuple[int, int] = (1, 1)) -> Shape:
    """(N, OH, OW, channels) for a sliding window; raises the STYLE.md message when OH or OW < 1."""
    n, h, w = input_shape[0], input_shape[1], input_shape[2]
    oh = conv_output_length(h, window[0], strides[0], padding, dilation[0])
    ow = conv_output_length(w, window[1], strides[1], padding, dilation[1])
    if (oh is not None and oh < 1) or (ow is not None and ow < 1):
        dil = "" if tuple(dilation) == (1, 1) else f", dilation_rate={tuple(dilation)}"
        raise ValueError(
            f"Computed output size would be zero or negative for layer '{layer.name}'. Received: input "
            f"shape={utils.shape_str(input_shape)}, {window_arg}={window}, strides={strides}, padding='{padding}'"
            f"{dil}. Use a smaller window or stride, padding='same', or a larger input.")
    return (n, oh, ow, channels)


class Conv2D(KernelLayer):
    """2-D convolution (cross-correlation) with a fused activation, like ``keras.layers.Conv2D``.

    ``out[n, i, j, f] = act(bias[f] + sum_{kh, kw, c} x[n, i*SH + kh*DH - PT, j*SW + kw*DW - PL, g*Cg + c]
    * kernel[kh, kw, c, f])`` with zero padding, where ``Cg = C // groups`` and filter ``f``
    belongs to group ``g = f // (filters // groups)``. 'same' padding follows TensorFlow:
    ``OH = ceil(H / SH)``, the padding is computed for the dilated kernel extent
    ``(KH - 1) * DH + 1``, the odd padding pixel goes bottom/right; 'valid' gives
    ``OH = (H - (KH - 1) * DH - 1) // SH + 1``.

    Dilation 1 with one group calls the optimised conv2d kernels directly. Other dilations
    and group counts (csrc/conv2d_grouped.cpp) rewrite the layer exactly onto those same
    kernels: one convolution per group, and dilation as TensorFlow's space-to-batch (the
    DH*DW phases of the padded input convolved with the undilated kernel as one batch). The
    one-call native training step runs them too.

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
        dilation_rate: int or (DH, DW), the spacing between kernel taps. As in Keras, a
            dilation above 1 requires strides of 1.
        groups: number of channel groups; must divide both the input channels and
            ``filters``. Each group of ``filters // groups`` filters sees only its block of
            ``C // groups`` input channels (``groups=C`` with ``filters=C`` is a depthwise
            convolution).
        kernel_regularizer, bias_regularizer: penalties (:mod:`pycnn.regularizers`) that
            training adds to the loss, e.g. ``pycnn.regularizers.l2(1e-4)``.
        name, input_shape, trainable: see :class:`Layer`.

    Input shape ``(N, H, W, C)``; output ``(N, OH, OW, filters)``; weights
    ``[kernel (KH, KW, C // groups, filters), bias (filters,)]``.

    Raises:
        ValueError: for a non-positive or non-dividing ``groups``, dilation above 1 with
            strides above 1, or (at build) input channels not divisible by ``groups``.
    """

    _input_ndim = 4
    _default_name = "conv2d"

    def __init__(self, filters: int, kernel_size: Union[int, Sequence[int]], strides: Union[int, Sequence[int]] = (1, 1),
                 padding: str = "valid", activation: Union[None, str, Callable] = None, use_bias: bool = True,
                 kernel_initializer: Union[str, Callable] = "glorot_uniform",
                 bias_initializer: Union[str, Callable] = "zeros", data_format: Optional[str] = None,
                 dilation_rate: Union[int, Sequence[int]] = (1, 1), groups: int = 1, kernel_regularizer: Any = None,
                 bias_regularizer: Any = None, name: Optional[str] = None,
                 input_shape: Optional[Sequence[Optional[int]]] = None, trainable: bool = True) -> None:
        owner = "Conv2D"
        self.filters = utils.positive_int(filters, "filters", owner)
        self.kernel_size = utils.normalize_tuple(kernel_size, 2, "kernel_size", owner)
        self.strides = utils.normalize_tuple(strides, 2, "strides", owner)
        self.padding = utils.normalize_padding(padding, owner)
        self.activation = activations.get(activation, owner)
        self.use_bias = utils.boolean(use_bias, "use_bias", owner)
        self.kernel_initializer = initializers.get(kernel_initializer, "kernel_initializer", owner)
        self.bias_initializer = initializers.get(bias_initializer, "bias_initializer", owner)
        self.kernel_regularizer = regularizers.get(kernel_regularizer, "kernel_regularizer", owner)
        self.bias_regularizer = regularizers.get(bias_regularizer, "bias_regularizer", owner)
        if data_format not in (None, "channels_last"):
            raise ValueError(f"Invalid value for argument 'data_format' of {owner}: pycnn supports only "
                             f"'channels_last' (NHWC). Received: data_format={data_format!r}. "
                             "Transpose channels-first data with x.transpose(0, 2, 3, 1).")
        self.dilation_rate = utils.normalize_tuple(dilation_rate, 2, "dilation_rate", owner)
        if max(self.strides) > 1 and max(self.dilation_rate) > 1:
            raise ValueError(f"{owner} does not support strides > 1 together with dilation_rate > 1 (as in Keras). "
                             f"Received: strides={self.strides}, dilation_rate={self.dilation_rate}. "
                             "Use strides=1 or dilation_rate=1.")
        self.groups = utils.positive_int(groups, "groups", owner)
        if self.filters % self.groups != 0:
            raise ValueError(f"The number of filters of {owner} must be evenly divisible by the number of groups. "
                             f"Received: groups={self.groups}, filters={self.filters}.")
        super().__init__(name=name, input_shape=input_shape, trainable=trainable)

    def _channels(self, input_shape: Shape) -> int:
        if input_shape[-1] is None:
            raise ValueError(f"Conv2D layer '{self.name}' needs a defined number of input channels, but received "
                             f"input shape {utils.shape_str(input_shape)}. Give the model an input shape such as "
                             "Input(shape=(None, None, 3)).")
        return int(input_shape[-1])

    def build(self, input_shape: Shape) -> None:
        c = self._channels(input_shape)
        if c % self.groups != 0:
            raise ValueError(f"The number of input channels of layer '{self.name}' must be evenly divisible by the "
                             f"number of groups. Received: groups={self.groups}, but the input has {c} channels "
                             f"(full input shape is {utils.shape_str(input_shape)}).")
        self.add_weight("kernel", self.kernel_size + (c // self.groups, self.filters), self.kernel_initializer,
                        regularizer=self.kernel_regularizer)
        if self.use_bias:
            self.add_weight("bias", (self.filters,), self.bias_initializer, regularizer=self.bias_regularizer)

    def compute_output_shape(self, input_shape: Sequence[Optional[int]]) -> Shape:
        shape = tuple(input_shape)
        self._check_ndim(shape)
        return window_output_shape(self, shape, self.kernel_size, self.strides, self.padding, self.filters,
                                   "kernel_size", self.dilation_rate)

    def _check_input(self, shape: Shape) -> None:
        c = self.kernel.shape[2] * self.groups
        if shape[-1] != c:
            raise ValueError(f"Layer '{self.name}' expected input with {c} channels on the last axis, but "
                             f"received input with shape {utils.shape_str(shape)}.")

    def spec(self, training: bool = False) -> ops.OpSpec:
        return ops.OpSpec("conv2d", {"strides": self.strides, "padding": self.padding,
                                     "dilation_rate": self.dilation_rate, "groups": self.groups,
                                     "activation": self.activation}, (self.kernel, self.bias))

    def get_config(self) -> Dict[str, Any]:
        config = super().get_config()
        config.update(filters=self.filters, kernel_size=self.kernel_size, strides=self.strides,
                      padding=self.padding, dilation_rate=self.dilation_rate, groups=self.groups,
                      activation=self.activation, use_bias=self.use_bias,
                      kernel_initializer=self.kernel_initializer, bias_initializer=self.bias_initializer,
                      kernel_regularizer=regularizers.serialize(self.kernel_regularizer),
                      bias_regularizer=regularizers.serialize(self.bias_regularizer))
        return config


#: The Keras 1/2 name the lecture's VGG16 uses.
Convolution2D = Conv2D


class _WindowConv(KernelLayer):
    """What DepthwiseConv2D and SeparableConv2D share: the window arguments, their validation,
    the depthwise kernel (KH, KW, C, depth_multiplier) and the output arithmetic."""

    _input_ndim = 4

    def _init_window(self, owner: str, kernel_size: Any, strides: Any, padding: Any, depth_multiplier: Any,
                     data_format: Any, dilation_rate: Any, activation: Any, use_bias: Any,
                     depthwise_initializer: Any, bias_initializer: Any) -> None:
        self.kernel_size = utils.normalize_tuple(kernel_size, 2, "kernel_size", owner)
        self.strides = utils.normalize_tuple(strides, 2, "strides", owner)
        self.padding = utils.normalize_padding(padding, owner)
        self.depth_multiplier = utils.positive_int(depth_multiplier, "depth_multiplier", owner)
        if data_format not in (None, "channels_last"):
            raise ValueError(f"Invalid value for argument 'data_format' of {owner}: pycnn supports only "
                             f"'channels_last' (NHWC). Received: data_format={data_format!r}. "
                             "Transpose channels-first data with x.transpose(0, 2, 3, 1).")
        self.dilation_rate = utils.normalize_tuple(dilation_rate, 2, "dilation_rate", owner)
        self.activation = activations.get(activation, owner)
        self.use_bias = utils.boolean(use_bias, "use_bias", owner)
        self.depthwise_initializer = initializers.get(depthwise_initializer, "depthwise_initializer", owner)
        self.bias_initializer = initializers.get(bias_initializer, "bias_initializer", owner)

    def _init_regularizers(self, owner: str, depthwise_regularizer: Any, bias_regularizer: Any) -> None:
        self.depthwise_regularizer = regularizers.get(depthwise_regularizer, "depthwise_regularizer", owner)
        self.bias_regularizer = regularizers.get(bias_regularizer, "bias_regularizer", owner)

    def _channels(self, input_shape: Shape) -> int:
        if input_shape[-1] is None:
            raise ValueError(f"{type(self).__name__} layer '{self.name}' needs a defined number of input channels, "
                             f"but received input shape {utils.shape_str(input_shape)}. Give the model an input "
                             "shape such as Input(shape=(None, None, 3)).")
        return int(input_shape[-1])

    def _out_channels(self, channels: int) -> int:
        raise NotImplementedError

    def compute_output_shape(self, input_shape: Sequence[Optional[int]]) -> Shape:
        shape = tuple(input_shape)
        self._check_ndim(shape)
        c = self._channels(shape) if not self.built else self._params[0].shape[2]
        return window_output_shape(self, shape, self.kernel_size, self.strides, self.padding,
                                   self._out_channels(c), "kernel_size", self.dilation_rate)

    def _check_input(self, shape: Shape) -> None:
        c = self._params[0].shape[2]
        if shape[-1] != c:
            raise ValueError(f"Layer '{self.name}' expected input with {c} channels on the last axis, but "
                             f"received input with shape {utils.shape_str(shape)}.")

    def _window_attrs(self) -> Dict[str, Any]:
        return {"strides": self.strides, "padding": self.padding, "dilation_rate": self.dilation_rate,
                "activation": self.activation}

    def _window_config(self) -> Dict[str, Any]:
        config = Layer.get_config(self)
        config.update(kernel_size=self.kernel_size, strides=self.strides, padding=self.padding,
                      depth_multiplier=self.depth_multiplier, dilation_rate=self.dilation_rate,
                      activation=self.activation, use_bias=self.use_bias,
                      depthwise_initializer=self.depthwise_initializer, bias_initializer=self.bias_initializer,
                      depthwise_regularizer=regularizers.serialize(self.depthwise_regularizer),
                      bias_regularizer=regularizers.serialize(self.bias_regularizer))
        return config


class DepthwiseConv2D(_WindowConv):
    """Depthwise 2-D convolution, like ``keras.layers.DepthwiseConv2D``: each input channel is
    convolved with its own ``depth_multiplier`` filters.

    ``out[n, i, j, c*M + m] = act(bias[c*M + m] + sum_{kh, kw} x[n, i*SH + kh*DH - PT,
    j*SW + kw*DW - PL, c] * depthwise_kernel[kh, kw, c, m])`` with ``M = depth_multiplier``
    (Keras's channel order). Padding and output sizes as :class:`Conv2D` (dilated extent).
    Runs a dedicated kernel vectorised along the channels (csrc/depthwise_conv2d.cpp).

    Args:
        kernel_size: int or (KH, KW).
        strides: int or (SH, SW).
        padding: 'valid' or 'same'.
        depth_multiplier: filters per input channel M.
        data_format: only 'channels_last' (or None) is supported.
        dilation_rate: int or (DH, DW).
        activation: 'relu', 'sigmoid', 'tanh' (fused into the kernel), 'softmax', 'linear' or None.
        use_bias: add a learned bias per output channel.
        depthwise_initializer: initialiser name or callable for the depthwise kernel.
        bias_initializer: initialiser name or callable.
        depthwise_regularizer, bias_regularizer: penalties (:mod:`pycnn.regularizers`).
        name, input_shape, trainable: see :class:`Layer`.

    Input shape ``(N, H, W, C)``; output ``(N, OH, OW, C * depth_multiplier)``; weights
    ``[depthwise_kernel (KH, KW, C, depth_multiplier), bias (C * depth_multiplier,)]``.
    """

    _default_name = "depthwise_conv2d"

    def __init__(self, kernel_size: Union[int, Sequence[int]], strides: Union[int, Sequence[int]] = (1, 1),
                 padding: str = "valid", depth_multiplier: int = 1, data_format: Optional[str] = None,
                 dilation_rate: Union[int, Sequence[int]] = (1, 1), activation: Union[None, str, Callable] = None,
                 use_bias: bool = True, depthwise_initializer: Union[str, Callable] = "glorot_uniform",
                 bias_initializer: Union[str, Callable] = "zeros", depthwise_regularizer: Any = None,
                 bias_regularizer: Any = None, name: Optional[str] = None,
                 input_shape: Optional[Sequence[Optional[int]]] = None, trainable: bool = True) -> None:
        self._init_window("DepthwiseConv2D", kernel_size, strides, padding, depth_multiplier, data_format,
                          dilation_rate, activation, use_bias, depthwise_initializer, bias_initializer)
        self._init_regularizers("DepthwiseConv2D", depthwise_regularizer, bias_regularizer)
        super().__init__(name=name, input_shape=input_shape, trainable=trainable)

    def _out_channels(self, channels: int) -> int:
        return channels * self.depth_multiplier

    def build(self, input_shape: Shape) -> None:
        c = self._channels(input_shape)
        self.add_weight("depthwise_kernel", self.kernel_size + (c, self.depth_multiplier),
                        self.depthwise_initializer, regularizer=self.depthwise_regularizer)
        if self.use_bias:
            self.add_weight("bias", (c * self.depth_multiplier,), self.bias_initializer,
                            regularizer=self.bias_regularizer)

    def spec(self, training: bool = False) -> ops.OpSpec:
        return ops.OpSpec("depthwise_conv2d", self._window_attrs(), (self.kernel, self.bias))

    def get_config(self) -> Dict[str, Any]:
        return self._window_config()


class SeparableConv2D(_WindowConv):
    """Depthwise separable 2-D convolution, like ``keras.layers.SeparableConv2D``: a depthwise
    convolution (see :class:`DepthwiseConv2D`, no bias) followed by a 1x1 pointwise
    convolution to ``filters`` channels, then the bias and the activation.

    ``out = act(bias + depthwise_conv2d(x, depthwise_kernel) @ pointwise_kernel[0, 0])``.

    Args:
        filters: number of output channels F.
        kernel_size, strides, padding, data_format, dilation_rate, depth_multiplier: of the
            depthwise step, as :class:`DepthwiseConv2D`.
        activation: 'relu', 'sigmoid', 'tanh' (fused), 'softmax', 'linear' or None.
        use_bias: add a learned bias per filter (after the pointwise step).
        depthwise_initializer, pointwise_initializer, bias_initializer: initialiser names or
            callables.
        depthwise_regularizer, pointwise_regularizer, bias_regularizer: penalties
            (:mod:`pycnn.regularizers`).
        name, input_shape, trainable: see :class:`Layer`.

    Input shape ``(N, H, W, C)``; output ``(N, OH, OW, filters)``; weights
    ``[depthwise_kernel (KH, KW, C, depth_multiplier), pointwise_kernel (1, 1,
    C * depth_multiplier, filters), bias (filters,)]``.
    """

    _default_name = "separable_conv2d"

    def __init__(self, filters: int, kernel_size: Union[int, Sequence[int]],
                 strides: Union[int, Sequence[int]] = (1, 1), padding: str = "valid",
                 data_format: Optional[str] = None, dilation_rate: Union[int, Sequence[int]] = (1, 1),
                 depth_multiplier: int = 1, activation: Union[None, str, Callable] = None, use_bias: bool = True,
                 depthwise_initializer: Union[str, Callable] = "glorot_uniform",
                 pointwise_initializer: Union[str, Callable] = "glorot_uniform",
                 bias_initializer: Union[str, Callable] = "zeros", depthwise_regularizer: Any = None,
                 pointwise_regularizer: Any = None, bias_regularizer: Any = None, name: Optional[str] = None,
                 input_shape: Optional[Sequence[Optional[int]]] = None, trainable: bool = True) -> None:
        owner = "SeparableConv2D"
        self.filters = utils.positive_int(filters, "filters", owner)
        self._init_window(owner, kernel_size, strides, padding, depth_multiplier, data_format, dilation_rate,
                          activation, use_bias, depthwise_initializer, bias_initializer)
        self.pointwise_initializer = initializers.get(pointwise_initializer, "pointwise_initializer", owner)
        self._init_regularizers(owner, depthwise_regularizer, bias_regularizer)
        self.pointwise_regularizer = regularizers.get(pointwise_regularizer, "pointwise_regularizer", owner)
        super().__init__(name=name, input_shape=input_shape, trainable=trainable)

    def _out_channels(self, channels: int) -> int:
        return self.filters

    def build(self, input_shape: Shape) -> None:
        c = self._channels(input_shape)
        cm = c * self.depth_multiplier
        self.add_weight("depthwise_kernel", self.kernel_size + (c, self.depth_multiplier),
                        self.depthwise_initializer, regularizer=self.depthwise_regularizer)
        self.add_weight("pointwise_kernel", (1, 1, cm, self.filters), self.pointwise_initializer,
                        regularizer=self.pointwise_regularizer)
        if self.use_bias:
            self.add_weight("bias", (self.filters,), self.bias_initializer, regularizer=self.bias_regularizer)

    @property
    def pointwise_kernel(self) -> np.ndarray:
        return self._params[1]

    @property
    def bias(self) -> Optional[np.ndarray]:
        return self._params[2] if self.use_bias else None

    def spec(self, training: bool = False) -> ops.OpSpec:
        return ops.OpSpec("separable_conv2d", self._window_attrs(), (self.kernel, self.pointwise_kernel, self.bias))

    def get_config(self) -> Dict[str, Any]:
        config = self._window_config()
        config.update(filters=self.filters, pointwise_initializer=self.pointwise_initializer,
                      pointwise_regularizer=regularizers.serialize(self.pointwise_regularizer))
        return config
