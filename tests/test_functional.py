"""Graph models: Input / Model(inputs, outputs), the new layers, shared layers, fan-out,
finite differences of whole graphs, chain graph == Sequential, several inputs, the native
step on branchy graphs, summaries, configs and thread safety."""
from __future__ import annotations

import threading

import numpy as np
import pytest

import pycnn
from pycnn import _core, layers, losses, optimizers, utils
from pycnn.graph import run_backward, run_forward
from pycnn.models import Model, Sequential

L = layers


@pytest.fixture(autouse=True)
def _fresh_session():
    utils.clear_session()
    utils.set_random_seed(99)
    yield
    utils.clear_session()


# --------------------------------------------------------------------------- finite differences

def graph_gradients(model, xs, G):
    """Analytic gradients of sum(model(xs) * G) w.r.t. the inputs and every weight."""
    graph = model._graph()
    outs, trace = run_forward(graph, [np.asarray(x, np.float32) for x in xs], training=False)
    dxs = []
    per_weight = run_backward(graph, trace, G.astype(np.float32), input_grads=dxs)
    wgrads = [per_weight[id(w)][1] for w in model.trainable_weights]
    return outs[0], dxs, wgrads


def check_graph_against_finite_differences(model, xs, seed=0, n_coords=12, eps=1e-2, rtol=2e-2, atol=2e-3):
    rng = np.random.default_rng(seed)
    xs = [np.ascontiguousarray(x, np.float32) for x in xs]
    out = model(xs if len(xs) > 1 else xs[0])
    G = rng.standard_normal(out.shape)
    out, dxs, wgrads = graph_gradients(model, xs, G)

    def loss() -> float:
        y = model(xs if len(xs) > 1 else xs[0])
        return float(np.sum(y.astype(np.float64) * G))

    def compare(analytic, array):
        for flat in rng.choice(array.size, size=min(n_coords, array.size), replace=False):
            idx = np.unravel_index(flat, array.shape)
            keep = array[idx]
            array[idx] = keep + eps
            lp = loss()
            array[idx] = keep - eps
            lm = loss()
            array[idx] = keep
            fd = (lp - lm) / (2 * eps)
            assert abs(analytic[idx] - fd) <= atol + rtol * max(abs(fd), abs(analytic[idx])), (idx, analytic[idx], fd)

    for x, dx in zip(xs, dxs):
        compare(dx, x)
    for w, g in zip([w for layer in model.layers for w in layer.weights], wgrads):
        compare(g, w)


def branchy_model():
    """Two branches, Add, Multiply, Concatenate, Reshape, global pooling, a Dense layer called
    twice (shared weights) and an input read by three nodes."""
    inp = L.Input((6, 6, 2))
    c = L.Conv2D(3, 3, padding="same", activation="tanh")(inp)
    a = L.Conv2D(3, 3, padding="same", activation="sigmoid")(inp)
    s = L.Add()([c, a])
    m = L.Multiply()([c, s])
    cat = L.Concatenate()([s, m, inp])
    g = L.GlobalAveragePooling2D()(cat)
    shared = L.Dense(8, activation="tanh", name="shared")
    h1 = shared(g)
    h2 = shared(L.Dense(8, activation="tanh")(g))
    h = L.Add()([h1, h2])
    r = L.Reshape((2, 4))(h)
    out = L.Dense(3)(L.Flatten()(r))
    return Model(inp, out)


def test_branchy_graph_against_finite_differences():
    model = branchy_model()
    x = np.random.default_rng(1).standard_normal((3, 6, 6, 2))
    check_graph_against_finite_differences(model, [x])


def test_shared_layer_gradients_are_the_sum_over_its_calls():
    inp = L.Input((4,))
    shared = L.Dense(4, activation="tanh")
    out = L.Dense(2)(shared(shared(inp)))
    model = Model(inp, out)
    assert [l.name for l in model.layers].count(shared.name) == 1
    x = np.random.default_rng(2).standard_normal((5, 4))
    check_graph_against_finite_differences(model, [x])


