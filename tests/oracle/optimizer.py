"""The update components a training step applies (pycnn.ops.apply_update), float64.

Adam (Keras 3) with the bias correction folded into alpha = lr * sqrt(1 - b2^t) / (1 - b1^t):
    m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;  w -= alpha m / (sqrt(v) + eps)
SGD (Keras 3): momentum 0: w -= lr g; else v = momentum v - lr g, then w += v, or with
Nesterov w += momentum v - lr g.
"""
from __future__ import annotations

import numpy as np

from .numeric import _f64


def adam_update(w, m, v, g, alpha, beta_1, beta_2, epsilon):
    """-> new (w, m, v)."""
    w, m, v, g = _f64(w), _f64(m), _f64(v), _f64(g)
    m = beta_1 * m + (1.0 - beta_1) * g
    v = beta_2 * v + (1.0 - beta_2) * g * g
    return w - alpha * m / (np.sqrt(v) + epsilon), m, v


def sgd_update(w, velocity, g, learning_rate, momentum, nesterov):
    """-> new (w, velocity)."""
    w, vel, g = _f64(w), _f64(velocity), _f64(g)
    if momentum == 0:
        return w - learning_rate * g, vel
    vel = momentum * vel - learning_rate * g
    return (w + momentum * vel - learning_rate * g if nesterov else w + vel), vel
