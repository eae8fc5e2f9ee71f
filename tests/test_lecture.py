"""The lecture's examples (shared/seed/cnn-lecture.txt) reproduced through the public API:
model summaries, the fully convolutional model on two input sizes, the Dense-after-None
error, the activation examples and the three backprop walk-throughs."""
from __future__ import annotations

import re

import numpy as np
import pytest

import pycnn
from pycnn import activations, layers, losses, models, utils
from pycnn.models import Sequential


@pytest.fixture(autouse=True)
def _fresh_session():
    utils.clear_session()
    utils.set_random_seed(0)
    yield
    utils.clear_session()


def summary_lines(model):
    lines = []
    model.summary(print_fn=lines.append)
    return lines


def test_fashion_mnist_model_summary_matches_the_lecture():
    model = Sequential()
    model.add(layers.Input(shape=(28, 28, 1)))
    model.add(layers.Conv2D(32, (7, 7), activation="relu"))
    model.add(layers.Conv2D(64, (7, 7), activation="relu"))
    model.add(layers.Conv2D(128, (7, 7), activation="relu"))
    model.add(layers.Conv2D(256, (7, 7), activation="relu"))
    model.add(layers.Flatten())
    model.add(layers.Dense(10, activation="softmax"))
    lines = summary_lines(model)
    assert lines[0] == 'Model: "sequential"'
    assert re.fullmatch(r" Layer \(type\)\s+Output Shape\s+Param #", lines[2])
    rows = [re.split(r"\s{2,}", line.strip()) for line in lines[4:10]]
    assert rows == [
        ["conv2d (Conv2D)", "(None, 22, 22, 32)", "1600"],
        ["conv2d_1 (Conv2D)", "(None, 16, 16, 64)", "100416"],
        ["conv2d_2 (Conv2D)", "(None, 10, 10, 128)", "401536"],
        ["conv2d_3 (Conv2D)", "(None, 4, 4, 256)", "1605888"],
        ["flatten (Flatten)", "(None, 4096)", "0"],
        ["dense (Dense)", "(None, 10)", "40970"],
    ]
    assert "Total params: 2,150,410" in lines
    assert "Trainable params: 2,150,410" in lines
    assert "Non-trainable params: 0" in lines
    assert model.count_params() == 2150410
    # the same numbers from the ready-made builder
    utils.clear_session()
    assert summary_lines(models.fashion_mnist_cnn())[4:10] == lines[4:10]


def test_summary_prints_to_stdout_by_default(capsys):
    models.lenet().summary()
    out = capsys.readouterr().out
    assert 'Model: "lenet"' in out and "Total params: 83,126" in out


def test_fully_convolutional_model_accepts_any_input_size():
    model = Sequential()
    model.add(layers.Input(shape=(None, None, 1)))
    model.add(layers.Conv2D(32, (3, 3), strides=1, padding="same", activation="relu"))
    model.add(layers.Conv2D(64, (3, 3), strides=2, padding="same", activation="relu"))
    model.add(layers.Conv2D(128, (3, 3), strides=1, padding="same", activation="relu"))
    model.add(layers.Conv2D(256, (3, 3), strides=2, padding="same", activation="relu"))
    model.add(layers.Conv2D(512, (7, 7), strides=1, activation="relu"))
    model.add(layers.Conv2D(10, (1, 1), strides=1, activation="softmax"))
    rng = np.random.default_rng(0)
    small = model.predict(rng.standard_normal((32, 28, 28, 1)).astype(np.float32))
    large = model.predict(rng.standard_normal((32, 64, 64, 1)).astype(np.float32))
    assert small.shape == (32, 1, 1, 10)
    assert large.shape == (32, 10, 10, 10)
    np.testing.assert_allclose(large.sum(axis=-1), 1.0, rtol=1e-5)
    assert model.output_shape == (None, None, None, 10)


def test_dense_after_an_undefined_dimension_fails_at_add():
    model = Sequential()
    model.add(layers.Input(shape=(None, None, 1)))
    model.add(layers.Conv2D(32, (3, 3), activation="relu"))
    model.add(layers.Conv2D(64, (3, 3), activation="relu"))
    model.add(layers.MaxPooling2D(2))
    model.add(layers.Conv2D(128, (3, 3), activation="relu"))
    model.add(layers.Conv2D(256, (3, 3), activation="relu"))
    model.add(layers.MaxPooling2D(2))
    model.add(layers.Conv2D(512, (3, 3), activation="relu"))
    model.add(layers.Flatten())
    with pytest.raises(ValueError, match=r"Dense layer 'dense' needs a defined last input dimension, but received "
                                         r"input shape \(None, None\)\. Give the model a fixed input size"):
        model.add(layers.Dense(10, activation="softmax"))
    assert len(model.layers) == 8  # the failed layer was not added


