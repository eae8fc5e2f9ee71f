"""Learning-rate schedules and the LR callbacks against plain formulas written from Keras 3's
definitions (and Keras itself when TensorFlow is installed)."""
from __future__ import annotations

import math

import numpy as np
import pytest

import pycnn
from pycnn import callbacks, layers
from pycnn.optimizers import schedules

STEPS = [0, 1, 7, 50, 99, 100, 101, 250, 1000]


def exponential(step, lr0, steps, rate, stair):
    p = step / steps
    return lr0 * rate ** (math.floor(p) if stair else p)


def inverse_time(step, lr0, steps, rate, stair):
    p = step / steps
    return lr0 / (1 + rate * (math.floor(p) if stair else p))


def cosine(step, lr0, steps, alpha, target=None, warmup=0):
    if target is None:
        s = min(step, steps)
        return lr0 * ((1 - alpha) * 0.5 * (1 + math.cos(math.pi * s / steps)) + alpha)
    s = min(step, steps + warmup)
    if s < warmup:
        return lr0 + (target - lr0) * s / warmup
    s -= warmup
    return target * ((1 - alpha) * 0.5 * (1 + math.cos(math.pi * s / steps)) + alpha)


CASES = [
    (lambda: schedules.ExponentialDecay(0.1, 100, 0.5), lambda s: exponential(s, 0.1, 100, 0.5, False)),
    (lambda: schedules.ExponentialDecay(0.1, 100, 0.5, staircase=True), lambda s: exponential(s, 0.1, 100, 0.5, True)),
    (lambda: schedules.InverseTimeDecay(0.1, 100, 2.0), lambda s: inverse_time(s, 0.1, 100, 2.0, False)),
    (lambda: schedules.InverseTimeDecay(0.1, 100, 2.0, True), lambda s: inverse_time(s, 0.1, 100, 2.0, True)),
    (lambda: schedules.PiecewiseConstantDecay([100, 250], [1.0, 0.5, 0.1]),
     lambda s: 1.0 if s <= 100 else 0.5 if s <= 250 else 0.1),
    (lambda: schedules.CosineDecay(0.1, 200), lambda s: cosine(s, 0.1, 200, 0.0)),
    (lambda: schedules.CosineDecay(0.1, 200, alpha=0.1), lambda s: cosine(s, 0.1, 200, 0.1)),
    (lambda: schedules.CosineDecay(0.0, 200, warmup_target=0.2, warmup_steps=100),
     lambda s: cosine(s, 0.0, 200, 0.0, 0.2, 100)),
]


@pytest.mark.parametrize("make, formula", CASES)
def test_schedules_follow_keras_formulas_and_round_trip(make, formula):
    schedule = make()
    for step in STEPS:
        assert schedule(step) == pytest.approx(formula(step), rel=1e-12, abs=1e-15)
    again = schedules.deserialize(schedules.serialize(schedule))
    assert [again(s) for s in STEPS] == [schedule(s) for s in STEPS]


def test_schedules_match_keras_when_installed():
    tf = pytest.importorskip("tensorflow", reason="TensorFlow is an optional cross-check")
    ks = tf.keras.optimizers.schedules
    theirs = [ks.ExponentialDecay(0.1, 100, 0.5), ks.ExponentialDecay(0.1, 100, 0.5, staircase=True),
              ks.InverseTimeDecay(0.1, 100, 2.0), ks.InverseTimeDecay(0.1, 100, 2.0, True),
              ks.PiecewiseConstantDecay([100, 250], [1.0, 0.5, 0.1]), ks.CosineDecay(0.1, 200),
              ks.CosineDecay(0.1, 200, alpha=0.1), ks.CosineDecay(0.0, 200, warmup_target=0.2, warmup_steps=100)]
    for (make, _), keras_schedule in zip(CASES, theirs):
        ours = make()
        for step in STEPS:
            assert ours(step) == pytest.approx(float(keras_schedule(step)), rel=1e-5, abs=1e-7)


def test_schedule_arguments_are_checked():
    with pytest.raises(ValueError, match="decay_steps"):
        schedules.ExponentialDecay(0.1, 0, 0.5)
    with pytest.raises(ValueError, match="1 less than the length of values"):
        schedules.PiecewiseConstantDecay([1, 2], [0.1])
    with pytest.raises(ValueError, match="increasing boundaries"):
        schedules.PiecewiseConstantDecay([5, 2], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="Unknown learning-rate schedule"):
        schedules.deserialize({"class_name": "Nope"})


def _data(n=64):
    rng = np.random.default_rng(0)
    return rng.random((n, 6, 6, 2), dtype=np.float32), rng.integers(0, 3, n)


def _model(optimizer):
    pycnn.set_random_seed(2)
    model = pycnn.Sequential([layers.Input((6, 6, 2)), layers.Conv2D(3, 3, activation="relu"), layers.Flatten(),
                              layers.Dense(3, activation="softmax")])
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


