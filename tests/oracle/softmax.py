"""Softmax over the last axis and the sparse softmax cross-entropy loss, float64."""
from __future__ import annotations

import numpy as np

from .numeric import _f64


def softmax_forward(inp) -> np.ndarray:
    """exp(x - max) / sum exp(x - max) over the last axis (subtracting the max avoids overflow)."""
    x = _f64(inp)
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def softmax_backward(dout, out) -> np.ndarray:
    """dinp_j = y_j (dout_j - sum_k dout_k y_k): the softmax Jacobian y_j (delta_jk - y_k) applied to dout."""
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


def sparse_softmax_crossentropy(logits, labels, sample_weight=None):
    """The registered loss 'sparse_softmax_crossentropy' -> (loss, hits, dlogits).

    loss = sum_r w_r (logsumexp(z_r) - z_r[y_r]) / N (w = 1 without sample weights);
    hits = number of rows whose first maximum is at the label;
    dlogits = (softmax(z_r) - onehot(y_r)) * w_r / N, the gradient of that loss.
    """
    z = _f64(logits)
    labels = np.asarray(labels)
    N = z.shape[0]
    w = np.ones(N) if sample_weight is None else _f64(sample_weight)
    rows = np.arange(N)
    m = z.max(axis=1, keepdims=True)
    per_row = m[:, 0] + np.log(np.exp(z - m).sum(axis=1)) - z[rows, labels]
    loss = float(np.sum(w * per_row) / N)
    hits = int(np.sum(z.argmax(axis=1) == labels))  # argmax: the first maximum
    onehot = np.zeros_like(z)
    onehot[rows, labels] = 1.0
    dlogits = (softmax_forward(z) - onehot) * (w / N)[:, None]
    return loss, hits, dlogits
