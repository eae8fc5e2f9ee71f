"""A model used as a layer of another model, as in Keras: called on symbolic tensors or added
to a Sequential, sharing its weights with the outer model; summary, weights order, freezing,
save/load and training (compiled into the outer model's native networks)."""
from __future__ import annotations

import numpy as np
import pytest

import pycnn
from pycnn import executor, layers, optimizers, utils


@pytest.fixture(autouse=True)
def _fresh_session():
    utils.clear_session()
    utils.set_random_seed(3)
    yield
    utils.clear_session()


def features():
    return pycnn.Sequential([layers.Input((8, 8, 3)), layers.Conv2D(4, 3, activation="relu"),
                             layers.BatchNormalization(), layers.MaxPooling2D(2)], name="features")


def head():
    inp = pycnn.Input((3, 3, 4))
    x = layers.Dense(5, activation="relu")(layers.Flatten()(inp))
    return pycnn.Model(inp, layers.Dense(3, activation="softmax")(x), name="head")


def data(n=16, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n, 8, 8, 3), dtype=np.float32), rng.integers(0, 3, n)


def graph_of_models():
    feat, top = features(), head()
    inp = pycnn.Input((8, 8, 3))
    return pycnn.Model(inp, top(feat(inp)), name="outer"), feat, top


def flat_copy(model):
    """The same network written without nesting, with the nested model's weights."""
    flat = pycnn.Sequential([layers.Input((8, 8, 3)), layers.Conv2D(4, 3, activation="relu"),
                             layers.BatchNormalization(), layers.MaxPooling2D(2), layers.Flatten(),
                             layers.Dense(5, activation="relu"), layers.Dense(3, activation="softmax")])
    flat.set_weights(model.get_weights())
    return flat


def test_layers_weights_and_summary_see_a_nested_model_as_one_layer():
    model, feat, top = graph_of_models()
    assert [l.name for l in model.layers] == ["input_layer_2", "features", "head"]
    assert [w.shape for w in model.get_weights()] == [w.shape for w in feat.get_weights() + top.get_weights()]
    assert model.weights[0] is feat.layers[0].kernel  # shared, not copied
    lines = []
    model.summary(print_fn=lines.append)
    text = "\n".join(lines)
    assert "features (Sequential)" in text and "head (Functional)" in text
    assert f"Total params: {model.count_params():,}" in text and model.count_params() == feat.count_params() + \
        top.count_params()
    assert "Non-trainable params: 8" in text  # the batch normalization's moving statistics
    assert feat.layers[0].weight_names == ["kernel", "bias"]
    assert model.layers[1].weight_names[:2] == ["conv2d/kernel", "conv2d/bias"]


def test_a_nested_model_predicts_and_trains_as_its_flat_copy(monkeypatch, native_step_calls):
    x, y = data()
    model, _, _ = graph_of_models()
    flat = flat_copy(model)
    np.testing.assert_allclose(model.predict(x, verbose=0), flat.predict(x, verbose=0), rtol=1e-6, atol=1e-7)
    compiled = executor.compiled(model._graph(), [x.shape], True, True, model.trainable_weights)
    assert compiled.fusable and len(compiled.steps) == 1  # the nested models became native nodes
    histories = []
    for m in (model, flat):
        m.compile(optimizer=optimizers.Adam(1e-2), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        histories.append((m.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0).history, m.get_weights()))
    assert native_step_calls["n"] == 8  # both trained in one native call per batch
    np.testing.assert_allclose(histories[0][0]["loss"], histories[1][0]["loss"], rtol=1e-6)
    for a, b in zip(histories[0][1], histories[1][1]):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def test_a_model_added_to_a_sequential_and_frozen():
    x, y = data()
    feat = features()
    model = pycnn.Sequential([feat, layers.Flatten(), layers.Dense(3, activation="softmax")])
    assert model.input_shape == (None, 8, 8, 3)  # taken from the nested model
    feat.trainable = False  # as Keras: freezing a model freezes its layers
    assert all(not l.trainable for l in feat.layers)
    assert len(model.trainable_weights) == 2
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    before = feat.get_weights()
    model.fit(x, y, epochs=1, batch_size=8, verbose=0)
    for a, b in zip(before, feat.get_weights()):
        np.testing.assert_array_equal(a, b)  # frozen, moving statistics included (Keras 3: inference mode)
    feat.trainable = True
    assert len(model.trainable_weights) == 6


