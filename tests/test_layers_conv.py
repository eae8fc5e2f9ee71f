"""Conv2D(dilation_rate, groups), DepthwiseConv2D and SeparableConv2D as layers: forward and
backward against the float64 oracle, their op specs, the one-call native step against layer
by layer, argument errors, get_config / save / load round trips, and (when TensorFlow is
importable) Keras's own layers on the same weights. The ops themselves are tested in
test_ops_conv.py and test_ops_depthwise.py."""
from __future__ import annotations

import os

import numpy as np
import pytest

import oracle
import pycnn
from pycnn import layers, models, ops, optimizers
from pycnn.models import Sequential

FWD = dict(rtol=1e-5, atol=1e-5)
BWD = dict(rtol=1e-4, atol=1e-4, scale_atol=True)


def _run(layer, x, rng):
    out = layer(x)
    G = rng.standard_normal(out.shape).astype(np.float32)
    return out, G, layer.backward(G), layer.get_gradients()


@pytest.mark.parametrize("kwargs", [dict(filters=6, kernel_size=3, dilation_rate=2, padding="same", activation="relu"),
                                    dict(filters=6, kernel_size=(3, 2), groups=3, strides=2, activation="tanh"),
                                    dict(filters=4, kernel_size=3, groups=2, dilation_rate=(1, 2), use_bias=False)])
