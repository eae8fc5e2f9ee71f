"""Keras 3's optimizer arguments (decoupled weight_decay, exclude_from_weight_decay, use_ema,
ema_momentum, ema_overwrite_frequency), pycnn's learning_rate_multipliers, and label smoothing
in the cross-entropy losses: NumPy statements of each rule, the native step against the
layer-by-layer one, and Keras 3 on the same weights and data when TensorFlow is installed."""
from __future__ import annotations

import numpy as np
import pytest

import pycnn
from pycnn import layers, losses, optimizers


def _model(seed=0, activation="linear"):
    pycnn.set_random_seed(seed)
    return pycnn.Sequential([layers.Input((6, 6, 2)), layers.Conv2D(3, 3, activation="relu"), layers.Flatten(),
                             layers.Dense(5, activation=activation, name="head")])


def _data(rng, n=24):
    return rng.standard_normal((n, 6, 6, 2)).astype(np.float32), rng.integers(0, 5, n)


def _train(model, optimizer, loss, x, y, steps, native=True, monkeypatch=None):
    if not native:
        monkeypatch.setenv("PYCNN_NATIVE_STEP", "0")
    model.compile(optimizer=optimizer, loss=loss)
    for i in range(steps):
        model.train_on_batch(x[i % 3 * 8:(i % 3 + 1) * 8], y[i % 3 * 8:(i % 3 + 1) * 8])
    if not native:
        monkeypatch.delenv("PYCNN_NATIVE_STEP")
    return [w.copy() for w in model.get_weights()]


# ----------------------------------------------------------------------------- the rules in NumPy

def test_sgd_weight_decay_is_decoupled_and_applied_before_the_update():
    w = np.array([1.0, -2.0, 0.5], np.float32)
    g = np.array([0.1, 0.2, -0.3], np.float32)
    opt = optimizers.SGD(0.1, weight_decay=0.5)
    opt.apply_gradients([(g, w)])
    expected = np.array([1.0, -2.0, 0.5], np.float32)
    expected = expected - expected * np.float32(0.5 * 0.1)
    expected = expected - np.float32(0.1) * g
    np.testing.assert_array_equal(w, expected)


def test_excluded_variables_are_not_decayed_by_object_or_name():
    model = _model(1)
    model.build((None, 6, 6, 2))
    opt = optimizers.SGD(0.1, weight_decay=0.5)
    opt.exclude_from_weight_decay(var_names=["bias"])
    weights = model.trainable_weights
    opt._name_variables(weights, ["conv2d/kernel", "conv2d/bias", "head/kernel", "head/bias"])
    assert opt._decays(weights, 0.1) == [0.05, 0.0, 0.05, 0.0]
    opt.exclude_from_weight_decay(var_list=[weights[2]])
    assert opt._decays(weights, 0.1) == [0.05, 0.05, 0.0, 0.05]


def test_learning_rate_multipliers_scale_the_step_not_the_decay():
    w1, w2 = np.ones(3, np.float32), np.ones(3, np.float32)
    g = np.full(3, 0.5, np.float32)
    opt = optimizers.SGD(0.1, weight_decay=0.2, learning_rate_multipliers={"norm/beta$": 4.0})
    opt._name_variables([w1, w2], ["norm/beta", "dense/kernel"])
    opt.apply_gradients([(g, w1), (g, w2)])
    decayed = np.float32(1.0) - np.float32(1.0) * np.float32(0.2 * 0.1)
    np.testing.assert_array_equal(w1, np.full(3, decayed - np.float32(0.4) * g[0], np.float32))
    np.testing.assert_array_equal(w2, np.full(3, decayed - np.float32(0.1) * g[0], np.float32))


def test_ema_follows_keras_rule_and_overwrites_every_n_steps():
    w = np.zeros(2, np.float32)
    opt = optimizers.SGD(1.0, use_ema=True, ema_momentum=0.5, ema_overwrite_frequency=3)
    grads = [np.array([-1.0, -2.0], np.float32), np.array([-1.0, 0.0], np.float32), np.array([0.0, 2.0], np.float32)]
    average, model = None, np.zeros(2, np.float32)
    for i, g in enumerate(grads):
        opt.apply_gradients([(g, w)])
        model = model - g
        average = model.copy() if average is None else 0.5 * average + 0.5 * model
        if i < 2:
            np.testing.assert_allclose(w, model)
    np.testing.assert_allclose(w, average)  # step 3: overwritten
    np.testing.assert_allclose(opt.get_slots([w])[0][-1], average)


