"""The oracle of every registered op, in the op contract's own terms.

``forward(kind, inputs, params, attrs)`` and ``backward(kind, dout, inputs, params, attrs)``
take what ``pycnn.ops.OpCall`` takes (batches (N, ...), the op's parameters in its order,
None for an absent optional one, attributes by name with the op's defaults filled in) and
return float64: the output, and (input gradients, parameter gradients) with None for an
absent parameter and for state (moving statistics); the int8 ops return their exact uint8 or
float32 output and have no backward. ``OPS[kind]`` also lists the op's
inputs, parameter names and attribute defaults, written here independently of the C++
registry (tests compare the two).
"""
from __future__ import annotations

from typing import Any, Callable, Dict, NamedTuple, Optional, Sequence, Tuple

import numpy as np

from . import activation as act
from . import conv, dense, image, merge, normalization, padding, pool, preprocessing, quantized, reshape

REQUIRED = object()  # an attribute without a default
VARIADIC = 0         # two or more inputs


class OracleOp(NamedTuple):
    inputs: int
    params: Tuple[str, ...]
    state: Tuple[str, ...]
    attrs: Dict[str, Any]
    forward: Callable[..., Any]   # (inputs, params, attrs) -> output
    backward: Callable[..., Any]  # (dout, inputs, params, attrs) -> (dinputs, dparams)


def _per_sample(fn, x, *args):
    """``fn`` over the last axis of each sample: a batch of scalars (N,) is N rows of one value."""
    x = np.asarray(x)
    return fn(x.reshape(-1, 1), *args).reshape(x.shape) if x.ndim == 1 else fn(x, *args)


def _window(a):
    return dict(strides=tuple(a["strides"]), padding=a["padding"], dilation_rate=tuple(a["dilation_rate"]),
                activation=a["activation"])


def _pool(a):
    return tuple(a["pool_size"]), tuple(a["strides"]), a["padding"]


def _sides(values):
    return tuple(int(v) for v in values)


def _bn_args(a):
    return a["epsilon"], a["training"], a["activation"]


WINDOW = {"strides": (1, 1), "padding": "valid", "dilation_rate": (1, 1), "activation": "linear"}
POOL = {"pool_size": (2, 2), "strides": (2, 2), "padding": "valid"}
QUANT = {"scale": REQUIRED, "zero_point": 0}
INT8 = {"activation": "linear", "in_scale": REQUIRED, "in_zero_point": 0, "out_scale": 1.0, "out_zero_point": 0,
        "out_dtype": "uint8"}


def _int8(a):
    return {k: a[k] for k in INT8}


def _inference_only(kind):
    def backward(*args):
        raise TypeError(f"op '{kind}' is inference-only: it has no backward")
    return backward

