"""ONNX export (pycnn/interop/onnx_export.py): the graph's structure and onnx.checker with the
onnx package alone; outputs against pycnn's with ONNX's reference evaluator (pure Python,
small models) and, when installed, ONNX Runtime for every layer and the lecture's models at
batch 1 and 7."""
from __future__ import annotations

import sys

import numpy as np
import pytest

import pycnn
from pycnn import applications, ops, utils
from pycnn import layers as L

onnx = pytest.importorskip("onnx", reason="ONNX export needs onnx (pip install 'pycnn[onnx]')")
from pycnn.interop import onnx_export  # noqa: E402


def _randomize(model, seed=0, scale=0.4):
    """Weights of moderate size (no saturated softmax or tanh), BN statistics off their defaults."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        for name, w in zip(layer.weight_names, layer.weights):
            if name.endswith("moving_variance"):
                w[...] = rng.uniform(0.5, 2.0, w.shape)
            else:
                w[...] = rng.uniform(-scale, scale, w.shape)
    return model


def _zoo():
    """Every kind of layer pycnn exports, on two branches with a shared merge and outputs of
    several ranks."""
    utils.clear_session()
    inp = pycnn.Input((12, 11, 3), name="image")
    a = L.Conv2D(8, 3, padding="same", use_bias=False, dilation_rate=2)(inp)
    a = L.BatchNormalization()(a)
    a = L.Activation("gelu")(a)
    b = L.DepthwiseConv2D(3, padding="same", depth_multiplier=2, strides=2, activation="sigmoid")(inp)
    b = L.ZeroPadding2D(((1, 2), (0, 3)))(b)
    b = L.Cropping2D(((1, 2), (0, 3)))(b)
    b = L.AveragePooling2D(3, strides=1, padding="same")(b)
    c = L.SeparableConv2D(8, 3, padding="same", activation="relu")(inp)
    g = L.Conv2D(8, (2, 3), groups=2, padding="same", activation="tanh")(
        L.Concatenate()([inp, inp, L.Rescaling(0.5, offset=-0.25)(inp), inp]))
    g = L.Reshape((12, 11, 8))(L.Reshape((-1, 4))(L.Multiply()([g, g])))
    strided = L.GlobalAveragePooling2D()(L.Conv2D(4, (2, 3), strides=(1, 2), padding="same")(inp))
    s = L.LeakyReLU(0.1)(L.Add()([a, c, g]))
    cat = L.Concatenate()([s, L.Multiply()([a, c])])
    x = L.MaxPooling2D(3, strides=2, padding="same")(cat)
    x = L.Rescaling([0.5] * 16, offset=0.1)(x)
    x = L.Flatten()(x)
    x = L.BatchNormalization()(x)
    x = L.Dropout(0.25)(x)
    x = L.Dense(7, activation="leaky_relu")(x)
    y2 = L.GlobalMaxPooling2D()(b)
    y3 = L.GlobalAveragePooling2D(keepdims=True)(L.GELU(approximate=True)(b))
    y = L.Dense(5, activation="softmax")(L.Concatenate()([x, y2]))
    return pycnn.Model(inp, [y, L.Reshape((-1, 4))(b), y3, L.Activation("softmax")(cat), strided], name="zoo")


def _image_ops():
    utils.clear_session()
    inp = pycnn.Input((9, 8, 2))
    edges = L.Reshape((9, 8, 4))(pycnn.image.sobel_edges(inp))
    dy, dx = pycnn.image.image_gradients(inp)
    x = L.Concatenate(axis=3)([dy, dx, edges])
    flip = L.RandomFlip()(x)  # identity at inference
    crop = L.RandomCrop(7, 6)(flip)  # the centre window at inference
    return pycnn.Model(inp, [L.Dense(3)(L.Flatten()(crop)), pycnn.image.sobel_edges(inp)], name="image_ops")


def _nested_sequential():
    utils.clear_session()
    inner = pycnn.Sequential([L.Input((6, 6, 4)), L.Conv2D(4, 3, padding="same", activation="relu"),
                              L.BatchNormalization()], name="inner")
    inp = pycnn.Input((6, 6, 2))
    x = inner(inner(L.Conv2D(4, 1)(inp)))  # a nested model, called twice (shared weights)
    head = pycnn.Sequential([L.GlobalAveragePooling2D(), L.Dense(3, activation="softmax")], name="head")
    return pycnn.Model(inp, head(x), name="outer")


def _fully_convolutional():
    utils.clear_session()
    return applications.fully_convolutional_cnn()


MODELS = {
    "lenet": lambda: applications.lenet(),
    "lenet_bn": lambda: applications.lenet_bn(),
    "classic_features": lambda: applications.classic_features_model(),
    "strided_same": lambda: applications.strided_cnn(padding="same"),
    "fashion_mnist_cnn_bn": lambda: applications.fashion_mnist_cnn_bn(),
    "zoo": _zoo,
    "image_ops": _image_ops,
    "nested": _nested_sequential,
    "fully_convolutional": _fully_convolutional,
}


def _inputs(model, batch, rng, spatial=(28, 28)):
    shapes = model.input_shape if isinstance(model.input_shape, list) else [model.input_shape]
    return [rng.random((batch,) + tuple(d if d is not None else s for d, s in zip(shape[1:], spatial + (1,))),
                       dtype=np.float32) for shape in shapes]


def _outputs(model, xs):
    out = model.predict(xs if len(xs) > 1 else xs[0], verbose=0)
    return out if isinstance(out, list) else [out]


def test_every_op_kind_has_an_exporter():
    assert set(ops.registered_ops()) <= set(onnx_export.EXPORTERS)
    assert set(ops.activations()) <= set(onnx_export.ACTIVATIONS)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_exported_models_pass_the_checker_with_nhwc_inputs_and_a_dynamic_batch(name, tmp_path):
    model = MODELS[name]()
    path = tmp_path / f"{name}.onnx"
    model.export(path, format="onnx")
    proto = onnx.load(path)
    onnx.checker.check_model(proto, full_check=True)
    assert proto.opset_import[0].version == onnx_export.DEFAULT_OPSET
    for value, shape in zip(proto.graph.input, model.input_shape if isinstance(model.input_shape, list)
                            else [model.input_shape]):
        dims = value.type.tensor_type.shape.dim
        assert dims[0].dim_param == "N"
        assert [d.dim_value or None for d in dims[1:]] == list(shape[1:])


def test_the_layout_is_folded_not_transposed_everywhere():
    proto = onnx_export.to_onnx(applications.lenet())
    ops_used = [n.op_type for n in proto.graph.node]
    assert ops_used.count("Transpose") == 1 and ops_used[0] == "Transpose"  # NHWC -> NCHW once, at the input
    assert "Flatten" in ops_used and ops_used.count("Gemm") == 3            # Flatten -> Dense: no Transpose
    # The first Dense kernel is pycnn's, its rows permuted from (H, W, C) to (C, H, W) order.
    model = applications.lenet()
    proto = onnx_export.to_onnx(model)
    kernel = model.layers[5].kernel
    stored = {t.name: onnx.numpy_helper.to_array(t) for t in proto.graph.initializer}[f"{model.layers[5].name}_W"]
    np.testing.assert_array_equal(stored, kernel.reshape(6, 6, 16, 120).transpose(2, 0, 1, 3).reshape(576, 120))


@pytest.mark.parametrize("name", ["lenet_bn", "image_ops", "nested"])
def test_the_reference_evaluator_reproduces_pycnn(name):
    """ONNX's own reference implementation (pure Python), no onnxruntime needed."""
    from onnx.reference import ReferenceEvaluator

    model = _randomize(MODELS[name]())
    proto = onnx_export.to_onnx(model)
    xs = _inputs(model, 2, np.random.default_rng(1))
    got = ReferenceEvaluator(proto).run(None, {i.name: x for i, x in zip(proto.graph.input, xs)})
    for g, r in zip(got, _outputs(model, xs)):
        np.testing.assert_allclose(g, r, rtol=1e-4, atol=1e-5)