def test_global_max_pooling_and_keepdims_against_finite_differences():
    inp = L.Input((4, 5, 3))
    a = L.GlobalMaxPooling2D()(L.Conv2D(2, 2, activation="tanh")(inp))
    b = L.Flatten()(L.GlobalAveragePooling2D(keepdims=True)(inp))
    out = L.Dense(2)(L.Concatenate()([a, b]))
    model = Model(inp, out)
    assert b.shape == (None, 3) and L.GlobalMaxPooling2D(keepdims=True).compute_output_shape((None, 4, 5, 3)) == (
        None, 1, 1, 3)
    x = np.random.default_rng(3).standard_normal((2, 4, 5, 3))
    check_graph_against_finite_differences(model, [x], n_coords=10)


def test_merge_layers_eagerly():
    rng = np.random.default_rng(4)
    a, b, c = (rng.standard_normal((2, 3, 4)).astype(np.float32) for _ in range(3))
    np.testing.assert_array_equal(L.Add()([a, b, c]), a + b + c)
    np.testing.assert_allclose(L.Multiply()([a, b, c]), a * b * c, rtol=1e-6)
    cat = L.Concatenate(axis=1)
    np.testing.assert_array_equal(cat([a, b[:, :2]]), np.concatenate([a, b[:, :2]], axis=1))
    g = np.arange(2 * 5 * 4, dtype=np.float32).reshape(2, 5, 4)
    da, db = cat.backward(g)
    np.testing.assert_array_equal(da, g[:, :3])
    np.testing.assert_array_equal(db, g[:, 3:])
    mul = L.Multiply()
    mul([a, b])
    ga, gb = mul.backward(np.ones_like(a))
    np.testing.assert_allclose(ga, b, rtol=1e-6)
    np.testing.assert_allclose(gb, a, rtol=1e-6)
    r = L.Reshape((-1, 2))
    np.testing.assert_array_equal(r(a), a.reshape(2, 6, 2))
    g = np.arange(24, dtype=np.float32).reshape(2, 6, 2)
    np.testing.assert_array_equal(r.backward(g), g.reshape(2, 3, 4))


# --------------------------------------------------------------------------- graph-build errors

def test_concatenate_mismatch_names_the_inputs_and_shapes():
    a = L.Input((8, 8, 3), name="left")
    b = L.MaxPooling2D(2, name="pool")(L.Input((8, 8, 3), name="right"))
    with pytest.raises(ValueError, match=r"Concatenate\) expected inputs with matching shapes except along the "
                                         r"concatenation axis -1\. Received: inputs 'left' \(None, 8, 8, 3\), "
                                         r"'pool' \(None, 4, 4, 3\)\."):
        L.Concatenate()([a, b])
    with pytest.raises(ValueError, match=r"expected inputs of the same shape\. Received: inputs 'left' "
                                         r"\(None, 8, 8, 3\), 'pool' \(None, 4, 4, 3\)"):
        L.Add()([a, b])
    with pytest.raises(ValueError, match=r"expected inputs of the same rank"):
        L.Concatenate()([a, L.Flatten()(a)])
    with pytest.raises(ValueError, match=r"axis=0, which is not a non-batch axis"):
        L.Concatenate(axis=0)([a, a])
    with pytest.raises(ValueError, match=r"should be called on a list of at least 2"):
        L.Add()([a])
    with pytest.raises(ValueError, match=r"expected a list of tensors"):
        L.Add()(a)


