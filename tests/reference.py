"""Plain NumPy float64 reference implementations of every pycnn kernel, forward and backward.

These are the oracle the C++ kernels are tested against, so they are written to be
obviously right rather than fast: explicit loops over kernel taps / pooling windows, one
matmul per tap, no tricks. Each function mirrors the signature of its ``pycnn._core``
counterpart (same argument names, order, defaults and return tuple) so a test can call both
with the same arguments, and always computes and returns float64.

Layout (as in Keras): activations are (N, H, W, C), conv kernels (KH, KW, C, F), dense
kernels (in, out). Backward functions take ``dout``, the gradient of the loss with respect
to the op's (activation's) output, and return gradients with respect to the inputs.

Also here: the window arithmetic (``output_size``, ``same_padding``), a central
finite-difference helper, and the comparison helpers the tests share.
"""
from __future__ import annotations

from typing import Callable, Iterable, Optional, Sequence

import numpy as np

ACTIVATIONS = ("linear", "relu", "sigmoid", "tanh")


# ----------------------------------------------------------------------------- window arithmetic


def _pair(value) -> tuple[int, int]:
    """An int or a 2-sequence of ints as an (h, w) tuple."""
    if isinstance(value, (int, np.integer)):
        return int(value), int(value)
    h, w = value
    return int(h), int(w)


def same_padding(in_size: int, k: int, s: int) -> tuple[int, int]:
    """Padding (before, after) of one axis for padding='same', TensorFlow arithmetic.

    The output has ceil(in_size / s) positions; the total padding is whatever the last
    window needs to fit, never negative; the odd pixel goes after (bottom / right).
    """
    out = -(-in_size // s)
    total = max((out - 1) * s + k - in_size, 0)
    return total // 2, total - total // 2


def output_size(in_size: int, k: int, s: int, padding: str = "valid") -> int:
    """Output length of one axis: 'valid' floor((in - k) / s) + 1, 'same' ceil(in / s)."""
    if padding == "same":
        return -(-in_size // s)
    if padding == "valid":
        return (in_size - k) // s + 1
    raise ValueError(f"padding must be 'valid' or 'same'. Received: padding={padding!r}.")


def _geometry(H, W, KH, KW, SH, SW, padding):
    """(OH, OW, PT, PB, PL, PR) of a window op; raises if an output size is below 1."""
    OH, OW = output_size(H, KH, SH, padding), output_size(W, KW, SW, padding)
    if OH < 1 or OW < 1:
        raise ValueError(f"output size would be {OH}x{OW} for input {H}x{W}, window {KH}x{KW}, "
                         f"strides ({SH}, {SW}), padding={padding!r}.")
    if padding == "same":
        PT, PB = same_padding(H, KH, SH)
        PL, PR = same_padding(W, KW, SW)
    else:
        PT = PB = PL = PR = 0
    return OH, OW, PT, PB, PL, PR


# ----------------------------------------------------------------------------- activations


def _f64(a) -> np.ndarray:
    return np.asarray(a, dtype=np.float64)


def activate(z, activation: str = "linear") -> np.ndarray:
    """act(z) for 'linear', 'relu', 'sigmoid', 'tanh'."""
    z = _f64(z)
    if activation == "linear":
        return z.copy()
    if activation == "relu":
        return np.maximum(z, 0.0)
    if activation == "sigmoid":
        # 1 / (1 + exp(-z)) written so that exp never overflows: exp(-|z|) <= 1.
        e = np.exp(-np.abs(z))
        return np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))
    if activation == "tanh":
        return np.tanh(z)
    raise ValueError(f"unknown activation {activation!r}")


def activation_grad(out, activation: str = "linear") -> np.ndarray:
    """d act / d z expressed through the activation's output y = act(z)."""
    y = _f64(out)
    if activation == "linear":
        return np.ones_like(y)
    if activation == "relu":
        return (y > 0).astype(np.float64)
    if activation == "sigmoid":
        return y * (1.0 - y)
    if activation == "tanh":
        return 1.0 - y * y
    raise ValueError(f"unknown activation {activation!r}")


def relu_forward(inp) -> np.ndarray:
    return activate(inp, "relu")


def relu_backward(dout, out) -> np.ndarray:
    return _f64(dout) * activation_grad(out, "relu")


def sigmoid_forward(inp) -> np.ndarray:
    return activate(inp, "sigmoid")


def sigmoid_backward(dout, out) -> np.ndarray:
    return _f64(dout) * activation_grad(out, "sigmoid")