@pytest.mark.parametrize("name", ["adam", "sgd", "rmsprop"])
@pytest.mark.parametrize("native", ["1", "0"])
def test_a_schedule_drives_every_step_natively_and_layer_by_layer(name, native, monkeypatch):
    """Training with a schedule == training step by step with the scheduled rate set by hand."""
    monkeypatch.setenv("PYCNN_NATIVE_STEP", native)
    x, y = _data()
    schedule = schedules.ExponentialDecay(0.01, 3, 0.5)
    cls = {"adam": pycnn.optimizers.Adam, "sgd": pycnn.optimizers.SGD, "rmsprop": pycnn.optimizers.RMSprop}[name]
    scheduled = _model(cls(learning_rate=schedule))
    by_hand = _model(cls(learning_rate=0.01))
    for step in range(8):
        assert scheduled.optimizer.learning_rate == pytest.approx(schedule(step))
        scheduled.train_on_batch(x[step * 8:(step + 1) * 8], y[step * 8:(step + 1) * 8])
        by_hand.optimizer.learning_rate = schedule(step)
        by_hand.train_on_batch(x[step * 8:(step + 1) * 8], y[step * 8:(step + 1) * 8])
    assert scheduled.optimizer.iterations == 8
    for a, b in zip(scheduled.get_weights(), by_hand.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    with pytest.raises(TypeError, match="follows it and cannot be set"):
        scheduled.optimizer.learning_rate = 0.1


def test_a_scheduled_optimizer_survives_save_and_load(tmp_path):
    x, y = _data()
    model = _model(pycnn.optimizers.Adam(schedules.CosineDecay(0.01, 20, warmup_target=0.02, warmup_steps=4)))
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    model.save(tmp_path / "m.npz")
    loaded = pycnn.models.load_model(tmp_path / "m.npz")
    assert isinstance(loaded.optimizer.schedule, schedules.CosineDecay)
    assert loaded.optimizer.learning_rate == model.optimizer.learning_rate
    model.fit(x, y, batch_size=16, epochs=1, verbose=0, shuffle=False)
    loaded.fit(x, y, batch_size=16, epochs=1, verbose=0, shuffle=False)
    for a, b in zip(model.get_weights(), loaded.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_learning_rate_scheduler_sets_the_rate_each_epoch_and_logs_it():
    x, y = _data()
    model = _model(pycnn.optimizers.SGD(0.1))
    seen = []
    history = model.fit(x, y, batch_size=32, epochs=3, verbose=0, callbacks=[
        callbacks.LearningRateScheduler(lambda epoch, lr: lr * 0.5 if epoch else lr),
        callbacks.LambdaCallback(on_epoch_begin=lambda e, logs=None: seen.append(model.optimizer.learning_rate))])
    assert seen == pytest.approx([0.1, 0.05, 0.025])
    assert history.history["learning_rate"] == pytest.approx([0.1, 0.05, 0.025])
    model.fit(x, y, epochs=2, verbose=0, callbacks=[callbacks.LearningRateScheduler(lambda epoch: 0.01 * (epoch + 1))])
    assert model.optimizer.learning_rate == pytest.approx(0.02)


def reduce_lr_reference(values, lr, factor, patience, min_delta, cooldown, min_lr):
    """Keras 3's ReduceLROnPlateau rule for mode 'min', written out: the rate after each epoch."""
    best, wait, cool, out = math.inf, 0, 0, []
    for current in values:
        if cool > 0:
            cool -= 1
            wait = 0
        if current < best - min_delta:
            best, wait = current, 0
        elif cool <= 0:
            wait += 1
            if wait >= patience and lr > np.float32(min_lr):
                lr = max(lr * factor, min_lr)
                cool, wait = cooldown, 0
        out.append(lr)
    return out


def test_reduce_lr_on_plateau_follows_keras_rule(capsys):
    losses = [1.0, 0.9, 0.9, 0.95, 0.91, 0.89995, 0.8, 0.85, 0.86, 0.87, 0.88, 0.89, 0.9, 0.91]
    model = _model(pycnn.optimizers.SGD(0.1))
    cb = callbacks.ReduceLROnPlateau(monitor="loss", factor=0.5, patience=2, cooldown=1, min_lr=0.02, verbose=1)
    cb.set_model(model)
    cb.on_train_begin()
    rates = []
    for epoch, value in enumerate(losses):
        logs = {"loss": value}
        cb.on_epoch_end(epoch, logs)
        rates.append(model.optimizer.learning_rate)
        assert "learning_rate" in logs
    assert rates == pytest.approx(reduce_lr_reference(losses, 0.1, 0.5, 2, 1e-4, 1, 0.02))
    assert min(rates) == pytest.approx(0.02) and rates[0] == 0.1
    assert "ReduceLROnPlateau reducing learning rate to 0.05" in capsys.readouterr().out
    with pytest.raises(ValueError, match="factor >= 1.0"):
        callbacks.ReduceLROnPlateau(factor=1.0)


def test_csv_logger_writes_keras_layout_and_appends(tmp_path):
    import csv

    x, y = _data()
    model = _model(pycnn.optimizers.SGD(0.1))
    path = tmp_path / "log.csv"
    history = model.fit(x, y, epochs=2, verbose=0, validation_data=(x, y), callbacks=[callbacks.CSVLogger(path)])
    model.fit(x, y, epochs=3, initial_epoch=2, verbose=0, validation_data=(x, y),
              callbacks=[callbacks.CSVLogger(path, append=True)])
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["epoch", "accuracy", "loss", "val_accuracy", "val_loss"]
    assert [r[0] for r in rows[1:]] == ["0", "1", "2"]
    assert float(rows[1][2]) == history.history["loss"][0]
