"""Keras files in and out (pycnn/interop/keras_files.py, keras_config.py): the formats are
tested with h5py alone (write, read, compare, the documented layout, hand-written Keras 2
files, refusals); with Keras 3 installed, also against Keras itself."""
from __future__ import annotations

import json
import os
import sys
import zipfile

import numpy as np
import pytest

import pycnn
from pycnn import layers as L
from pycnn import models, utils

h5py = pytest.importorskip("h5py", reason="the Keras formats need h5py (pip install 'pycnn[keras]')")

# TensorFlow's own NumPy 2 deprecation (keras/src/backend/tensorflow/core.py), not pycnn's.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")


def _data(shape, n=12, classes=5, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n,) + tuple(shape), dtype=np.float32), rng.integers(0, classes, n)


def _zoo(seed=0):
    """BatchNormalization (statistics moved off their initial values), Depthwise, Separable,
    merges, Dropout, a nested Sequential and two branches."""
    utils.clear_session()
    pycnn.set_random_seed(seed)
    inp = pycnn.Input((10, 10, 3), name="image")
    a = L.Conv2D(6, 3, padding="same", use_bias=False)(inp)
    a = L.BatchNormalization()(a)
    a = L.Activation("relu")(a)
    b = L.DepthwiseConv2D(3, padding="same", depth_multiplier=2)(inp)
    c = L.SeparableConv2D(6, 3, padding="same", activation="relu")(inp)
    s = L.Add()([a, c])
    cat = L.Concatenate()([s, b, L.Multiply()([a, c])])
    inner = pycnn.Sequential([L.Input((10, 10, 18)), L.Conv2D(4, 1), L.MaxPooling2D()], name="inner")
    x = L.Dropout(0.25)(inner(cat))
    x = L.Flatten()(x)
    x = L.Dense(5, activation="softmax")(x)
    model = pycnn.Model(inp, x, name="zoo")
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    xs, ys = _data((10, 10, 3))
    model.fit(xs, ys, epochs=2, batch_size=4, verbose=0)
    return model, xs, ys


