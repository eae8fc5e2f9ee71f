"""Batch normalization over the last axis, float64: training (the batch's moments, biased
variance, as Keras) and inference (the moving statistics), the optional activation after
it, and the moving-average update a committed training step applies."""
from __future__ import annotations

import numpy as np

from .activation import activate, activation_backward
from .numeric import _f64


def _rows(a) -> np.ndarray:
    a = _f64(a)
    return a.reshape(-1, a.shape[-1])


def batch_moments(inp):
    """(mean, var) per channel over every row of the batch (every axis but the last)."""
    x = _rows(inp)
    mean = x.mean(axis=0)
    return mean, ((x - mean) ** 2).mean(axis=0)


def _gamma_beta(gamma, beta, C):
    return (np.ones(C) if gamma is None else _f64(gamma)), (np.zeros(C) if beta is None else _f64(beta))


def batchnorm_forward_train(inp, gamma=None, beta=None, epsilon=1e-3):
    """-> (out, mean, var): gamma * (x - mean) / sqrt(var + epsilon) + beta with the batch's moments."""
    x = _rows(inp)
    mean, var = batch_moments(inp)
    g, b = _gamma_beta(gamma, beta, x.shape[1])
    out = g * (x - mean) / np.sqrt(var + epsilon) + b
    return out.reshape(np.shape(inp)), mean, var


def batchnorm_backward_train(dout, inp, gamma=None, beta=None, epsilon=1e-3):
    """The textbook chain rule through the batch mean and variance, term by term (not the
    folded formula the kernel uses) -> (dinp, dgamma or None, dbeta or None)."""
    x, dy = _rows(inp), _rows(dout)
    M = x.shape[0]
    mean, var = batch_moments(inp)
    g, _ = _gamma_beta(gamma, beta, x.shape[1])
    inv = 1.0 / np.sqrt(var + epsilon)
    xhat = (x - mean) * inv
    dxhat = dy * g
    dvar = np.sum(dxhat * (x - mean), axis=0) * -0.5 * inv ** 3
    dmean = -np.sum(dxhat, axis=0) * inv + dvar * np.mean(-2.0 * (x - mean), axis=0)
    dx = dxhat * inv + dvar * 2.0 * (x - mean) / M + dmean / M
    return (dx.reshape(np.shape(inp)), None if gamma is None else np.sum(dy * xhat, axis=0),
            None if beta is None else np.sum(dy, axis=0))


def batchnorm_forward_infer(inp, gamma, beta, moving_mean, moving_variance, epsilon=1e-3):
    x = _rows(inp)
    g, b = _gamma_beta(gamma, beta, x.shape[1])
    out = g * (x - _f64(moving_mean)) / np.sqrt(_f64(moving_variance) + epsilon) + b
    return out.reshape(np.shape(inp))


def batchnorm_backward_infer(dout, inp, gamma, beta, moving_mean, moving_variance, epsilon=1e-3):
    """-> (dinp, dgamma or None, dbeta or None): a per-channel affine map."""
    x, dy = _rows(inp), _rows(dout)
    inv = 1.0 / np.sqrt(_f64(moving_variance) + epsilon)
    g, _ = _gamma_beta(gamma, beta, x.shape[1])
    return ((dy * g * inv).reshape(np.shape(inp)),
            None if gamma is None else np.sum(dy * (x - _f64(moving_mean)) * inv, axis=0),
            None if beta is None else np.sum(dy, axis=0))


def batchnorm_forward(inp, gamma, beta, moving_mean, moving_variance, epsilon=1e-3, training=0,
                      activation="linear") -> np.ndarray:
    """The batchnorm op: act(normalised x); the batch's moments when ``training``."""
    if training:
        z = batchnorm_forward_train(inp, gamma, beta, epsilon)[0]
    else:
        z = batchnorm_forward_infer(inp, gamma, beta, moving_mean, moving_variance, epsilon)
    return activate(z, activation)


def batchnorm_backward(dout, inp, gamma, beta, moving_mean, moving_variance, epsilon=1e-3, training=0,
                       activation="linear"):
    """(dinp, dgamma or None, dbeta or None, None, None): the moving statistics have no gradient."""
    if training:
        z = batchnorm_forward_train(inp, gamma, beta, epsilon)[0]
    else:
        z = batchnorm_forward_infer(inp, gamma, beta, moving_mean, moving_variance, epsilon)
    dz = activation_backward(dout, z, activation)
    if training:
        grads = batchnorm_backward_train(dz, inp, gamma, beta, epsilon)
    else:
        grads = batchnorm_backward_infer(dz, inp, gamma, beta, moving_mean, moving_variance, epsilon)
    return grads + (None, None)


def moving_average(moving, batch, momentum) -> np.ndarray:
    """What a committed training step writes: moving * momentum + batch * (1 - momentum)."""
    return _f64(moving) * momentum + _f64(batch) * (1.0 - momentum)
