"""save_weights / load_weights / save / load_model: the documented .npz layout, bit-exact
round trips, atomic writes, and refusal of files that do not match the model."""
from __future__ import annotations

import json
import os
import pathlib

import numpy as np
import pytest

from pycnn import layers, models, utils
from pycnn.models import Sequential


@pytest.fixture(autouse=True)
def _fresh_session():
    utils.clear_session()
    utils.set_random_seed(3)
    yield
    utils.clear_session()


def trained_lenet(num_classes=10):
    model = models.lenet(input_shape=(32, 32, 3), num_classes=num_classes)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    model.train_on_batch(rng.random((8, 32, 32, 3)), rng.integers(0, num_classes, 8))
    return model


def test_round_trip_reproduces_predict_bit_for_bit(tmp_path):
    model = trained_lenet()
    x = np.random.default_rng(1).random((5, 32, 32, 3)).astype(np.float32)
    expected = model.predict(x)
    path = tmp_path / "lenet.npz"
    model.save_weights(path)
    fresh = models.lenet()  # new layer names (conv2d_2 ...) do not matter
    assert fresh.layers[0].name != model.layers[0].name
    fresh.load_weights(str(path))
    np.testing.assert_array_equal(fresh.predict(x), expected)
    for a, b in zip(fresh.get_weights(), model.get_weights()):
        assert a.dtype == np.float32
        np.testing.assert_array_equal(a, b)


def test_file_layout_matches_the_documentation(tmp_path):
    model = trained_lenet()
    path = tmp_path / "w.npz"
    model.save_weights(path)
    with np.load(path, allow_pickle=False) as data:
        keys = set(data.files)
        manifest = json.loads(str(data["__pycnn_manifest__"]))
        kernel = data["layer_00_conv2d/kernel"]
    assert keys == {"__pycnn_manifest__", "layer_00_conv2d/kernel", "layer_00_conv2d/bias",
                    "layer_02_conv2d_1/kernel", "layer_02_conv2d_1/bias", "layer_05_dense/kernel",
                    "layer_05_dense/bias", "layer_06_dense_1/kernel", "layer_06_dense_1/bias",
                    "layer_07_dense_2/kernel", "layer_07_dense_2/bias"}
    np.testing.assert_array_equal(kernel, model.layers[0].get_weights()[0])
    assert manifest["format"] == "pycnn.weights" and manifest["version"] == 1
    assert manifest["model"] == "lenet" and manifest["input_shape"] == [None, 32, 32, 3]
    assert [(e["index"], e["name"], e["class"]) for e in manifest["layers"]] == [
        (0, "conv2d", "Conv2D"), (1, "max_pooling2d", "MaxPooling2D"), (2, "conv2d_1", "Conv2D"),
        (3, "max_pooling2d_1", "MaxPooling2D"), (4, "flatten", "Flatten"), (5, "dense", "Dense"),
        (6, "dense_1", "Dense"), (7, "dense_2", "Dense")]
    assert manifest["layers"][0]["weights"] == [
        {"name": "kernel", "key": "layer_00_conv2d/kernel", "shape": [5, 5, 3, 6]},
        {"name": "bias", "key": "layer_00_conv2d/bias", "shape": [6]}]
    assert manifest["layers"][1]["weights"] == []
    assert "config" not in manifest


