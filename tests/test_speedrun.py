"""The speed-run recipe's pieces, each against a plain statement of its rule (and Keras where
Keras has it): PiecewiseLinearDecay, VarianceScaling, Dirac, the patch-whitening kernel,
reflected translations, the alternating flip, test-time augmentation, Lookahead,
set_weight_trainable, the network, and a smoke run of the whole recipe."""
from __future__ import annotations

import io
import math
import os
from pathlib import Path

import numpy as np
import pytest

import pycnn
from pycnn import augment, callbacks, initializers, layers, schedules, tta
from pycnn.recipes import speedrun


# ----------------------------------------------------------------------------- schedule

def test_piecewise_linear_decay_interpolates_and_holds_the_ends():
    s = schedules.PiecewiseLinearDecay([10, 20, 60], [0.2, 1.0, 0.1])
    assert s(0) == 0.2 and s(10) == 0.2 and s(60) == pytest.approx(0.1) and s(1000) == pytest.approx(0.1)
    assert s(15) == pytest.approx(0.6) and s(40) == pytest.approx(0.55)
    twin = schedules.deserialize(schedules.serialize(s))
    assert [twin(t) for t in range(70)] == [s(t) for t in range(70)]
    with pytest.raises(ValueError, match="increasing boundaries"):
        schedules.PiecewiseLinearDecay([0, 5, 5], [1, 1, 1])
    with pytest.raises(ValueError, match="one value per boundary"):
        schedules.PiecewiseLinearDecay([0, 5], [1.0])


# ----------------------------------------------------------------------------- initialisers

@pytest.mark.parametrize("mode", ["fan_in", "fan_out", "fan_avg"])
@pytest.mark.parametrize("distribution", ["uniform", "truncated_normal", "untruncated_normal"])
def test_variance_scaling_has_the_stated_variance(mode, distribution):
    pycnn.set_random_seed(0)
    shape = (3, 3, 40, 60)
    values = initializers.VarianceScaling(2.0, mode, distribution)(shape)
    n = {"fan_in": 9 * 40, "fan_out": 9 * 60, "fan_avg": 9 * 50}[mode]
    assert values.dtype == np.float32 and values.shape == shape
    assert values.var() == pytest.approx(2.0 / n, rel=0.05)
    if distribution == "uniform":
        assert np.abs(values).max() <= math.sqrt(6.0 / n)
    if distribution == "truncated_normal":
        assert np.abs(values).max() <= 2 * math.sqrt(2.0 / n) / 0.87962566103423978 + 1e-6


def test_dirac_passes_the_first_channels_through():
    pycnn.set_random_seed(1)
    kernel = initializers.Dirac()((3, 3, 4, 6))
    conv = layers.Conv2D(6, 3, padding="same", use_bias=False, kernel_initializer=initializers.Dirac())
    x = np.random.default_rng(0).standard_normal((2, 5, 5, 4)).astype(np.float32)
    y = conv(x)
    np.testing.assert_array_equal(y[..., :4], x)
    expected = np.zeros((3, 3, 4, 4), np.float32)
    expected[1, 1, np.arange(4), np.arange(4)] = 1
    np.testing.assert_array_equal(kernel[..., :4], expected)
    assert np.abs(kernel[..., 4:]).max() > 0 and np.abs(kernel[..., 4:]).max() <= 1 / math.sqrt(36)
    # The serialized form is the layer's config, and the layer round-trips through it.
    config = conv.get_config()
    assert config["kernel_initializer"]["class_name"] == "Dirac"
    assert layers.Conv2D.from_config(config).get_config() == config
    with pytest.raises(ValueError, match="conv kernel shape"):
        initializers.Dirac()((4, 6))


def test_variance_scaling_matches_keras_statistics_when_installed():
    pytest.importorskip("tensorflow", reason="TensorFlow is an optional cross-check")
    import keras

    theirs = np.asarray(keras.initializers.VarianceScaling(1 / 3, "fan_in", "uniform", seed=0)((5, 5, 30, 40)))
    ours = initializers.VarianceScaling(1 / 3, "fan_in", "uniform")((5, 5, 30, 40))
    assert np.abs(ours).max() <= np.abs(theirs).max() * 1.0001 and ours.var() == pytest.approx(theirs.var(), rel=0.05)


