"""A user's own layer (build / add_weight / call / gradient): eager calls, training inside
Sequential and graph models next to native layers (the compiled network calls back into
Python for it), saving and loading with custom_objects, and pycnn.utils.check_gradients."""
from __future__ import annotations

import numpy as np
import pytest

import pycnn
from pycnn import executor, layers, optimizers, utils


class Scale(layers.Layer):
    """y = x * w + b per channel (the last axis); ``wrong`` doubles dw on purpose."""

    def __init__(self, wrong: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.wrong = wrong

    def build(self, input_shape):
        self.w = self.add_weight(name="w", shape=(input_shape[-1],), initializer="ones")
        self.b = self.add_weight(name="b", shape=(input_shape[-1],), initializer="zeros")

    def call(self, inputs, training=False):
        return inputs * self.w + self.b

    def gradient(self, inputs, outputs, doutputs):
        axes = tuple(range(inputs.ndim - 1))
        dw = np.sum(doutputs * inputs, axis=axes)
        return doutputs * self.w, [dw * (2.0 if self.wrong else 1.0), np.sum(doutputs, axis=axes)]

    def get_config(self):
        config = super().get_config()
        config["wrong"] = self.wrong
        return config


class Square(layers.Layer):
    """y = x**2, no weights and no compute_output_shape (inferred from one call)."""

    def call(self, inputs, training=False):
        return inputs * inputs

    def gradient(self, inputs, outputs, doutputs):
        return 2.0 * inputs * doutputs, []


class GlobalSum(layers.Layer):
    """(N, H, W, C) -> (N, C): a shape it declares itself."""

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[-1])

    def call(self, inputs, training=False):
        return inputs.sum(axis=(1, 2))

    def gradient(self, inputs, outputs, doutputs):
        return np.broadcast_to(doutputs[:, None, None, :], inputs.shape).copy(), []


@pytest.fixture(autouse=True)
def _fresh_session():
    utils.clear_session()
    utils.set_random_seed(5)
    yield
    utils.clear_session()


def data(n=12, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 6, 6, 2)).astype(np.float32), rng.integers(0, 3, n)


def build(custom):
    return pycnn.Sequential([layers.Input((6, 6, 2)), layers.Conv2D(3, 3, activation="tanh"), custom,
                             layers.Flatten(), layers.Dense(3, activation="softmax")])


def test_a_user_layer_builds_calls_and_differentiates_eagerly():
    layer = Scale()
    x, _ = data()
    out = layer(x)
    assert layer.built and [w.shape for w in layer.get_weights()] == [(2,), (2,)]
    assert layer.weight_names == ["w", "b"] and len(layer.trainable_weights) == 2
    np.testing.assert_allclose(out, x)
    layer.set_weights([np.array([2.0, -1.0]), np.array([0.5, 0.0])])
    np.testing.assert_allclose(layer(x), x * [2.0, -1.0] + [0.5, 0.0], rtol=1e-6)
    dx = layer.backward(np.ones_like(x))
    np.testing.assert_allclose(dx, np.broadcast_to([2.0, -1.0], x.shape))
    dw, db = layer.get_gradients()
    np.testing.assert_allclose(dw, x.sum(axis=(0, 1, 2)), rtol=1e-5)
    np.testing.assert_allclose(db, np.full(2, x[..., 0].size))


def test_check_gradients_passes_right_layers_and_flags_a_wrong_one():
    x, _ = data()
    right, wrong = Scale(), Scale(wrong=True)
    for layer in (right, wrong):
        layer.build((None, 6, 6, 2))
        layer.w[...] = [1.5, -0.5]
    good = utils.check_gradients(right, x)
    assert set(good) == {"inputs", "w", "b"} and max(good.values()) < 1e-3
    bad = utils.check_gradients(wrong, x)
    assert bad["w"] > 0.3 and bad["inputs"] < 1e-3 and bad["b"] < 1e-3  # it says which gradient is wrong
    for layer, kwargs in [(layers.Conv2D(4, 3, padding="same", activation="tanh"), {}),
                          (layers.BatchNormalization(), {"training": True}),
                          (layers.Dense(3, activation="softmax"), {}),
                          (layers.DepthwiseConv2D(3, depth_multiplier=2, activation="sigmoid"), {})]:
        arg = x.reshape(len(x), -1) if isinstance(layer, layers.Dense) else x
        errors = utils.check_gradients(layer, arg, **kwargs)
        assert max(errors.values()) < 1e-2, (layer, errors)
    merged = utils.check_gradients(layers.Multiply(), [x, x + 1.0])
    assert set(merged) == {"inputs[0]", "inputs[1]"} and max(merged.values()) < 1e-3


def test_check_gradients_leaves_the_weights_as_they_were():
    x, _ = data()
    bn = layers.BatchNormalization()
    bn.build((None, 6, 6, 2))
    before = bn.get_weights()
    utils.check_gradients(bn, x, training=True)  # training calls move the moving statistics
    for a, b in zip(before, bn.get_weights()):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("custom", [Scale, Square])