def tanh_forward(inp) -> np.ndarray:
    return activate(inp, "tanh")


def tanh_backward(dout, out) -> np.ndarray:
    return _f64(dout) * activation_grad(out, "tanh")


def _preactivation_grad(dout, out, activation):
    """dz = dout * act'(z), with act' read from the cached output (as the kernels do)."""
    if activation == "linear":
        return _f64(dout)
    if out is None:
        raise ValueError("out is required for a non-linear activation")
    return _f64(dout) * activation_grad(out, activation)


# ----------------------------------------------------------------------------- conv2d


def _tap(xp, kh, kw, SH, SW, OH, OW):
    """The padded-input pixels under kernel tap (kh, kw) for every output position: (N, OH, OW, C)."""
    return xp[:, kh:kh + SH * (OH - 1) + 1:SH, kw:kw + SW * (OW - 1) + 1:SW, :]


def conv2d_forward(inp, weight, bias=None, strides=(1, 1), padding="valid", activation="linear"):
    """out[n, oh, ow, f] = act(bias[f] + sum_{kh, kw, c} xpad[n, oh*SH + kh, ow*SW + kw, c] * weight[kh, kw, c, f]).

    xpad is the input with PT/PB rows and PL/PR columns of zeros. Returns (N, OH, OW, F).
    """
    x, w = _f64(inp), _f64(weight)
    N, H, W, C = x.shape
    KH, KW, C2, F = w.shape
    assert C2 == C, (x.shape, w.shape)
    SH, SW = _pair(strides)
    OH, OW, PT, PB, PL, PR = _geometry(H, W, KH, KW, SH, SW, padding)
    xp = np.pad(x, ((0, 0), (PT, PB), (PL, PR), (0, 0)))
    z = np.zeros((N, OH, OW, F))
    for kh in range(KH):
        for kw in range(KW):
            z += _tap(xp, kh, kw, SH, SW, OH, OW) @ w[kh, kw]  # (N, OH, OW, C) @ (C, F)
    if bias is not None:
        z += _f64(bias)
    return activate(z, activation)


def conv2d_backward(dout, inp, weight, out=None, strides=(1, 1), padding="valid", activation="linear",
                    has_bias=True, need_dinp=True):
    """Gradients of conv2d_forward: (dinp or None, dweight, dbias or None).

    With dz = dout * act'(out): dbias[f] = sum dz[..., f]; for every tap (kh, kw)
    dweight[kh, kw] = tap^T dz and dxpad[tap positions] += dz weight[kh, kw]^T; dinp is
    dxpad without its padding.
    """
    x, w = _f64(inp), _f64(weight)
    N, H, W, C = x.shape
    KH, KW, _, F = w.shape
    SH, SW = _pair(strides)
    OH, OW, PT, PB, PL, PR = _geometry(H, W, KH, KW, SH, SW, padding)
    dz = _preactivation_grad(dout, out, activation)
    assert dz.shape == (N, OH, OW, F), dz.shape
    xp = np.pad(x, ((0, 0), (PT, PB), (PL, PR), (0, 0)))
    dxp = np.zeros_like(xp)
    dweight = np.zeros_like(w)
    for kh in range(KH):
        for kw in range(KW):
            tap = _tap(xp, kh, kw, SH, SW, OH, OW)
            dweight[kh, kw] = np.einsum("nhwc,nhwf->cf", tap, dz)
            dxp[:, kh:kh + SH * (OH - 1) + 1:SH, kw:kw + SW * (OW - 1) + 1:SW, :] += dz @ w[kh, kw].T
    dbias = dz.sum(axis=(0, 1, 2)) if has_bias else None
    dinp = dxp[:, PT:PT + H, PL:PL + W, :].copy() if need_dinp else None
    return dinp, dweight, dbias


# ----------------------------------------------------------------------------- pooling


def _windows(H, W, KH, KW, SH, SW, padding):
    """Yield (oh, ow, h0, h1, w0, w1): the real (unpadded) input rows h0:h1 and columns w0:w1 of each window."""
    OH, OW, PT, _, PL, _ = _geometry(H, W, KH, KW, SH, SW, padding)
    for oh in range(OH):
        top = oh * SH - PT
        h0, h1 = max(top, 0), min(top + KH, H)
        for ow in range(OW):
            left = ow * SW - PL
            w0, w1 = max(left, 0), min(left + KW, W)
            yield oh, ow, h0, h1, w0, w1