def test_patch_whitening_kernel_whitens_the_patches():
    rng = np.random.default_rng(2)
    mix = rng.standard_normal((3, 3)) + np.eye(3) * 2
    x = (rng.standard_normal((40, 9, 9, 3)) @ mix).astype(np.float32)  # correlated channels
    eps = 1e-6
    kernel = initializers.patch_whitening_kernel(x, 2, eps)
    assert kernel.shape == (2, 2, 3, 24)
    y = pycnn.ops.run("conv2d", [x], [kernel, None], attrs={"padding": "valid"})
    first = y[..., :12].reshape(-1, 12).astype(np.float64)
    covariance = first.T @ first / first.shape[0]
    np.testing.assert_allclose(covariance, np.eye(12), atol=2e-3)  # whitened
    np.testing.assert_array_equal(kernel[..., 12:], -kernel[..., :12])
    # Largest eigenvalue first: the filters' norms grow (1 / sqrt(eigenvalue)).
    norms = np.linalg.norm(kernel[..., :12].reshape(12, 12), axis=0)
    assert np.all(np.diff(norms) >= -1e-6)
    with pytest.raises(ValueError, match="finite images"):
        initializers.patch_whitening_kernel(np.full((1, 4, 4, 3), np.nan), 2)
    with pytest.raises(ValueError, match=r"expected images \(N, H, W, C\)"):
        initializers.patch_whitening_kernel(np.zeros((4, 4, 3)), 2)


# ----------------------------------------------------------------------------- augmentation

def test_translate_reads_shifted_pixels_with_reflected_borders():
    x = np.arange(2 * 5 * 5 * 1, dtype=np.float32).reshape(2, 5, 5, 1)
    shifts = np.array([[1, -2], [0, 0]])
    out = augment.translate(x, shifts, mode="reflect")
    padded = np.pad(x[0, :, :, 0], 2, mode="reflect")
    for i in range(5):
        for j in range(5):
            assert out[0, i, j, 0] == padded[i - 1 + 2, j + 2 + 2]
    np.testing.assert_array_equal(out[1], x[1])
    zeros = augment.translate(x, shifts, mode="constant")
    assert zeros[0, 0, 0, 0] == 0 and zeros[0, 1, 0, 0] == x[0, 0, 2, 0]
    with pytest.raises(ValueError, match="shifts smaller than the image"):
        augment.translate(x, np.array([[5, 0], [0, 0]]))
    with pytest.raises(ValueError, match="integer shifts of shape"):
        augment.translate(x, np.zeros((2, 2), np.float32))


def test_random_translate_stays_within_the_shift():
    x = np.random.default_rng(3).random((64, 8, 8, 2)).astype(np.float32)
    out = augment.random_translate(x, 2, rng=0)
    rng = np.random.default_rng(0)
    np.testing.assert_array_equal(out, augment.translate(x, rng.integers(-2, 3, size=(64, 2))))


def test_alternating_flip_mirrors_each_image_every_other_epoch():
    x = np.random.default_rng(4).random((100, 4, 4, 3)).astype(np.float32)
    flip = augment.AlternatingFlip(100, seed=5)
    e0, e1, e2 = flip(x, 0), flip(x, 1), flip(x, 2)
    np.testing.assert_array_equal(e0, e2)
    mirrored0 = np.array([np.array_equal(e0[i], x[i, :, ::-1]) for i in range(100)])
    mirrored1 = np.array([np.array_equal(e1[i], x[i, :, ::-1]) for i in range(100)])
    assert np.all(mirrored0 != mirrored1) and 30 < mirrored0.sum() < 70
    with pytest.raises(ValueError, match="the 100 images it was made for"):
        flip(x[:5], 0)


# ----------------------------------------------------------------------------- test-time augmentation

