"""RandomFlip, RandomCrop and RandomTranslation: against the loop references of
the float64 oracle (tests/oracle) with the same draws, fill modes on a hand-checked row, seeding,
inference behaviour, native twins, gradients, errors, configs, and an optional cross-check
with Keras 3 (skipped without TensorFlow)."""
from __future__ import annotations

import numpy as np
import pytest

import pycnn
import oracle as ref
import oracle as rs
from pycnn import layers, utils
from pycnn.layers.preprocessing import translate, translate_backward
from pycnn.models import Sequential

FWD = dict(rtol=1e-5, atol=1e-5)


def images(rng, shape=(5, 6, 7, 2)):
    return rng.standard_normal(shape).astype(np.float32)


# ----------------------------------------------------------------------------- RandomFlip

@pytest.mark.parametrize("mode", ["horizontal", "vertical", "horizontal_and_vertical"])
def test_random_flip_matches_reference_with_the_same_draws(mode, rng):
    x = images(rng, (9, 4, 5, 3))
    layer = layers.RandomFlip(mode, seed=7)
    out = layer(x, training=True)
    flips = np.random.default_rng(7).random(9) <= 0.5
    assert 0 < flips.sum() < 9
    ref.assert_close(out, rs.flip(x, flips, mode), **FWD)
    G = images(rng, out.shape)
    ref.assert_close(layer.backward(G), rs.flip(G, flips, mode), **FWD)  # a flip is its own transpose
    np.testing.assert_array_equal(layer(x), x)  # inference: identity


def test_random_flip_draws_from_the_global_generator():
    x = images(np.random.default_rng(0), (16, 3, 3, 1))
    layer = layers.RandomFlip("horizontal")
    utils.set_random_seed(5)
    a = layer(x, training=True)
    b = layer(x, training=True)
    utils.set_random_seed(5)
    np.testing.assert_array_equal(layer(x, training=True), a)
    assert not np.array_equal(a, b)


# ----------------------------------------------------------------------------- RandomCrop

def test_random_crop_matches_reference_with_the_same_draws(rng):
    x = images(rng, (6, 9, 8, 2))
    layer = layers.RandomCrop(5, 4, seed=3)
    out = layer(x, training=True)
    g = np.random.default_rng(3)
    tops, lefts = g.integers(0, 5, 6), g.integers(0, 5, 6)
    ref.assert_close(out, rs.crop(x, tops, lefts, 5, 4), **FWD)
    G = images(rng, out.shape)
    want = np.zeros(x.shape)
    for i in range(6):
        want[i, tops[i]:tops[i] + 5, lefts[i]:lefts[i] + 4] = G[i]
    ref.assert_close(layer.backward(G), want, **FWD)


def test_random_crop_at_inference_takes_the_centre(rng):
    x = images(rng, (2, 9, 8, 1))
    layer = layers.RandomCrop(4, 4)
    np.testing.assert_array_equal(layer(x), x[:, 2:6, 2:6])
    G = images(rng, (2, 4, 4, 1))
    ref.assert_close(layer.backward(G), rs.cropping2d_backward(G, x.shape, 2, 3, 2, 2), **FWD)
    same = layers.RandomCrop(9, 8)
    np.testing.assert_array_equal(same(x), x)
    np.testing.assert_array_equal(same(x, training=True), x)


def test_random_crop_windows_cover_every_offset():
    x = np.arange(6, dtype=np.float32).reshape(1, 1, 6, 1).repeat(400, axis=0)
    out = layers.RandomCrop(1, 3, seed=0)(x, training=True)
    assert sorted(set(out[:, 0, 0, 0].tolist())) == [0.0, 1.0, 2.0, 3.0]


def test_random_crop_rejects_smaller_inputs():
    with pytest.raises(ValueError, match=r"expected images of at least 5x4 pixels.*\(None, 4, 8, 1\).*does not resize"):
        layers.RandomCrop(5, 4)(np.zeros((2, 4, 8, 1), np.float32), training=True)


