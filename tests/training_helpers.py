"""Small models, data and a NumPy cross-entropy shared by the training-option tests
(test_metrics.py, test_sample_weights.py, test_regularizers.py, test_generators.py)."""
from __future__ import annotations

import numpy as np

import pycnn
from pycnn import layers, metrics, regularizers


def _model(seed=0, regularized=False, out_units=4, activation="softmax"):
    pycnn.utils.set_random_seed(seed)
    reg = dict(kernel_regularizer=regularizers.l2(1e-2), bias_regularizer=regularizers.l1(1e-3)) if regularized else {}
    return pycnn.Sequential([
        layers.Input((6, 6, 2)), layers.Conv2D(3, 3, activation="relu", **reg), layers.Flatten(),
        layers.Dense(out_units, activation=activation, **({"kernel_regularizer": "l1_l2"} if regularized else {}))])


def _data(rng, n=40, classes=4):
    return rng.standard_normal((n, 6, 6, 2)).astype(np.float32), rng.integers(0, classes, n)


def _log_softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def _ce(probs, y):
    """Per-sample sparse cross-entropy of probabilities, Keras's clip."""
    p = np.clip(probs.astype(np.float64), 1e-7, 1 - 1e-7)
    return -np.log(p[np.arange(len(y)), y])


def _compiled(seed=0, **kw):
    model = _model(seed, **{k: v for k, v in kw.items() if k == "regularized"})
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                  metrics=["accuracy", metrics.SparseTopKCategoricalAccuracy(k=2), "mae"],
                  weighted_metrics=["accuracy"])
    return model