def test_refusals_name_the_problem(tmp_path):
    class Scale(L.Layer):
        def call(self, inputs, training=False):
            return inputs * 2.0

    model = pycnn.Sequential([L.Input((4,)), Scale(name="scale"), L.Dense(2)])
    with pytest.raises(ValueError, match=r"Layer 'scale' \(Scale\) has no native op"):
        model.export(tmp_path / "m.onnx")
    with pytest.raises(ValueError, match=r"format='onnx' only.*Received: format='tf_saved_model'"):
        applications.lenet().export(tmp_path / "m", format="tf_saved_model")
    with pytest.raises(ValueError, match=r"opsets 13 to 21.*opset_version=9"):
        applications.lenet().export(tmp_path / "m.onnx", opset_version=9)


def test_a_missing_onnx_says_which_pip_install_fixes_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(ImportError, match=r"pip install 'pycnn\[onnx\]'"):
        applications.lenet().export(tmp_path / "m.onnx")


# ----------------------------------------------------------------------------- ONNX Runtime

@pytest.fixture(scope="module")
def ort():
    return pytest.importorskip("onnxruntime", reason="onnxruntime is an optional cross-check")


@pytest.mark.parametrize("name", sorted(MODELS))
def test_onnx_runtime_matches_pycnn_at_batch_1_and_7(ort, name, tmp_path):
    model = _randomize(MODELS[name]())
    path = tmp_path / f"{name}.onnx"
    model.export(path)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(3)
    for batch in (1, 7):
        xs = _inputs(model, batch, rng)
        got = session.run(None, {i.name: x for i, x in zip(session.get_inputs(), xs)})
        expected = _outputs(model, xs)
        assert len(got) == len(expected)
        for g, r in zip(got, expected):
            assert g.shape == r.shape
            np.testing.assert_allclose(g, r, rtol=1e-4, atol=2e-5 * max(1.0, float(np.abs(r).max())))


def test_other_opsets_give_the_same_outputs(ort, tmp_path):
    model = _randomize(_zoo())
    xs = _inputs(model, 3, np.random.default_rng(0))
    expected = _outputs(model, xs)
    for opset in (13, 21):
        path = tmp_path / f"zoo{opset}.onnx"
        model.export(path, opset_version=opset)
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        for g, r in zip(session.run(None, {session.get_inputs()[0].name: xs[0]}), expected):
            np.testing.assert_allclose(g, r, rtol=1e-4, atol=2e-5 * max(1.0, float(np.abs(r).max())))