# ----------------------------------------------------------------------------- RandomTranslation

ROW = np.array([1.0, 2.0, 3.0, 4.0], np.float32).reshape(1, 1, 4, 1)  # (a b c d)


@pytest.mark.parametrize("fill_mode, right2, left2", [
    ("reflect", [2, 1, 1, 2], [3, 4, 4, 3]),     # (d c b a | a b c d | d c b a)
    ("wrap", [3, 4, 1, 2], [3, 4, 1, 2]),        # (a b c d | a b c d | a b c d)
    ("nearest", [1, 1, 1, 2], [3, 4, 4, 4]),     # (a a a a | a b c d | d d d d)
    ("constant", [9, 9, 1, 2], [3, 4, 9, 9]),    # (k k k k | a b c d | k k k k), k = 9
])
@pytest.mark.parametrize("interpolation", ["bilinear", "nearest"])
def test_fill_modes_on_a_hand_checked_row(fill_mode, right2, left2, interpolation):
    def shift(dx):
        out, _ = translate(ROW, [0.0], [dx], fill_mode, interpolation, fill_value=9.0)
        return out.ravel().tolist()

    assert shift(2.0) == right2
    assert shift(-2.0) == left2
    assert shift(0.0) == [1, 2, 3, 4]


def test_bilinear_half_pixel_shift_by_hand():
    out, _ = translate(ROW, [0.0], [0.5], "constant", "bilinear", fill_value=0.0)
    np.testing.assert_allclose(out.ravel(), [0.5, 1.5, 2.5, 3.5])
    out, _ = translate(ROW, [0.0], [-0.25], "reflect", "bilinear")
    np.testing.assert_allclose(out.ravel(), [1.25, 2.25, 3.25, 4.0])
    col = ROW.reshape(1, 4, 1, 1)
    out, _ = translate(col, [1.0], [0.0], "nearest", "bilinear")
    np.testing.assert_allclose(out.ravel(), [1, 1, 2, 3])


@pytest.mark.parametrize("fill_mode", ["reflect", "wrap", "constant", "nearest"])
@pytest.mark.parametrize("interpolation", ["bilinear", "nearest"])
def test_translate_matches_loop_reference(fill_mode, interpolation, rng):
    x = images(rng, (4, 5, 6, 2))
    dy = rng.uniform(-1.0, 1.0, 4) * 5 * 1.7   # beyond one image size too (reflect folds twice)
    dx = rng.uniform(-1.0, 1.0, 4) * 6 * 1.7
    dy[0], dx[0] = 2.0, -3.0                    # and whole pixels
    out, _ = translate(x, dy, dx, fill_mode, interpolation, fill_value=-0.5)
    ref.assert_close(out, rs.translate(x, dy, dx, fill_mode, interpolation, fill_value=-0.5), **FWD)


@pytest.mark.parametrize("fill_mode", ["reflect", "wrap", "constant"])
def test_translate_backward_is_the_transpose(fill_mode, rng):
    shape = (2, 4, 3, 1)
    dy, dx = np.array([1.3, -0.6]), np.array([-2.2, 0.4])
    x = images(rng, shape)
    _, taps = translate(x, dy, dx, fill_mode, "bilinear", fill_value=0.0)
    J = rs.linear_map_matrix(lambda a: rs.translate(a, dy, dx, fill_mode, "bilinear", 0.0), shape)
    G = images(rng, shape)
    ref.assert_close(translate_backward(G, taps).reshape(-1), J.T @ G.reshape(-1).astype(np.float64),
                     rtol=1e-5, atol=1e-5)


def test_random_translation_layer_uses_its_draws(rng):
    x = images(rng, (5, 6, 7, 2))
    layer = layers.RandomTranslation((-0.2, 0.3), 0.25, fill_mode="constant", fill_value=1.0, seed=11)
    out = layer(x, training=True)
    g = np.random.default_rng(11)
    dy = g.uniform(-0.2, 0.3, 5) * 6
    dx = g.uniform(-0.25, 0.25, 5) * 7
    ref.assert_close(out, rs.translate(x, dy, dx, "constant", "bilinear", 1.0), **FWD)
    G = images(rng, out.shape)
    _, taps = translate(x, dy, dx, "constant", "bilinear", 1.0)
    ref.assert_close(layer.backward(G), translate_backward(G, taps), **FWD)
    np.testing.assert_array_equal(layer(x), x)  # inference: identity