def _lenet():
    utils.clear_session()
    pycnn.set_random_seed(1)
    model = models.lenet(num_classes=5)
    model.compile(optimizer=pycnn.optimizers.SGD(0.05, momentum=0.9), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    xs, ys = _data((32, 32, 3))
    model.fit(xs, ys, epochs=1, batch_size=4, verbose=0)
    return model, xs, ys


@pytest.mark.parametrize("build", [_lenet, _zoo])
def test_keras_file_round_trip_reproduces_the_model(build, tmp_path):
    model, xs, ys = build()
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = models.load_model(path)
    np.testing.assert_array_equal(loaded.predict(xs, verbose=0), model.predict(xs, verbose=0))
    assert [l.name for l in loaded.layers] == [l.name for l in model.layers]
    assert [type(l).__name__ for l in loaded.layers] == [type(l).__name__ for l in model.layers]
    assert loaded.count_params() == model.count_params()
    assert loaded.compiled and type(loaded.optimizer) is type(model.optimizer)
    assert loaded.optimizer.iterations == model.optimizer.iterations
    for a, b in zip(loaded.optimizer.get_slots(loaded.trainable_weights),
                    model.optimizer.get_slots(model.trainable_weights)):
        names = model.optimizer.slot_names()
        for name, sa, sb in zip(names, a, b):
            if name != "scratch":
                np.testing.assert_array_equal(sa, sb)
    assert loaded.evaluate(xs, ys, verbose=0) == model.evaluate(xs, ys, verbose=0)
    # Both continue training identically (same optimizer state, same weights; the same
    # dropout masks: a .keras file does not hold pycnn's generator, a .npz does).
    for m in (model, loaded):
        pycnn.set_random_seed(7)
        m.fit(xs, ys, epochs=1, batch_size=4, verbose=0, shuffle=False)
    for wa, wb in zip(loaded.get_weights(), model.get_weights()):
        np.testing.assert_allclose(wa, wb, rtol=1e-5, atol=1e-6)


def test_the_keras_file_layout_is_the_documented_one(tmp_path):
    model, xs, _ = _zoo()
    path = tmp_path / "zoo.keras"
    model.save(path)
    with zipfile.ZipFile(path) as zf:
        assert sorted(zf.namelist()) == ["config.json", "metadata.json", "model.weights.h5"]
        config = json.loads(zf.read("config.json"))
        zf.extract("model.weights.h5", tmp_path)
    assert config["class_name"] == "Functional" and config["compile_config"]["optimizer"]["class_name"] == "Adam"
    entries = {e["name"]: e for e in config["config"]["layers"]}
    assert entries["add"]["inbound_nodes"][0]["args"][0][1]["config"]["keras_history"] == ["separable_conv2d", 0, 0]
    assert entries["inner"]["class_name"] == "Sequential"
    assert config["config"]["input_layers"] == ["image", 0, 0]
    with h5py.File(tmp_path / "model.weights.h5") as f:
        bn = model.get_layer("batch_normalization")
        for i, w in enumerate(bn.weights):  # gamma, beta, moving_mean, moving_variance
            np.testing.assert_array_equal(f[f"layers/batch_normalization/vars/{i}"][()], w)
        assert f["layers/batch_normalization/vars"].attrs["name"] == "batch_normalization"
        assert f["layers/sequential/layers/conv2d/vars/0"].shape == (1, 1, 18, 4)   # the nested model's
        assert f["layers/conv2d/vars/0"].shape == (3, 3, 3, 6)                      # the outer Conv2D
        assert f["layers/input_layer/vars"].attrs["name"] == "image"
        assert f["optimizer/vars/0"][()] == model.optimizer.iterations
        assert len(f["optimizer/vars"]) == 2 + 2 * len(model.trainable_weights)     # step, rate, m and v


def test_weights_files_move_weights_by_position(tmp_path):
    model, xs, _ = _zoo(seed=0)
    path = tmp_path / "zoo.weights.h5"
    model.save_weights(path)
    other, _, _ = _zoo(seed=3)  # same architecture, other weights and layer names
    assert not np.array_equal(other.predict(xs, verbose=0), model.predict(xs, verbose=0))
    other.load_weights(path)
    np.testing.assert_array_equal(other.predict(xs, verbose=0), model.predict(xs, verbose=0))
    model.save(tmp_path / "zoo.keras")
    third, _, _ = _zoo(seed=4)
    third.load_weights(tmp_path / "zoo.keras")
    np.testing.assert_array_equal(third.predict(xs, verbose=0), model.predict(xs, verbose=0))
    small = pycnn.Sequential([L.Input((10, 10, 3)), L.Conv2D(2, 3)])
    with pytest.raises(ValueError, match=r"zoo\.weights\.h5. has 1 variables for layer .conv2d_\d+. \(Conv2D\)"):
        small.load_weights(path)


def test_names_and_formats_that_are_refused(tmp_path):
    model, _, _ = _lenet()
    with pytest.raises(ValueError, match=r"writes Keras files as '\.keras'"):
        model.save(tmp_path / "m.h5")
    with pytest.raises(ValueError, match=r"save_weights\(\) writes weights only"):
        model.save_weights(tmp_path / "m.keras")
    model.save_weights(tmp_path / "w.weights.h5")
    with pytest.raises(ValueError, match=r"holds Keras 3 weights .*not a model"):
        models.load_model(tmp_path / "w.weights.h5")


@pytest.mark.parametrize("make, match", [
    (lambda: pycnn.Model(*_io(lambda x: pycnn.image.sobel_edges(x))), r"\(SobelEdges\) has no Keras 3 equivalent"),
    (lambda: pycnn.Sequential([L.Input((4,)), L.GELU(approximate=True)]), r"GELU\(approximate=True\)"),
    (lambda: pycnn.Sequential([L.Input((8, 8, 1)), L.RandomCrop(4, 4)]), r"RandomCrop.*identity|leaves images"),
    (lambda: pycnn.Sequential([L.Input((4,)), L.Dense(2, activation="gelu_approximate")]), r"gelu_approximate"),
])
def test_layers_keras_lacks_are_refused_by_name(make, match, tmp_path):
    with pytest.raises(ValueError, match=match):
        make().save(tmp_path / "m.keras")
    assert not os.path.exists(tmp_path / "m.keras")


def _io(fn):
    inp = pycnn.Input((8, 8, 1))
    return inp, L.Flatten()(fn(inp))


# ----------------------------------------------------------------------------- hand-written Keras files

def _keras2_sequential_h5(path, kernel, bias):
    """A legacy .h5 as Keras 2 (tf.keras 2.x) wrote it: batch_input_shape on the first layer,
    weights under model_weights/<layer>/<layer>/kernel:0."""
    config = {"class_name": "Sequential", "config": {"name": "seq", "layers": [
        {"class_name": "Flatten", "config": {"name": "flatten", "trainable": True, "dtype": "float32",
                                             "batch_input_shape": [None, 2, 3], "data_format": "channels_last"}},
        {"class_name": "Dense", "config": {"name": "dense", "trainable": True, "dtype": "float32", "units": 4,
                                           "activation": "relu", "use_bias": True,
                                           "kernel_initializer": {"class_name": "GlorotUniform",
                                                                  "config": {"seed": None}},
                                           "bias_initializer": {"class_name": "Zeros", "config": {}},
                                           "kernel_regularizer": None, "bias_regularizer": None,
                                           "activity_regularizer": None, "kernel_constraint": None,
                                           "bias_constraint": None}}]}}
    training = {"loss": "mse", "metrics": ["mae"], "loss_weights": None,
                "optimizer_config": {"class_name": "Adam", "config": {"name": "Adam", "learning_rate": 0.01,
                                                                      "decay": 0.0, "beta_1": 0.9, "beta_2": 0.999,
                                                                      "epsilon": 1e-07, "amsgrad": False}}}
    with h5py.File(path, "w") as f:
        f.attrs["keras_version"] = "2.15.0"
        f.attrs["backend"] = "tensorflow"
        f.attrs["model_config"] = json.dumps(config)
        f.attrs["training_config"] = json.dumps(training)
        g = f.create_group("model_weights")
        g.attrs["layer_names"] = [b"flatten", b"dense"]
        g.create_group("flatten").attrs["weight_names"] = []
        d = g.create_group("dense")
        d.attrs["weight_names"] = [b"dense/kernel:0", b"dense/bias:0"]
        d.create_dataset("dense/kernel:0", data=kernel)
        d.create_dataset("dense/bias:0", data=bias)


def test_a_keras2_legacy_h5_file_loads_and_compiles(tmp_path):
    rng = np.random.default_rng(0)
    kernel, bias = rng.standard_normal((6, 4)).astype(np.float32), rng.standard_normal(4).astype(np.float32)
    path = tmp_path / "k2.h5"
    _keras2_sequential_h5(path, kernel, bias)
    model = models.load_model(path)
    x = rng.random((5, 2, 3), dtype=np.float32)
    np.testing.assert_allclose(model.predict(x, verbose=0), np.maximum(x.reshape(5, 6) @ kernel + bias, 0),
                               rtol=1e-6, atol=1e-6)
    assert model.compiled and isinstance(model.optimizer, pycnn.optimizers.Adam)
    assert model.optimizer.learning_rate == pytest.approx(0.01) and model.metrics_names == ["mae"]


def _keras2_functional(extra_layer=None, arg=None):
    """A Keras 2 functional config (list-style inbound_nodes): input -> dense -> add(dense, input)."""
    dense = {"class_name": "Dense", "name": "d", "config": {"name": "d", "units": 3, "activation": "linear",
                                                           "use_bias": True},
             "inbound_nodes": [[["in", 0, 0, {}]]]}
    if arg:
        dense["config"].update(arg)
    layers = [{"class_name": "InputLayer", "name": "in", "config": {"batch_input_shape": [None, 3], "name": "in",
                                                                      "dtype": "float32"}, "inbound_nodes": []},
              {"class_name": "Add", "name": "sum", "config": {"name": "sum"},
               "inbound_nodes": [[["d", 0, 0, {}], ["in", 0, 0, {}]]]},  # listed before its input's layer
              dense]
    if extra_layer:
        layers.append(extra_layer)
    return {"class_name": "Functional", "config": {"name": "f", "layers": layers, "input_layers": [["in", 0, 0]],
                                                   "output_layers": [["sum", 0, 0]]}}


def _write_legacy(path, config, weights):
    with h5py.File(path, "w") as f:
        f.attrs["model_config"] = json.dumps(config)
        g = f.create_group("model_weights")
        g.attrs["layer_names"] = [n.encode() for n in weights]
        for name, arrays in weights.items():
            lg = g.create_group(name)
            lg.attrs["weight_names"] = [f"{name}/w{i}".encode() for i in range(len(arrays))]
            for i, a in enumerate(arrays):
                lg.create_dataset(f"{name}/w{i}", data=a)


def test_a_keras2_functional_config_with_calls_in_any_order_loads(tmp_path):
    rng = np.random.default_rng(1)
    k, b = rng.standard_normal((3, 3)).astype(np.float32), rng.standard_normal(3).astype(np.float32)
    path = tmp_path / "f.h5"
    _write_legacy(path, _keras2_functional(), {"in": [], "d": [k, b], "sum": []})
    model = models.load_model(path)
    x = rng.random((4, 3), dtype=np.float32)
    np.testing.assert_allclose(model.predict(x, verbose=0), x @ k + b + x, rtol=1e-6, atol=1e-6)
    assert not model.compiled


@pytest.mark.parametrize("edit, match", [
    (dict(arg={"kernel_constraint": {"class_name": "MaxNorm", "config": {"max_value": 2}}}),
     r"Layer 'd' \(Dense\).*argument 'kernel_constraint'"),
    (dict(arg={"activation": "swish"}), r"Layer 'd' \(Dense\).*activation='swish'"),
    (dict(arg={"dtype": "mixed_float16"}), r"layer 'd' \(Dense\).*dtype='mixed_float16'"),
    (dict(arg={"activity_regularizer": {"class_name": "L2", "config": {"l2": 0.1}}}),
     r"argument 'activity_regularizer'"),
    (dict(extra_layer={"class_name": "Lambda", "name": "lam", "config": {"name": "lam", "function": "..."},
                       "inbound_nodes": [[["d", 0, 0, {}]]]}), r"no layer of class 'Lambda'.*never runs"),
    (dict(extra_layer={"class_name": "Conv2D", "name": "c", "config": {"name": "c", "filters": 2, "kernel_size": 1,
                                                                        "data_format": "channels_first"},
                       "inbound_nodes": []}), r"'data_format'='channels_first'.*channels-last"),
    (dict(extra_layer={"module": "os", "class_name": "system", "name": "x", "config": {"name": "x"},
                       "inbound_nodes": []}), r"no layer of class 'system'"),
])
def test_unsupported_layers_and_arguments_are_named(tmp_path, edit, match):
    path = tmp_path / "bad.h5"
    _write_legacy(path, _keras2_functional(**edit), {})
    with pytest.raises(ValueError, match=match):
        models.load_model(path)


def test_a_missing_h5py_says_which_pip_install_fixes_it(tmp_path, monkeypatch):
    model, _, _ = _lenet()
    monkeypatch.setitem(sys.modules, "h5py", None)
    with pytest.raises(ImportError, match=r"pip install 'pycnn\[keras\]'"):
        model.save(tmp_path / "m.keras")
    model.save(tmp_path / "m.npz")  # the core format needs nothing


# ----------------------------------------------------------------------------- against Keras 3

@pytest.fixture(scope="module")
def keras():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    pytest.importorskip("tensorflow", reason="TensorFlow / Keras is an optional cross-check")
    return pytest.importorskip("keras")


@pytest.mark.parametrize("build", [_lenet, _zoo])
def test_keras_opens_pycnn_files_and_predicts_and_evaluates_the_same(keras, build, tmp_path):
    model, xs, ys = build()
    model.save(tmp_path / "m.keras")
    k = keras.models.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(k.predict(xs, verbose=0), model.predict(xs, verbose=0), rtol=1e-5, atol=1e-5)
    assert [l.name for l in k.layers] == [l.name for l in model.layers]
    assert k.count_params() == model.count_params()
    np.testing.assert_allclose(k.evaluate(xs, ys, verbose=0), model.evaluate(xs, ys, verbose=0), rtol=1e-5)
    assert int(k.optimizer.iterations) == model.optimizer.iterations
    model.save_weights(tmp_path / "m.weights.h5")
    k2 = keras.models.clone_model(k)
    k2.load_weights(tmp_path / "m.weights.h5")
    np.testing.assert_allclose(k2.predict(xs, verbose=0), model.predict(xs, verbose=0), rtol=1e-5, atol=1e-5)


def _keras_zoo(keras):
    kl = keras.layers
    inp = keras.Input((10, 10, 3), name="image")
    a = kl.BatchNormalization()(kl.Conv2D(6, 3, padding="same", use_bias=False)(inp))
    a = kl.Activation("relu")(a)
    b = kl.DepthwiseConv2D(3, padding="same", depth_multiplier=2)(inp)
    c = kl.SeparableConv2D(6, 3, padding="same", activation="relu")(inp)
    cat = kl.Concatenate()([kl.Add()([a, c]), b])
    inner = keras.Sequential([keras.Input((10, 10, 12)), kl.Conv2D(4, 1), kl.AveragePooling2D(2)], name="inner")
    x = kl.Dropout(0.3)(inner(cat))
    x = kl.Dense(5, activation="softmax")(kl.GlobalAveragePooling2D()(x))
    model = keras.Model(inp, x)
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model


def test_pycnn_opens_keras_files_and_predicts_and_evaluates_the_same(keras, tmp_path):
    keras.utils.set_random_seed(0)
    k = _keras_zoo(keras)
    xs, ys = _data((10, 10, 3), n=16)
    k.fit(xs, ys, epochs=2, batch_size=4, verbose=0)
    k.save(tmp_path / "k.keras")
    k.save(tmp_path / "k.h5")
    k.save_weights(tmp_path / "k.weights.h5")
    expected = k.predict(xs, verbose=0)
    for name in ("k.keras", "k.h5"):
        m = models.load_model(tmp_path / name)
        np.testing.assert_allclose(m.predict(xs, verbose=0), expected, rtol=1e-5, atol=1e-5)
        assert [l.name for l in m.layers] == [l.name for l in k.layers]
        assert m.count_params() == k.count_params()
        np.testing.assert_allclose(m.evaluate(xs, ys, verbose=0), k.evaluate(xs, ys, verbose=0), rtol=1e-5)
    m = models.load_model(tmp_path / "k.keras")
    assert m.optimizer.iterations == int(k.optimizer.iterations) and isinstance(m.optimizer, pycnn.optimizers.Adam)
    other = models.load_model(tmp_path / "k.keras", compile=False)
    for w in other.weights:
        w[...] = 0
    other.load_weights(tmp_path / "k.weights.h5")
    np.testing.assert_allclose(other.predict(xs, verbose=0), expected, rtol=1e-5, atol=1e-5)
