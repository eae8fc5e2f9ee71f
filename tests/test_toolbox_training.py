"""The Keras training toolbox: metrics (functions, objects, names, weighted_metrics),
sample_weight / class_weight, weight regularizers and generator input, each against a plain
NumPy reference, on the native step and layer by layer."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

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


def _compiled(seed=0, **kw):
    model = _model(seed, **{k: v for k, v in kw.items() if k == "regularized"})
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                  metrics=["accuracy", metrics.SparseTopKCategoricalAccuracy(k=2), "mae"],
                  weighted_metrics=["accuracy"])
    return model


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


# ----------------------------------------------------------------------------- sample and class weights


@pytest.mark.parametrize("native", ["1", "0"])
def test_weighted_loss_is_keras_sum_over_batch_size(rng, monkeypatch, native):
    monkeypatch.setenv("PYCNN_NATIVE_STEP", native)
    x, y = _data(rng, 24)
    w = rng.random(24).astype(np.float32) * 3
    model = _compiled()
    loss, *_, weighted_acc = model.evaluate(x, y, sample_weight=w, batch_size=24)
    probs = model.predict(x)
    assert loss == pytest.approx(np.mean(w * _ce(probs, y)), rel=1e-5)
    assert weighted_acc == pytest.approx(np.sum(w * (probs.argmax(1) == y)) / w.sum(), rel=1e-5)
    first = model.train_on_batch(x, y, sample_weight=w)[0]
    assert first == pytest.approx(loss, rel=1e-5)


def test_weighted_native_step_matches_layer_by_layer(rng, monkeypatch, native_step_calls):
    x, y = _data(rng, 30)
    w = rng.random(30).astype(np.float32) * 2
    runs = []
    for native in ("1", "0"):
        monkeypatch.setenv("PYCNN_NATIVE_STEP", native)
        model = _compiled(5)
        losses = [model.train_on_batch(x, y, sample_weight=w)[0] for _ in range(4)]
        runs.append((losses, model.get_weights()))
    assert native_step_calls["n"] == 4
    np.testing.assert_allclose(runs[0][0], runs[1][0], rtol=1e-5)
    for a, b in zip(runs[0][1], runs[1][1]):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("native", ["1", "0"])
def test_weighted_gradient_matches_finite_differences_of_the_weighted_loss(rng, monkeypatch, native):
    monkeypatch.setenv("PYCNN_NATIVE_STEP", native)
    x, y = _data(rng, 6)
    w = np.array([0.0, 1.0, 2.0, 0.5, 3.0, 1.0], np.float32)
    model = _model(2)
    model.compile(optimizer=pycnn.optimizers.SGD(learning_rate=1.0), loss="sparse_categorical_crossentropy")
    bias = model.layers[-1].bias
    start = model.get_weights()
    before = bias.astype(np.float64)
    model.train_on_batch(x, y, sample_weight=w)
    grad = before - bias  # the SGD step at rate 1: the dense bias's gradient
    model.set_weights(start)  # finite differences at the weights the step saw
    numeric = np.zeros_like(bias, dtype=np.float64)
    for j in range(bias.size):
        vals = []
        for sign in (1, -1):
            old = bias[j]
            bias[j] = old + sign * 1e-3
            vals.append(np.mean(w * _ce(model.predict(x), y)))
            bias[j] = old
        numeric[j] = (vals[0] - vals[1]) / 2e-3
    np.testing.assert_allclose(grad, numeric, rtol=2e-3, atol=2e-5)


def test_class_weight_is_the_sample_weight_of_each_class(rng):
    x, y = _data(rng, 32)
    class_weight = {0: 1.0, 1: 4.0, 3: 0.5}  # class 2 is left out: weight 1
    w = np.array([class_weight.get(int(c), 1.0) for c in y], np.float32)
    a, b = _compiled(1), _compiled(1)
    ha = a.fit(x, y, batch_size=8, epochs=2, class_weight=class_weight, shuffle=False, verbose=0).history
    hb = b.fit(x, y, batch_size=8, epochs=2, sample_weight=w, shuffle=False, verbose=0).history
    for key in ha:
        np.testing.assert_allclose(ha[key], hb[key], rtol=1e-6, err_msg=key)
    onehot = np.eye(4, dtype=np.float32)[y]
    c = _model(1)
    c.compile(optimizer="adam", loss="categorical_crossentropy")
    hc = c.fit(x, onehot, batch_size=8, epochs=2, class_weight=class_weight, shuffle=False, verbose=0).history
    np.testing.assert_allclose(hc["loss"], ha["loss"], rtol=1e-4)


def test_bad_weights_are_refused(rng):
    x, y = _data(rng, 8)
    model = _compiled()
    with pytest.raises(ValueError, match="not both"):
        model.fit(x, y, sample_weight=np.ones(8), class_weight={0: 2.0}, verbose=0)
    with pytest.raises(ValueError, match=r"sample_weight of shape \(8,\)"):
        model.fit(x, y, sample_weight=np.ones(7), verbose=0)
    with pytest.raises(ValueError, match=r"finite sample_weight >= 0.*sample_weight\[2\]"):
        model.fit(x, y, sample_weight=np.array([1, 1, -1, 1, 1, 1, 1, 1.0]), verbose=0)
    with pytest.raises(ValueError, match="dict of integer class index"):
        model.fit(x, y, class_weight=[1.0, 2.0], verbose=0)


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


# ----------------------------------------------------------------------------- generators


def _batches(x, y, size, weights=None):
    for start in range(0, len(x), size):
        sl = slice(start, start + size)
        yield (x[sl], y[sl]) if weights is None else (x[sl], y[sl], weights[sl])


def test_generator_with_steps_equals_unshuffled_arrays(rng):
    x, y = _data(rng, 40)
    a, b = _compiled(9), _compiled(9)

    def forever():
        while True:
            yield from _batches(x, y, 10)

    ha = a.fit(forever(), steps_per_epoch=4, epochs=3, verbose=0).history
    hb = b.fit(x, y, batch_size=10, epochs=3, shuffle=False, verbose=0).history
    for key in hb:
        np.testing.assert_allclose(ha[key], hb[key], rtol=1e-6, err_msg=key)
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(wa, wb)


def test_a_list_of_batches_and_weighted_batches(rng):
    x, y = _data(rng, 24)
    w = rng.random(24).astype(np.float32)
    a, b = _compiled(2), _compiled(2)
    ha = a.fit(list(_batches(x, y, 8, w)), epochs=2, validation_data=list(_batches(x, y, 8)), verbose=0).history
    hb = b.fit(x, y, sample_weight=w, batch_size=8, epochs=2, shuffle=False, validation_data=(x, y),
               verbose=0).history
    for key in hb:
        np.testing.assert_allclose(ha[key], hb[key], rtol=1e-6, err_msg=key)


class _Sequence:
    """A PyDataset-like object: __len__, __getitem__ and on_epoch_end."""

    def __init__(self, x, y):
        self.x, self.y, self.ends = x, y, 0

    def __len__(self):
        return 3

    def __getitem__(self, i):
        return self.x[i * 5:(i + 1) * 5], self.y[i * 5:(i + 1) * 5]

    def on_epoch_end(self):
        self.ends += 1


def test_an_indexed_dataset_runs_its_length_and_is_told_the_epoch_ended(rng):
    x, y = _data(rng, 15)
    seq = _Sequence(x, y)
    model = _compiled()
    seen = []

    class Count(pycnn.callbacks.Callback):
        def on_batch_end(self, batch, logs=None):
            seen.append(batch)

    model.fit(seq, epochs=2, verbose=0, callbacks=[Count()])
    assert seen == [0, 1, 2, 0, 1, 2] and seq.ends == 2
    assert model.evaluate(seq) == pytest.approx(model.evaluate(x, y), rel=1e-6)
    np.testing.assert_allclose(model.predict(seq), model.predict(x), rtol=1e-6)


def test_an_exhausted_generator_warns_and_stops(rng):
    x, y = _data(rng, 20)
    model = _compiled()
    with pytest.warns(UserWarning, match="ran out of data"):
        h = model.fit(_batches(x, y, 10), steps_per_epoch=3, epochs=4, verbose=0)
    assert len(h.history["loss"]) == 1


def test_generator_errors(rng):
    x, y = _data(rng, 10)
    model = _compiled()
    with pytest.raises(ValueError, match="pass y=None"):
        model.fit(_batches(x, y, 5), y, verbose=0)
    with pytest.raises(ValueError, match=r"tuple \(x, y\)"):
        model.fit(iter([x[:5]]), verbose=0)
    with pytest.raises(ValueError, match="validation_split"):
        model.fit(_batches(x, y, 5), validation_split=0.2, verbose=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.fit(list(_batches(x, y, 5)), epochs=2, verbose=0)  # a list is re-iterable: no warning


def test_matches_keras_weighting_when_installed(rng):
    """sample_weight, class_weight and weighted_metrics against Keras 3 on the same weights."""
    pytest.importorskip("tensorflow", reason="TensorFlow is an optional cross-check")
    import keras

    x, y = _data(rng, 32)
    y = y[:, None]  # Keras broadcasts mae's (N, 1) labels over the outputs, refuses (N,)
    w = rng.random(32).astype(np.float32) * 2
    ours = _compiled(11)
    theirs = keras.Sequential([keras.Input((6, 6, 2)), keras.layers.Conv2D(3, 3, activation="relu"),
                               keras.layers.Flatten(), keras.layers.Dense(4, activation="softmax")])
    theirs.set_weights(ours.get_weights())
    theirs.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                   metrics=["accuracy", keras.metrics.SparseTopKCategoricalAccuracy(k=2), "mae"],
                   weighted_metrics=["accuracy"])
    a = ours.evaluate(x, y, sample_weight=w, batch_size=8, return_dict=True)
    b = theirs.evaluate(x, y, sample_weight=w, batch_size=8, return_dict=True, verbose=0)
    for key in a:
        assert a[key] == pytest.approx(b[key], rel=1e-4, abs=1e-6), key
    cw = {0: 2.0, 2: 0.25}
    ha = ours.fit(x, y, class_weight=cw, batch_size=8, epochs=2, shuffle=False, verbose=0).history
    hb = theirs.fit(x, y, class_weight=cw, batch_size=8, epochs=2, shuffle=False, verbose=0).history
    for key in ha:
        np.testing.assert_allclose(ha[key], hb[key], rtol=2e-3, err_msg=key)


def test_the_conv_family_takes_regularizers_too():
    sep = layers.SeparableConv2D(4, 3, depthwise_regularizer="l2", pointwise_regularizer=regularizers.l1(0.5),
                                 bias_regularizer="l1")
    dw = layers.DepthwiseConv2D(3, depthwise_regularizer=regularizers.l2(0.1))
    sep.build((None, 6, 6, 2))
    dw.build((None, 6, 6, 2))
    d, p, _ = sep.get_weights()
    assert sep.losses == pytest.approx([0.01 * float((d.astype(np.float64) ** 2).sum()),
                                        0.5 * float(np.abs(p).sum()), 0.0])
    assert dw.losses == pytest.approx([0.1 * float((dw.get_weights()[0].astype(np.float64) ** 2).sum()), ])
    clone = layers.SeparableConv2D.from_config(sep.get_config())
    assert clone.pointwise_regularizer == regularizers.L1(0.5) and clone.bias_regularizer == regularizers.L1(0.01)


def test_a_generator_of_unknown_length_shows_unknown_steps_in_the_first_epoch(rng, capsys):
    x, y = _data(rng, 10)
    model = _compiled()
    batches = list(_batches(x, y, 5))
    model.fit(iter(batches), epochs=1, verbose=2)
    assert "2/Unknown" in capsys.readouterr().out
