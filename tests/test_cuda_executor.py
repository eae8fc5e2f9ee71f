"""The CUDA executor (csrc/cuda/executor.h) against the CPU executor.

Every test runs on the host emulation of the device runtime (device="cuda-emulated":
pycnn._core.EmulatedDeviceNetwork, the same CUDA sources compiled as C++, with every copy's
device/host provenance checked), and again on a real GPU (device="cuda") where one is usable,
so a lent GPU runs the same comparisons (bench/cuda_check.sh).

Tolerances: the device sums in other orders than the CPU kernels (GEMM blocking, column sums
in blocks, the loss in row order), so results agree to float32 round-off, not bit for bit.
Gradients agree to ~1e-7 relative; after a few updates the weights may differ by more where
Adam divides a gradient close to its own round-off by sqrt(v) (a step of alpha * g / (|g| +
eps) changes by at most ~alpha * |dg| / eps = 1e-3 * 1e-9 / 1e-7 = 1e-5), hence atol 1e-4 on
weights after training and rtol 1e-5 on losses.
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest

import pycnn
from pycnn import cuda, layers, ops
from pycnn.executor import compiled

DEVICES = ["cuda-emulated",
           pytest.param("cuda", marks=pytest.mark.skipif(not cuda.is_available(), reason="no usable CUDA device"))]
LOSS = "sparse_softmax_crossentropy"


def lenet(seed: int = 1) -> pycnn.Sequential:
    """The lecture's LeNet on 32x32x3."""
    pycnn.set_random_seed(seed)
    return pycnn.Sequential([
        layers.Input((32, 32, 3)), layers.Conv2D(6, 5, activation="relu"), layers.MaxPooling2D(),
        layers.Conv2D(16, 5, activation="relu"), layers.MaxPooling2D(), layers.Flatten(),
        layers.Dense(120, activation="relu"), layers.Dense(84, activation="relu"),
        layers.Dense(10, activation="softmax")])


def every_conv(seed: int = 2) -> pycnn.Sequential:
    """Every attribute the device conv2d and the pools cover, and the unfused activations."""
    pycnn.set_random_seed(seed)
    return pycnn.Sequential([
        layers.Input((11, 9, 4)),
        layers.Conv2D(8, 3, strides=2, padding="same", activation="gelu"),
        layers.Conv2D(8, (3, 2), dilation_rate=2, padding="same", groups=2, activation="tanh"),
        layers.LeakyReLU(0.1),
        layers.AveragePooling2D(2, strides=1, padding="same"),
        layers.Conv2D(6, 1, activation="sigmoid"),
        layers.MaxPooling2D(3, strides=2, padding="same"),
        layers.Conv2D(6, 2, padding="valid", use_bias=False, activation="leaky_relu"),
        layers.GlobalAveragePooling2D(),
        layers.Dense(12, activation="gelu_approximate"),
        layers.Activation("softmax"),
        layers.Dense(5, activation="softmax")])


def data(shape, n: int, classes: int = 10, seed: int = 0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n,) + tuple(shape)).astype(np.float32), rng.integers(0, classes, n)


def segment_of(model, x):
    """The single native segment model.fit would run, and its network's arguments."""
    model.compile("adam", "sparse_categorical_crossentropy")
    model.predict(x[:1], verbose=0)  # builds the model
    g = compiled(model._graph(), [x.shape], True, True, model.trainable_weights)
    assert len(g.steps) == 1
    return g.steps[0]


def device_network(device: str, args):
    return cuda.network_class(device)(*args)


def assert_weights_close(a, b, atol=1e-4):
    assert len(a) == len(b)
    for u, v in zip(a, b):
        np.testing.assert_allclose(u, v, rtol=1e-4, atol=atol)


# ------------------------------------------------------------------------------ the executor itself