def test_lenet_and_vgg16_structure():
    lenet = models.lenet(input_shape=(28, 28, 1), num_classes=10)
    kinds = [(type(l).__name__, l.output_shape) for l in lenet.layers]
    assert kinds == [("Conv2D", (None, 28, 28, 6)), ("MaxPooling2D", (None, 14, 14, 6)),
                     ("Conv2D", (None, 10, 10, 16)), ("MaxPooling2D", (None, 5, 5, 16)),
                     ("Flatten", (None, 400)), ("Dense", (None, 120)), ("Dense", (None, 84)),
                     ("Dense", (None, 10))]
    assert lenet.layers[0].padding == "same" and lenet.layers[2].padding == "valid"
    assert [l.activation for l in lenet.layers if hasattr(l, "activation")] == ["relu"] * 4 + ["softmax"]
    assert models.lenet().count_params() == 83126  # CIFAR-10 shapes (32, 32, 3)
    # VGG16 at a small input size keeps the test light; the layer stack is the lecture's.
    vgg = models.vgg16(input_shape=(32, 32, 1), num_classes=10)
    convs = [l for l in vgg.layers if isinstance(l, layers.Conv2D)]
    assert [c.filters for c in convs] == [64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512]
    assert all(c.kernel_size == (3, 3) and c.padding == "same" and c.activation == "relu" for c in convs)
    assert sum(isinstance(l, layers.MaxPooling2D) for l in vgg.layers) == 5
    assert vgg.output_shape == (None, 10)
    conv_params = sum(c.count_params() for c in convs)
    assert vgg.count_params() == conv_params + (512 * 4096 + 4096) + (4096 * 4096 + 4096) + (4096 * 10 + 10)
    # The convolutions do not depend on the input size, so the full-size (224, 224, 1) count
    # follows without allocating its 553 MB: flatten gives 7 * 7 * 512 = 25088 features.
    assert vgg.layers[-4].compute_output_shape((None, 7, 7, 512)) == (None, 25088)
    full = conv_params + (25088 * 4096 + 4096) + (4096 * 4096 + 4096) + (4096 * 1000 + 1000)
    assert full == 138_356_392  # the number vgg16()'s docstring states


def test_strided_models_shapes():
    valid = models.strided_cnn()
    assert [l.output_shape for l in valid.layers][:5] == [(None, 26, 26, 32), (None, 12, 12, 64),
                                                         (None, 10, 10, 128), (None, 4, 4, 256),
                                                         (None, 2, 2, 512)]
    same = models.strided_cnn(padding="same")
    assert same.layers[4].output_shape == (None, 7, 7, 512)
    assert same.output_shape == (None, 10)


def test_activation_examples():
    data = np.array([1, 5, -4, 3, -2], dtype=np.float32)
    # The slide prints truncated values (0.017 for 0.01799, 0.95 for 0.9526), hence atol=3e-3.
    np.testing.assert_allclose(activations.sigmoid(data), [0.731, 0.993, 0.017, 0.95, 0.119], atol=3e-3)
    np.testing.assert_allclose(activations.tanh(data), [0.761, 0.999, -0.999, 0.995, -0.964], atol=3e-3)
    np.testing.assert_array_equal(activations.relu(data), [1, 5, 0, 3, 0])
    np.testing.assert_allclose(activations.softmax(np.array([1.0, 2.0, 3.0])),
                               [0.09003057, 0.24472847, 0.66524096], rtol=1e-6)
    big = activations.softmax(np.array([1000.0, 1001.0, 1002.0]))
    assert np.all(np.isfinite(big))
    np.testing.assert_allclose(big, [0.09003057, 0.24472847, 0.66524096], rtol=1e-6)


DATA_X = np.array([[1, 5, 3, 7],
                   [7, 3, 9, 2],
                   [3, 5, 8, 4],
                   [8, 7, 3, 5]], dtype=np.float64).reshape(1, 4, 4, 1)


