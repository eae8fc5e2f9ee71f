"""int8 inference, exactly: the integer arithmetic of pycnn's quantized ops in plain NumPy.

Unlike the rest of the oracle (float64, compared within tolerances), these reproduce the C++
ops bit for bit (csrc/quantized.h): integer sums in int64 (they never exceed int32 in the
op), then the float32 requantization with every product and sum rounded on its own, as
NumPy's float32 arithmetic does. Conventions:

* an activation tensor is uint8, ``real = scale * (q - zero_point)``;
* a weight is int8 per output channel (the last axis of a kernel): ``sw[f] = max|w[..., f]|
  / 127`` in float64 (1 for an all-zero channel), ``wq = rint(w / sw)`` in float64, clamped
  to [-127, 127];
* an output is ``acc = sum (aq - in_zero_point) * wq`` (exact), then
  ``v = float32(acc) * mul + add`` (uint8: ``mul = in_scale * sw / out_scale``, ``add = bias /
  out_scale + out_zero_point``, clamped to [out_zero_point if relu else 0, 255] and rounded
  half to even; float32: ``mul = in_scale * sw``, ``add = bias``, then the activation).

Layouts as the float ops: activations (N, H, W, C), conv kernels (KH, KW, C, F), dense
kernels (IN, OUT).
"""
from __future__ import annotations

from typing import Optional, Tuple

import numpy as np

from . import activation as act
from .pool import _window_args, windows
from .window import _pair, geometry


def quantize(x, scale: float, zero_point: int = 0) -> np.ndarray:
    """float32 -> uint8: ``clamp(rint(x * float32(1 / scale) + zero_point), 0, 255)``; NaN -> 0."""
    v = np.asarray(x, dtype=np.float32) * np.float32(1.0 / scale)
    v = v + np.float32(zero_point)
    v = np.where(v > 0, v, np.float32(0))  # NaN fails the test: 0
    v = np.where(v < 255, v, np.float32(255))
    return np.rint(v).astype(np.uint8)


def dequantize(q, scale: float, zero_point: int = 0) -> np.ndarray:
    """uint8 -> float32: ``float32(q - zero_point) * float32(scale)``."""
    return (np.asarray(q).astype(np.int32) - zero_point).astype(np.float32) * np.float32(scale)


def quantize_weights(kernel) -> Tuple[np.ndarray, np.ndarray]:
    """Per output channel (last axis): (int8 weights of the kernel's shape, float64 scales (F,))."""
    w = np.asarray(kernel, dtype=np.float32)
    amax = np.abs(w).reshape(-1, w.shape[-1]).max(axis=0).astype(np.float64)
    sw = np.where(amax > 0, amax / 127.0, 1.0)
    q = np.clip(np.rint(w.astype(np.float64) / sw), -127, 127).astype(np.int8)
    return q, sw


def requantize(acc, sw, bias, in_scale: float, out_scale: float, out_zero_point: int, activation: str,
               out_dtype: str) -> np.ndarray:
    """int sums (..., F) -> the op's output: uint8, or float32 with the activation applied."""
    acc = np.asarray(acc, dtype=np.int64)
    assert np.abs(acc).max(initial=0) < 2 ** 31, "the op's int32 sums would overflow"
    b = np.zeros(acc.shape[-1]) if bias is None else np.asarray(bias, dtype=np.float32).astype(np.float64)
    v = acc.astype(np.int32).astype(np.float32)
    if out_dtype == "uint8":
        mul = (in_scale * sw / out_scale).astype(np.float32)
        add = (b / out_scale + float(out_zero_point)).astype(np.float32)
        v = v * mul
        v = v + add
        lo = np.float32(out_zero_point if activation == "relu" else 0)
        v = np.minimum(np.maximum(v, lo), np.float32(255))
        return np.rint(v).astype(np.uint8)
    mul = (in_scale * sw).astype(np.float32)
    add = np.zeros(acc.shape[-1], np.float32) if bias is None else np.asarray(bias, dtype=np.float32)
    v = v * mul
    v = v + add
    if activation == "linear":
        return v
    return act.activate(v, activation).astype(np.float32)


