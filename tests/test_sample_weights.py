"""sample_weight and class_weight: Keras's weighting of the loss and the metrics, on the
native step and layer by layer."""
from __future__ import annotations

import numpy as np
import pytest

import pycnn
from training_helpers import _ce, _compiled, _data, _model


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