@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("make,shape,classes", [(lenet, (32, 32, 3), 10), (every_conv, (11, 9, 4), 5)])
def test_one_step_gradients_and_outputs_match_the_cpu(device, make, shape, classes):
    model = make()
    x, y = data(shape, 12, classes)
    segment = segment_of(model, x)
    net = device_network(device, segment.args)
    grads = [np.empty_like(model.trainable_weights[g]) for g in segment.weights]
    cpu_loss, cpu_hits = segment.network.train_step([x], y, LOSS, grads)
    out = np.empty((12, classes), np.float32)
    dev_loss, dev_hits = net.train_step([x], y, LOSS, None, out)
    assert dev_loss == pytest.approx(cpu_loss, rel=1e-6) and dev_hits == cpu_hits
    dev_grads = [np.empty_like(g) for g in grads]
    net.download_gradients(dev_grads)
    for g, d in zip(grads, dev_grads):
        np.testing.assert_allclose(d, g, rtol=1e-4, atol=1e-6 * max(1.0, float(np.abs(g).max())))
    np.testing.assert_allclose(out, segment.network.predict([x])[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(net.predict(x)[0], out, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("update,hyper,decay", [
    ("adam", [1e-3, 0.9, 0.999, 1e-7], None),
    ("sgd", [0.05, 0.9, 1.0], 0.01),     # Nesterov momentum, decoupled decay
    ("sgd", [0.1, 0.0, 0.0], None),      # plain SGD: the slot is unused
])
def test_training_steps_match_the_cpu(device, update, hyper, decay):
    """Several steps with the update inside the call, sample weights and label smoothing: the
    losses and every weight and slot as the CPU executor's."""
    model = lenet()
    x, y = data((32, 32, 3), 16)
    segment = segment_of(model, x)
    weights = [model.trainable_weights[g] for g in segment.weights]
    cpu = [w.copy() for w in weights]
    count = 2 if update == "adam" else 1
    cpu_slots = [[np.zeros_like(w) for _ in range(count)] for w in weights]
    dev_slots = [[np.zeros_like(w) for _ in range(count)] for w in weights]
    decays = None if decay is None else [decay * hyper[0]] * len(weights)
    sw = np.random.default_rng(3).uniform(0.5, 2.0, 16).astype(np.float32)
    net = device_network(device, segment.args)
    net.upload_slots(update, dev_slots)
    grads = [np.empty_like(w) for w in weights]
    originals = [w.copy() for w in weights]
    cpu_losses, dev_losses = [], []
    for step in range(4):
        xb, yb = x[4 * step:4 * step + 8], y[4 * step:4 * step + 8]
        w8 = sw[4 * step:4 * step + 8] if step % 2 else None
        loss = (LOSS, [0.1]) if step == 3 else LOSS
        # CPU on its own copy of the weights: swap them in around its call.
        for w, c in zip(weights, cpu):
            w[...], c[...] = c, w.copy()
        cpu_losses.append(segment.network.train_step([xb], yb, loss, grads, w8, None,
                                                     (update, hyper, weights, cpu_slots, decays))[0])
        for w, c in zip(weights, cpu):
            w[...], c[...] = c, w.copy()
        dev_losses.append(net.train_step([xb], yb, loss, w8, None, (update, hyper, decays))[0])
    np.testing.assert_allclose(dev_losses, cpu_losses, rtol=1e-5)
    for w, o in zip(weights, originals):  # the device kept its weights: the host arrays are untouched
        np.testing.assert_array_equal(w, o)
    net.download_weights()
    net.download_slots(update, dev_slots)
    assert_weights_close(weights, cpu)
    for d, c in zip(dev_slots, cpu_slots):
        assert_weights_close(d, c, atol=1e-5)


@pytest.mark.parametrize("device", DEVICES)
def test_non_finite_step_updates_nothing(device):
    model = lenet()
    x, y = data((32, 32, 3), 8)
    segment = segment_of(model, x)
    net = device_network(device, segment.args)
    weights = [model.trainable_weights[g] for g in segment.weights]
    before = [w.copy() for w in weights]
    net.upload_slots("adam", [[np.zeros_like(w), np.zeros_like(w)] for w in weights])
    x[3, 5, 5, 1] = np.nan
    loss, _ = net.train_step(x, y, LOSS, None, None, ("adam", [1e-3, 0.9, 0.999, 1e-7]))
    assert np.isnan(loss)
    net.download_weights()
    for w, b in zip(weights, before):
        np.testing.assert_array_equal(w, b)


@pytest.mark.parametrize("device", DEVICES)
def test_shared_weight_gradients_sum(device):
    """A layer called twice: its gradient is the sum of both places (the CPU's plan)."""
    pycnn.set_random_seed(4)
    inp = layers.Input((6,))
    shared = layers.Dense(6, activation="tanh")
    out = layers.Dense(3, activation="softmax")(shared(shared(inp)))
    model = pycnn.Model(inp, out)
    x, y = data((6,), 10, 3)
    segment = segment_of(model, x)
    net = device_network(device, segment.args)
    grads = [np.empty_like(model.trainable_weights[g]) for g in segment.weights]
    cpu_loss, _ = segment.network.train_step([x], y, LOSS, grads)
    dev_loss, _ = net.train_step([x], y, LOSS)
    dev = [np.empty_like(g) for g in grads]
    net.download_gradients(dev)
    assert dev_loss == pytest.approx(cpu_loss, rel=1e-6)
    for g, d in zip(grads, dev):
        np.testing.assert_allclose(d, g, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("device", DEVICES)
def test_convolutions_in_chunks_of_samples(device, monkeypatch):
    """Columns of a few samples at a time (as a large batch of a wide layer runs): the kernel
    gradient adds the chunks' products."""
    monkeypatch.setenv("PYCNN_CUDA_COL_FLOATS", "3000")  # ~1-3 samples of these layers per chunk
    model = every_conv()
    x, y = data((11, 9, 4), 7, 5)
    segment = segment_of(model, x)
    net = device_network(device, segment.args)
    grads = [np.empty_like(model.trainable_weights[g]) for g in segment.weights]
    cpu_loss, _ = segment.network.train_step([x], y, LOSS, grads)
    assert net.train_step([x], y, LOSS)[0] == pytest.approx(cpu_loss, rel=1e-6)
    dev = [np.empty_like(g) for g in grads]
    net.download_gradients(dev)
    for g, d in zip(grads, dev):
        np.testing.assert_allclose(d, g, rtol=1e-4, atol=1e-6 * max(1.0, float(np.abs(g).max())))


def test_batches_of_other_sizes_reuse_the_buffers():
    model = lenet()
    x, y = data((32, 32, 3), 24)
    segment = segment_of(model, x)
    net = device_network("cuda-emulated", segment.args)
    for n in (16, 5, 16, 1):
        grads = [np.empty_like(model.trainable_weights[g]) for g in segment.weights]
        assert net.train_step(x[:n], y[:n], LOSS)[0] == pytest.approx(
            segment.network.train_step([x[:n]], y[:n], LOSS, grads)[0], rel=1e-6)
    assert net.capacity == 16


# ------------------------------------------------------------------------------ errors

def test_int8_nodes_are_refused_by_name():
    nodes = [("quantize", "q", [0], [], {"scale": 0.1, "zero_point": 0}, []),
             ("dequantize", "dq", [1], [], {"scale": 0.1, "zero_point": 0}, [])]
    ops.Network([(4,)], nodes, [2])  # the CPU runs it
    with pytest.raises(ValueError, match=r"layer 'q' \(op 'quantize'\) has no CUDA kernels.*device='cpu'"):
        ops.EmulatedDeviceNetwork([(4,)], nodes, [2])


def test_bad_arguments_are_value_errors():
    model = lenet()
    x, y = data((32, 32, 3), 4)
    net = device_network("cuda-emulated", segment_of(model, x).args)
    with pytest.raises(ValueError, match=r"expected input 0 of shape \(None, 32, 32, 3\)"):
        net.train_step(x[:, :16], y, LOSS)
    with pytest.raises(ValueError, match=r"class indices in \[0, 10\)"):
        net.train_step(x, y + 10, LOSS)
    with pytest.raises(ValueError, match="no update named 'rmsprop'"):
        net.train_step(x, y, LOSS, None, None, ("rmsprop", [0.1]))
    with pytest.raises(ValueError, match="slots of update 'adam' are not on the device"):
        net.train_step(x, y, LOSS, None, None, ("adam", [1e-3, 0.9, 0.999, 1e-7]))
    with pytest.raises(ValueError, match="expected 10 lists of slots"):
        net.upload_slots("adam", [])


@pytest.mark.parametrize("what", ["host_as_device", "device_as_host", "past_end"])
def test_the_emulation_catches_wrong_pointers(what):
    ops._core._emulated_copy_check("ok")
    with pytest.raises(RuntimeError, match="pycnn CUDA \\(emulated\\)"):
        ops._core._emulated_copy_check(what)


# ------------------------------------------------------------------------------ through the model API

def train_both(make, device, fit_kwargs, optimizer=lambda: pycnn.optimizers.Adam(1e-3), shape=(32, 32, 3),
               classes=10, n=40):
    x, y = data(shape, n, classes)
    out = {}
    for dev in ("cpu", device):
        model = make()
        model.compile(optimizer(), "sparse_categorical_crossentropy", metrics=["accuracy"], device=dev)
        history = model.fit(x, y, verbose=0, **fit_kwargs)
        out[dev] = (model, history.history)
    return x, y, out["cpu"], out[device]


@pytest.mark.parametrize("device", DEVICES)
def test_fit_evaluate_predict_as_the_cpu(device):
    x, y, (cpu, cpu_h), (dev, dev_h) = train_both(
        lenet, device, dict(batch_size=16, epochs=2, validation_split=0.2),
        optimizer=lambda: pycnn.optimizers.SGD(0.05, momentum=0.9, nesterov=True, weight_decay=0.01))
    for key in cpu_h:
        np.testing.assert_allclose(dev_h[key], cpu_h[key], rtol=1e-5, err_msg=key)
    assert_weights_close(dev.get_weights(), cpu.get_weights())
    np.testing.assert_allclose(dev.evaluate(x, y, verbose=0), cpu.evaluate(x, y, verbose=0), rtol=1e-4)
    np.testing.assert_allclose(dev.predict(x, verbose=0), cpu.predict(x, verbose=0), rtol=1e-4, atol=1e-5)
    # the optimizer's slots came back too: one more epoch on both still agrees
    cpu_more = cpu.fit(x, y, batch_size=16, epochs=1, verbose=0).history["loss"]
    dev_more = dev.fit(x, y, batch_size=16, epochs=1, verbose=0).history["loss"]
    np.testing.assert_allclose(dev_more, cpu_more, rtol=1e-4)


@pytest.mark.parametrize("device", DEVICES)
def test_set_weights_save_and_load_reach_the_device(device, tmp_path):
    x, y = data((32, 32, 3), 16)
    cpu, dev = lenet(), lenet(seed=9)
    cpu.compile("adam", "sparse_categorical_crossentropy")
    dev.compile("adam", "sparse_categorical_crossentropy", device=device)
    dev.fit(x, y, batch_size=8, epochs=1, verbose=0)  # device weights differ from cpu's now
    dev.set_weights(cpu.get_weights())
    dev.optimizer.set_slots(dev.trainable_weights, [[] for _ in dev.trainable_weights], 0)
    a = cpu.fit(x, y, batch_size=8, epochs=1, verbose=0, shuffle=False).history["loss"]
    b = dev.fit(x, y, batch_size=8, epochs=1, verbose=0, shuffle=False).history["loss"]
    np.testing.assert_allclose(b, a, rtol=1e-5)
    path = tmp_path / "m.pycnn"
    dev.save(path)  # the device's weights, come back to the host arrays at the end of fit
    loaded = pycnn.load_model(path)
    assert_weights_close(loaded.get_weights(), dev.get_weights(), atol=0)
    dev.train_on_batch(x[:8], y[:8])  # the device moves on ...
    dev.load_weights(path)            # ... and the host arrays go back: the next step uploads them
    cpu.set_weights(loaded.get_weights())
    for model in (cpu, dev):
        model.optimizer.set_slots(model.trainable_weights, [[] for _ in model.trainable_weights], 0)
    for step in range(2):
        la = cpu.train_on_batch(x[:8], y[:8])
        lb = dev.train_on_batch(x[:8], y[:8])
        assert lb == pytest.approx(la, rel=1e-5)
    assert_weights_close(dev.get_weights(), cpu.get_weights())


@pytest.mark.parametrize("device", DEVICES)
def test_set_weights_alone_reaches_the_device(device):
    x, y = data((32, 32, 3), 16)
    cpu, dev = lenet(), lenet()
    cpu.compile("adam", "sparse_categorical_crossentropy")
    dev.compile("adam", "sparse_categorical_crossentropy", device=device)
    start = cpu.get_weights()
    for model in (cpu, dev):
        model.train_on_batch(x[:8], y[:8])
        model.set_weights(start)
    assert dev.train_on_batch(x[8:], y[8:]) == pytest.approx(cpu.train_on_batch(x[8:], y[8:]), rel=1e-5)
    for model in (cpu, dev):
        model.set_weights(start)
    a = cpu.fit(x, y, batch_size=8, epochs=1, verbose=0, shuffle=False).history["loss"]
    b = dev.fit(x, y, batch_size=8, epochs=1, verbose=0, shuffle=False).history["loss"]
    np.testing.assert_allclose(b, a, rtol=1e-5)
    assert_weights_close(dev.get_weights(), cpu.get_weights())


def test_a_step_the_device_cannot_run_falls_back_to_the_cpu_with_a_warning():
    def with_dropout():  # a weight penalty: its gradient joins on the host
        pycnn.set_random_seed(5)
        return pycnn.Sequential([layers.Input((8, 8, 2)), layers.Conv2D(4, 3, activation="relu", kernel_regularizer="l2"),
                                 layers.Flatten(), layers.Dense(3, activation="softmax")])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        x, y, (cpu, cpu_h), (dev, dev_h) = train_both(with_dropout, "cuda-emulated", dict(batch_size=8, epochs=2),
                                                      shape=(8, 8, 2), classes=3, n=24)
    assert [w for w in caught if "trains on the CPU because" in str(w.message)]
    np.testing.assert_allclose(dev_h["loss"], cpu_h["loss"], rtol=1e-6)
    assert_weights_close(dev.get_weights(), cpu.get_weights(), atol=1e-6)


def test_per_batch_callbacks_see_the_device_weights():
    seen = []
    x, y = data((32, 32, 3), 16)
    model = lenet()
    model.compile("adam", "sparse_categorical_crossentropy", device="cuda-emulated")
    cb = pycnn.callbacks.LambdaCallback(on_batch_end=lambda batch, logs: seen.append(model.get_weights()[0].copy()))
    model.fit(x, y, batch_size=8, epochs=1, verbose=0, callbacks=[cb])
    assert len(seen) == 2 and not np.array_equal(seen[0], seen[1])
    np.testing.assert_array_equal(seen[1], model.get_weights()[0])


# ------------------------------------------------------------------------------ models with every op kind
# (BatchNormalization, the merges, padding / cropping, rescaling, depthwise / separable: their
# device halves and per-op comparisons are in tests/test_cuda_ops.py.)

def graph_model(seed: int = 6):
    pycnn.set_random_seed(seed)
    inp = layers.Input((12, 12, 3))
    a = layers.Conv2D(4, 3, padding="same", activation="relu")(inp)
    b = layers.Conv2D(4, 1, activation="tanh")(inp)
    s = layers.Add()([a, b])
    c = layers.Concatenate()([s, layers.Conv2D(2, 3, padding="same")(a)])
    p = layers.MaxPooling2D()(c)
    out = layers.Dense(5, activation="softmax")(layers.Flatten()(p))
    return pycnn.Model(inp, out)


def speedrun_narrow(seed: int = 7):
    pycnn.set_random_seed(seed)
    return pycnn.models.speedrun_cifar10(width=8)


def lenet_bn(seed: int = 8):
    pycnn.set_random_seed(seed)
    return pycnn.models.lenet_bn()


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("make,shape,classes,logits", [(lenet_bn, (32, 32, 3), 10, False),
                                                       (graph_model, (12, 12, 3), 5, False),
                                                       (speedrun_narrow, (32, 32, 3), 10, True)])
def test_bn_graph_and_speedrun_models_train_as_on_the_cpu(device, make, shape, classes, logits):
    x, y = data(shape, 24, classes)
    results = []
    for dev in ("cpu", device):
        model = make()
        loss = pycnn.losses.SparseCategoricalCrossentropy(from_logits=logits, label_smoothing=0.1)
        model.compile(pycnn.optimizers.SGD(0.02, momentum=0.9, nesterov=True, weight_decay=0.005), loss,
                      metrics=["accuracy"], device=dev)
        history = model.fit(x, y, batch_size=8, epochs=2, verbose=0, shuffle=False)
        results.append((history.history, model.get_weights()))  # BN moving statistics included
    (cpu_h, cpu_w), (dev_h, dev_w) = results
    np.testing.assert_allclose(dev_h["loss"], cpu_h["loss"], rtol=1e-4)
    assert_weights_close(dev_w, cpu_w, atol=2e-4)


@pytest.mark.parametrize("device", DEVICES)
def test_predict_and_evaluate_run_on_the_device_with_folded_batchnorm(device):
    """Inference on the device: batch normalization folded into the convolutions from the live
    weights (refreshed and uploaded at each call), test-time augmentation, as the CPU's."""
    x, y = data((32, 32, 3), 24)
    cpu, dev = lenet_bn(), lenet_bn()
    cpu.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    dev.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"], device=device)
    for model in (cpu, dev):
        model.fit(x, y, batch_size=8, epochs=1, verbose=0, shuffle=False)
    np.testing.assert_allclose(dev.predict(x, batch_size=10, verbose=0), cpu.predict(x, batch_size=10, verbose=0),
                               rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(dev.predict(x, verbose=0, tta="flip"), cpu.predict(x, verbose=0, tta="flip"),
                               rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(dev.evaluate(x, y, verbose=0), cpu.evaluate(x, y, verbose=0), rtol=1e-4)
    ran = [net for _, net in dev._step.device._inference.values()]
    assert ran and all(net is not None for net in ran)
    rng = np.random.default_rng(5)
    moved = [w + np.float32(0.1) * rng.standard_normal(w.shape).astype(np.float32) for w in cpu.get_weights()]
    moved = [np.abs(w) if "variance" in name else w for w, name in
             zip(moved, [v for layer in cpu.layers for v in layer.weight_names])]
    for model in (cpu, dev):  # new host weights reach the device's inference too
        model.set_weights(moved)
    np.testing.assert_allclose(dev.predict(x, verbose=0), cpu.predict(x, verbose=0), rtol=1e-4, atol=1e-5)
