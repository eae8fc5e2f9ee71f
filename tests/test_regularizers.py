"""Weight regularizers: penalties and their gradients, the loss fit reports, the native step,
saving."""
from __future__ import annotations

import numpy as np
import pytest

import pycnn
from pycnn import regularizers
from training_helpers import _ce, _data, _model


# ----------------------------------------------------------------------------- regularizers


def test_regularizer_penalties_and_gradients():
    w = np.array([[-2.0, 0.0], [0.5, 3.0]], np.float32)
    r = regularizers.L1L2(l1=0.1, l2=0.2)
    assert r(w) == pytest.approx(0.1 * 5.5 + 0.2 * (4 + 0.25 + 9))
    eps = 1e-3
    numeric = np.zeros_like(w)
    for idx in np.ndindex(w.shape):
        if w[idx] == 0.0:
            continue  # |w| has no derivative at 0; the gradient uses sign(0) = 0 as Keras
        hi, lo = w.copy(), w.copy()
        hi[idx] += eps
        lo[idx] -= eps
        numeric[idx] = (r(hi) - r(lo)) / (2 * eps)
    np.testing.assert_allclose(r.gradient(w), numeric, rtol=1e-3, atol=1e-4)
    assert regularizers.get("l2") == regularizers.L2(0.01)
    assert regularizers.get(regularizers.serialize(r)) == r
    with pytest.raises(ValueError, match="'l3'"):
        regularizers.get("l3")
    with pytest.raises(ValueError, match="finite number >= 0"):
        regularizers.L2(-1.0)


def test_the_reported_loss_includes_the_penalties(rng):
    x, y = _data(rng, 16)
    model = _model(4, regularized=True)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    penalty = sum(sum(layer.losses) for layer in model.layers)
    assert penalty > 0
    probs = model.predict(x)
    assert model.evaluate(x, y, batch_size=16) == pytest.approx(_ce(probs, y).mean() + penalty, rel=1e-5)
    assert model.train_on_batch(x, y) == pytest.approx(_ce(probs, y).mean() + penalty, rel=1e-5)


def test_regularized_training_native_matches_layer_by_layer(rng, monkeypatch, native_step_calls):
    x, y = _data(rng, 20)
    runs = []
    for native in ("1", "0"):
        monkeypatch.setenv("PYCNN_NATIVE_STEP", native)
        model = _model(6, regularized=True)
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
        runs.append(([model.train_on_batch(x, y) for _ in range(3)], model.get_weights()))
    assert native_step_calls["n"] == 3
    np.testing.assert_allclose(runs[0][0], runs[1][0], rtol=1e-5)
    for a, b in zip(runs[0][1], runs[1][1]):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_regularizers_survive_save_and_load(rng, tmp_path):
    model = _model(7, regularized=True)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    path = str(tmp_path / "r.npz")
    model.save(path)
    loaded = pycnn.models.load_model(path)
    assert loaded.layers[0].kernel_regularizer == regularizers.L2(1e-2)
    assert loaded.layers[-1].kernel_regularizer == regularizers.L1L2(0.01, 0.01)
    x, y = _data(rng, 8)
    assert loaded.evaluate(x, y) == pytest.approx(model.evaluate(x, y), rel=1e-6)