def test_writes_are_atomic(tmp_path, monkeypatch):
    model = trained_lenet()
    path = tmp_path / "w.npz"
    model.save_weights(path)
    original = path.read_bytes()
    model.save_weights(path)  # overwriting works
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.npz"]

    def broken_savez(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", broken_savez)
    model.set_weights([w + 1 for w in model.get_weights()])
    with pytest.raises(OSError, match="disk full"):
        model.save_weights(path)
    assert path.read_bytes() == original  # the old file is intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.npz"]  # no temporary left behind


def _refuses(model, path, match):
    before = model.get_weights()
    with pytest.raises(ValueError, match=match):
        model.load_weights(path)
    for a, b in zip(before, model.get_weights()):  # nothing was assigned
        np.testing.assert_array_equal(a, b)


def test_mismatching_files_are_refused_with_the_layer_and_shapes(tmp_path):
    path = tmp_path / "lenet10.npz"
    trained_lenet().save_weights(path)
    utils.clear_session()
    five = models.lenet(num_classes=5)
    _refuses(five, path, r"Cannot load weights from '.*lenet10\.npz' into model 'lenet': layer 'dense_2' \(Dense\) "
                         r"expects kernel of shape \(84, 5\), but the file's layer 'dense_2' has kernel of shape "
                         r"\(84, 10\)\.")
    gray = models.lenet(input_shape=(32, 32, 1))
    _refuses(gray, path, r"layer 'conv2d_2' \(Conv2D\) expects kernel of shape \(5, 5, 1, 6\), but the file's layer "
                         r"'conv2d' has kernel of shape \(5, 5, 3, 6\)")
    shorter = Sequential([layers.Input((32, 32, 3)), layers.Conv2D(6, 5), layers.Flatten(), layers.Dense(10)])
    _refuses(shorter, path, r"the file has weights for 5 layers \(conv2d \(Conv2D\), conv2d_1 \(Conv2D\), dense "
                            r"\(Dense\), dense_1 \(Dense\), dense_2 \(Dense\)\), but the model has 2 layers with weights")
    utils.clear_session()
    conv_first = Sequential([layers.Input((4, 4, 3)), layers.Dense(6, name="d"), layers.Conv2D(16, 1),
                             layers.Flatten(), layers.Dense(120), layers.Dense(84), layers.Dense(10)])
    _refuses(conv_first, path, r"the model's layer 'd' is a Dense, but the matching layer in the file, 'conv2d', "
                               r"is a Conv2D\.")
    no_bias = Sequential([layers.Input((32, 32, 3)), layers.Conv2D(6, 5, padding="same", use_bias=False),
                          layers.MaxPooling2D(), layers.Conv2D(16, 5), layers.MaxPooling2D(), layers.Flatten(),
                          layers.Dense(120), layers.Dense(84), layers.Dense(10)])
    _refuses(no_bias, path, r"has weights \['kernel'\], but the file's layer 'conv2d' has \['kernel', 'bias'\]")


def test_files_that_are_not_weight_files(tmp_path):
    model = trained_lenet()
    with pytest.raises(FileNotFoundError, match=r"No weights file at '.*missing\.npz'"):
        model.load_weights(tmp_path / "missing.npz")
    plain = tmp_path / "plain.npz"
    np.savez(plain, a=np.zeros(3))
    _refuses(model, plain, r"'.*plain\.npz' is not a pycnn weights file: it has no '__pycnn_manifest__' entry")
    single = tmp_path / "single.npy"
    np.save(single, np.zeros(3))
    _refuses(model, single, r"is not a pycnn weights file: it holds a single array")
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    _refuses(model, text, r"'.*notes\.txt' is not a readable pycnn weights file")
    good = tmp_path / "good.npz"
    model.save_weights(good)
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    _refuses(model, truncated, r"'.*truncated\.npz' is not a readable pycnn weights file")


def test_unbuilt_model_is_built_from_the_file(tmp_path):
    model = Sequential([layers.Conv2D(3, 3, activation="relu"), layers.Flatten(), layers.Dense(2)])
    x = np.random.default_rng(2).random((4, 7, 7, 1)).astype(np.float32)
    expected = model.predict(x)
    path = tmp_path / "built_from_data.npz"
    model.save_weights(path)
    fresh = Sequential([layers.Conv2D(3, 3, activation="relu"), layers.Flatten(), layers.Dense(2)])
    fresh.load_weights(path)
    assert fresh.input_shape == (None, 7, 7, 1)
    np.testing.assert_array_equal(fresh.predict(x), expected)
    with pytest.raises(RuntimeError, match=r"has not been built yet"):
        Sequential([layers.Dense(2)]).save_weights(tmp_path / "x.npz")


def test_save_and_load_model_keep_the_architecture(tmp_path):
    model = Sequential([layers.Input((None, None, 2)), layers.Conv2D(4, 3, strides=2, padding="same",
                                                                     activation="tanh", use_bias=False),
                        layers.AveragePooling2D(2, padding="same"), layers.Dropout(0.2, seed=1),
                        layers.Conv2D(3, 1, activation="softmax", kernel_initializer=lambda s: np.ones(s))],
                       name="fcn")
    x = np.random.default_rng(3).random((2, 9, 11, 2)).astype(np.float32)
    expected = model.predict(x)
    path = pathlib.Path(tmp_path) / "fcn.npz"
    model.save(path)
    loaded = models.load_model(os.fspath(path))
    assert loaded.name == "fcn" and [type(l).__name__ for l in loaded.layers] == [
        "Conv2D", "AveragePooling2D", "Dropout", "Conv2D"]
    assert loaded.layers[0].strides == (2, 2) and loaded.layers[0].use_bias is False
    assert loaded.input_shape == (None, None, None, 2)
    np.testing.assert_array_equal(loaded.predict(x), expected)
    weights_only = tmp_path / "weights.npz"
    model.save_weights(weights_only)
    with pytest.raises(ValueError, match=r"holds weights only \(written by save_weights\(\)\)"):
        models.load_model(weights_only)


# --------------------------------------------------------------------------- whole models, graphs

def _graph_model():
    from pycnn import Model
    inp = layers.Input((8, 8, 3), name="pixels")
    edges = layers.Reshape((8, 8, 6))(pycnn_image().sobel_edges(inp))
    dy, dx = pycnn_image().image_gradients(inp)
    conv = layers.Conv2D(3, 3, padding="same", activation="relu")(inp)
    x = layers.Concatenate(axis=3)([dx, dy, edges, layers.Add()([conv, layers.Conv2D(3, 1)(inp)])])
    shared = layers.Dense(6, activation="tanh")
    g = layers.GlobalAveragePooling2D()(x)
    h = layers.Add()([shared(g), shared(layers.Dense(15, activation="relu")(g))])
    return Model(inputs=[inp], outputs=layers.Dense(4, activation="softmax")(h), name="graph")


def pycnn_image():
    import pycnn.image
    return pycnn.image


def test_graph_model_round_trip(tmp_path):
    model = _graph_model()
    x = np.random.default_rng(4).random((6, 8, 8, 3)).astype(np.float32)
    expected = model.predict(x)
    path = tmp_path / "graph.npz"
    model.save(path)
    loaded = models.load_model(path)
    assert type(loaded).__name__ == "Model" and loaded.name == "graph"
    assert [type(l).__name__ for l in loaded.layers] == [type(l).__name__ for l in model.layers]
    assert loaded.layers[0].name == "pixels" and not loaded.compiled
    np.testing.assert_array_equal(loaded.predict(x), expected)
    lines_a, lines_b = [], []
    model.summary(print_fn=lines_a.append)
    loaded.summary(print_fn=lines_b.append)
    assert lines_a == lines_b
    # weights-only files load into a graph built in code
    model.save_weights(tmp_path / "w.npz")
    other = _graph_model()
    other.load_weights(tmp_path / "w.npz")
    np.testing.assert_array_equal(other.predict(x), expected)


@pytest.mark.parametrize("build", ["sequential", "graph"])
def test_saved_loaded_and_trained_further_matches_never_saved(build, tmp_path):
    utils.set_random_seed(5)
    model = trained_lenet(4) if build == "sequential" else _graph_model()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    rng = np.random.default_rng(6)
    shape = (32, 32, 3) if build == "sequential" else (8, 8, 3)
    x, y = rng.random((48,) + shape).astype(np.float32), rng.integers(0, 4, 48)
    model.fit(x, y, batch_size=16, epochs=1, verbose=0, shuffle=False)
    path = tmp_path / "m.npz"
    model.save(path)
    loaded = models.load_model(path)
    assert loaded.compiled and type(loaded.optimizer).__name__ == "Adam"
    assert loaded.optimizer.iterations == model.optimizer.iterations == 3
    for _ in range(3):
        a = model.train_on_batch(x[:16], y[:16])
        b = loaded.train_on_batch(x[:16], y[:16])
        assert a == b
    for wa, wb in zip(model.get_weights(), loaded.get_weights()):
        np.testing.assert_array_equal(wa, wb)
    assert not models.load_model(path, compile=False).compiled


def test_damaged_or_foreign_version_files_are_refused(tmp_path):
    model = _graph_model()
    path = tmp_path / "g.npz"
    model.save(path)
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    manifest = json.loads(str(arrays["__pycnn_manifest__"]))
    manifest["version"] = 7
    arrays["__pycnn_manifest__"] = np.array(json.dumps(manifest))
    np.savez(tmp_path / "v7.npz", **arrays)
    with pytest.raises(ValueError, match=r"format version 7; this pycnn reads version 1"):
        models.load_model(tmp_path / "v7.npz")
    manifest["version"] = 1
    manifest["config"]["layers"][1]["class_name"] = "LSTM"
    arrays["__pycnn_manifest__"] = np.array(json.dumps(manifest))
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(ValueError, match=r"Cannot rebuild the model stored in .*Unknown layer class"):
        models.load_model(tmp_path / "bad.npz")
    raw = path.read_bytes()
    (tmp_path / "cut.npz").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ValueError, match=r"not a readable pycnn weights file"):
        models.load_model(tmp_path / "cut.npz")