def conv2d_int8_forward(xq, kernel, bias=None, in_scale: float = 1.0, in_zero_point: int = 0, out_scale: float = 1.0,
                        out_zero_point: int = 0, strides=(1, 1), padding: str = "valid", activation: str = "linear",
                        out_dtype: str = "uint8") -> np.ndarray:
    """conv2d_int8: one int64 matmul per kernel tap over the zero-point-padded input."""
    x = np.asarray(xq).astype(np.int64)
    wq, sw = quantize_weights(kernel)
    N, H, W, C = x.shape
    KH, KW, _, F = wq.shape
    SH, SW = _pair(strides)
    OH, OW, PT, PB, PL, PR = geometry(H, W, KH, KW, SH, SW, padding)
    xp = np.full((N, H + PT + PB, W + PL + PR, C), in_zero_point, dtype=np.int64)
    xp[:, PT:PT + H, PL:PL + W, :] = x
    xp -= in_zero_point
    acc = np.zeros((N, OH, OW, F), dtype=np.int64)
    for kh in range(KH):
        for kw in range(KW):
            patch = xp[:, kh:kh + SH * (OH - 1) + 1:SH, kw:kw + SW * (OW - 1) + 1:SW, :]
            acc += patch @ wq[kh, kw].astype(np.int64)
    return requantize(acc, sw, bias, in_scale, out_scale, out_zero_point, activation, out_dtype)


def dense_int8_forward(xq, kernel, bias=None, in_scale: float = 1.0, in_zero_point: int = 0, out_scale: float = 1.0,
                       out_zero_point: int = 0, activation: str = "linear", out_dtype: str = "uint8") -> np.ndarray:
    """dense_int8 over the last axis."""
    x = np.asarray(xq).astype(np.int64) - in_zero_point
    wq, sw = quantize_weights(kernel)
    acc = x @ wq.astype(np.int64)
    return requantize(acc, sw, bias, in_scale, out_scale, out_zero_point, activation, out_dtype)


def maxpool2d_int8_forward(xq, pool_size=2, strides=None, padding="valid") -> np.ndarray:
    """The largest byte of each window's real elements."""
    x = np.asarray(xq)
    N, H, W, C = x.shape
    KH, KW, SH, SW = _window_args(pool_size, strides)
    OH, OW, *_ = geometry(H, W, KH, KW, SH, SW, padding)
    out = np.empty((N, OH, OW, C), np.uint8)
    for oh, ow, h0, h1, w0, w1 in windows(H, W, KH, KW, SH, SW, padding):
        out[:, oh, ow, :] = x[:, h0:h1, w0:w1, :].max(axis=(1, 2))
    return out


def avgpool2d_int8_forward(xq, pool_size=2, strides=None, padding="valid") -> np.ndarray:
    """``(sum + count // 2) // count`` over each window's real elements (a half rounds up)."""
    x = np.asarray(xq).astype(np.int64)
    N, H, W, C = x.shape
    KH, KW, SH, SW = _window_args(pool_size, strides)
    OH, OW, *_ = geometry(H, W, KH, KW, SH, SW, padding)
    out = np.empty((N, OH, OW, C), np.uint8)
    for oh, ow, h0, h1, w0, w1 in windows(H, W, KH, KW, SH, SW, padding):
        count = (h1 - h0) * (w1 - w0)
        out[:, oh, ow, :] = (x[:, h0:h1, w0:w1, :].sum(axis=(1, 2)) + count // 2) // count
    return out


def global_maxpool2d_int8_forward(xq, keepdims: bool = False) -> np.ndarray:
    out = np.asarray(xq).max(axis=(1, 2), keepdims=bool(keepdims))
    return out.astype(np.uint8)


def global_avgpool2d_int8_forward(xq, keepdims: bool = False) -> np.ndarray:
    x = np.asarray(xq).astype(np.int64)
    count = x.shape[1] * x.shape[2]
    return ((x.sum(axis=(1, 2), keepdims=bool(keepdims)) + count // 2) // count).astype(np.uint8)


def int8_attrs(in_scale: float, in_zero_point: int, out_scale: Optional[float], out_zero_point: int) -> dict:
    """The quantization attributes of conv2d_int8 / dense_int8 (out_scale None: float32 output)."""
    attrs = {"in_scale": in_scale, "in_zero_point": in_zero_point, "out_zero_point": out_zero_point}
    if out_scale is None:
        attrs["out_dtype"] = "float32"
    else:
        attrs["out_scale"] = out_scale
    return attrs