def test_translation_factor_forms():
    layer = layers.RandomTranslation(-0.2, (0.3, -0.1))
    assert (layer.height_lower, layer.height_upper) == (-0.2, 0.2)
    assert (layer.width_lower, layer.width_upper) == (-0.1, 0.3)


def test_preprocessing_layers_repeat_under_set_random_seed():
    x = images(np.random.default_rng(0), (8, 6, 6, 3))
    pipeline = [layers.RandomFlip(), layers.RandomCrop(4, 5), layers.RandomTranslation(0.3, 0.3)]

    def run():
        y = x
        for layer in pipeline:
            y = layer(y, training=True)
        return y

    utils.set_random_seed(42)
    a = run()
    b = run()
    utils.set_random_seed(42)
    np.testing.assert_array_equal(run(), a)
    assert not np.array_equal(a, b)


# ----------------------------------------------------------------------------- flags, twins, models

def test_flags_and_specs():
    for layer in (layers.RandomFlip(), layers.RandomCrop(2, 2), layers.RandomTranslation(0.1, 0.1)):
        assert layer._preprocessing is True
        assert layer.spec(training=True) is None  # NumPy draws: a Python layer while training
    assert layers.RandomFlip().spec(training=False) == pycnn.ops.OpSpec("identity", {})
    assert layers.RandomTranslation(0.1, 0.1).spec(training=False) == pycnn.ops.OpSpec("identity", {})
    crop = layers.RandomCrop(32, 30)
    assert crop.spec(training=False) is None  # not built: the centre depends on the input size
    crop.build((None, 40, 40, 3))
    assert crop.spec(training=False) == pycnn.ops.OpSpec("cropping2d", {"cropping": (4, 4, 5, 5)})
    assert not layers.Rescaling(1.0)._preprocessing


def augmenting_model(seed=0):
    pycnn.set_random_seed(seed)
    return Sequential([
        layers.Input((12, 12, 3)),
        layers.Rescaling(1 / 255),
        layers.ZeroPadding2D(2),
        layers.RandomCrop(12, 12),
        layers.RandomFlip("horizontal"),
        layers.RandomTranslation(0.1, 0.1),
        layers.Conv2D(4, 3, activation="relu"),
        layers.Flatten(),
        layers.Dense(3, activation="softmax"),
    ])


def test_model_with_preprocessing_predicts_natively_and_trains(monkeypatch, native_step_calls):
    model = augmenting_model()
    rng = np.random.default_rng(3)
    x = (rng.random((20, 12, 12, 3)) * 255).astype(np.float32)
    y = rng.integers(0, 3, 20)
    monkeypatch.setenv("PYCNN_NATIVE_STEP", "1")
    native = model.predict(x, verbose=0)
    monkeypatch.setenv("PYCNN_NATIVE_STEP", "0")
    layered = model.predict(x, verbose=0)
    np.testing.assert_allclose(native, layered, rtol=1e-5, atol=1e-6)
    monkeypatch.setenv("PYCNN_NATIVE_STEP", "1")
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    h = model.fit(x, y, batch_size=10, epochs=2, verbose=0)
    assert np.all(np.isfinite(h.history["loss"]))
    # The leading preprocessing layers run in NumPy, the rest in one native call per batch.
    assert native_step_calls["n"] == 4


