"""fit / evaluate / train_on_batch end to end: learning on a synthetic problem, data
validation, seeding, callbacks, progress output, and one LeNet step against PyTorch."""
from __future__ import annotations

import io
import re
import sys

import numpy as np
import pytest

from pycnn import callbacks, layers, losses, models, optimizers, utils
from pycnn.models import Sequential
from pycnn.progress import Progbar, format_eta, format_step_time, format_value


@pytest.fixture(autouse=True)
def _fresh_session():
    utils.clear_session()
    utils.set_random_seed(7)
    yield
    utils.clear_session()


def colour_blobs(n, seed=0):
    """n 32x32x3 images, 10 classes: a Gaussian blob whose position and colour depend on the class."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 10, n)
    cy = np.array([8, 8, 8, 8, 8, 24, 24, 24, 24, 24])[y]
    cx = np.array([4, 10, 16, 22, 28, 4, 10, 16, 22, 28])[y]
    colours = np.random.default_rng(99).random((10, 3)) * 0.8 + 0.2
    yy, xx = np.mgrid[0:32, 0:32]
    d2 = (yy[None] - cy[:, None, None]) ** 2 + (xx[None] - cx[:, None, None]) ** 2
    blob = np.exp(-d2 / (2 * 3.0 ** 2))
    x = blob[..., None] * colours[y][:, None, None, :] + 0.15 * rng.standard_normal((n, 32, 32, 3))
    return x.astype(np.float32), y


def tiny_model(num_classes=3, dropout=0.0):
    stack = [layers.Input((6, 6, 2)), layers.Conv2D(4, 3, activation="relu"), layers.Flatten()]
    if dropout:
        stack.append(layers.Dropout(dropout))
    stack.append(layers.Dense(num_classes, activation="softmax"))
    return Sequential(stack)


def tiny_data(n=40, num_classes=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 6, 6, 2)).astype(np.float32), rng.integers(0, num_classes, n)


# --------------------------------------------------------------------------- learning

def test_lenet_learns_colour_blobs_in_two_epochs():
    x, y = colour_blobs(400, seed=1)
    x_test, y_test = colour_blobs(200, seed=2)
    model = models.lenet(input_shape=(32, 32, 3), num_classes=10)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    before_loss, before_acc = model.evaluate(x_test, y_test)
    history = model.fit(x, y, batch_size=32, epochs=2, verbose=0, validation_data=(x_test, y_test))
    assert set(history.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert all(len(v) == 2 for v in history.history.values()) and history.epoch == [0, 1]
    assert history.history["loss"][1] < history.history["loss"][0]
    test_loss, test_acc = model.evaluate(x_test, y_test)
    assert test_loss < before_loss
    assert test_acc > 0.5, f"accuracy {test_acc:.3f} should beat chance (0.1) by a wide margin"
    assert test_loss == pytest.approx(history.history["val_loss"][1], rel=1e-6)
    assert test_acc == history.history["val_accuracy"][1]
    assert model.history is history


def test_regression_with_mse_and_categorical_targets():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((64, 5)).astype(np.float32)
    target = x @ rng.standard_normal((5, 2)).astype(np.float32)
    model = Sequential([layers.Input((5,)), layers.Dense(8, activation="tanh"), layers.Dense(2)])
    model.compile(optimizer=optimizers.Adam(0.01), loss="mse")
    history = model.fit(x, target, epochs=5, batch_size=16, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0] and "accuracy" not in history.history
    assert isinstance(model.evaluate(x, target), float)

    xc, yc = tiny_data(60)
    clf = tiny_model()
    clf.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
    h = clf.fit(xc, utils.to_categorical(yc, 3), epochs=4, verbose=0)
    assert h.history["loss"][-1] < h.history["loss"][0]
    with pytest.raises(ValueError, match=r"fit\(\) expected y with the model's output shape \(60, 3\)\. "
                                         r"Received: y.shape=\(60,\)\."):
        clf.fit(xc, yc, verbose=0)


def test_fully_convolutional_model_trains_on_class_labels():
    model = models.fully_convolutional_cnn(num_classes=4)
    x = np.random.default_rng(4).standard_normal((6, 28, 28, 1)).astype(np.float32)
    y = np.array([0, 1, 2, 3, 0, 1])
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    loss, acc = model.train_on_batch(x, y)  # output (6, 1, 1, 4), one label per sample
    assert np.isfinite(loss) and 0 <= acc <= 1
    assert model.evaluate(x, y.reshape(6, 1, 1))[0] < loss + 1.0


def test_evaluate_and_train_on_batch_return_keras_types():
    x, y = tiny_data()
    model = tiny_model()
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    result = model.evaluate(x, y, batch_size=7)
    assert isinstance(result, list) and len(result) == 2
    probs = model.predict(x)
    assert result[0] == pytest.approx(losses.SparseCategoricalCrossentropy()(y, probs), rel=1e-5)
    assert result[1] == np.mean(probs.argmax(axis=1) == y)
    assert model.evaluate(x, y, return_dict=True) == pytest.approx({"loss": result[0], "accuracy": result[1]})
    assert model.test_on_batch(x, y) == pytest.approx(result)
    before = model.get_weights()
    loss, acc = model.train_on_batch(x, y)
    assert loss == pytest.approx(result[0], rel=1e-5)
    assert any(not np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    assert isinstance(model.train_on_batch(x, y), float)


def test_labels_in_cifar_shape_and_integral_floats_are_accepted():
    x, y = tiny_data()
    model = tiny_model()
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    a = model.evaluate(x, y)
    assert model.evaluate(x, y.reshape(-1, 1).astype(np.uint8)) == a
    assert model.evaluate(x, y.astype(np.float64)) == a


def test_uint8_images_are_converted_not_scaled():
    x = np.random.default_rng(5).integers(0, 256, (4, 6, 6, 2)).astype(np.uint8)
    model = tiny_model()
    np.testing.assert_array_equal(model.predict(x), model.predict(x.astype(np.float32)))
    assert not np.allclose(model.predict(x), model.predict(x / 255.0))


# --------------------------------------------------------------------------- validation

@pytest.mark.parametrize("x, y, error, match", [
    (np.zeros((50, 6, 6, 2)), np.zeros(49, dtype=int), ValueError,
     r"x and y must contain the same number of samples\. Received: x.shape\[0\]=50, y.shape\[0\]=49\."),
    (np.zeros((4, 6, 6, 2)), np.array([0, 1, 3, 2]), ValueError,
     r"fit\(\) expected class labels in \[0, 3\) for predictions with 3 classes\. Received: labels with min=0, max=3\."),
    (np.zeros((3, 6, 6, 2)), np.array([0.0, 0.5, 1.0]), ValueError,
     r"fit\(\) expected integer class labels\. Received: a non-integral label 0\.5"),
    (np.zeros((3, 6, 6, 2)), np.zeros((3, 2), dtype=int), ValueError, r"one integer label per prediction row"),
    (np.zeros((3, 6, 6, 2), dtype=complex), np.zeros(3, dtype=int), TypeError,
     r"fit\(\) expected a real numeric array for 'x'\. Received: x.dtype=complex128\."),
    (np.zeros((3, 6, 6, 2)), np.array(["a", "b", "c"]), TypeError, r"for 'y'\. Received: y.dtype=<U1\."),
    (np.zeros((3, 6, 6)), np.zeros(3, dtype=int), ValueError,
     r"Model 'sequential' expected input of shape \(None, 6, 6, 2\), but received input with shape \(3, 6, 6\)\."),
    (np.zeros((3, 6, 6, 2)), None, ValueError, r"fit\(\) expected targets y\. Received: y=None\."),
])
def test_fit_validates_data(x, y, error, match):
    model = tiny_model()
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    with pytest.raises(error, match=match):
        model.fit(x, y, verbose=0)


@pytest.mark.parametrize("kwargs, match", [
    ({"batch_size": 0}, r"'batch_size' of fit\(\): expected a positive integer\. Received: batch_size=0\."),
    ({"epochs": -1}, r"'epochs' of fit\(\): expected a non-negative integer"),
    ({"verbose": 3}, r"'verbose' of fit\(\): expected 0, 1, 2 or 'auto'\. Received: verbose=3\."),
    ({"validation_split": 1.0}, r"'validation_split' of fit\(\): expected a number in \[0, 1\)"),
    ({"validation_split": 0.01}, r"validation_split=0\.01 leaves an empty training or validation set for 40"),
    ({"validation_data": (np.zeros((2, 6, 6, 2)),)}, r"validation_data to be a tuple \(x_val, y_val\)"),
    ({"validation_data": (np.zeros((2, 6, 6, 2)), np.array([0, 7]))},
     r"fit\(\) validation_data expected class labels in \[0, 3\)"),
    ({"callbacks": [print]}, r"pycnn\.callbacks\.Callback objects"),
])
def test_fit_validates_arguments(kwargs, match):
    x, y = tiny_data()
    model = tiny_model()
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    with pytest.raises((ValueError, TypeError), match=match):
        model.fit(x, y, **{"verbose": 0, **kwargs})


def test_validation_split_holds_out_the_last_samples():
    x, y = tiny_data(40)
    model = tiny_model()
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    seen = {}
    probe = callbacks.LambdaCallback(on_train_begin=lambda logs=None: seen.update(probe.params))
    history = model.fit(x, y, epochs=1, batch_size=8, validation_split=0.25, verbose=0, callbacks=[probe])
    assert seen["samples"] == 30 and seen["steps"] == 4
    # val_loss is the loss on x[30:] with the weights at the end of the epoch
    assert history.history["val_loss"][0] == pytest.approx(model.evaluate(x[30:], y[30:])[0], rel=1e-6)
    assert history.history["val_loss"][0] != pytest.approx(model.evaluate(x[:30], y[:30])[0], rel=1e-6)


# --------------------------------------------------------------------------- seeding

def _run(seed):
    utils.clear_session()
    utils.set_random_seed(seed)
    x, y = tiny_data(48)
    model = tiny_model(dropout=0.3)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(x, y, epochs=2, batch_size=8, verbose=0)
    return model.get_weights(), history.history


def test_set_random_seed_makes_training_repeatable():
    w1, h1 = _run(11)
    w2, h2 = _run(11)
    w3, h3 = _run(12)
    assert h1 == h2
    for a, b in zip(w1, w2):
        np.testing.assert_array_equal(a, b)
    assert h1 != h3 and any(not np.array_equal(a, b) for a, b in zip(w1, w3))
    with pytest.raises(ValueError, match=r"set_random_seed\(\) expected a non-negative integer\. Received: seed=-1\."):
        utils.set_random_seed(-1)
    with pytest.raises(TypeError, match=r"Received: seed=1\.5"):
        utils.set_random_seed(1.5)


# --------------------------------------------------------------------------- callbacks

def test_callback_hooks_run_in_keras_order():
    x, y = tiny_data(20)
    events = []
    cb = callbacks.LambdaCallback(
        on_train_begin=lambda logs=None: events.append("train_begin"),
        on_epoch_begin=lambda epoch, logs=None: events.append(f"epoch_begin {epoch}"),
        on_batch_end=lambda batch, logs: events.append(f"batch_end {batch} {sorted(logs)}"),
        on_epoch_end=lambda epoch, logs: events.append(f"epoch_end {epoch} {sorted(logs)}"),
        on_train_end=lambda logs=None: events.append("train_end"))
    model = tiny_model()
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=2, batch_size=10, verbose=0, callbacks=[cb], validation_data=(x, y))
    assert events == ["train_begin",
                      "epoch_begin 0", "batch_end 0 ['accuracy', 'loss']", "batch_end 1 ['accuracy', 'loss']",
                      "epoch_end 0 ['accuracy', 'loss', 'val_accuracy', 'val_loss']",
                      "epoch_begin 1", "batch_end 0 ['accuracy', 'loss']", "batch_end 1 ['accuracy', 'loss']",
                      "epoch_end 1 ['accuracy', 'loss', 'val_accuracy', 'val_loss']", "train_end"]


class FakeModel:
    def __init__(self):
        self.stop_training = False
        self.weights = [np.zeros(1)]

    def get_weights(self):
        return [w.copy() for w in self.weights]

    def set_weights(self, weights):
        self.weights = [w.copy() for w in weights]


def _feed(cb, model, values, key="val_loss"):
    cb.set_model(model)
    cb.on_train_begin()
    for epoch, value in enumerate(values):
        model.weights = [np.array([float(epoch)])]
        cb.on_epoch_end(epoch, {key: value})
        if model.stop_training:
            return epoch
    return None


def test_early_stopping_semantics():
    # patience=N: stops after N epochs in a row without improvement
    assert _feed(callbacks.EarlyStopping(patience=1), FakeModel(), [1.0, 0.8, 0.9, 0.85, 0.7]) == 2
    assert _feed(callbacks.EarlyStopping(patience=2), FakeModel(), [1.0, 0.8, 0.9, 0.7]) is None
    assert _feed(callbacks.EarlyStopping(patience=2), FakeModel(), [1.0, 0.8, 0.9, 0.7, 0.75, 0.76, 0.5]) == 5
    # min_delta: 0.79 is not better than 0.8 by more than 0.05
    assert _feed(callbacks.EarlyStopping(patience=0, min_delta=0.05), FakeModel(), [1.0, 0.8, 0.79]) == 2
    # mode 'auto' maximises accuracies
    es = callbacks.EarlyStopping(monitor="val_accuracy", patience=0)
    assert es.mode == "max" and _feed(es, FakeModel(), [0.5, 0.6, 0.55], key="val_accuracy") == 2
    # restore_best_weights: the weights of the best epoch (1) come back
    model = FakeModel()
    es = callbacks.EarlyStopping(patience=2, restore_best_weights=True)
    assert _feed(es, model, [1.0, 0.5, 0.6, 0.7]) == 3
    assert model.weights[0][0] == 1.0 and es.best_epoch == 1 and es.stopped_epoch == 3
    with pytest.warns(RuntimeWarning, match=r"monitoring 'val_loss', which is not in the epoch logs"):
        assert _feed(callbacks.EarlyStopping(), FakeModel(), [1.0], key="loss") is None
    with pytest.raises(ValueError, match=r"'mode' of EarlyStopping: expected 'auto', 'min' or 'max'"):
        callbacks.EarlyStopping(mode="up")
    with pytest.raises(ValueError, match=r"'patience' of EarlyStopping"):
        callbacks.EarlyStopping(patience=-1)


def test_early_stopping_stops_fit():
    x, y = tiny_data()
    model = tiny_model()
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    # a min_delta no loss can beat: epoch 0 sets the best, epoch 1 does not improve -> stop
    history = model.fit(x, y, epochs=10, verbose=0,
                        callbacks=[callbacks.EarlyStopping(monitor="loss", patience=0, min_delta=1e9)])
    assert history.epoch == [0, 1] and len(history.history["loss"]) == 2


def test_terminate_on_nan_stops_at_the_first_bad_batch(capsys):
    x, y = tiny_data(40)
    x[0] = np.nan
    batches = []
    # no ReLU in front of the loss: the NaN input must reach it
    model = Sequential([layers.Input((6, 6, 2)), layers.Flatten(), layers.Dense(3, activation="softmax")])
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    history = model.fit(x, y, epochs=3, batch_size=8, shuffle=False, verbose=0,
                        callbacks=[callbacks.TerminateOnNaN(),
                                   callbacks.LambdaCallback(on_batch_end=lambda b, logs: batches.append(b))])
    assert batches == [0] and history.epoch == [0]
    assert np.isnan(history.history["loss"][0])
    assert "Batch 0: Invalid loss, terminating training" in capsys.readouterr().out


def test_model_checkpoint_saves_the_best_weights(tmp_path):
    x, y = tiny_data()
    model = tiny_model()
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    path = tmp_path / "best.npz"
    ckpt = callbacks.ModelCheckpoint(path, monitor="val_loss", save_best_only=True)
    ckpt.set_model(model)
    ckpt.on_train_begin()
    snapshots = []
    for epoch, val_loss in enumerate([1.0, 2.0, 0.5, 0.7]):
        model.set_weights([w + 1.0 for w in model.get_weights()])
        snapshots.append(model.get_weights())
        ckpt.on_epoch_end(epoch, {"val_loss": val_loss})
        restored = tiny_model()
        restored.load_weights(path)
        best = snapshots[[0, 0, 2, 2][epoch]]
        for a, b in zip(restored.get_weights(), best):
            np.testing.assert_array_equal(a, b)
    # every epoch, with the epoch and logs in the file name, during a real fit
    pattern = str(tmp_path / "w-{epoch:02d}-{loss:.2f}.npz")
    model.fit(x, y, epochs=2, verbose=0, callbacks=[callbacks.ModelCheckpoint(pattern, monitor="loss")])
    names = sorted(p.name for p in tmp_path.glob("w-*.npz"))
    assert len(names) == 2 and names[0].startswith("w-01-") and names[1].startswith("w-02-")
    assert not list(tmp_path.glob("*.tmp"))


# --------------------------------------------------------------------------- progress output

BAR_LINE = re.compile(r"^(\d+)/(\d+) [━─]{20} \d+s \d+(?:ms|us|s)/step - accuracy: \d\.\d{4} - loss: \d\.\d{4}"
                      r"(?: - val_accuracy: \d\.\d{4} - val_loss: \d\.\d{4})?$")


def test_fit_output_when_stdout_is_not_a_terminal(capsys):
    x, y = tiny_data(40)
    model = tiny_model()
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=2, batch_size=8, verbose=1, validation_data=(x, y))
    out = capsys.readouterr().out
    assert "\r" not in out
    lines = out.splitlines()
    assert lines[0] == "Epoch 1/2" and lines[2] == "Epoch 2/2" and len(lines) == 4
    for line in (lines[1], lines[3]):
        m = BAR_LINE.match(line)
        assert m and m.group(1) == m.group(2) == "5", line
        assert "━" * 20 in line and "val_accuracy" in line

    model.fit(x, y, epochs=2, batch_size=8, verbose=2)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "Epoch 1/2" and len(lines) == 4
    assert re.match(r"^5/5 - \d+s - \d+(?:ms|us|s)/step - accuracy: \d\.\d{4} - loss: \d\.\d{4}$", lines[1])

    model.fit(x, y, epochs=2, verbose=0)
    model.evaluate(x, y, verbose=0)
    model.predict(x, verbose=0)
    assert capsys.readouterr().out == ""

    # evaluate and predict show a bar by default (verbose='auto'), as in Keras 3.
    model.evaluate(x, y)
    model.predict(x)
    model.predict(b for b in (x[:24], x[24:]))  # a generator: the step count is unknown
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and lines[0].startswith("2/2 ━━━━") and lines[1].startswith("2/2 ━━━━"), lines
    assert "loss: " in lines[0] and "loss" not in lines[1] and lines[2].startswith("2/Unknown ━━━━")

    model.evaluate(x, y, batch_size=16, verbose=1)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 and BAR_LINE.match(lines[0]) and lines[0].startswith("3/3 ")


class FakeTerminal(io.StringIO):
    def isatty(self):
        return True


def test_fit_output_on_a_terminal_redraws_in_place(monkeypatch):
    x, y = tiny_data(40)
    model = tiny_model()
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    term = FakeTerminal()
    monkeypatch.setattr(sys, "stdout", term)
    model.fit(x, y, epochs=1, batch_size=8, verbose=1)
    out = term.getvalue()
    assert out.startswith("Epoch 1/1\n\r") and out.endswith("\n")
    frames = [f.rstrip() for f in out.split("\n")[1].split("\r") if f]
    assert BAR_LINE.match(frames[-1]) and frames[-1].startswith("5/5 ━━━━━━━━━━━━━━━━━━━━ ")
    assert all(BAR_LINE.match(f) for f in frames)


def test_progbar_formats():
    stream = io.StringIO()
    bar = Progbar(782, verbose=1, stream=stream, interactive=True, interval=0.0)
    bar.update(1, {"accuracy": 0.1, "loss": 2.3})
    bar.update(40, {"accuracy": 0.41, "loss": 1.62})
    frames = stream.getvalue().split("\r")[1:]
    assert re.fullmatch(r" 40/782 ━─{19} \d+s \d+(?:ms|us|s)/step - accuracy: 0\.4100 - loss: 1\.6200 *", frames[1])
    half = io.StringIO()
    bar = Progbar(10, verbose=1, stream=half, interactive=True, interval=0.0)
    bar.update(5, {"loss": 1.0})
    assert "━" * 10 + "─" * 10 in half.getvalue()
    quiet = io.StringIO()
    bar = Progbar(10, verbose=1, stream=quiet, interactive=False)
    bar.update(5, {"loss": 1.0})
    assert quiet.getvalue() == ""
    bar.update(10, {"loss": 1.0}, finalize=True)
    assert quiet.getvalue().count("\n") == 1 and "\r" not in quiet.getvalue()
    assert format_value(0.41) == "0.4100" and format_value(1.2e-4) == "1.2000e-04"
    assert format_value(float("nan")) == "nan"
    assert format_step_time(0.041) == "41ms/step" and format_step_time(2.0) == "2s/step"
    assert format_step_time(0.0005) == "500us/step"
    assert format_eta(3.4) == "3s" and format_eta(125) == "2:05" and format_eta(3725) == "1:02:05"


# --------------------------------------------------------------------------- PyTorch cross-check

def test_one_lenet_step_matches_pytorch():
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    rng = np.random.default_rng(8)
    x = rng.random((8, 32, 32, 3)).astype(np.float32)
    y = rng.integers(0, 10, 8)
    model = models.lenet()
    k1, b1, k2, b2, d1, c1, d2, c2, d3, c3 = [torch.tensor(w, dtype=torch.float64, requires_grad=True)
                                              for w in model.get_weights()]
    xt = torch.tensor(x, dtype=torch.float64).permute(0, 3, 1, 2)
    h = F.max_pool2d(F.relu(F.conv2d(xt, k1.permute(3, 2, 0, 1), b1, padding=2)), 2)
    h = F.max_pool2d(F.relu(F.conv2d(h, k2.permute(3, 2, 0, 1), b2)), 2)
    h = h.permute(0, 2, 3, 1).reshape(8, -1)  # flatten in NHWC order, as pycnn (and Keras) do
    h = F.relu(h @ d1 + c1)
    h = F.relu(h @ d2 + c2)
    loss = F.cross_entropy(h @ d3 + c3, torch.tensor(y))
    loss.backward()
    expected = [t.grad.numpy() for t in (k1, b1, k2, b2, d1, c1, d2, c2, d3, c3)]

    before = model.get_weights()
    model.compile(optimizer=optimizers.SGD(learning_rate=0.1), loss="sparse_categorical_crossentropy")
    value = model.train_on_batch(x, y)
    assert value == pytest.approx(loss.item(), rel=1e-5)
    after = model.get_weights()
    for w0, w1, e in zip(before, after, expected):  # the SGD step's gradients: (w0 - w1) / 0.1
        np.testing.assert_allclose((w0.astype(np.float64) - w1) / 0.1, e, rtol=1e-3, atol=2e-5 * np.abs(e).max())
    for w0, w1, e in zip(before, after, expected):
        np.testing.assert_allclose(w1, w0 - 0.1 * e, rtol=1e-5, atol=1e-6)
