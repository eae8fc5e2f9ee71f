"""Sequential: structure, building, shapes, weights, predict, the fused softmax/cross-entropy
training path and the skipped first-layer input gradient."""
from __future__ import annotations

import numpy as np
import pytest

import pycnn
from pycnn import _core, layers, losses, models, optimizers, utils
from pycnn.models import Sequential


@pytest.fixture(autouse=True)
def _fresh_session():
    utils.clear_session()
    utils.set_random_seed(42)
    yield
    utils.clear_session()


def small_cnn(num_classes=4, last_activation="softmax"):
    return Sequential([
        layers.Input((8, 8, 3)),
        layers.Conv2D(4, 3, padding="same", activation="relu"),
        layers.MaxPooling2D(2),
        layers.Conv2D(6, 3, activation="tanh"),
        layers.Flatten(),
        layers.Dense(num_classes, activation=last_activation),
    ])


def test_model_names_and_layers():
    a, b = Sequential(), Sequential()
    assert (a.name, b.name) == ("sequential", "sequential_1")
    assert Sequential(name="net").name == "net"
    model = small_cnn()
    assert [l.name for l in model.layers] == ["conv2d", "max_pooling2d", "conv2d_1", "flatten", "dense"]
    assert model.input_shape == (None, 8, 8, 3) and model.output_shape == (None, 4)
    assert all(l.built for l in model.layers)
    popped = model.pop()
    assert popped.name == "dense" and model.output_shape == (None, 24)
    empty = Sequential([layers.Input((3,))])
    lines = []
    empty.summary(print_fn=lines.append)
    assert "Total params: 0" in lines and empty.predict(np.ones((2, 3))).shape == (2, 3)


def test_add_errors():
    model = Sequential([layers.Input((4, 4, 1))])
    with pytest.raises(TypeError, match=r"Sequential.add\(\) expected a pycnn layer instance. Received: layer='dense'"):
        model.add("dense")
    with pytest.raises(ValueError, match=r"expected an Input only as the first entry"):
        model.add(layers.Input((4, 4, 1)))
    model.add(layers.Conv2D(2, 2, name="c"))
    with pytest.raises(ValueError, match=r"unique names\. Name 'c' is already the name of a layer"):
        model.add(layers.Dense(2, name="c"))
    with pytest.raises(ValueError, match=r"Computed output size would be zero or negative for layer 'conv2d'"):
        model.add(layers.Conv2D(2, 5))
    with pytest.raises(ValueError, match=r"Invalid value for argument 'name' of Sequential"):
        Sequential(name=3)


def test_input_shape_kwarg_on_first_layer_builds_the_model():
    model = Sequential()
    model.add(layers.Conv2D(8, 3, padding="same", activation="relu", input_shape=(10, 12, 2)))
    model.add(layers.MaxPooling2D((2, 2), strides=(2, 2)))
    assert model.built and model.input_shape == (None, 10, 12, 2)
    assert model.output_shape == (None, 5, 6, 8)
    assert model.count_params() == 3 * 3 * 2 * 8 + 8


def test_model_without_input_builds_from_data():
    model = Sequential([layers.Conv2D(3, 3), layers.Flatten(), layers.Dense(2)])
    assert not model.built
    with pytest.raises(RuntimeError, match=r"has not been built yet.*Input\(shape=\.\.\.\)"):
        model.summary()
    with pytest.raises(RuntimeError, match=r"has not been built yet"):
        model.count_params()
    out = model.predict(np.zeros((5, 6, 6, 1)))
    assert out.shape == (5, 2) and model.input_shape == (None, 6, 6, 1)
    explicit = Sequential([layers.Dense(3)])
    explicit.build((None, 7))
    assert explicit.count_params() == 24
    with pytest.raises(RuntimeError, match=r"cannot be built without an input shape"):
        Sequential([layers.Dense(3)]).build()


def test_data_one_axis_off_a_single_channel_input_is_adjusted_as_in_keras():
    # Keras 3 (Functional._adjust_input_rank): (N, H, W) for an (H, W, 1) input gains the
    # channel axis; a trailing axis of 1 beyond the input's rank is dropped.
    rng = np.random.default_rng(0)
    gray = Sequential([layers.Input((8, 8, 1)), layers.Conv2D(2, 3), layers.Flatten(),
                       layers.Dense(3, activation="softmax")])
    gray.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    x = rng.random((6, 8, 8), dtype=np.float32)
    y = np.array([0, 1, 2, 0, 1, 2])
    np.testing.assert_array_equal(gray.predict(x, verbose=0), gray.predict(x[..., None], verbose=0))
    assert gray.evaluate(x, y) == gray.evaluate(x[..., None], y)
    gray.fit(x, y, epochs=1, verbose=0)
    gray.train_on_batch(x, y)
    flat = Sequential([layers.Input((5,)), layers.Dense(2)])
    np.testing.assert_array_equal(flat.predict(np.ones((3, 5, 1)), verbose=0), flat.predict(np.ones((3, 5)), verbose=0))