def test_max_pooling_walkthrough():
    pool = layers.MaxPooling2D(pool_size=2, strides=2)
    data_y = np.ones((1, 2, 2, 1))
    out = pool(DATA_X)
    np.testing.assert_array_equal(out[0, :, :, 0], [[7, 9], [8, 8]])
    mse = losses.MeanSquaredError()
    assert mse(data_y, out) == 49.5
    dloss = mse.gradient(data_y, out)
    np.testing.assert_allclose(dloss[0, :, :, 0], [[3, 4], [3.5, 3.5]])
    ddata_x = pool.backward(dloss)
    np.testing.assert_allclose(ddata_x[0, :, :, 0], [[0, 0, 0, 0],
                                                     [3, 0, 4, 0],
                                                     [0, 0, 3.5, 0],
                                                     [3.5, 0, 0, 0]])


def test_average_pooling_walkthrough():
    pool = layers.AveragePooling2D(pool_size=2, strides=2)
    data_y = np.ones((1, 2, 2, 1))
    out = pool(DATA_X)
    np.testing.assert_allclose(out[0, :, :, 0], [[4, 5.25], [5.75, 5]])
    mse = losses.MeanSquaredError()
    assert mse(data_y, out) == pytest.approx(16.40625, abs=1e-6)
    dloss = mse.gradient(data_y, out)
    np.testing.assert_allclose(dloss[0, :, :, 0], [[1.5, 2.125], [2.375, 2.0]])
    ddata_x = pool.backward(dloss)
    np.testing.assert_allclose(ddata_x[0, :, :, 0], [[0.375, 0.375, 0.53125, 0.53125],
                                                     [0.375, 0.375, 0.53125, 0.53125],
                                                     [0.59375, 0.59375, 0.5, 0.5],
                                                     [0.59375, 0.59375, 0.5, 0.5]])


def test_convolution_walkthrough():
    conv = layers.Conv2D(1, (2, 2), activation="relu")
    data_x = np.array([[1, 1, 2], [1, 2, 1], [2, 1, 1]]).reshape(1, 3, 3, 1)
    data_y = np.ones((1, 2, 2, 1))
    conv.build((None, 3, 3, 1))
    conv.set_weights([np.array([[0.6779961, -0.3282364], [0.61954254, -0.02001727]]).reshape(2, 2, 1, 1),
                      np.zeros(1)])
    out = conv(data_x)
    np.testing.assert_allclose(out[0, :, :, 0], [[0.9292677, 1.2405912], [1.2405912, 1.6272811]], rtol=1e-6)
    mse = losses.MeanSquaredError()
    assert mse(data_y, out) == pytest.approx(0.12856321, rel=1e-6)
    dloss = mse.gradient(data_y, out)
    np.testing.assert_allclose(dloss[0, :, :, 0], [[-0.03536615, 0.12029558], [0.12029558, 0.31364053]],
                               rtol=1e-5)
    conv.backward(dloss)
    dkernel, dbias = conv.get_gradients()
    np.testing.assert_allclose(dkernel[:, :, 0, 0], [[0.83250606, 0.75945675], [0.75945675, 0.4834994]],
                               rtol=1e-5)
    np.testing.assert_allclose(dbias, [0.5188656], rtol=1e-5)


def test_lecture_training_snippet_runs_end_to_end(capsys):
    """The lecture's compile/fit/evaluate calls, on a tiny random stand-in for Fashion-MNIST."""
    rng = np.random.default_rng(0)
    train_images = rng.random((64, 28, 28, 1)).astype(np.float32)
    train_labels = rng.integers(0, 10, 64)
    model = models.strided_cnn()
    model.compile(optimizer="adam", metrics=["accuracy"], loss="sparse_categorical_crossentropy")
    history = model.fit(train_images, train_labels, epochs=1, verbose=0)
    test_loss, test_acc = model.evaluate(train_images, train_labels, verbose=2)
    probs = model.predict(train_images)
    assert test_acc == np.mean(probs.argmax(axis=1) == train_labels)  # evaluate agrees with predict
    assert test_loss == pytest.approx(-np.mean(np.log(probs[np.arange(64), train_labels].astype(np.float64))),
                                      rel=1e-5)
    assert set(history.history) == {"loss", "accuracy"} and len(history.history["loss"]) == 1
    assert "2/2 - " in capsys.readouterr().out
    assert pycnn.models.Sequential is Sequential


# --------------------------------------------------------------------------- the case study