def maxpool2d_forward(inp, pool_size, strides=None, padding="valid"):
    """(out, argmax): the maximum of each window over its real elements (padding never wins).

    argmax (int32, same shape as out) is the winner's index within its sample,
    (ih * W + iw) * C + c; on ties the first maximum in a row-major scan of the window wins.
    """
    x = _f64(inp)
    N, H, W, C = x.shape
    KH, KW = _pair(pool_size)
    SH, SW = (KH, KW) if strides is None else _pair(strides)
    OH, OW, *_ = _geometry(H, W, KH, KW, SH, SW, padding)
    out = np.empty((N, OH, OW, C))
    argmax = np.empty((N, OH, OW, C), dtype=np.int32)
    channels = np.arange(C)
    for oh, ow, h0, h1, w0, w1 in _windows(H, W, KH, KW, SH, SW, padding):
        window = x[:, h0:h1, w0:w1, :].reshape(N, -1, C)  # row-major scan order
        k = window.argmax(axis=1)                         # first maximum on ties, (N, C)
        out[:, oh, ow, :] = np.take_along_axis(window, k[:, None, :], axis=1)[:, 0, :]
        ih, iw = h0 + k // (w1 - w0), w0 + k % (w1 - w0)
        argmax[:, oh, ow, :] = (ih * W + iw) * C + channels
    return out, argmax


def maxpool2d_backward(dout, argmax, input_shape, pool_size, strides=None, padding="valid"):
    """dinp: each dout element added to the input element its window's argmax points at."""
    d = _f64(dout)
    N, H, W, C = input_shape
    dinp = np.zeros((N, H * W * C))
    for n in range(N):
        np.add.at(dinp[n], np.asarray(argmax[n]).ravel(), d[n].ravel())
    return dinp.reshape(N, H, W, C)


def avgpool2d_forward(inp, pool_size, strides=None, padding="valid"):
    """The mean of each window over its real elements (padding is not counted, as in Keras)."""
    x = _f64(inp)
    N, H, W, C = x.shape
    KH, KW = _pair(pool_size)
    SH, SW = (KH, KW) if strides is None else _pair(strides)
    OH, OW, *_ = _geometry(H, W, KH, KW, SH, SW, padding)
    out = np.empty((N, OH, OW, C))
    for oh, ow, h0, h1, w0, w1 in _windows(H, W, KH, KW, SH, SW, padding):
        out[:, oh, ow, :] = x[:, h0:h1, w0:w1, :].mean(axis=(1, 2))
    return out


def avgpool2d_backward(dout, input_shape, pool_size, strides=None, padding="valid"):
    """dinp: each dout element spread evenly over the real elements of its window."""
    d = _f64(dout)
    N, H, W, C = input_shape
    KH, KW = _pair(pool_size)
    SH, SW = (KH, KW) if strides is None else _pair(strides)
    dinp = np.zeros((N, H, W, C))
    for oh, ow, h0, h1, w0, w1 in _windows(H, W, KH, KW, SH, SW, padding):
        count = (h1 - h0) * (w1 - w0)
        dinp[:, h0:h1, w0:w1, :] += d[:, oh, ow, None, None, :] / count
    return dinp


# ----------------------------------------------------------------------------- softmax


def softmax_forward(inp) -> np.ndarray:
    """exp(x - max) / sum exp(x - max) over the last axis (subtracting the max avoids overflow)."""
    x = _f64(inp)
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def softmax_backward(dout, out) -> np.ndarray:
    """dinp_j = y_j (dout_j - sum_k dout_k y_k), the softmax Jacobian y_j (delta_jk - y_k) applied to dout."""
    d, y = _f64(dout), _f64(out)
    return y * (d - (d * y).sum(axis=-1, keepdims=True))


def softmax_crossentropy_forward(logits, labels):
    """(mean loss, probs) of sparse categorical cross-entropy on softmax(logits).

    loss_r = logsumexp(z_r) - z_r[labels[r]], never log of a probability rounded to zero.
    """
    z = _f64(logits)
    labels = np.asarray(labels)
    rows = np.arange(z.shape[0])
    m = z.max(axis=1, keepdims=True)
    logsumexp = m[:, 0] + np.log(np.exp(z - m).sum(axis=1))
    loss = float(np.mean(logsumexp - z[rows, labels]))
    return loss, softmax_forward(z)