def test_model_checks_the_input_shape():
    model = small_cnn()
    with pytest.raises(ValueError, match=r"Model 'sequential' expected input of shape \(None, 8, 8, 3\), but received "
                                         r"input with shape \(2, 9, 8, 3\)\."):
        model.predict(np.zeros((2, 9, 8, 3)))
    gray = Sequential([layers.Input((8, 8, 1)), layers.Conv2D(1, 3)])
    with pytest.raises(ValueError, match=r"expected input of shape \(None, 8, 8, 1\), but received input with shape "
                                         r"\(2, 8, 9\)"):
        gray.predict(np.zeros((2, 8, 9)))  # one axis short, but not the channel axis's sizes
    with pytest.raises(ValueError, match=r"expected a non-empty batch"):
        model.predict(np.zeros((0, 8, 8, 3)))
    with pytest.raises(TypeError, match=r"predict\(\) expected a real numeric array for 'x'"):
        model.predict(np.array([["a"]]))


def test_predict_batches_equal_one_call_and_call_is_forward():
    model = small_cnn()
    x = np.random.default_rng(0).standard_normal((37, 8, 8, 3)).astype(np.float32)
    whole = model(x)
    np.testing.assert_allclose(model.predict(x, batch_size=5), whole, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(model.predict_on_batch(x), whole, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(whole.sum(axis=1), 1.0, rtol=1e-5)
    with pytest.raises(ValueError, match=r"'batch_size' of predict\(\): expected a positive integer"):
        model.predict(x, batch_size=0)


def test_get_set_weights_model_level():
    model = small_cnn()
    weights = model.get_weights()
    assert [w.shape for w in weights] == [(3, 3, 3, 4), (4,), (3, 3, 4, 6), (6,), (24, 4), (4,)]
    other = small_cnn()
    other.set_weights(weights)
    x = np.random.default_rng(1).standard_normal((3, 8, 8, 3))
    np.testing.assert_array_equal(other.predict(x), model.predict(x))
    with pytest.raises(ValueError, match=r"expected a list of 6 weight arrays\. Received: a list of 5"):
        other.set_weights(weights[:5])
    bad = list(weights)
    bad[4] = np.zeros((4, 24))
    before = other.get_weights()
    with pytest.raises(ValueError, match=r"Layer 'dense_1' expected weight 'kernel' with shape \(24, 4\)\. "
                                         r"Received: shape=\(4, 24\)\."):
        other.set_weights(bad)
    for a, b in zip(before, other.get_weights()):  # nothing was changed
        np.testing.assert_array_equal(a, b)


def test_config_round_trip():
    model = small_cnn()
    clone = Sequential.from_config(model.get_config())
    assert clone.get_config()["layers"] == model.get_config()["layers"]
    assert clone.output_shape == model.output_shape and clone.count_params() == model.count_params()


def test_compile_errors():
    model = small_cnn()
    with pytest.raises(RuntimeError, match=r"You must call compile\(\) before fit\(\)"):
        model.fit(np.zeros((2, 8, 8, 3)), np.zeros(2))
    with pytest.raises(RuntimeError, match=r"before evaluate\(\)"):
        model.evaluate(np.zeros((2, 8, 8, 3)), np.zeros(2))
    with pytest.raises(ValueError, match=r"Unknown optimizer.*Received: optimizer='adamw'"):
        model.compile(optimizer="adamw", loss="mse")
    with pytest.raises(ValueError, match=r"Unknown loss.*Received: loss='hinge'"):
        model.compile(optimizer="sgd", loss="hinge")
    with pytest.raises(ValueError, match=r"expected a loss"):
        model.compile(optimizer="sgd")
    with pytest.raises(ValueError, match=r"does not know the metric 'auc'"):
        model.compile(optimizer="sgd", loss="mse", metrics=["auc"])
    with pytest.warns(UserWarning, match=r"from_logits=True but the last layer 'dense' applies a softmax"):
        model.compile(loss=losses.SparseCategoricalCrossentropy(from_logits=True))
    model.compile(optimizer=optimizers.SGD(0.1), loss="categorical_crossentropy", metrics=["acc"])
    assert isinstance(model.optimizer, optimizers.SGD) and model.metrics_names == ["acc"]  # Keras 3's name


def _gradients_through_softmax_jacobian(model, x, y):
    """Reference path: probabilities -> probability-space loss gradient -> layer.backward chain."""
    probs = model(x, training=True)
    d = losses.SparseCategoricalCrossentropy().gradient(y, probs)
    for layer in reversed(model.layers):
        d = layer.backward(d)
    return [g.copy() for layer in model.layers for g in layer.get_gradients()], probs


def test_fused_training_step_matches_the_chained_gradient(monkeypatch):
    monkeypatch.setenv("PYCNN_NATIVE_STEP", "0")  # the layer-by-layer path; tests/test_native_network.py covers the other
    model = small_cnn()
    x = np.random.default_rng(2).standard_normal((6, 8, 8, 3)).astype(np.float32)
    y = np.array([0, 1, 2, 3, 1, 0])
    expected, probs = _gradients_through_softmax_jacobian(model, x, y)
    before = model.get_weights()

    calls = {"fused_loss": 0}
    real_loss = pycnn.ops.loss

    def counting_loss(*args, **kwargs):
        calls["fused_loss"] += 1
        return real_loss(*args, **kwargs)

    def forbidden(*args, **kwargs):
        raise AssertionError("training chained the softmax Jacobian instead of the fused loss")

    monkeypatch.setattr(pycnn.ops, "loss", counting_loss)
    monkeypatch.setattr(losses.SparseCategoricalCrossentropy, "gradient", forbidden)
    model.compile(optimizer=optimizers.SGD(learning_rate=1.0), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    loss, acc = model.train_on_batch(x, y)
    assert calls["fused_loss"] == 1
    grads = [b - a for a, b in zip(model.get_weights(), before)]  # w_new = w - 1.0 * g
    for g, e in zip(grads, expected):
        np.testing.assert_allclose(g, e, rtol=1e-3, atol=2e-6)
    # the reported loss and accuracy are those of the batch before the update
    assert loss == pytest.approx(-np.mean(np.log(probs[np.arange(6), y])), rel=1e-5)
    assert acc == np.mean(probs.argmax(axis=1) == y)


def test_fused_path_for_an_activation_softmax_layer_and_categorical_targets(monkeypatch):
    model = Sequential([layers.Input((5,)), layers.Dense(3), layers.Activation("softmax")])
    x = np.random.default_rng(3).standard_normal((4, 5)).astype(np.float32)
    y = np.array([2, 0, 1, 1])
    expected, _ = _gradients_through_softmax_jacobian(model, x, y)
    before = model.get_weights()
    monkeypatch.setattr(losses.CategoricalCrossentropy, "gradient",
                        lambda *a, **k: (_ for _ in ()).throw(AssertionError("chained")))
    model.compile(optimizer=optimizers.SGD(learning_rate=1.0), loss="categorical_crossentropy")
    loss = model.train_on_batch(x, utils.to_categorical(y, 3))
    assert isinstance(loss, float)
    for g, e in zip([b - a for a, b in zip(model.get_weights(), before)], expected):
        np.testing.assert_allclose(g, e, rtol=1e-3, atol=2e-6)


def test_first_layer_skips_its_input_gradient():
    model = small_cnn()
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    compiled = pycnn.executor.compiled(model._graph(), [(2, 8, 8, 3)], True, True, model.trainable_weights)
    (segment,) = compiled.steps
    # value 0 is the input: no gradient is computed for it; every layer's output needs one
    assert segment.network.needs_grad == [False] + [True] * len(model.layers)
    model.layers[0].trainable = False
    model.layers[1].trainable = False  # a frozen prefix: nothing before conv2d_1's weights needs a gradient
    compiled = pycnn.executor.compiled(model._graph(), [(2, 8, 8, 3)], True, True, model.trainable_weights)
    assert compiled.steps[0].network.needs_grad[:3] == [False, False, False]


def test_frozen_layers_are_not_updated_and_counted_as_non_trainable():
    model = small_cnn()
    model.layers[0].trainable = False
    frozen = model.layers[0].get_weights()
    lines = []
    model.summary(print_fn=lines.append)
    assert "Non-trainable params: 112" in lines
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.train_on_batch(np.random.default_rng(4).standard_normal((3, 8, 8, 3)), np.array([0, 1, 2]))
    for a, b in zip(frozen, model.layers[0].get_weights()):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(model.layers[2].get_weights()[0], small_cnn().layers[2].get_weights()[0])


def test_lecture_models_predict_shapes():
    x = np.random.default_rng(5).random((2, 32, 32, 3)).astype(np.float32)
    out = models.lenet().predict(x)
    assert out.shape == (2, 10)
    np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=1e-5)
    assert models.fully_convolutional_cnn(num_classes=3).predict(np.zeros((1, 40, 36, 1))).shape == (1, 4, 3, 3)
    assert pycnn.models.strided_cnn(input_shape=(28, 28, 1)).predict(np.zeros((1, 28, 28, 1))).shape == (1, 10)