def _classifier(seed=0):
    pycnn.set_random_seed(seed)
    model = pycnn.Sequential([layers.Input((6, 6, 2)), layers.Conv2D(4, 3, activation="relu"), layers.Flatten(),
                              layers.Dense(3, activation="softmax")])
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def test_tta_averages_the_outputs_of_the_views():
    rng = np.random.default_rng(6)
    x = rng.standard_normal((10, 6, 6, 2)).astype(np.float32)
    y = rng.integers(0, 3, 10)
    model = _classifier()
    plain = model.predict(x, verbose=0)
    mirrored = model.predict(x[:, :, ::-1], verbose=0)
    np.testing.assert_allclose(model.predict(x, verbose=0, tta="flip"), 0.5 * (plain + mirrored), rtol=1e-6)
    down = model.predict(augment.translate(x, np.ones((10, 2), np.int64)), verbose=0)
    down_m = model.predict(augment.translate(x, np.ones((10, 2), np.int64))[:, :, ::-1], verbose=0)
    up = model.predict(augment.translate(x, -np.ones((10, 2), np.int64)), verbose=0)
    up_m = model.predict(augment.translate(x, -np.ones((10, 2), np.int64))[:, :, ::-1], verbose=0)
    want = 0.25 * (plain + mirrored) + 0.125 * (down + down_m + up + up_m)
    got = model.predict(x, batch_size=4, verbose=0, tta="flip_translate")
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)
    loss, accuracy = model.evaluate(x, y, batch_size=4, verbose=0, tta="flip_translate")
    assert accuracy == pytest.approx(np.mean(want.argmax(1) == y))
    assert loss == pytest.approx(-np.mean(np.log(want[np.arange(10), y])), rel=1e-5)
    with pytest.raises(ValueError, match="tta to be None, 'flip', 'flip_translate'"):
        model.predict(x, tta="rotate")
    assert tta.check(None, "x") is None


# ----------------------------------------------------------------------------- Lookahead, frozen weights

def test_lookahead_moves_slow_weights_and_hands_them_back():
    rng = np.random.default_rng(7)
    x, y = rng.standard_normal((16, 6, 6, 2)).astype(np.float32), rng.integers(0, 3, 16)
    model = _classifier(1)
    model.build((None, 6, 6, 2))
    start = [w.copy() for w in model.weights]
    trace = []

    class Record(callbacks.Callback):
        def on_batch_end(self, batch, logs=None):
            trace.append([w.copy() for w in self.model.weights])

    lookahead = callbacks.Lookahead(sync_period=2, slow_step_size=0.5, start_epoch=0)
    model.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0, callbacks=[Record(), lookahead])
    # Record sees each step before Lookahead's sync: step 2 takes the copy, step 4 moves it half way.
    slow = trace[1]
    np.testing.assert_array_equal(lookahead._slow[0], slow[0] + np.float32(0.5) * (trace[3][0] - slow[0]))
    np.testing.assert_array_equal(model.weights[0], lookahead._slow[0])
    assert not np.array_equal(model.weights[0], start[0])
    with pytest.raises(ValueError, match="slow_step_size"):
        callbacks.Lookahead(slow_step_size=2.0)


def test_set_weight_trainable_freezes_one_weight():
    rng = np.random.default_rng(8)
    x, y = rng.standard_normal((16, 6, 6, 2)).astype(np.float32), rng.integers(0, 3, 16)
    model = _classifier(2)
    model.build((None, 6, 6, 2))
    conv = model.layers[0]
    kernel = conv.weights[0].copy()
    conv.set_weight_trainable("kernel", False)
    assert len(model.trainable_weights) == 3
    model.fit(x, y, batch_size=4, epochs=1, verbose=0)
    np.testing.assert_array_equal(conv.weights[0], kernel)
    conv.set_weight_trainable("kernel", True)
    model.fit(x, y, batch_size=4, epochs=1, verbose=0)
    assert not np.array_equal(conv.weights[0], kernel)
    with pytest.raises(ValueError, match="no weight named 'gamma'"):
        conv.set_weight_trainable("gamma", False)
    bn = layers.BatchNormalization()
    bn.build((None, 4))
    with pytest.raises(ValueError, match="created non-trainable"):
        bn.set_weight_trainable("moving_mean", True)


# ----------------------------------------------------------------------------- the network and the recipe

def test_speedrun_network_shapes_and_parameters():
    model = pycnn.models.speedrun_cifar10()
    assert model.count_params() == 1_973_944
    assert model.output_shape == (None, 10)
    assert [l.name for l in model.layers][:3] == ["whiten", "group1_conv1", "group1_pool"]
    conv = model.get_layer("group2_conv1")
    kernel = conv.weights[0]
    np.testing.assert_array_equal(kernel[1, 1, np.arange(64), np.arange(64)], np.ones(64))