def softmax_crossentropy_backward(probs, labels, scale=None) -> np.ndarray:
    """dlogits = (probs - onehot(labels)) * scale; scale defaults to 1 / N (the mean loss)."""
    p = _f64(probs)
    onehot = np.zeros_like(p)
    onehot[np.arange(p.shape[0]), np.asarray(labels)] = 1.0
    if scale is None:
        scale = 1.0 / p.shape[0]
    return (p - onehot) * scale


# ----------------------------------------------------------------------------- dense


def dense_forward(inp, weight, bias=None, activation="linear") -> np.ndarray:
    """out = act(inp @ weight + bias): (N, in) @ (in, out) -> (N, out)."""
    z = _f64(inp) @ _f64(weight)
    if bias is not None:
        z = z + _f64(bias)
    return activate(z, activation)


def dense_backward(dout, inp, weight, out=None, activation="linear", has_bias=True, need_dinp=True):
    """(dinp or None, dweight, dbias or None) with dz = dout * act'(out):
    dinp = dz weight^T, dweight = inp^T dz, dbias = sum over the batch of dz."""
    dz = _preactivation_grad(dout, out, activation)
    x, w = _f64(inp), _f64(weight)
    dinp = dz @ w.T if need_dinp else None
    dbias = dz.sum(axis=0) if has_bias else None
    return dinp, x.T @ dz, dbias


# ----------------------------------------------------------------------------- images (tf.image)

SOBEL_DY = np.array([[-1, -2, -1], [0, 0, 0], [1, 2, 1]], dtype=np.float64)
SOBEL_DX = SOBEL_DY.T.copy()  # [[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]]


def sobel_edges_forward(inp) -> np.ndarray:
    """tf.image.sobel_edges: REFLECT-pad by one pixel, correlate each channel with the dy and
    dx kernels; (N, H, W, C) -> (N, H, W, C, 2), last axis [dy, dx]."""
    x = _f64(inp)
    N, H, W, C = x.shape
    if H < 2 or W < 2:
        raise ValueError("sobel_edges needs H, W >= 2")
    xp = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="reflect")
    out = np.zeros((N, H, W, C, 2))
    for a in range(3):
        for b in range(3):
            tap = xp[:, a:a + H, b:b + W, :]
            out[..., 0] += SOBEL_DY[a, b] * tap
            out[..., 1] += SOBEL_DX[a, b] * tap
    return out


def sobel_edges_backward(dout) -> np.ndarray:
    """Adjoint of sobel_edges_forward: each tap's gradient goes to the padded pixel it read,
    then the padding's gradient folds back onto the pixels it mirrors."""
    d = _f64(dout)
    N, H, W, C, _ = d.shape
    gp = np.zeros((N, H + 2, W + 2, C))
    for a in range(3):
        for b in range(3):
            gp[:, a:a + H, b:b + W, :] += SOBEL_DY[a, b] * d[..., 0] + SOBEL_DX[a, b] * d[..., 1]
    g = gp[:, 1:H + 1, 1:W + 1, :].copy()
    g[:, 1, :, :] += gp[:, 0, 1:W + 1, :]        # row -1 mirrors row 1
    g[:, H - 2, :, :] += gp[:, H + 1, 1:W + 1, :]  # row H mirrors row H - 2
    # columns, including the corners (which mirror twice)
    col_left = gp[:, :, 0, :].copy()
    col_right = gp[:, :, W + 1, :].copy()
    col_left[:, 2, :] += col_left[:, 0, :]
    col_left[:, H - 1, :] += col_left[:, H + 1, :]
    col_right[:, 2, :] += col_right[:, 0, :]
    col_right[:, H - 1, :] += col_right[:, H + 1, :]
    g[:, :, 1, :] += col_left[:, 1:H + 1, :]
    g[:, :, W - 2, :] += col_right[:, 1:H + 1, :]
    return g


def image_gradient_forward(inp, axis: int) -> np.ndarray:
    """One half of tf.image.image_gradients: forward differences along H (axis 0, dy) or W
    (axis 1, dx), zero in the last row / column."""
    x = _f64(inp)
    out = np.zeros_like(x)
    if axis == 0:
        out[:, :-1] = x[:, 1:] - x[:, :-1]
    else:
        out[:, :, :-1] = x[:, :, 1:] - x[:, :, :-1]
    return out


def image_gradients(inp):
    """tf.image.image_gradients: (dy, dx)."""
    return image_gradient_forward(inp, 0), image_gradient_forward(inp, 1)