def test_a_model_called_twice_shares_its_weights_and_sums_their_gradients(monkeypatch):
    feat = features()
    inp_a, inp_b = pycnn.Input((8, 8, 3)), pycnn.Input((8, 8, 3))
    merged = layers.Concatenate()([layers.Flatten()(feat(inp_a)), layers.Flatten()(feat(inp_b))])
    model = pycnn.Model([inp_a, inp_b], layers.Dense(3, activation="softmax")(merged))
    assert sum(1 for l in model.layers if l is feat) == 1
    xa, y = data(seed=1)
    xb, _ = data(seed=2)
    start = model.get_weights()
    runs = []
    for native in ("1", "0"):
        monkeypatch.setenv("PYCNN_NATIVE_STEP", native)
        model.set_weights(start)
        model.compile(optimizer=optimizers.SGD(0.5), loss="sparse_categorical_crossentropy")
        runs.append((model.train_on_batch([xa, xb], y), [b - a for a, b in zip(model.get_weights(), start)]))
    assert runs[0][0] == pytest.approx(runs[1][0], rel=1e-6)
    for a, b in zip(runs[0][1], runs[1][1]):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-7)


def test_a_nested_model_saves_and_loads(tmp_path):
    x, y = data()
    model, _, _ = graph_of_models()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(x, y, epochs=1, batch_size=8, verbose=0)
    path = tmp_path / "nested.npz"
    model.save(path)
    loaded = pycnn.models.load_model(path)
    assert [type(l).__name__ for l in loaded.layers] == ["InputLayer", "Sequential", "Model"]
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    assert loaded.train_on_batch(x, y) == pytest.approx(model.train_on_batch(x, y), rel=1e-6)
    weights_only = tmp_path / "w.npz"
    model.save_weights(weights_only)
    utils.clear_session()  # other layer names in the new copy: weights still pair by position
    fresh, _, _ = graph_of_models()
    fresh.load_weights(weights_only)
    np.testing.assert_array_equal(fresh.predict(x, verbose=0), model.predict(x, verbose=0))


def test_a_nested_model_with_the_wrong_input_or_several_outputs_is_refused():
    feat = features()
    with pytest.raises(ValueError, match=r"Model 'features' expected input of shape \(None, 8, 8, 3\), but received "
                                         r"input with shape \(None, 9, 9, 3\)"):
        feat(pycnn.Input((9, 9, 3)))
    inp = pycnn.Input((4,))
    two = pycnn.Model(inp, [layers.Dense(2)(inp), layers.Dense(3)(inp)])
    with pytest.raises(ValueError, match="has 2 outputs; a model used as a layer must have exactly one"):
        two(pycnn.Input((4,)))


def test_a_nested_model_matches_keras():
    keras = pytest.importorskip("keras", reason="TensorFlow / Keras is an optional cross-check")
    model, _, _ = graph_of_models()
    x, _ = data()
    k_feat = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(4, 3, activation="relu"),
                               keras.layers.BatchNormalization(), keras.layers.MaxPooling2D(2)])
    k_in = keras.Input((3, 3, 4))
    k_head = keras.Model(k_in, keras.layers.Dense(3, activation="softmax")(
        keras.layers.Dense(5, activation="relu")(keras.layers.Flatten()(k_in))))
    k_inp = keras.Input((8, 8, 3))
    k_model = keras.Model(k_inp, k_head(k_feat(k_inp)))
    assert [w.shape for w in k_model.get_weights()] == [w.shape for w in model.get_weights()]
    k_model.set_weights(model.get_weights())
    np.testing.assert_allclose(model.predict(x, verbose=0), k_model.predict(x, verbose=0), rtol=1e-5, atol=1e-6)