def test_a_user_layer_trains_between_native_segments_as_layer_by_layer(custom, monkeypatch, native_step_calls):
    x, y = data()
    runs = []
    for native in ("1", "0"):
        monkeypatch.setenv("PYCNN_NATIVE_STEP", native)
        utils.set_random_seed(5)
        model = build(custom())
        model.compile(optimizer=optimizers.Adam(1e-2), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        history = model.fit(x, y, batch_size=4, epochs=2, shuffle=False, verbose=0).history
        runs.append((history, model.get_weights()))
    compiled = executor.compiled(model._graph(), [x.shape], True, True, model.trainable_weights)
    assert [type(s).__name__ for s in compiled.steps] == ["_Segment", "_PythonNode", "_Segment"]
    assert native_step_calls["n"] == 0  # not one call: the Python layer is in the middle
    np.testing.assert_allclose(runs[0][0]["loss"], runs[1][0]["loss"], rtol=1e-5)
    for a, b in zip(runs[0][1], runs[1][1]):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    assert not np.allclose(runs[0][1][0], build(custom()).get_weights()[0])  # the conv before it learned


def test_a_user_layer_in_a_graph_model_with_an_inferred_and_a_declared_shape():
    inp = pycnn.Input((6, 6, 2))
    squared = Square()(inp)
    assert squared.shape == (None, 6, 6, 2)  # inferred from one call on zeros
    summed = GlobalSum()(layers.Conv2D(3, 3, padding="same")(squared))
    assert summed.shape == (None, 3)
    model = pycnn.Model(inp, layers.Dense(2, activation="softmax")(summed))
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    x, y = data()
    first = model.evaluate(x, y % 2, verbose=0)
    model.fit(x, y % 2, epochs=5, batch_size=4, verbose=0)
    assert model.evaluate(x, y % 2, verbose=0) < first
    with pytest.raises(ValueError, match=r"cannot infer its output shape .*\(None, None, None, 2\).*compute_output_shape"):
        Square()(pycnn.Input((None, None, 2)))


def test_a_user_layer_saves_and_loads_with_custom_objects(tmp_path):
    x, y = data()
    model = build(Scale())
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(x, y, epochs=1, batch_size=4, verbose=0)
    path = tmp_path / "custom.npz"
    model.save(path)
    with pytest.raises(ValueError, match=r"Unknown layer class.*custom_objects=\{'Name': Class\}.*Received: class_name='Scale'\."):
        pycnn.models.load_model(path)
    loaded = pycnn.models.load_model(path, custom_objects={"Scale": Scale})
    assert isinstance(loaded.layers[1], Scale) and loaded.layers[1].wrong is False
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
    # training resumes exactly: same optimizer state, same next step
    a, b = model.train_on_batch(x, y), loaded.train_on_batch(x, y)
    assert a == pytest.approx(b, rel=1e-6)


def test_a_user_class_never_shadows_a_builtin_layer_by_name():
    class Dense(layers.Layer):  # noqa: F811 - on purpose: the same name as pycnn's
        def call(self, inputs, training=False):
            return inputs

    assert layers.get("Dense") is pycnn.layers.Dense


def test_a_user_layer_that_breaks_the_contract_gets_a_clear_error():
    class NoGradient(layers.Layer):
        def build(self, input_shape):
            self.w = self.add_weight(name="w", shape=(1,), initializer="ones")

        def call(self, inputs, training=False):
            return inputs * self.w

    class WrongCount(Scale):
        def gradient(self, inputs, outputs, doutputs):
            return doutputs, [np.zeros(2)]

    class WrongShape(Scale):  # the model's Scale sees 3 channels: b's gradient has the wrong size
        def gradient(self, inputs, outputs, doutputs):
            return doutputs, [np.zeros(3), np.zeros(2)]

    x, y = data()
    model = build(NoGradient())
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    with pytest.raises(NotImplementedError, match=r"cannot be trained: implement gradient\(inputs, outputs, doutputs\)"):
        model.train_on_batch(x, y)
    model = build(WrongCount())
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    with pytest.raises(ValueError, match=r"expected one gradient per trainable weight \(2: \['w', 'b'\]\)\. Received: 1"):
        model.train_on_batch(x, y)
    model = build(WrongShape())
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    with pytest.raises(ValueError, match=r"'wrong_shape'\.gradient\(\) expected the gradient of 'b' with shape \(3,\)\. "
                                         r"Received: shape=\(2,\)"):
        model.train_on_batch(x, y)


def test_a_frozen_user_layer_is_not_updated_and_its_gradient_is_not_asked_for():
    x, y = data()
    layer = Scale(wrong=True)
    model = build(layer)
    layer.trainable = False
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    before = layer.get_weights()
    model.train_on_batch(x, y)
    for a, b in zip(before, layer.get_weights()):
        np.testing.assert_array_equal(a, b)