OPS: Dict[str, OracleOp] = {
    "activation": OracleOp(
        1, (), (), {"activation": "linear"},
        lambda x, p, a: _per_sample(act.activate, x[0], a["activation"]),
        lambda d, x, p, a: ([_per_sample(lambda z, n: act.activation_backward(np.reshape(d, z.shape), z, n), x[0],
                                         a["activation"])], [])),
    "leaky_relu": OracleOp(
        1, (), (), {"negative_slope": act.LEAKY_RELU_OP_SLOPE},
        lambda x, p, a: act.leaky_relu_forward(x[0], a["negative_slope"]),
        lambda d, x, p, a: ([act.leaky_relu_backward(d, x[0], a["negative_slope"])], [])),
    "conv2d": OracleOp(
        1, ("kernel", "bias"), (), {**WINDOW, "groups": 1},
        lambda x, p, a: conv.conv2d_forward(x[0], p[0], p[1], groups=a["groups"], **_window(a)),
        lambda d, x, p, a: _split(conv.conv2d_backward(d, x[0], p[0], p[1], groups=a["groups"], **_window(a)), 1)),
    "depthwise_conv2d": OracleOp(
        1, ("kernel", "bias"), (), dict(WINDOW),
        lambda x, p, a: conv.depthwise_conv2d_forward(x[0], p[0], p[1], **_window(a)),
        lambda d, x, p, a: _split(conv.depthwise_conv2d_backward(d, x[0], p[0], p[1], **_window(a)), 1)),
    "separable_conv2d": OracleOp(
        1, ("depthwise_kernel", "pointwise_kernel", "bias"), (), dict(WINDOW),
        lambda x, p, a: conv.separable_conv2d_forward(x[0], p[0], p[1], p[2], **_window(a)),
        lambda d, x, p, a: _split(conv.separable_conv2d_backward(d, x[0], p[0], p[1], p[2], **_window(a)), 1)),
    "dense": OracleOp(
        1, ("kernel", "bias"), (), {"activation": "linear"},
        lambda x, p, a: dense.dense_forward(x[0], p[0], p[1], a["activation"]),
        lambda d, x, p, a: _split(dense.dense_backward(d, x[0], p[0], p[1], a["activation"]), 1)),
    "maxpool2d": OracleOp(
        1, (), (), dict(POOL),
        lambda x, p, a: pool.maxpool2d_forward(x[0], *_pool(a)),
        lambda d, x, p, a: ([pool.maxpool2d_backward(d, x[0], *_pool(a))], [])),
    "avgpool2d": OracleOp(
        1, (), (), dict(POOL),
        lambda x, p, a: pool.avgpool2d_forward(x[0], *_pool(a)),
        lambda d, x, p, a: ([pool.avgpool2d_backward(d, np.shape(x[0]), *_pool(a))], [])),
    "global_maxpool2d": OracleOp(
        1, (), (), {"keepdims": 0},
        lambda x, p, a: pool.global_maxpool2d_forward(x[0], a["keepdims"]),
        lambda d, x, p, a: ([pool.global_maxpool2d_backward(d, x[0])], [])),
    "global_avgpool2d": OracleOp(
        1, (), (), {"keepdims": 0},
        lambda x, p, a: pool.global_avgpool2d_forward(x[0], a["keepdims"]),
        lambda d, x, p, a: ([pool.global_avgpool2d_backward(d, np.shape(x[0]))], [])),
    "batchnorm": OracleOp(
        1, ("gamma", "beta", "moving_mean", "moving_variance"), ("moving_mean", "moving_variance"),
        {"epsilon": 1e-3, "momentum": 0.99, "training": 0, "activation": "linear"},
        lambda x, p, a: normalization.batchnorm_forward(x[0], *p, *_bn_args(a)),
        lambda d, x, p, a: _split(normalization.batchnorm_backward(d, x[0], *p, *_bn_args(a)), 1)),
    "flatten": OracleOp(
        1, (), (), {},
        lambda x, p, a: reshape.flatten_forward(x[0]),
        lambda d, x, p, a: ([reshape.reshape_backward(d, x[0])], [])),
    "reshape": OracleOp(
        1, (), (), {"target_shape": REQUIRED},
        lambda x, p, a: reshape.reshape_forward(x[0], a["target_shape"]),
        lambda d, x, p, a: ([reshape.reshape_backward(d, x[0])], [])),
    "identity": OracleOp(
        1, (), (), {},
        lambda x, p, a: reshape.identity_forward(x[0]),
        lambda d, x, p, a: ([reshape.reshape_backward(d, x[0])], [])),
    "concatenate": OracleOp(
        VARIADIC, (), (), {"axis": REQUIRED},
        lambda x, p, a: merge.concatenate_forward(x, a["axis"] + 1),
        lambda d, x, p, a: (merge.concatenate_backward(d, [np.shape(v)[a["axis"] + 1] for v in x], a["axis"] + 1),
                            [])),
    "add": OracleOp(
        VARIADIC, (), (), {},
        lambda x, p, a: merge.add_forward(x),
        lambda d, x, p, a: (merge.add_backward(d, len(x)), [])),
    "multiply": OracleOp(
        VARIADIC, (), (), {},
        lambda x, p, a: merge.multiply_forward(x),
        lambda d, x, p, a: (merge.multiply_backward(d, x), [])),
    "sobel_edges": OracleOp(
        1, (), (), {},
        lambda x, p, a: image.sobel_edges_forward(x[0]),
        lambda d, x, p, a: ([image.sobel_edges_backward(d)], [])),
    "image_gradient": OracleOp(
        1, (), (), {"axis": REQUIRED},
        lambda x, p, a: image.image_gradient_forward(x[0], a["axis"]),
        lambda d, x, p, a: ([image.image_gradient_backward(d, a["axis"])], [])),
    "zero_padding2d": OracleOp(
        1, (), (), {"padding": (1, 1, 1, 1)},
        lambda x, p, a: padding.zero_padding2d_forward(x[0], *_sides(a["padding"])),
        lambda d, x, p, a: ([padding.zero_padding2d_backward(d, *_sides(a["padding"]))], [])),
    "cropping2d": OracleOp(
        1, (), (), {"cropping": (0, 0, 0, 0)},
        lambda x, p, a: padding.cropping2d_forward(x[0], *_sides(a["cropping"])),
        lambda d, x, p, a: ([padding.cropping2d_backward(d, x[0].shape, *_sides(a["cropping"]))], [])),
    "rescaling": OracleOp(
        1, (), (), {"scale": (1.0,), "offset": (0.0,)},
        lambda x, p, a: preprocessing.rescaling_forward(x[0], a["scale"], a["offset"]),
        lambda d, x, p, a: ([preprocessing.rescaling_backward(d, a["scale"])], [])),
    # int8 inference (exact: uint8 or float32 results, see oracle/quantized.py); no backward.
    "quantize": OracleOp(
        1, (), (), dict(QUANT),
        lambda x, p, a: quantized.quantize(x[0], a["scale"], a["zero_point"]), _inference_only("quantize")),
    "dequantize": OracleOp(
        1, (), (), dict(QUANT),
        lambda x, p, a: quantized.dequantize(x[0], a["scale"], a["zero_point"]), _inference_only("dequantize")),
    "conv2d_int8": OracleOp(
        1, ("kernel", "bias"), (), {"strides": (1, 1), "padding": "valid", **INT8},
        lambda x, p, a: quantized.conv2d_int8_forward(x[0], p[0], p[1], strides=tuple(a["strides"]),
                                                      padding=a["padding"], **_int8(a)),
        _inference_only("conv2d_int8")),
    "dense_int8": OracleOp(
        1, ("kernel", "bias"), (), dict(INT8),
        lambda x, p, a: quantized.dense_int8_forward(x[0], p[0], p[1], **_int8(a)), _inference_only("dense_int8")),
    "maxpool2d_int8": OracleOp(
        1, (), (), dict(POOL),
        lambda x, p, a: quantized.maxpool2d_int8_forward(x[0], *_pool(a)), _inference_only("maxpool2d_int8")),
    "avgpool2d_int8": OracleOp(
        1, (), (), dict(POOL),
        lambda x, p, a: quantized.avgpool2d_int8_forward(x[0], *_pool(a)), _inference_only("avgpool2d_int8")),
    "global_maxpool2d_int8": OracleOp(
        1, (), (), {"keepdims": 0},
        lambda x, p, a: quantized.global_maxpool2d_int8_forward(x[0], a["keepdims"]),
        _inference_only("global_maxpool2d_int8")),
    "global_avgpool2d_int8": OracleOp(
        1, (), (), {"keepdims": 0},
        lambda x, p, a: quantized.global_avgpool2d_int8_forward(x[0], a["keepdims"]),
        _inference_only("global_avgpool2d_int8")),
}


