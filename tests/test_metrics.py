"""Metrics (functions, objects, names, weighted_metrics), each against a plain NumPy
reference, alone and in fit / evaluate, on the native step and layer by layer."""
from __future__ import annotations

import numpy as np
import pytest

import pycnn
from pycnn import metrics
from training_helpers import _ce, _compiled, _data, _model


# ----------------------------------------------------------------------------- metric functions


def test_metric_functions_match_plain_numpy(rng):
    p = rng.random((12, 6)).astype(np.float32)
    y = rng.integers(0, 6, 12)
    onehot = np.eye(6, dtype=np.float32)[y]
    np.testing.assert_array_equal(metrics.sparse_categorical_accuracy(y, p), p.argmax(1) == y)
    np.testing.assert_array_equal(metrics.sparse_categorical_accuracy(y[:, None], p), p.argmax(1) == y)
    np.testing.assert_array_equal(metrics.categorical_accuracy(onehot, p), p.argmax(1) == y)
    rank = (p > p[np.arange(12), y][:, None]).sum(1)  # classes strictly above the target
    for k in (1, 2, 5):
        np.testing.assert_array_equal(metrics.sparse_top_k_categorical_accuracy(y, p, k=k), rank < k)
        np.testing.assert_array_equal(metrics.top_k_categorical_accuracy(onehot, p, k=k), rank < k)
    np.testing.assert_allclose(metrics.mae(onehot, p), np.abs(onehot - p).mean(1), rtol=1e-6)
    np.testing.assert_allclose(metrics.mse(onehot, p), ((onehot - p) ** 2).mean(1), rtol=1e-6)
    b = rng.random((12, 1)).astype(np.float32)
    t = (rng.random((12, 1)) > 0.5).astype(np.float32)
    np.testing.assert_array_equal(metrics.binary_accuracy(t, b), ((b > 0.5) == (t > 0.5))[:, 0])


def test_top_k_counts_ties_for_the_target_as_tensorflow_does():
    p = np.array([[0.25, 0.25, 0.25, 0.25], [0.1, 0.2, 0.3, 0.4]], np.float32)
    np.testing.assert_array_equal(metrics.sparse_top_k_categorical_accuracy([3, 0], p, k=1), [1.0, 0.0])
    np.testing.assert_array_equal(metrics.sparse_top_k_categorical_accuracy([0, 1], p, k=3), [1.0, 1.0])


def test_metric_objects_keep_weighted_running_means(rng):
    m = metrics.SparseCategoricalAccuracy()
    p = np.eye(3, dtype=np.float32)[[0, 1, 2, 0]]
    m.update_state([0, 1, 0, 0], p, sample_weight=[1.0, 2.0, 3.0, 0.0])
    assert m.result() == pytest.approx(3.0 / 6.0)
    m.update_state([2], p[2:3])
    assert m.result() == pytest.approx(4.0 / 7.0)
    m.reset_state()
    assert m.result() == 0.0
    with pytest.raises(ValueError, match="one sample weight per sample"):
        m.update_state([0, 1], p[:2], sample_weight=[1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="positive integer"):
        metrics.TopKCategoricalAccuracy(k=0)


@pytest.mark.parametrize("loss, y_kind, out_units, expected", [
    ("sparse_categorical_crossentropy", "sparse", 4, metrics.SparseCategoricalAccuracy),
    ("categorical_crossentropy", "onehot", 4, metrics.CategoricalAccuracy),
    ("mse", "binary", 1, metrics.BinaryAccuracy),
])
def test_accuracy_is_resolved_from_the_shapes_as_keras(rng, loss, y_kind, out_units, expected):
    model = _model(out_units=out_units, activation="softmax" if out_units > 1 else "sigmoid")
    model.compile(optimizer="adam", loss=loss, metrics=["acc"])
    x, y = _data(rng, 8)
    target = {"sparse": y, "onehot": np.eye(4, dtype=np.float32)[y], "binary": (y % 2)[:, None]}[y_kind]
    model.evaluate(x, target)
    assert [type(m) for m in model._metrics._objects] == [expected]
    assert model.metrics_names == ["acc"]


def test_unknown_metrics_are_refused():
    model = _model()
    with pytest.raises(ValueError, match="does not know the metric 'auc'"):
        model.compile(optimizer="adam", loss="mse", metrics=["auc"])
    with pytest.raises(TypeError, match="metric names"):
        model.compile(optimizer="adam", loss="mse", metrics=[3])


# ----------------------------------------------------------------------------- several metrics in fit


def test_several_metrics_in_history_and_evaluate(rng):
    x, y = _data(rng)
    model = _compiled()
    h = model.fit(x, y, batch_size=16, epochs=2, validation_data=(x, y), verbose=0)
    assert sorted(h.history) == sorted(["loss", "accuracy", "sparse_top_k_categorical_accuracy", "mae",
                                        "weighted_accuracy", "val_loss", "val_accuracy",
                                        "val_sparse_top_k_categorical_accuracy", "val_mae", "val_weighted_accuracy"])
    result = model.evaluate(x, y, batch_size=7)
    probs = model.predict(x)
    assert result[0] == pytest.approx(_ce(probs, y).mean(), rel=1e-5)
    assert result[1] == pytest.approx(np.mean(probs.argmax(1) == y))
    rank = (probs > probs[np.arange(len(y)), y][:, None]).sum(1)
    assert result[2] == pytest.approx(np.mean(rank < 2))
    # With integer labels (N, 1), Keras's mae compares the label with every output.
    assert result[3] == pytest.approx(np.abs(y[:, None] - probs).mean(), rel=1e-5)
    assert result[4] == pytest.approx(result[1])  # no weights: the weighted mean is the mean
    assert h.history["val_mae"][-1] == pytest.approx(result[3], rel=1e-5)


@pytest.mark.parametrize("native", ["1", "0"])
def test_metrics_agree_between_native_and_layer_by_layer(rng, monkeypatch, native_step_calls, native):
    x, y = _data(rng)
    monkeypatch.setenv("PYCNN_NATIVE_STEP", native)
    model = _compiled(3)
    logs = model.fit(x, y, batch_size=40, epochs=1, shuffle=False, verbose=0).history
    assert native_step_calls["n"] == (1 if native == "1" else 0)
    monkeypatch.setenv("PYCNN_NATIVE_STEP", "0")
    ref_model = _compiled(3)
    want = ref_model.fit(x, y, batch_size=40, epochs=1, shuffle=False, verbose=0).history
    for key in want:
        np.testing.assert_allclose(logs[key], want[key], rtol=1e-5, err_msg=key)


def test_saved_model_keeps_its_metrics(rng, tmp_path):
    x, y = _data(rng)
    model = _compiled()
    model.fit(x, y, epochs=1, verbose=0)
    path = str(tmp_path / "m.npz")
    model.save(path)
    loaded = pycnn.models.load_model(path)
    assert loaded.metrics_names == model.metrics_names
    np.testing.assert_allclose(loaded.evaluate(x, y), model.evaluate(x, y), rtol=1e-6)