def test_case_study_runs_as_written_with_pycnn_in_place_of_keras_and_tf_image():
    """The lecture's construct_model(), character for character; only the names ``tf`` and
    ``keras`` point at pycnn (the "imports")."""
    from types import SimpleNamespace

    keras = SimpleNamespace(layers=pycnn.layers, models=pycnn.models, Input=pycnn.Input)
    tf = SimpleNamespace(image=pycnn.image, reshape=np.reshape,
                         keras=SimpleNamespace(layers=pycnn.layers, Model=pycnn.Model, Input=pycnn.Input,
                                               losses=pycnn.losses))

    def construct_model():
        inp = keras.layers.Input(shape=[32,32,3])

        # get edges
        edges = tf.image.sobel_edges(inp)
        edges = tf.keras.layers.Reshape((32,32,6))(edges)

        dx, dy = tf.image.image_gradients(inp)
        x = tf.keras.layers.Concatenate(axis=3)([dx, dy, edges])

        x = keras.layers.MaxPooling2D(2)(x)
        x = keras.layers.Flatten()(x)
        x = keras.layers.Dense(128, activation='relu')(x)
        x = keras.layers.Dense(10, activation='softmax')(x)

        return tf.keras.Model(inputs=[inp], outputs=x)

    rng = np.random.default_rng(0)
    train_images = rng.integers(0, 256, (64, 32, 32, 3)).astype(np.uint8) / 255.0
    train_labels = rng.integers(0, 10, (64, 1))
    train_images = tf.reshape(train_images, (64, 32, 32, 3))
    model = construct_model()
    lines = summary_lines(model)
    assert any("concatenate (Concatenate)" in line and "(None, 32, 32, 12)" in line for line in lines)
    assert "Total params: 394,634" in lines
    model.compile(optimizer='adam',
                  loss=tf.keras.losses.SparseCategoricalCrossentropy(),
                  metrics=['accuracy'])
    history_data = model.fit(train_images, train_labels, batch_size=32,
                             validation_data=(train_images, train_labels), epochs=2, verbose=0)
    assert len(history_data.history["val_accuracy"]) == 2

    # The 4-filter CNN the case study compares it with, as the lecture writes it.
    model = keras.models.Sequential()
    model.add(tf.keras.Input(shape=(32, 32, 3)))
    model.add(keras.layers.Conv2D(4, (3, 3), activation='relu'))
    model.add(keras.layers.MaxPooling2D(2))
    model.add(keras.layers.Flatten())
    model.add(keras.layers.Dense(128, activation='relu'))
    model.add(keras.layers.Dense(10, activation='softmax'))
    assert "Total params: 116,730" in summary_lines(model)


def test_case_study_model_matches_keras_on_the_same_weights_and_data():
    """Optional cross-check: the case-study graph built in Keras 3 with tf.image (wrapped in
    Lambda layers, as Keras 3 requires), pycnn's weights copied in; predictions agree, and
    so do three epochs of Adam without shuffling (losses and final weights)."""
    tf = pytest.importorskip("tensorflow", reason="TensorFlow is an optional cross-check")
    keras = tf.keras
    from pycnn import applications

    inp = keras.Input(shape=(16, 16, 3))
    edges = keras.layers.Lambda(tf.image.sobel_edges)(inp)
    edges = keras.layers.Reshape((16, 16, 6))(edges)
    dy = keras.layers.Lambda(lambda t: tf.image.image_gradients(t)[0])(inp)
    dx = keras.layers.Lambda(lambda t: tf.image.image_gradients(t)[1])(inp)
    x = keras.layers.Concatenate(axis=3)([dy, dx, edges])
    x = keras.layers.MaxPooling2D(2)(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(128, activation="relu")(x)
    x = keras.layers.Dense(10, activation="softmax")(x)
    theirs = keras.Model(inp, x)

    ours = applications.classic_features_model(input_shape=(16, 16, 3))
    theirs.set_weights(ours.get_weights())
    rng = np.random.default_rng(1)
    images = rng.random((96, 16, 16, 3)).astype(np.float32)
    labels = rng.integers(0, 10, 96)
    np.testing.assert_allclose(ours.predict(images, verbose=0), theirs.predict(images, verbose=0),
                               rtol=1e-4, atol=1e-6)

    ours.compile(optimizer=pycnn.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy")
    theirs.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy")
    h_ours = ours.fit(images, labels, batch_size=32, epochs=3, shuffle=False, verbose=0).history["loss"]
    h_theirs = theirs.fit(images, labels, batch_size=32, epochs=3, shuffle=False, verbose=0).history["loss"]
    np.testing.assert_allclose(h_ours, h_theirs, rtol=2e-3)
    for a, b in zip(ours.get_weights(), theirs.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-2, atol=1e-4)