@pytest.mark.parametrize("kwargs, match", [
    ({"weight_decay": -1.0}, "weight_decay"),
    ({"ema_momentum": 1.5}, "ema_momentum"),
    ({"ema_overwrite_frequency": 0, "use_ema": True}, "ema_overwrite_frequency"),
    ({"use_ema": "yes"}, "use_ema"),
    ({"learning_rate_multipliers": {"(": 2.0}}, "Invalid regex"),
    ({"learning_rate_multipliers": {"bias": -1.0}}, "learning_rate_multipliers"),
])
def test_bad_arguments_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        optimizers.Adam(**kwargs)


def test_config_round_trip_keeps_the_new_arguments():
    opt = optimizers.SGD(0.1, momentum=0.9, nesterov=True, weight_decay=1e-3, use_ema=True, ema_momentum=0.9,
                         ema_overwrite_frequency=5, learning_rate_multipliers={"beta": 64.0})
    config = opt.get_config()
    assert config["weight_decay"] == 1e-3 and config["ema_overwrite_frequency"] == 5
    twin = optimizers.SGD(**config)
    assert twin.get_config() == config
    assert optimizers.Adam().get_config() == {"learning_rate": 0.001, "beta_1": 0.9, "beta_2": 0.999,
                                              "epsilon": 1e-7}


# ----------------------------------------------------------------------------- label smoothing

def test_label_smoothing_matches_smoothed_one_hot_targets(rng):
    z = rng.standard_normal((7, 5)).astype(np.float32) * 2
    y = rng.integers(0, 5, 7)
    s = 0.2
    targets = np.eye(5)[y] * (1 - s) + s / 5
    logp = z - z.max(1, keepdims=True)
    logp = logp - np.log(np.exp(logp).sum(1, keepdims=True))
    want = -(targets * logp).sum(1).mean()
    p = np.exp(logp)
    sparse = losses.SparseCategoricalCrossentropy(from_logits=True, label_smoothing=s)
    dense = losses.CategoricalCrossentropy(from_logits=True, label_smoothing=s)
    assert sparse(y, z) == pytest.approx(want, rel=1e-6)
    assert dense(np.eye(5, dtype=np.float32)[y], z) == pytest.approx(want, rel=1e-6)
    np.testing.assert_allclose(sparse.gradient(y, z), (p - targets) / 7, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(sparse.sample_losses(y, z), -(targets * logp).sum(1), rtol=1e-6)
    # On probabilities (none below Keras's clip at 1e-7 here, which would change the value).
    assert p.min() > 1e-6
    probs = losses.SparseCategoricalCrossentropy(label_smoothing=s)
    assert probs(y, p.astype(np.float32)) == pytest.approx(want, rel=1e-5)
    with pytest.raises(ValueError, match=r"label_smoothing.*\[0, 1\].*Received: label_smoothing=1.5"):
        losses.SparseCategoricalCrossentropy(label_smoothing=1.5)


def test_a_weighted_smoothed_loss_and_its_gradient(rng):
    z = rng.standard_normal((6, 4)).astype(np.float32)
    y = rng.integers(0, 4, 6)
    w = rng.random(6).astype(np.float32)
    s = 0.3
    value, _, grad = pycnn.ops.loss(("sparse_softmax_crossentropy", [s]), z, y, w)
    targets = np.eye(4)[y] * (1 - s) + s / 4
    logp = z - np.log(np.exp(z).sum(1, keepdims=True))
    assert value == pytest.approx((-(targets * logp).sum(1) * w).sum() / 6, rel=1e-6)
    np.testing.assert_allclose(grad, (np.exp(logp) - targets) * w[:, None] / 6, rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match="expected label_smoothing in"):
        pycnn.ops.loss(("sparse_softmax_crossentropy", [-0.5]), z, y)


# ----------------------------------------------------------------------------- the native step

@pytest.mark.parametrize("make", [
    lambda: optimizers.SGD(0.05, momentum=0.85, nesterov=True, weight_decay=0.3,
                           learning_rate_multipliers={"head/bias": 8.0}),
    lambda: optimizers.Adam(0.01, weight_decay=0.1, use_ema=True, ema_momentum=0.8, ema_overwrite_frequency=2),
])
def test_native_step_equals_the_layer_by_layer_step(make, rng, monkeypatch, native_step_calls):
    x, y = _data(rng)
    loss = losses.SparseCategoricalCrossentropy(from_logits=True, label_smoothing=0.2)
    native = _train(_model(3), make(), loss, x, y, 7)
    assert native_step_calls["n"] == 7
    eager = _train(_model(3), make(), loss, x, y, 7, native=False, monkeypatch=monkeypatch)
    for a, b in zip(native, eager):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6)