def test_speedrun_network_matches_keras_when_installed():
    pytest.importorskip("tensorflow", reason="TensorFlow is an optional cross-check")
    import keras

    ours = pycnn.models.speedrun_cifar10()

    def group(i, w):
        return [keras.layers.Conv2D(w, 3, padding="same", use_bias=False), keras.layers.MaxPooling2D(2),
                keras.layers.BatchNormalization(momentum=0.6, epsilon=1e-12, scale=False),
                keras.layers.Activation("gelu"), keras.layers.Conv2D(w, 3, padding="same", use_bias=False),
                keras.layers.BatchNormalization(momentum=0.6, epsilon=1e-12, scale=False),
                keras.layers.Activation("gelu")]

    theirs = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Conv2D(24, 2, activation="gelu"),
                               *group(1, 64), *group(2, 256), *group(3, 256), keras.layers.MaxPooling2D(3),
                               keras.layers.Flatten(), keras.layers.Dense(10, use_bias=False),
                               keras.layers.Rescaling(1 / 9)])
    assert theirs.count_params() == ours.count_params()
    theirs.set_weights(ours.get_weights())
    x = np.random.default_rng(9).standard_normal((4, 32, 32, 3)).astype(np.float32)
    np.testing.assert_allclose(ours.predict(x, verbose=0), theirs.predict(x, verbose=0), rtol=1e-4, atol=1e-5)


REAL_DATA = os.environ.get("PYCNN_DATA_DIR")


@pytest.mark.skipif(not REAL_DATA or not (Path(REAL_DATA) / "cifar-10-batches-bin").is_dir(),
                    reason="PYCNN_DATA_DIR is unset or has no cifar-10-batches-bin/ (set PYCNN_DATA_DIR=../shared/data)")
def test_recipe_smoke_run_learns():
    (x_train, y_train), (x_test, y_test) = pycnn.datasets.cifar10.load_data()
    out = io.StringIO()
    # A narrow network (width 16: a sixteenth of the arithmetic) for 4 epochs of 2048 images.
    result = speedrun.run(((x_train[:2048], y_train[:2048]), (x_test[:500], y_test[:500])), seed=0, epochs=4,
                          batch_size=256, width=16, whiten_bias_epochs=2, lookahead_start_epoch=1, out=out)
    assert result["steps"] == 32
    assert "epoch  4" in out.getvalue() and "with test-time augmentation" in out.getvalue()
    loss = result["history"]["loss"]
    assert loss[-1] < loss[0] and result["tta_accuracy"] > 0.25  # chance: 0.1
    whiten = result["model"].get_layer("whiten")
    assert whiten.trainable_weights == []  # the kernel frozen from the start, the bias after its epochs
    with pytest.raises(ValueError, match="unknown hyper-parameters"):
        speedrun.run(((x_train[:8], y_train[:8]), (x_test[:8], y_test[:8])), learning_rte=1.0)


@pytest.mark.skipif(not REAL_DATA or not (Path(REAL_DATA) / "cifar-10-batches-bin").is_dir(),
                    reason="PYCNN_DATA_DIR is unset or has no cifar-10-batches-bin/ (set PYCNN_DATA_DIR=../shared/data)")
def test_cli_recipe_runs_and_writes_its_history(tmp_path, capsys):
    from pycnn import cli

    history = tmp_path / "h.json"
    assert cli.main(["train", "--recipe", "speedrun", "--limit-train", "256", "--limit-test", "64", "--epochs", "1",
                     "--seed", "3", "--history", str(history)]) == 0
    out = capsys.readouterr().out
    assert "epoch  1" in out and "with test-time augmentation" in out and "Wall time" in out
    import json
    payload = json.loads(history.read_text())
    assert payload["steps"] == 1 and payload["recipe"] == "speedrun" and len(payload["epoch_seconds"]) == 1


@pytest.mark.parametrize("extra, match", [
    (["--optimizer", "sgd"], "fixes the model, optimizer.*Received: --optimizer"),
    (["--dataset", "mnist"], "trains on cifar10. Received: --dataset mnist"),
])
def test_cli_recipe_refuses_what_it_fixes(extra, match, capsys):
    from pycnn import cli

    assert cli.main(["train", "--recipe", "speedrun"] + extra) != 0
    assert __import__("re").search(match, capsys.readouterr().err)