def test_other_graph_errors():
    inp = L.Input((4, 4, 3))
    with pytest.raises(ValueError, match=r"total size of the tensor must be unchanged.*48 values per sample"):
        L.Reshape((5, 5))(inp)
    with pytest.raises(ValueError, match=r"at most one -1"):
        L.Reshape((-1, -1))
    other = L.Input((4, 4, 3), name="other")
    out = L.Add()([inp, other])
    with pytest.raises(ValueError, match=r"Graph disconnected.*'other'"):
        Model(inp, out)
    with pytest.raises(TypeError, match=r"expected 'outputs' to be a symbolic tensor"):
        Model(inp, np.zeros(3))
    with pytest.raises(ValueError, match=r"expected a layer with one input"):
        Sequential([L.Input((3,)), L.Add()])
    with pytest.raises(ValueError, match=r"needs images of at least 2x2 pixels"):
        pycnn.image.sobel_edges(L.Input((1, 5, 3)))
    with pytest.raises(TypeError, match=r"has no values"):
        np.asarray(inp)
    model = Model(inp, L.Flatten()(inp))
    with pytest.raises(ValueError, match=r"expected input of shape \(None, 4, 4, 3\), but received input with "
                                         r"shape \(2, 4, 5, 3\)"):
        model.predict(np.zeros((2, 4, 5, 3)))


# --------------------------------------------------------------------------- chain == Sequential

def _chain_layers():
    return [L.Conv2D(4, 3, activation="relu"), L.MaxPooling2D(2), L.Conv2D(5, 2, padding="same", activation="tanh"),
            L.Flatten(), L.Dense(16, activation="relu"), L.Dense(4, activation="softmax")]