def image_gradient_backward(dout, axis: int) -> np.ndarray:
    d = _f64(dout)
    g = np.zeros_like(d)
    if axis == 0:
        g[:, 1:] += d[:, :-1]
        g[:, :-1] -= d[:, :-1]
    else:
        g[:, :, 1:] += d[:, :, :-1]
        g[:, :, :-1] -= d[:, :, :-1]
    return g


# ----------------------------------------------------------------------------- merging, global pooling

def concatenate_forward(inputs, axis: int) -> np.ndarray:
    return np.concatenate([_f64(x) for x in inputs], axis=axis)


def concatenate_backward(dout, sizes, axis: int):
    return np.split(_f64(dout), np.cumsum(sizes)[:-1], axis=axis)


def add_forward(inputs) -> np.ndarray:
    return sum(_f64(x) for x in inputs)


def add_backward(dout, count: int):
    return [_f64(dout).copy() for _ in range(count)]


def multiply_forward(inputs) -> np.ndarray:
    out = np.ones_like(_f64(inputs[0]))
    for x in inputs:
        out = out * _f64(x)
    return out


def multiply_backward(dout, inputs):
    grads = []
    for j in range(len(inputs)):
        g = _f64(dout).copy()
        for k, x in enumerate(inputs):
            if k != j:
                g = g * _f64(x)
        grads.append(g)
    return grads


def global_avgpool2d_forward(inp) -> np.ndarray:
    return _f64(inp).mean(axis=(1, 2))


def global_avgpool2d_backward(dout, input_shape) -> np.ndarray:
    N, H, W, C = input_shape
    return np.broadcast_to(_f64(dout)[:, None, None, :] / (H * W), (N, H, W, C)).copy()


def global_maxpool2d_forward(inp) -> np.ndarray:
    return _f64(inp).max(axis=(1, 2))