def test_native_training_behind_a_preprocessing_front_matches_layer_by_layer(monkeypatch, native_step_calls):
    rng = np.random.default_rng(4)
    x = (rng.random((24, 12, 12, 3)) * 255).astype(np.float32)
    y = rng.integers(0, 3, 24)
    runs = []
    for native in ("1", "0"):
        monkeypatch.setenv("PYCNN_NATIVE_STEP", native)
        pycnn.utils.set_random_seed(8)  # same weights, shuffles and random draws in both runs
        model = augmenting_model()
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        runs.append((model.fit(x, y, batch_size=8, epochs=2, verbose=0).history, model.get_weights()))
    assert native_step_calls["n"] == 6
    np.testing.assert_allclose(runs[0][0]["loss"], runs[1][0]["loss"], rtol=1e-5)
    for a, b in zip(runs[0][1], runs[1][1]):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_a_front_that_is_not_a_plain_chain_still_trains_in_one_call(monkeypatch, native_step_calls):
    x = np.random.default_rng(0).random((6, 8, 8, 3)).astype(np.float32)
    y = np.array([0, 1, 0, 1, 0, 1])
    runs = []
    for native in ("1", "0"):
        monkeypatch.setenv("PYCNN_NATIVE_STEP", native)
        pycnn.utils.set_random_seed(3)
        inp = pycnn.Input((8, 8, 3))
        flipped = layers.RandomFlip("horizontal")(inp)
        merged = layers.Add()([flipped, inp])  # reads the input again behind the random layer
        out = layers.Dense(2, activation="softmax")(layers.Flatten()(merged))
        model = pycnn.Model(inp, out)
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
        runs.append((model.fit(x, y, batch_size=3, epochs=1, verbose=0).history["loss"], model.get_weights()))
    assert native_step_calls["n"] == 2  # the flip runs ahead in NumPy; nothing before it trains
    np.testing.assert_allclose(runs[0][0], runs[1][0], rtol=1e-5)
    for a, b in zip(runs[0][1], runs[1][1]):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_cli_augmentation_is_the_old_crop_flip_with_the_same_draws():
    # The CLI's layers draw from pycnn's generator (which --seed seeds and a checkpoint stores):
    # the crop's windows, then the flips.
    from pycnn import augment, cli

    x = np.random.default_rng(0).integers(0, 256, (10, 8, 6, 3)).astype(np.uint8)
    out = pycnn.datasets.to_float(x)
    pycnn.utils.set_random_seed(5)
    for layer in cli._augmentation((8, 6, 3)):
        out = layer(out, training=True)
    g = np.random.default_rng(5)
    tops, lefts = g.integers(0, 9, 10), g.integers(0, 9, 10)
    flips = g.random(10) <= 0.5
    want = augment.crop_flip(x, np.stack([tops, lefts], axis=1), flips, pad=4).astype(np.float32) / np.float32(255)
    np.testing.assert_array_equal(out, want)


# ----------------------------------------------------------------------------- errors, configs