def _split(grads, n_inputs):
    grads = list(grads)
    return grads[:n_inputs], grads[n_inputs:]


def full_attrs(kind: str, attrs: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """``attrs`` with the oracle's defaults filled in; a missing required one is a KeyError."""
    op = OPS[kind]
    out = {k: v for k, v in op.attrs.items() if v is not REQUIRED}
    out.update(attrs or {})
    for k, v in op.attrs.items():
        if v is REQUIRED and k not in out:
            raise KeyError(f"op '{kind}' needs attribute '{k}'")
    return out


def forward(kind: str, inputs: Sequence[Any], params: Sequence[Any] = (), attrs: Optional[Dict[str, Any]] = None):
    """The float64 output of op ``kind`` on batches ``inputs``."""
    op = OPS[kind]
    return op.forward(list(inputs), _params(op, params), full_attrs(kind, attrs))


def backward(kind: str, dout, inputs: Sequence[Any], params: Sequence[Any] = (),
             attrs: Optional[Dict[str, Any]] = None):
    """(input gradients, parameter gradients), float64; None for absent and state parameters."""
    op = OPS[kind]
    dinputs, dparams = op.backward(dout, list(inputs), _params(op, params), full_attrs(kind, attrs))
    dparams = list(dparams) + [None] * (len(op.params) - len(dparams))
    dparams = [None if name in op.state else g for name, g in zip(op.params, dparams)]
    return list(dinputs), dparams


def _params(op: OracleOp, params: Sequence[Any]) -> list:
    params = list(params)
    if len(params) != len(op.params):
        raise ValueError(f"expected parameters {op.params}. Received: {len(params)}.")
    return params