def global_maxpool2d_backward(dout, inp) -> np.ndarray:
    """The gradient goes to the first maximum of each channel, in row-major order."""
    x = _f64(inp)
    N, H, W, C = x.shape
    g = np.zeros_like(x)
    flat = x.reshape(N, H * W, C).argmax(axis=1)
    for n in range(N):
        for c in range(C):
            g[n, flat[n, c] // W, flat[n, c] % W, c] = _f64(dout)[n, c]
    return g


# ----------------------------------------------------------------------------- batch normalization


def _rows(a) -> np.ndarray:
    a = _f64(a)
    return a.reshape(-1, a.shape[-1])


def batchnorm_forward_train(inp, gamma=None, beta=None, epsilon=1e-3):
    """Moments over every axis but the last (biased variance) -> (out, mean, var)."""
    x = _rows(inp)
    mean = x.mean(axis=0)
    var = ((x - mean) ** 2).mean(axis=0)
    g = np.ones_like(mean) if gamma is None else _f64(gamma)
    b = np.zeros_like(mean) if beta is None else _f64(beta)
    out = g * (x - mean) / np.sqrt(var + epsilon) + b
    return out.reshape(np.shape(inp)), mean, var


def batchnorm_backward_train(dout, inp, gamma, mean, var, epsilon=1e-3, has_beta=True, need_dinp=True):
    """The textbook chain rule through mean and variance, term by term (not the folded formula
    the kernel uses) -> (dinp or None, dgamma or None, dbeta or None)."""
    x, dy = _rows(inp), _rows(dout)
    M = x.shape[0]
    mean, var = _f64(mean), _f64(var)
    g = np.ones_like(mean) if gamma is None else _f64(gamma)
    inv = 1.0 / np.sqrt(var + epsilon)
    xhat = (x - mean) * inv
    dxhat = dy * g
    dvar = np.sum(dxhat * (x - mean), axis=0) * -0.5 * inv ** 3
    dmean = -np.sum(dxhat, axis=0) * inv + dvar * np.mean(-2.0 * (x - mean), axis=0)
    dx = dxhat * inv + dvar * 2.0 * (x - mean) / M + dmean / M
    return (dx.reshape(np.shape(inp)) if need_dinp else None,
            None if gamma is None else np.sum(dy * xhat, axis=0),
            np.sum(dy, axis=0) if has_beta else None)


def batchnorm_forward_infer(inp, gamma, beta, moving_mean, moving_var, epsilon=1e-3):
    x = _rows(inp)
    g = np.ones(x.shape[1]) if gamma is None else _f64(gamma)
    b = np.zeros(x.shape[1]) if beta is None else _f64(beta)
    out = g * (x - _f64(moving_mean)) / np.sqrt(_f64(moving_var) + epsilon) + b
    return out.reshape(np.shape(inp))


def batchnorm_backward_infer(dout, inp, gamma, moving_mean, moving_var, epsilon=1e-3, has_beta=True,
                             need_dinp=True):
    x, dy = _rows(inp), _rows(dout)
    inv = 1.0 / np.sqrt(_f64(moving_var) + epsilon)
    g = np.ones_like(inv) if gamma is None else _f64(gamma)
    return ((dy * g * inv).reshape(np.shape(inp)) if need_dinp else None,
            None if gamma is None else np.sum(dy * (x - _f64(moving_mean)) * inv, axis=0),
            np.sum(dy, axis=0) if has_beta else None)


# ----------------------------------------------------------------------------- finite differences


def numerical_gradient(f: Callable[[], float], x: np.ndarray, eps: float = 1e-6,
                       indices: Optional[Iterable[Sequence[int]]] = None) -> np.ndarray:
    """Central finite differences (f(x + h e_i) - f(x - h e_i)) / (2h) of a scalar function.

    ``f`` takes no arguments and reads ``x``, which is perturbed in place one element at a
    time and restored. ``indices`` (tuples into x) limits the elements; by default every
    element is differentiated and the result has x's shape, otherwise it is a 1-D float64
    array in the order of ``indices``. The step actually taken is measured after rounding to
    x's dtype, so float32 inputs get an exact denominator.
    """
    full = indices is None
    idx_list = list(np.ndindex(x.shape)) if full else [tuple(i) for i in indices]
    grads = np.empty(len(idx_list))
    for j, idx in enumerate(idx_list):
        old = x[idx].copy()
        x[idx] = old + eps
        hi = float(x[idx])
        f_plus = float(f())
        x[idx] = old - eps
        lo = float(x[idx])
        f_minus = float(f())
        x[idx] = old
        grads[j] = (f_plus - f_minus) / (hi - lo)
    return grads.reshape(x.shape) if full else grads


def rel_error(a, b) -> float:
    """Normwise relative error max|a - b| / max(max|a|, max|b|).

    Normwise rather than element-wise: a gradient entry that is tiny because of
    cancellation carries the absolute error of its large neighbours.
    """
    a, b = _f64(a), _f64(b)
    scale = max(np.max(np.abs(a), initial=0.0), np.max(np.abs(b), initial=0.0), 1e-30)
    return float(np.max(np.abs(a - b), initial=0.0) / scale)


def random_indices(rng: np.random.Generator, shape: Sequence[int], count: int) -> list[tuple[int, ...]]:
    """``count`` distinct random index tuples into an array of ``shape`` (fewer if it is smaller)."""
    size = int(np.prod(shape))
    flat = rng.choice(size, size=min(count, size), replace=False)
    return [tuple(int(v) for v in np.unravel_index(i, shape)) for i in flat]


# ----------------------------------------------------------------------------- comparisons


def assert_close(actual, expected, rtol: float, atol: float, name: str = "", scale_atol: bool = False) -> None:
    """np.testing-style |actual - expected| <= atol_eff + rtol * |expected|, element-wise.

    scale_atol=True multiplies atol by max(1, rms(expected)). Use it for outputs that are
    long float32 reductions (batch sums in dweight/dbias): the rounding error of a sum is
    proportional to the size of its partial sums, which is the typical magnitude of the
    entries (it grows like sqrt(reduction length) for random data), not to the entry
    itself, so an entry that is near zero by cancellation carries its neighbours' absolute
    error. Measured against the array's RMS this stays a 1e-4-relative check.
    """
    actual = np.asarray(actual)
    expected = _f64(expected)
    assert actual.shape == expected.shape, f"{name}: shape {actual.shape} != expected {expected.shape}"
    assert np.all(np.isfinite(actual)), f"{name}: non-finite values in the result"
    atol_eff = atol
    if scale_atol and expected.size:
        atol_eff = atol * max(1.0, float(np.sqrt(np.mean(expected * expected))))
    err = np.abs(actual.astype(np.float64) - expected)
    bad = err > atol_eff + rtol * np.abs(expected)
    if bad.any():
        i = np.unravel_index(int(np.argmax(np.where(bad, err, -1.0))), err.shape)
        raise AssertionError(
            f"{name}: {int(bad.sum())} of {err.size} elements differ beyond rtol={rtol}, atol={atol_eff:.3g}; "
            f"max abs error {err.max():.3g}; worst mismatch at {tuple(int(v) for v in i)}: "
            f"actual={float(actual[i]):.9g}, expected={float(expected[i]):.9g}")