@pytest.mark.parametrize("make, match", [
    (lambda: layers.RandomFlip("diagonal"), r"'mode' of RandomFlip.*Received: mode='diagonal'"),
    (lambda: layers.RandomFlip(seed=-1), r"'seed' of RandomFlip"),
    (lambda: layers.RandomFlip(data_format="channels_first"), r"channels-last"),
    (lambda: layers.RandomCrop(0, 3), r"'height' of RandomCrop.*Received: height=0"),
    (lambda: layers.RandomCrop(3, 2.5), r"'width' of RandomCrop"),
    (lambda: layers.RandomTranslation(1.5, 0.1), r"'height_factor' of RandomTranslation.*\[-1.0, 1.0\].*1.5"),
    (lambda: layers.RandomTranslation(0.1, (0.1, 0.2, 0.3)), r"'width_factor' of RandomTranslation"),
    (lambda: layers.RandomTranslation(0.1, 0.1, fill_mode="mirror"), r"'fill_mode'.*Received: fill_mode='mirror'"),
    (lambda: layers.RandomTranslation(0.1, 0.1, interpolation="cubic"), r"'interpolation'.*'cubic'"),
    (lambda: layers.RandomTranslation(0.1, 0.1, fill_value="x"), r"'fill_value'"),
])
def test_argument_errors(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_inputs_must_be_batches_of_images():
    with pytest.raises(ValueError, match=r"expected a 4-D input"):
        layers.RandomFlip()(np.zeros((4, 4, 3), np.float32), training=True)


@pytest.mark.parametrize("make", [
    lambda: layers.RandomFlip("vertical", seed=3),
    lambda: layers.RandomCrop(3, 2, seed=1),
    lambda: layers.RandomTranslation((-0.1, 0.2), 0.3, fill_mode="wrap", interpolation="nearest", seed=4,
                                     fill_value=2.0),
])
def test_get_config_round_trip_repeats_the_draws(make):
    layer = make()
    config = layer.get_config()
    twin = type(layer).from_config({**config, "name": layer.name + "_copy"})
    assert {**twin.get_config(), "name": layer.name} == config
    x = images(np.random.default_rng(0), (4, 5, 5, 2))
    np.testing.assert_array_equal(layer(x, training=True), twin(x, training=True))


# ----------------------------------------------------------------------------- Keras 3 (optional)

def test_translation_matches_keras():
    """Keras 3's own transform with the same shifts. Keras's TensorFlow backend wraps
    differently from its NumPy backend (and from its documented (a b c d | a b c d)) for
    fractional shifts and shifts of a whole image or more, so 'wrap' is compared on whole
    shifts below the image size only."""
    pytest.importorskip("tensorflow")
    keras = pytest.importorskip("keras")
    rng = np.random.default_rng(0)
    x = images(rng, (4, 7, 6, 2))
    for whole in (True, False):
        for fill_mode in ("reflect", "wrap", "constant", "nearest"):
            if fill_mode == "wrap" and not whole:
                continue
            for interpolation in ("bilinear", "nearest"):
                if whole:
                    dy, dx = rng.integers(-4, 5, 4).astype(float), rng.integers(-4, 5, 4).astype(float)
                else:
                    dy, dx = rng.uniform(-5, 5, 4), rng.uniform(-5, 5, 4)
                layer = keras.layers.RandomTranslation(0.1, 0.1, fill_mode=fill_mode, interpolation=interpolation,
                                                       fill_value=0.7)
                tr = {"translations": np.stack([dx, dy], 1).astype(np.float32), "input_shape": x.shape}
                want = keras.ops.convert_to_numpy(layer.transform_images(x, tr, training=True))
                got, _ = translate(x, dy, dx, fill_mode, interpolation, 0.7)
                np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5, err_msg=f"{fill_mode} {interpolation}")


def test_flip_and_crop_at_inference_match_keras_where_keras_is_consistent():
    """Keras 3: RandomFlip at inference is the identity; RandomCrop of an input exactly the
    target size is the identity (Keras 3.15 returns any input unchanged at inference, so its
    output shape then disagrees with its compute_output_shape; pycnn takes the centre)."""
    pytest.importorskip("tensorflow")
    keras = pytest.importorskip("keras")
    x = images(np.random.default_rng(0), (2, 5, 4, 3))
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(keras.layers.RandomFlip()(x, training=False)),
                                  layers.RandomFlip()(x))
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(keras.layers.RandomCrop(5, 4)(x, training=False)),
                                  layers.RandomCrop(5, 4)(x))
    leaky = keras.ops.convert_to_numpy(keras.layers.LeakyReLU()(x))
    np.testing.assert_allclose(layers.LeakyReLU()(x), leaky, rtol=1e-6, atol=1e-7)
    pad = keras.ops.convert_to_numpy(keras.layers.ZeroPadding2D(((1, 2), (3, 0)))(x))
    np.testing.assert_array_equal(layers.ZeroPadding2D(((1, 2), (3, 0)))(x), pad)
    scaled = keras.ops.convert_to_numpy(keras.layers.Rescaling([1.0, 2.0, 3.0], offset=-1.0)(x))
    np.testing.assert_allclose(layers.Rescaling([1.0, 2.0, 3.0], offset=-1.0)(x), scaled, rtol=1e-6, atol=1e-6)