def test_fit_ends_with_the_ema_weights(rng):
    x, y = _data(rng)
    model = _model(4)
    opt = optimizers.SGD(0.1, use_ema=True, ema_momentum=0.9)
    model.compile(optimizer=opt, loss=losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, batch_size=8, epochs=2, verbose=0, shuffle=False)
    for w, slots in zip(model.trainable_weights, opt.get_slots(model.trainable_weights)):
        np.testing.assert_array_equal(w, slots[-1])


def test_resume_with_decay_and_multipliers_is_exact_and_the_averages_are_saved(rng, tmp_path):
    x, y = _data(rng)

    def make(**kw):
        return optimizers.SGD(0.1, momentum=0.9, weight_decay=0.01, learning_rate_multipliers={"bias": 3.0}, **kw)

    def compiled(seed, **kw):
        model = _model(seed)
        model.compile(optimizer=make(**kw), loss=losses.SparseCategoricalCrossentropy(from_logits=True))
        return model

    straight = compiled(5)
    straight.fit(x, y, batch_size=8, epochs=2, verbose=0, shuffle=False)
    first = compiled(5)
    first.fit(x, y, batch_size=8, epochs=1, verbose=0, shuffle=False)
    first.save(str(tmp_path / "m.npz"))
    resumed = pycnn.models.load_model(str(tmp_path / "m.npz"))
    resumed.fit(x, y, batch_size=8, epochs=2, initial_epoch=1, verbose=0, shuffle=False)
    for a, b in zip(straight.get_weights(), resumed.get_weights()):
        np.testing.assert_array_equal(a, b)
    # With use_ema the averages are optimizer state: saved and restored with it. (A resumed run
    # is not a straight one here, as in Keras: fit() ends by giving the weights the averages.)
    ema = compiled(7, use_ema=True, ema_momentum=0.9)
    ema.fit(x, y, batch_size=8, epochs=1, verbose=0, shuffle=False)
    ema.save(str(tmp_path / "ema.npz"))
    loaded = pycnn.models.load_model(str(tmp_path / "ema.npz"))
    assert loaded.optimizer.use_ema
    for a, b in zip(ema.optimizer.get_slots(ema.trainable_weights),
                    loaded.optimizer.get_slots(loaded.trainable_weights)):
        assert len(a) == len(b) == 2
        for s1, s2 in zip(a, b):
            np.testing.assert_array_equal(s1, s2)


# ----------------------------------------------------------------------------- Keras 3

def _keras_twin(model):
    import keras

    twin = keras.Sequential([keras.Input((6, 6, 2)), keras.layers.Conv2D(3, 3, activation="relu"),
                             keras.layers.Flatten(), keras.layers.Dense(5)])
    twin.set_weights(model.get_weights())
    return twin


@pytest.mark.parametrize("name, kwargs", [
    ("SGD", dict(learning_rate=0.05, momentum=0.85, nesterov=True, weight_decay=0.3)),
    ("Adam", dict(learning_rate=0.01, weight_decay=0.1)),
    ("SGD", dict(learning_rate=0.05, use_ema=True, ema_momentum=0.7, ema_overwrite_frequency=3)),
])
def test_matches_keras_when_installed(name, kwargs, rng):
    pytest.importorskip("tensorflow", reason="TensorFlow is an optional cross-check")
    import keras

    x, y = _data(rng)
    ours = _model(6)
    ours.build((None, 6, 6, 2))
    theirs = _keras_twin(ours)
    ours.compile(optimizer=getattr(optimizers, name)(**kwargs),
                 loss=losses.CategoricalCrossentropy(from_logits=True, label_smoothing=0.2))
    theirs.compile(optimizer=getattr(keras.optimizers, name)(**kwargs),
                   loss=keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=0.2))
    onehot = np.eye(5, dtype=np.float32)[y]
    a = ours.fit(x, onehot, batch_size=8, epochs=3, shuffle=False, verbose=0).history["loss"]
    b = theirs.fit(x, onehot, batch_size=8, epochs=3, shuffle=False, verbose=0).history["loss"]
    np.testing.assert_allclose(a, b, rtol=1e-4)
    for w1, w2 in zip(ours.get_weights(), theirs.get_weights()):
        np.testing.assert_allclose(w1, np.asarray(w2), rtol=1e-4, atol=1e-5)