def test_conv2d_dilated_grouped_layer(kwargs, rng):
    layer = layers.Conv2D(**kwargs)
    x = rng.uniform(-1, 1, (2, 9, 8, 6)).astype(np.float32)
    out, G, dinp, grads = _run(layer, x, rng)
    groups, act = kwargs.get("groups", 1), kwargs.get("activation") or "linear"
    assert layer.kernel.shape == layer.kernel_size + (6 // groups, kwargs["filters"])
    kw = dict(strides=layer.strides, padding=layer.padding, dilation_rate=layer.dilation_rate, groups=groups,
              activation=act)
    assert layer.spec() == ops.OpSpec("conv2d", kw, (layer.kernel, layer.bias))
    oracle.assert_close(out, oracle.conv2d_forward(x, layer.kernel, layer.bias, **kw), name="out", **FWD)
    rdinp, rdw, rdb = oracle.conv2d_backward(G, x, layer.kernel, layer.bias, **kw)
    oracle.assert_close(dinp, rdinp, name="dinp", **BWD)
    oracle.assert_close(grads[0], rdw, name="dkernel", **BWD)
    if layer.use_bias:
        oracle.assert_close(grads[1], rdb, name="dbias", **BWD)
    else:
        assert rdb is None and len(grads) == 1


@pytest.mark.parametrize("kwargs", [dict(kernel_size=3, depth_multiplier=2, padding="same", activation="relu"),
                                    dict(kernel_size=(2, 3), strides=2, activation="softmax"),
                                    dict(kernel_size=3, dilation_rate=2, use_bias=False)])
def test_depthwise_layer(kwargs, rng):
    layer = layers.DepthwiseConv2D(**kwargs)
    x = rng.uniform(-1, 1, (2, 9, 8, 3)).astype(np.float32)
    out, G, dinp, grads = _run(layer, x, rng)
    M = layer.depth_multiplier
    assert layer.weight_names == (["depthwise_kernel", "bias"] if layer.use_bias else ["depthwise_kernel"])
    assert layer.kernel.shape == layer.kernel_size + (3, M) and out.shape[-1] == 3 * M
    kw = dict(strides=layer.strides, padding=layer.padding, dilation_rate=layer.dilation_rate,
              activation=layer.activation)
    assert layer.spec() == ops.OpSpec("depthwise_conv2d", kw, (layer.kernel, layer.bias))
    oracle.assert_close(out, oracle.depthwise_conv2d_forward(x, layer.kernel, layer.bias, **kw), name="out", **FWD)
    rdinp, rdw, rdb = oracle.depthwise_conv2d_backward(G, x, layer.kernel, layer.bias, **kw)
    oracle.assert_close(dinp, rdinp, name="dinp", **BWD)
    oracle.assert_close(grads[0], rdw, name="ddepthwise", **BWD)
    if layer.use_bias:
        oracle.assert_close(grads[1], rdb, name="dbias", **BWD)


@pytest.mark.parametrize("kwargs", [dict(filters=5, kernel_size=3, depth_multiplier=2, padding="same", activation="tanh"),
                                    dict(filters=4, kernel_size=3, strides=2, use_bias=False),
                                    dict(filters=3, kernel_size=(3, 2), dilation_rate=2, activation="relu")])
def test_separable_layer(kwargs, rng):
    layer = layers.SeparableConv2D(**kwargs)
    x = rng.uniform(-1, 1, (2, 9, 8, 3)).astype(np.float32)
    out, G, dinp, grads = _run(layer, x, rng)
    M, F = layer.depth_multiplier, layer.filters
    names = ["depthwise_kernel", "pointwise_kernel", "bias"]
    assert layer.weight_names == (names if layer.use_bias else names[:2])
    assert [w.shape for w in layer.get_weights()[:2]] == [layer.kernel_size + (3, M), (1, 1, 3 * M, F)]
    kw = dict(strides=layer.strides, padding=layer.padding, dilation_rate=layer.dilation_rate,
              activation=layer.activation)
    assert layer.spec() == ops.OpSpec("separable_conv2d", kw, (layer.kernel, layer.pointwise_kernel, layer.bias))
    oracle.assert_close(out, oracle.separable_conv2d_forward(x, layer.kernel, layer.pointwise_kernel, layer.bias,
                                                             **kw), name="out", **FWD)
    want = oracle.separable_conv2d_backward(G, x, layer.kernel, layer.pointwise_kernel, layer.bias, **kw)
    oracle.assert_close(dinp, want[0], name="dinp", **BWD)
    for got, w, name in zip(grads, [g for g in want[1:] if g is not None], names):
        oracle.assert_close(got, w, name=name, **BWD)


# ----------------------------------------------------------------------------- native step


def _model(seed, kind):
    pycnn.set_random_seed(seed)
    body = {
        "grouped": [layers.Conv2D(6, 3, padding="same", dilation_rate=2, activation="relu"),
                    layers.Conv2D(6, 3, groups=3, strides=2, activation="tanh")],
        "depthwise": [layers.DepthwiseConv2D(3, depth_multiplier=2, padding="same", activation="relu"),
                      layers.DepthwiseConv2D((2, 3), strides=2, dilation_rate=1, use_bias=False, activation="sigmoid")],
        "separable": [layers.SeparableConv2D(5, 3, padding="same", depth_multiplier=2, activation="relu"),
                      layers.SeparableConv2D(4, 3, dilation_rate=2, use_bias=False)],
    }[kind]
    return Sequential([layers.Input((11, 10, 3))] + body + [layers.Flatten(), layers.Dense(4, activation="softmax")])


def _one_sgd_step(model, x, y, native, monkeypatch):
    monkeypatch.setenv("PYCNN_NATIVE_STEP", "1" if native else "0")
    model.compile(optimizer=optimizers.SGD(learning_rate=1.0), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    before = model.get_weights()
    loss, acc = model.train_on_batch(x, y)
    grads = [b - a for a, b in zip(model.get_weights(), before)]
    model.set_weights(before)
    return loss, acc, grads


@pytest.mark.parametrize("kind", ["grouped", "depthwise", "separable"])
@pytest.mark.parametrize("batch", [5, 70])  # 70: every thread runs several chunks
def test_native_step_matches_layer_by_layer(kind, batch, monkeypatch, native_step_calls):
    model = _model(0, kind)
    rng = np.random.default_rng(1)
    x = rng.uniform(-1, 1, (batch, 11, 10, 3)).astype(np.float32)
    y = rng.integers(0, 4, batch)
    loss_n, acc_n, grads_n = _one_sgd_step(model, x, y, True, monkeypatch)
    assert native_step_calls["n"] == 1
    loss_l, acc_l, grads_l = _one_sgd_step(model, x, y, False, monkeypatch)
    assert native_step_calls["n"] == 1
    assert loss_n == pytest.approx(loss_l, rel=1e-5)
    assert acc_n == acc_l
    for gn, gl in zip(grads_n, grads_l):
        np.testing.assert_allclose(gn, gl, rtol=1e-4, atol=1e-5 * (np.abs(gl).max() + 1e-12))
    monkeypatch.setenv("PYCNN_NATIVE_STEP", "1")
    p_native = model.predict(x, verbose=0)
    monkeypatch.setenv("PYCNN_NATIVE_STEP", "0")
    np.testing.assert_allclose(p_native, model.predict(x, verbose=0), rtol=1e-5, atol=1e-6)


def test_specs_name_the_ops():
    """A dilated or grouped Conv2D is the conv2d op with those attributes (one op for every conv)."""
    m = _model(0, "grouped")
    specs = [l.spec(False) for l in m.layers[:2]]
    assert [s.kind for s in specs] == ["conv2d", "conv2d"]
    assert specs[0].attrs["dilation_rate"] == (2, 2) and specs[1].attrs["groups"] == 3
    assert specs[1].params[0] is m.layers[1].kernel  # the live weights, not copies
    assert _model(0, "separable").layers[0].spec().kind == "separable_conv2d"
    assert _model(0, "depthwise").layers[1].spec().params[1] is None  # use_bias=False
    plain = Sequential([layers.Input((6, 6, 2)), layers.Conv2D(4, 3)])
    assert plain.layers[0].spec() == ops.OpSpec("conv2d", dict(strides=(1, 1), padding="valid", dilation_rate=(1, 1),
                                                               groups=1, activation="linear"),
                                                (plain.layers[0].kernel, plain.layers[0].bias))


def test_two_epochs_lower_the_loss():
    rng = np.random.default_rng(3)
    x = rng.uniform(-1, 1, (64, 11, 10, 3)).astype(np.float32)
    y = (x[..., 0].mean(axis=(1, 2)) > 0).astype(np.int64) + 2 * (x[..., 1].mean(axis=(1, 2)) > 0)
    model = _model(2, "separable")
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    hist = model.fit(x, y, epochs=3, batch_size=16, verbose=0)
    assert hist.history["loss"][-1] < hist.history["loss"][0]


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize("make, match", [
    (lambda: layers.Conv2D(6, 3, groups=4),
     r"number of filters of Conv2D must be evenly divisible by the number of groups\. Received: groups=4, filters=6"),
    (lambda: layers.Conv2D(6, 3, groups=0), r"'groups' of Conv2D: expected a positive integer\. Received: groups=0"),
    (lambda: layers.Conv2D(6, 3, strides=(1, 2), dilation_rate=2),
     r"Conv2D does not support strides > 1 together with dilation_rate > 1.*strides=\(1, 2\), dilation_rate=\(2, 2\)"),
    (lambda: layers.Conv2D(6, 3, dilation_rate=0), r"'dilation_rate' argument of Conv2D"),
    (lambda: layers.DepthwiseConv2D(3, depth_multiplier=0),
     r"'depth_multiplier' of DepthwiseConv2D: expected a positive integer\. Received: depth_multiplier=0"),
    (lambda: layers.DepthwiseConv2D(3, data_format="channels_first"), r"only 'channels_last'"),
    (lambda: layers.DepthwiseConv2D(3, padding="full"), r"'padding' of DepthwiseConv2D"),
    (lambda: layers.DepthwiseConv2D(3, depthwise_initializer="magic"), r"'depthwise_initializer' of DepthwiseConv2D"),
    (lambda: layers.SeparableConv2D(0, 3), r"'filters' of SeparableConv2D: expected a positive integer"),
    (lambda: layers.SeparableConv2D(4, (3, 0)), r"'kernel_size' argument of SeparableConv2D"),
    (lambda: layers.SeparableConv2D(4, 3, pointwise_initializer="magic"),
     r"'pointwise_initializer' of SeparableConv2D"),
])
def test_bad_arguments_raise(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_build_errors_name_the_layer():
    with pytest.raises(ValueError, match=r"input channels of layer 'g' must be evenly divisible by the number of "
                                         r"groups\. Received: groups=2, but the input has 3 channels"):
        layers.Conv2D(4, 3, groups=2, name="g").build((None, 8, 8, 3))
    with pytest.raises(ValueError, match=r"output size would be zero or negative for layer 'd'.*dilation_rate=\(3, 3\)"):
        layers.DepthwiseConv2D(3, dilation_rate=3, name="d").build((None, 6, 6, 2))
    sep = layers.SeparableConv2D(4, 3, name="s")
    sep.build((None, 8, 8, 3))
    with pytest.raises(ValueError, match=r"Layer 's' expected input with 3 channels"):
        sep(np.zeros((1, 8, 8, 2), np.float32))


# ----------------------------------------------------------------------------- config, summary, saving


def test_config_round_trip_and_param_counts():
    cases = [(layers.Conv2D(8, 3, dilation_rate=2, groups=2), 3 * 3 * 2 * 8 + 8),
             (layers.DepthwiseConv2D(3, depth_multiplier=2), 3 * 3 * 4 * 2 + 8),
             (layers.SeparableConv2D(6, 3, depth_multiplier=2), 3 * 3 * 4 * 2 + 8 * 6 + 6),
             (layers.SeparableConv2D(6, 3, use_bias=False), 3 * 3 * 4 + 4 * 6)]
    for layer, params in cases:
        clone = type(layer).from_config(layer.get_config())
        assert clone.get_config() == layer.get_config()
        layer.build((None, 9, 9, 4))
        assert layer.count_params() == params, type(layer).__name__


def test_save_and_load_model(tmp_path):
    pycnn.set_random_seed(5)
    model = Sequential([layers.Input((10, 9, 4)),
                        layers.Conv2D(6, 3, padding="same", dilation_rate=(2, 1), groups=2, activation="relu"),
                        layers.DepthwiseConv2D(3, depth_multiplier=2, strides=2, activation="tanh"),
                        layers.SeparableConv2D(3, 2, padding="same", depth_multiplier=3, activation="softmax")])
    x = np.random.default_rng(3).random((2, 10, 9, 4)).astype(np.float32)
    expected = model.predict(x, verbose=0)
    path = os.fspath(tmp_path / "convfam.npz")
    model.save(path)
    loaded = models.load_model(path)
    assert [type(l).__name__ for l in loaded.layers] == ["Conv2D", "DepthwiseConv2D", "SeparableConv2D"]
    assert loaded.layers[0].groups == 2 and loaded.layers[0].dilation_rate == (2, 1)
    assert loaded.layers[1].depth_multiplier == 2 and loaded.layers[2].depth_multiplier == 3
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), expected)


# ----------------------------------------------------------------------------- Keras cross-check (optional)


def test_matches_keras_when_tensorflow_is_installed():
    tf = pytest.importorskip("tensorflow")
    keras = tf.keras
    rng = np.random.default_rng(7)
    x = rng.uniform(-1, 1, (2, 9, 10, 4)).astype(np.float32)
    pairs = [
        (layers.Conv2D(6, 3, padding="same", dilation_rate=2, groups=2),
         keras.layers.Conv2D(6, 3, padding="same", dilation_rate=2, groups=2)),
        (layers.DepthwiseConv2D(3, depth_multiplier=2, padding="same", dilation_rate=(2, 1)),
         keras.layers.DepthwiseConv2D(3, depth_multiplier=2, padding="same", dilation_rate=(2, 1))),
        (layers.DepthwiseConv2D((2, 3), strides=2, padding="same"),
         keras.layers.DepthwiseConv2D((2, 3), strides=2, padding="same")),
        (layers.SeparableConv2D(5, 3, depth_multiplier=2, strides=2, padding="same"),
         keras.layers.SeparableConv2D(5, 3, depth_multiplier=2, strides=2, padding="same")),
    ]
    for ours, theirs in pairs:
        want = theirs(x).numpy()
        ours.build((None,) + x.shape[1:])
        assert [w.shape for w in ours.get_weights()] == [tuple(w.shape) for w in theirs.get_weights()]
        assert ours.count_params() == theirs.count_params()
        ours.set_weights([w + rng.standard_normal(w.shape).astype(np.float32) * 0.1 for w in theirs.get_weights()])
        theirs.set_weights(ours.get_weights())
        np.testing.assert_allclose(ours(x), theirs(x).numpy(), rtol=1e-4, atol=1e-5)
        assert want.shape == ours(x).shape


def test_op_errors_name_the_layer():
    """A layer's spec compiled for a shape it does not fit: the op's parse names the layer."""
    g = layers.Conv2D(4, 3, groups=2, name="g")
    g.build((None, 8, 8, 4))
    with pytest.raises(ValueError, match=r"Network\(\): layer 'g' \(op 'conv2d'\) has a kernel of shape \(3, 3, 2, 4\) "
                                         r"that does not fit its input of shape \(None, 8, 8, 4\) with groups=3"):
        ops.OpCall(g.spec().with_attrs(groups=3), [(8, 8, 4)], name=g.name)
    d = layers.DepthwiseConv2D(3, name="d")
    d.build((None, 8, 8, 4))
    with pytest.raises(ValueError, match=r"layer 'd' \(op 'depthwise_conv2d'\) has a depthwise kernel of shape "
                                         r"\(3, 3, 4, 1\) that does not fit its input of shape \(None, 8, 8, 3\)"):
        ops.OpCall(d.spec(), [(8, 8, 3)], name=d.name)
    with pytest.raises(ValueError, match=r"layer 'd' \(op 'depthwise_conv2d'\) computed output size would be zero"):
        ops.OpCall(d.spec().with_attrs(dilation_rate=(4, 4)), [(8, 8, 4)], name=d.name)
    s = layers.SeparableConv2D(4, 3, name="s")
    s.build((None, 8, 8, 4))
    spec = s.spec()
    bad = spec._replace(params=(spec.params[0], np.zeros((1, 1, 3, 4), np.float32), spec.params[2]))
    with pytest.raises(ValueError, match=r"layer 's' \(op 'separable_conv2d'\) expected a pointwise kernel of shape "
                                         r"\(1, 1, 4, filters\)\. Received: \(1, 1, 3, 4\)"):
        ops.OpCall(bad, [(8, 8, 4)], name=s.name)