@pytest.mark.parametrize("native", ["1", "0"])
def test_chain_graph_matches_sequential(native, monkeypatch):
    monkeypatch.setenv("PYCNN_NATIVE_STEP", native)
    seq = Sequential([L.Input((9, 9, 2))] + _chain_layers())
    inp = L.Input((9, 9, 2))
    x = inp
    for layer in _chain_layers():
        x = layer(x)
    graph = Model(inp, x)
    graph.set_weights(seq.get_weights())
    rng = np.random.default_rng(5)
    xs, ys = rng.random((12, 9, 9, 2), dtype=np.float32), rng.integers(0, 4, 12)
    np.testing.assert_array_equal(graph.predict(xs), seq.predict(xs))
    for model in (seq, graph):
        model.compile(optimizer=optimizers.SGD(0.1), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    for _ in range(2):
        assert graph.train_on_batch(xs, ys) == seq.train_on_batch(xs, ys)
        for lg, ls in zip([l for l in graph.layers if l.weights], [l for l in seq.layers if l.weights]):
            for a, b in zip(lg.get_gradients(), ls.get_gradients()):
                np.testing.assert_array_equal(a, b)
    for a, b in zip(graph.get_weights(), seq.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_layers_and_weights_follow_keras_order():
    inp = L.Input((4,), name="x")
    d1 = L.Dense(3, name="first")
    d2 = L.Dense(3, name="second")
    right = d2(inp)
    left = L.Dense(3, name="deep")(d1(inp))
    out = L.Add(name="sum")([left, right])
    model = Model(inp, out)
    # Keras: decreasing depth, ties in the order a depth-first walk from the output meets them.
    assert [l.name for l in model.layers] == ["x", "first", "deep", "second", "sum"]
    assert [w.shape for w in model.get_weights()] == [(4, 3), (3,), (3, 3), (3,), (4, 3), (3,)]


# --------------------------------------------------------------------------- several inputs

def two_input_model():
    image = L.Input((6, 6, 1), name="image")
    extra = L.Input((3,), name="extra")
    feats = L.Flatten()(L.Conv2D(2, 3, activation="relu")(image))
    joined = L.Concatenate()([feats, L.Dense(4, activation="relu")(extra)])
    return Model([image, extra], L.Dense(3, activation="softmax")(joined))


def test_multi_input_fit_predict_evaluate():
    model = two_input_model()
    rng = np.random.default_rng(6)
    xa, xb = rng.random((40, 6, 6, 1), dtype=np.float32), rng.random((40, 3), dtype=np.float32)
    y = (xb.argmax(axis=1)).astype(np.int64)
    model.compile(optimizer=optimizers.Adam(0.01), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    h = model.fit([xa, xb], y, batch_size=8, epochs=15, verbose=0, validation_split=0.25)
    assert h.history["loss"][-1] < h.history["loss"][0]
    p = model.predict([xa, xb], batch_size=7)
    assert p.shape == (40, 3)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(model([xa, xb]), p, rtol=1e-5, atol=1e-6)
    loss, acc = model.evaluate([xa, xb], y)
    assert acc == np.mean(p.argmax(axis=1) == y)  # evaluate agrees with predict
    assert loss == pytest.approx(-np.mean(np.log(p[np.arange(40), y].astype(np.float64))), rel=1e-5)
    with pytest.raises(ValueError, match=r"expected 2 input arrays \(one per model input"):
        model.predict(xa)
    with pytest.raises(ValueError, match=r"same number of samples"):
        model.predict([xa, xb[:5]])
    with pytest.raises(ValueError, match=r"input 1 \('extra'\) of shape \(None, 3\)"):
        model.predict([xa, xa])


def test_multi_input_native_step_matches_layer_by_layer(monkeypatch):
    rng = np.random.default_rng(7)
    xa, xb = rng.random((10, 6, 6, 1), dtype=np.float32), rng.random((10, 3), dtype=np.float32)
    y = rng.integers(0, 3, 10)
    results = []
    for native in ("1", "0"):
        utils.set_random_seed(3)
        monkeypatch.setenv("PYCNN_NATIVE_STEP", native)
        model = two_input_model()
        model.compile(optimizer=optimizers.SGD(0.5), loss="sparse_categorical_crossentropy")
        results.append((model.train_on_batch([xa, xb], y), model.get_weights()))
    assert results[0][0] == pytest.approx(results[1][0], rel=1e-5)
    for a, b in zip(results[0][1], results[1][1]):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_multiple_outputs_predict_a_list():
    inp = L.Input((5,))
    a, b = L.Dense(2)(inp), L.Dense(3, activation="softmax")(inp)
    model = Model(inp, [a, b])
    pa, pb = model.predict(np.ones((4, 5)))
    assert pa.shape == (4, 2) and pb.shape == (4, 3)
    assert model.output_shape == [(None, 2), (None, 3)]


# --------------------------------------------------------------------------- the native step on graphs

def test_branchy_graph_trains_through_the_native_step(monkeypatch, native_step_calls):
    inp = L.Input((8, 8, 3))
    edges = L.Reshape((8, 8, 6))(pycnn.image.sobel_edges(inp))
    dy, dx = pycnn.image.image_gradients(inp)
    conv = L.Conv2D(4, 3, padding="same", activation="relu")(inp)
    s = L.Add()([conv, L.Conv2D(4, 1)(inp)])
    m = L.Multiply()([s, L.Conv2D(4, 1, activation="sigmoid")(inp)])
    x = L.Concatenate(axis=3)([dx, dy, edges, m])
    a = L.GlobalAveragePooling2D()(x)
    b = L.GlobalMaxPooling2D()(x)
    x = L.Concatenate()([a, b, L.Flatten()(L.MaxPooling2D(2)(x))])
    out = L.Dense(5, activation="softmax")(L.Dense(16, activation="relu")(x))
    model = Model(inp, out)
    rng = np.random.default_rng(8)
    xs, ys = rng.random((16, 8, 8, 3), dtype=np.float32), rng.integers(0, 5, 16)
    calls = native_step_calls
    start = model.get_weights()
    grads = {}
    for native in ("1", "0"):
        monkeypatch.setenv("PYCNN_NATIVE_STEP", native)
        model.set_weights(start)
        model.compile(optimizer=optimizers.SGD(1.0), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        grads[native] = (model.train_on_batch(xs, ys), [b - a for a, b in zip(model.get_weights(), start)])
    assert calls["n"] == 1
    assert grads["1"][0][0] == pytest.approx(grads["0"][0][0], rel=1e-5)
    assert grads["1"][0][1] == grads["0"][0][1]
    for gn, gl in zip(grads["1"][1], grads["0"][1]):
        np.testing.assert_allclose(gn, gl, rtol=1e-3, atol=1e-5 * (np.abs(gl).max() + 1e-12))
    monkeypatch.setenv("PYCNN_NATIVE_STEP", "1")
    model.set_weights(start)
    p_native = model.predict(xs)
    monkeypatch.setenv("PYCNN_NATIVE_STEP", "0")
    np.testing.assert_allclose(p_native, model.predict(xs), rtol=1e-5, atol=1e-6)


def test_shared_weighted_layer_trains_natively_with_the_sum_of_its_calls(monkeypatch, native_step_calls):
    inp = L.Input((4,))
    shared = L.Dense(4, activation="relu")
    model = Model(inp, L.Dense(2, activation="softmax")(shared(shared(inp))))
    x = np.random.default_rng(4).standard_normal((5, 4)).astype(np.float32)
    y = np.array([0, 1, 0, 1, 1])
    start = model.get_weights()
    results = {}
    for native in ("1", "0"):
        monkeypatch.setenv("PYCNN_NATIVE_STEP", native)
        model.set_weights(start)
        model.compile(optimizer=optimizers.SGD(1.0), loss="sparse_categorical_crossentropy")
        loss = model.train_on_batch(x, y)
        results[native] = (loss, [b - a for a, b in zip(model.get_weights(), start)])
    assert native_step_calls["n"] == 1  # the native run was one call, shared weights and all
    assert results["1"][0] == pytest.approx(results["0"][0], rel=1e-5)
    for native, eager in zip(results["1"][1], results["0"][1]):
        np.testing.assert_allclose(native, eager, rtol=1e-4, atol=1e-6)
    assert np.abs(results["1"][1][0]).max() > 0


# --------------------------------------------------------------------------- summary, config, threads

def test_summary_shows_what_each_layer_is_connected_to():
    model = two_input_model()
    lines = []
    model.summary(print_fn=lines.append)
    text = "\n".join(lines)
    assert "Connected to" in lines[2]
    row = next(line for line in lines if line.lstrip().startswith("concatenate"))
    assert "flatten[0][0]" in row
    assert any(line.strip() == "dense[0][0]" for line in lines)  # the second input of the concatenate
    assert f"Total params: {model.count_params():,}" in text


def test_get_config_round_trip_rebuilds_the_same_graph():
    model = branchy_model()
    clone = Model.from_config(model.get_config())
    assert [type(l).__name__ for l in clone.layers] == [type(l).__name__ for l in model.layers]
    clone.set_weights(model.get_weights())
    x = np.random.default_rng(9).standard_normal((4, 6, 6, 2)).astype(np.float32)
    np.testing.assert_array_equal(clone.predict(x), model.predict(x))


def test_two_threads_predicting_on_one_model_agree(monkeypatch):
    monkeypatch.setenv("PYCNN_NATIVE_STEP", "0")  # the layer-by-layer executor: per-call state only
    model = branchy_model()
    x = np.random.default_rng(10).standard_normal((64, 6, 6, 2)).astype(np.float32)
    expected = model.predict(x, batch_size=16)
    results, errors = [], []

    def work():
        try:
            for _ in range(20):
                results.append(model.predict(x, batch_size=16))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(results) == 40 and all(np.array_equal(r, expected) for r in results)


def test_logits_loss_and_categorical_targets_on_a_graph():
    inp = L.Input((5,))
    model = Model(inp, L.Dense(3)(L.Dense(4, activation="tanh")(inp)))
    model.compile(optimizer="adam", loss=losses.SparseCategoricalCrossentropy(from_logits=True))
    x = np.random.default_rng(11).standard_normal((6, 5))
    assert np.isfinite(model.train_on_batch(x, np.arange(6) % 3))
    model2 = Model(inp, L.Dense(3, activation="softmax")(inp))
    model2.compile(optimizer="sgd", loss="categorical_crossentropy", metrics=["accuracy"])
    p = model2.predict(x)
    loss, acc = model2.train_on_batch(x, utils.to_categorical(np.arange(6) % 3, 3))
    assert acc == np.mean(p.argmax(axis=1) == np.arange(6) % 3)  # the batch's accuracy before the update
    assert loss == pytest.approx(-np.mean(np.log(p[np.arange(6), np.arange(6) % 3].astype(np.float64))), rel=1e-5)
