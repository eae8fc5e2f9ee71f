"""BatchNormalization as a layer: Keras semantics (moving statistics, frozen layers in
inference mode, weights and summary) against the float64 oracle, its op spec, the batch-wide
node of the native step against layer-by-layer training for any number of threads, and the
folding of inference-mode batch normalization into the convolution before it. The batchnorm
op itself is tested in test_ops_batchnorm.py (the oracle's gradients in test_oracle.py)."""
from __future__ import annotations

import os

import numpy as np
import pytest

import oracle as ref
import pycnn
from pycnn import layers, ops

TOL = dict(rtol=2e-4, atol=2e-5)


def _data(rng, shape, loc=0.0, scale=1.0):
    return (rng.standard_normal(shape) * scale + loc).astype(np.float32)


# ----------------------------------------------------------------------------- the layer


def test_training_call_normalizes_and_moves_the_statistics_as_keras(rng):
    bn = layers.BatchNormalization(momentum=0.9)
    x = _data(rng, (6, 3, 3, 2), loc=2.0, scale=3.0)
    out = bn(x, training=True)
    r_out, mean, var = ref.batchnorm_forward_train(x)
    ref.assert_close(out, r_out, **TOL)
    # float32 as Keras: moving * momentum + batch * (1 - momentum)
    ref.assert_close(bn.moving_mean, 0.1 * mean, **TOL)
    ref.assert_close(bn.moving_variance, 0.9 + 0.1 * var, **TOL)
    # Inference uses the moving statistics and leaves them alone.
    moving = [w.copy() for w in bn.get_weights()]
    ref.assert_close(bn(x), ref.batchnorm_forward_infer(x, None, None, moving[2], moving[3]), **TOL)
    for a, b in zip(moving, bn.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_frozen_layer_runs_in_inference_mode_even_in_training(rng):
    bn = layers.BatchNormalization(trainable=False)
    x = _data(rng, (4, 2, 2, 3), loc=1.0)
    bn.build(x.shape)
    bn.set_weights([np.full(3, 2.0), np.full(3, 0.5), np.full(3, 0.25), np.full(3, 4.0)])
    out = bn(x, training=True)
    ref.assert_close(out, ref.batchnorm_forward_infer(x, np.full(3, 2.0), np.full(3, 0.5), np.full(3, 0.25),
                                                      np.full(3, 4.0)), **TOL)
    np.testing.assert_array_equal(bn.moving_mean, np.full(3, 0.25, np.float32))
    assert bn.trainable_weights == [] and len(bn.non_trainable_weights) == 4


def test_weights_names_and_counts_follow_keras():
    bn = layers.BatchNormalization()
    bn.build((None, 8, 8, 5))
    assert bn.weight_names == ["gamma", "beta", "moving_mean", "moving_variance"]
    assert [len(bn.trainable_weights), len(bn.non_trainable_weights)] == [2, 2]
    bare = layers.BatchNormalization(center=False, scale=False)
    bare.build((None, 5))
    assert bare.weight_names == ["moving_mean", "moving_variance"] and bare.trainable_weights == []
    model = pycnn.Sequential([layers.Input((8, 8, 3)), layers.Conv2D(4, 3), layers.BatchNormalization(),
                              layers.Flatten(), layers.Dense(2)])
    lines = []
    model.summary(print_fn=lines.append)
    text = "\n".join(lines)
    total = 3 * 3 * 3 * 4 + 4 + 4 * 4 + 36 * 4 * 2 + 2
    assert f"Total params: {total:,}" in text
    assert "Non-trainable params: 8" in text and f"Trainable params: {total - 8:,}" in text


@pytest.mark.parametrize("kwargs, match", [
    (dict(axis=1), "last axis only"), (dict(momentum=1.5), "momentum"), (dict(epsilon=0.0), "epsilon"),
    (dict(center="yes"), "center"),
])
def test_bad_arguments_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        bn = layers.BatchNormalization(**kwargs)
        bn.build((None, 4, 4, 3))


def test_layer_backward_matches_reference_in_both_modes(rng):
    x, dout = _data(rng, (5, 3, 3, 4)), _data(rng, (5, 3, 3, 4))
    bn = layers.BatchNormalization()
    bn.build(x.shape)
    bn.set_weights([_data(rng, 4), _data(rng, 4), _data(rng, 4), (rng.random(4) + 0.5).astype(np.float32)])
    gamma, beta, mm, mv = bn.get_weights()
    bn(x, training=False)
    dx = bn.backward(dout)
    want = ref.batchnorm_backward_infer(dout, x, gamma, beta, mm, mv)
    ref.assert_close(dx, want[0], **TOL)
    ref.assert_close(bn.get_gradients()[0], want[1], rtol=2e-4, atol=2e-4, scale_atol=True)
    ref.assert_close(bn.get_gradients()[1], want[2], rtol=2e-4, atol=2e-4, scale_atol=True)
    bn(x, training=True)
    dx = bn.backward(dout)
    want = ref.batchnorm_backward_train(dout, x, gamma, beta)
    ref.assert_close(dx, want[0], rtol=2e-4, atol=2e-4, scale_atol=True)
    ref.assert_close(bn.get_gradients()[0], want[1], rtol=2e-4, atol=2e-4, scale_atol=True)
    ref.assert_close(bn.get_gradients()[1], want[2], rtol=2e-4, atol=2e-4, scale_atol=True)
    assert bn.get_gradients()[2:] == [None, None]


def test_specs_describe_the_op_in_both_modes():
    bn = layers.BatchNormalization(momentum=0.9, epsilon=1e-2, center=False)
    bn.build((None, 5, 3))
    train, infer = bn.spec(training=True), bn.spec(training=False)
    assert train.kind == infer.kind == "batchnorm"
    assert train.attrs["training"] == 1 and infer.attrs["training"] == 0
    assert train.attrs["momentum"] == pytest.approx(0.9) and train.attrs["epsilon"] == pytest.approx(1e-2)
    gamma, beta, mean, var = train.params
    assert beta is None and gamma is bn.gamma and mean is bn.moving_mean and var is bn.moving_variance
    frozen = layers.BatchNormalization(trainable=False)
    frozen.build((None, 4))
    assert frozen.spec(training=True).attrs["training"] == 0  # a frozen layer stays in inference mode


# ----------------------------------------------------------------------------- in a model


def _model(seed, frozen=False, dense_bn=False):
    pycnn.utils.set_random_seed(seed)
    # No conv bias: BN cancels it, so its gradient is round-off that Adam scales up to lr-sized steps.
    body = [layers.Input((8, 8, 3)), layers.Conv2D(6, 3, padding="same", use_bias=False),
            layers.BatchNormalization(momentum=0.8, trainable=not frozen), layers.Activation("relu"),
            layers.MaxPooling2D(2), layers.Flatten(), layers.Dense(8, use_bias=not dense_bn)]
    if dense_bn:
        body.append(layers.BatchNormalization(center=False))
    model = pycnn.Sequential(body + [layers.Activation("relu"), layers.Dense(4, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def _train(model, x, y, steps):
    return [model.train_on_batch(x, y) for _ in range(steps)]


@pytest.mark.parametrize("frozen, dense_bn", [(False, False), (False, True), (True, False)])
@pytest.mark.parametrize("batch", [37, 3])
def test_native_step_matches_layer_by_layer(rng, monkeypatch, native_step_calls, frozen, dense_bn, batch):
    x, y = _data(rng, (batch, 8, 8, 3), loc=0.5), rng.integers(0, 4, batch)
    native = _model(3, frozen, dense_bn)
    got = _train(native, x, y, 4)
    assert native_step_calls["n"] == 4
    monkeypatch.setenv("PYCNN_NATIVE_STEP", "0")
    eager = _model(3, frozen, dense_bn)
    want = _train(eager, x, y, 4)
    assert native_step_calls["n"] == 4
    np.testing.assert_allclose(np.array(got), np.array(want), rtol=1e-4, atol=1e-5)
    for a, b, name in zip(native.get_weights(), eager.get_weights(), [w for l in native.layers for w in l.weight_names]):
        np.testing.assert_allclose(a, b, rtol=2e-3, atol=2e-4, err_msg=name)
    monkeypatch.delenv("PYCNN_NATIVE_STEP")
    np.testing.assert_allclose(native.predict(x), eager.predict(x), rtol=1e-4, atol=1e-5)


def test_native_step_does_not_depend_on_the_thread_count(rng):
    x, y = _data(rng, (29, 8, 8, 3)), rng.integers(0, 4, 29)
    before = ops.get_num_threads()
    runs = []
    try:
        for threads in (1, 2, 4):
            ops.set_num_threads(threads)
            model = _model(5, dense_bn=True)
            runs.append((_train(model, x, y, 3), model.get_weights()))
    finally:
        ops.set_num_threads(before)
    for losses, weights in runs[1:]:
        np.testing.assert_allclose(losses, runs[0][0], rtol=1e-5)
        for a, b in zip(weights, runs[0][1]):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_moving_statistics_follow_the_batches_in_the_native_step(rng):
    model = _model(7)
    bn = model.layers[1]
    x, y = _data(rng, (16, 8, 8, 3), loc=1.0, scale=2.0), rng.integers(0, 4, 16)
    conv_out = model.layers[0](x)
    model.train_on_batch(x, y)
    mean, var = ref.batch_moments(conv_out)
    ref.assert_close(bn.moving_mean, 0.2 * mean, rtol=1e-4, atol=1e-5)
    ref.assert_close(bn.moving_variance, 0.8 + 0.2 * var, rtol=1e-4, atol=1e-5)


def test_a_nonfinite_step_leaves_the_moving_statistics_alone(rng):
    model = _model(9)
    x, y = _data(rng, (8, 8, 8, 3)), rng.integers(0, 4, 8)
    model.train_on_batch(x, y)
    before = [w.copy() for w in model.get_weights()]
    x[0, 0, 0, 0] = np.nan
    with pytest.raises(pycnn.NonFiniteLossError):
        model.fit(x, y, batch_size=8, epochs=1, verbose=0, shuffle=False)
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_fit_save_load_keeps_the_moving_statistics(rng, tmp_path):
    x, y = _data(rng, (64, 8, 8, 3)), rng.integers(0, 4, 64)
    model = _model(11, dense_bn=True)
    model.fit(x, y, batch_size=16, epochs=2, verbose=0)
    path = str(tmp_path / "bn.npz")
    model.save(path)
    loaded = pycnn.models.load_model(path)
    for a, b in zip(model.get_weights(), loaded.get_weights()):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(loaded.predict(x), model.predict(x), rtol=1e-6, atol=1e-7)
    assert loaded.evaluate(x, y, verbose=0) == pytest.approx(model.evaluate(x, y, verbose=0))


def test_matches_keras_when_installed(rng):
    """Same weights and data: Keras 3's BatchNormalization in a small CNN, 3 epochs of Adam."""
    pytest.importorskip("tensorflow", reason="TensorFlow is an optional cross-check")
    import keras

    x, y = _data(rng, (96, 8, 8, 3), loc=0.5), rng.integers(0, 4, 96)
    ours = _model(13, dense_bn=True)
    theirs = keras.Sequential([
        keras.Input((8, 8, 3)), keras.layers.Conv2D(6, 3, padding="same", use_bias=False),
        keras.layers.BatchNormalization(momentum=0.8), keras.layers.Activation("relu"),
        keras.layers.MaxPooling2D(2), keras.layers.Flatten(), keras.layers.Dense(8, use_bias=False),
        keras.layers.BatchNormalization(center=False), keras.layers.Activation("relu"),
        keras.layers.Dense(4, activation="softmax")])
    theirs.set_weights(ours.get_weights())
    theirs.compile(optimizer=keras.optimizers.Adam(), loss="sparse_categorical_crossentropy")
    ref.assert_close(ours.predict(x), theirs.predict(x, verbose=0), rtol=1e-4, atol=1e-5)
    a = ours.fit(x, y, batch_size=32, epochs=3, shuffle=False, verbose=0).history["loss"]
    b = theirs.fit(x, y, batch_size=32, epochs=3, shuffle=False, verbose=0).history["loss"]
    np.testing.assert_allclose(a, b, rtol=2e-3)
    for w1, w2 in zip(ours.get_weights(), theirs.get_weights()):
        np.testing.assert_allclose(w1, np.asarray(w2), rtol=2e-2, atol=2e-3)


def test_inference_folds_batchnorm_into_the_convolution_and_follows_later_weights(rng, monkeypatch):
    from pycnn import executor

    x, y = _data(rng, (20, 8, 8, 3)), rng.integers(0, 4, 20)
    model = _model(17, dense_bn=True)
    model.fit(x, y, batch_size=5, epochs=1, verbose=0)
    plan = executor.CompiledGraph(model._graph().expanded(), [(None, 8, 8, 3)], training=False, logits=True,
                                  trained=[])
    kinds = [s.kind for s in plan.specs]
    # conv2d + batchnorm + relu -> one conv2d (relu fused) and two identities; dense + BN + relu too.
    assert "batchnorm" not in kinds and kinds.count("identity") >= 4 and len(plan._refresh) == 2
    assert plan.specs[0].kind == "conv2d" and plan.specs[0].attrs["activation"] == "relu"
    training = executor.CompiledGraph(model._graph().expanded(), [(None, 8, 8, 3)], training=True, logits=True,
                                      trained=[])
    assert [s.kind for s in training.specs].count("batchnorm") == 2  # batch statistics: nothing to fold
    native = model.predict(x)
    monkeypatch.setenv("PYCNN_NATIVE_STEP", "0")
    eager = model.predict(x)
    np.testing.assert_allclose(native, eager, rtol=1e-5, atol=1e-6)
    monkeypatch.delenv("PYCNN_NATIVE_STEP")
    model.fit(x, y, batch_size=5, epochs=1, verbose=0)  # new weights and statistics
    native = model.predict(x)
    monkeypatch.setenv("PYCNN_NATIVE_STEP", "0")
    np.testing.assert_allclose(native, model.predict(x), rtol=1e-5, atol=1e-6)
