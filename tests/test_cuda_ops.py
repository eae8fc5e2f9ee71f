"""The device halves of batchnorm, the merges, padding / cropping, rescaling, depthwise and
separable conv2d, sobel_edges and image_gradient (csrc/cuda/<family>.cu) against their CPU ops,
through the CUDA executor on the host emulation of the device runtime (device
"cuda-emulated", pycnn._core.EmulatedDeviceNetwork), and again on a GPU where one is usable.

Each op runs inside a probe network whose gradients expose everything backward computes: the
network's input is the identity matrix I (N, N), and each of the op's inputs is a bias-free
dense layer of it, x_j = I @ W_j = W_j (exact), reshaped to the op's input shape; after the
op, a flatten and a dense layer give the logits of the fused softmax cross-entropy. So the
gradient of W_j is the op's input gradient dinp_j itself (I^T @ dinp_j, exact), the op's own
parameter gradients are trained weights, and the upstream gradient dout is a random one (the
last dense layer's random kernel times the softmax residuals). Forward is compared on a second
network whose output is the op's value. BN's moving statistics come back with
download_weights after the device's commit.

Tolerances: float32 round-off of sums in other orders (blocks, GEMMs); 1e-5 relative on
outputs, 1e-4 on gradients (longer batch sums) with an absolute floor scaled to the array.
"""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

import pycnn
from pycnn import cuda, layers, ops

DEVICES = ["cuda-emulated",
           pytest.param("cuda", marks=pytest.mark.skipif(not cuda.is_available(), reason="no usable CUDA device"))]
LOSS = "sparse_softmax_crossentropy"
CLASSES = 3


def f32(a):
    return np.ascontiguousarray(a, dtype=np.float32)


class Probe:
    """The probe network of one op node (see the module docstring): `kind`, `attrs`, its
    `params` (None: absent) and which of them are trained, inputs of per-sample `shapes`."""

    def __init__(self, kind, attrs, params, shapes, N, trained=None, seed=0, shared_input=False):
        rng = np.random.default_rng(seed)
        self.N, self.kind = N, kind
        self.x_in = [f32(rng.standard_normal((N, math.prod(s)))) for s in shapes]
        if trained is None:
            trained = [p is not None for p in params]
        self.params = [None if p is None else f32(p) for p in params]
        self.trained = trained
        self.attrs, self.shapes, self.shared = dict(attrs), [tuple(s) for s in shapes], shared_input
        self.labels = rng.integers(0, CLASSES, N)
        self.op_value = None
        probe_cpu = self._nodes(self._copies(), with_head=False)
        out_shape = ops.Network([(N,)], probe_cpu, [self.op_value], False).output_shapes[0]
        self.out_size = math.prod(out_shape)
        self.w_out = f32(rng.standard_normal((self.out_size, CLASSES)) / math.sqrt(self.out_size))
        self.b_out = f32(rng.standard_normal(CLASSES) * 0.1)

    def _copies(self):
        """Fresh copies of every array (the CPU and the device each write their own)."""
        return {"x": [x.copy() for x in self.x_in], "p": [None if p is None else p.copy() for p in self.params]}

    def _nodes(self, arrays, with_head=True, w_out=None, b_out=None):
        nodes, weight = [], 0
        inputs = []
        for j, shape in enumerate(self.shapes):
            if self.shared and j > 0:  # every op input reads the same value
                inputs.append(inputs[0])
                continue
            nodes.append(("dense", None, [0], [arrays["x"][j], None], {"activation": "linear"}, [weight, -1]))
            weight += 1
            nodes.append(("reshape", None, [len(nodes)], [], {"target_shape": list(shape)}, []))
            inputs.append(len(nodes))
        pw = []
        for p, t in zip(arrays["p"], self.trained):
            pw.append(weight if (p is not None and t) else -1)
            weight += int(p is not None and t)
        nodes.append((self.kind, "probe", inputs, arrays["p"], self.attrs, pw))
        self.op_value = len(nodes)
        if with_head:
            nodes.append(("flatten", None, [len(nodes)], [], {}, []))
            nodes.append(("dense", None, [len(nodes)], [w_out, b_out], {"activation": "linear"},
                          [weight, weight + 1]))
        return nodes

    def arrays_of_weights(self, arrays):
        """The trained arrays in weight order: the input kernels, the op's trained params, the head."""
        out = [x for j, x in enumerate(arrays["x"]) if not (self.shared and j > 0)]
        out += [p for p, t in zip(arrays["p"], self.trained) if p is not None and t]
        return out

    def run(self, network_class, w_out=None):
        """-> (loss, hits, gradients (per trained weight), op output, the arrays after the step)."""
        arrays = self._copies()
        w_out = self.w_out if w_out is None else w_out
        head = [w_out.copy(), self.b_out.copy()]
        nodes = self._nodes(arrays, True, *head)
        eye = np.eye(self.N, dtype=np.float32)
        grads = [np.empty_like(a) for a in self.arrays_of_weights(arrays) + head]
        forward = network_class([(self.N,)], self._nodes(self._copies(), with_head=False), [self.op_value])
        out = forward.predict([eye])[0]
        if network_class is ops.Network:
            net = ops.Network([(self.N,)], nodes, [self.op_value + 2], False)
            loss, hits = net.train_step([eye], self.labels, LOSS, grads)
        else:
            net = network_class([(self.N,)], nodes, [self.op_value + 2])
            loss, hits = net.train_step([eye], self.labels, LOSS)
            net.download_gradients(grads)
            net.download_weights()  # the state the device committed (moving statistics) -> arrays
        return loss, hits, grads, out, arrays


def cpu_class(*args):
    return ops.Network(*args, False)


def compare(probe, device, out_tol=dict(rtol=1e-5, atol=1e-6)):
    """Runs the probe on the CPU and on `device`; asserts loss, outputs and every gradient agree.
    Returns both runs' arrays (after the step) for further checks."""
    c_loss, c_hits, c_grads, c_out, c_arrays = probe.run(ops.Network)
    d_loss, d_hits, d_grads, d_out, d_arrays = probe.run(cuda.network_class(device))
    assert np.isfinite(c_loss)
    assert d_loss == pytest.approx(c_loss, rel=1e-6) and d_hits == c_hits
    assert d_out.shape == c_out.shape
    np.testing.assert_allclose(d_out, c_out, **out_tol, err_msg="forward")
    names = [f"dinp[{j}]" for j in range(len(probe.shapes) if not probe.shared else 1)]
    names += [f"dparam[{k}]" for k, (p, t) in enumerate(zip(probe.params, probe.trained)) if p is not None and t]
    names += ["head kernel", "head bias"]
    assert len(names) == len(c_grads)
    for name, c, d in zip(names, c_grads, d_grads):
        scale = max(1.0, float(np.abs(c).max()))
        np.testing.assert_allclose(d, c, rtol=1e-4, atol=1e-6 * scale, err_msg=name)
        if name.startswith("dinp") and np.abs(c_out).max() > 1e-4:  # else the output is 0 up to round-off
            assert np.abs(c).max() > 0, f"{name} is all zeros: the probe checks nothing"
    return c_arrays, d_arrays


# ------------------------------------------------------------------------------ merges

@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("kind", ["add", "multiply"])
@pytest.mark.parametrize("N,shape,k", [(1, (3,), 2), (3, (4, 5, 2), 2), (2, (3, 3, 1), 3),
                                       (2, (5,), 9), (2, (2, 3), 17)],
                         ids=["batch1", "2-inputs", "3-inputs", "9-inputs", "17-inputs"])
def test_add_multiply(device, kind, N, shape, k):
    # more than 8 inputs: the kernels take their pointers 8 at a time
    compare(Probe(kind, {}, [], [shape] * k, N, seed=k), device)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("kind", ["add", "multiply"])
def test_merge_of_one_value_twice(device, kind):
    """add(x, x) and multiply(x, x): the two input gradients sum into one value."""
    compare(Probe(kind, {}, [], [(4, 3)] * 2, 3, shared_input=True), device)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("N,shapes,axis", [
    (1, [(3,), (2,)], 0),
    (2, [(4, 5, 2), (4, 5, 3)], 2),
    (3, [(4, 1, 2), (4, 3, 2), (4, 2, 2)], 1),
    (2, [(1, 3, 2), (2, 3, 2)], 0),
    (2, [(2, 3, 1)] * 9, 2),
], ids=["batch1-flat", "channels", "middle-axis-3", "first-axis", "9-inputs"])
def test_concatenate(device, N, shapes, axis):
    compare(Probe("concatenate", {"axis": axis}, [], shapes, N, seed=len(shapes)), device)


# ------------------------------------------------------------------------------ padding, cropping

FRAMES = [  # N, (H, W, C), sides (top, bottom, left, right)
    pytest.param(1, (3, 4, 2), (1, 1, 1, 1), id="batch1"),
    pytest.param(2, (5, 3, 3), (0, 2, 3, 0), id="asymmetric"),
    pytest.param(3, (1, 1, 4), (2, 0, 0, 1), id="1x1-map"),
    pytest.param(2, (4, 5, 1), (0, 0, 0, 0), id="none"),
]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("N,shape,sides", FRAMES)
def test_zero_padding2d(device, N, shape, sides):
    compare(Probe("zero_padding2d", {"padding": sides}, [], [shape], N), device)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("N,shape,sides", [
    pytest.param(1, (5, 6, 2), (1, 1, 1, 1), id="batch1"),
    pytest.param(2, (7, 5, 3), (0, 3, 2, 0), id="asymmetric"),
    pytest.param(3, (3, 4, 2), (1, 1, 2, 1), id="to-1x1"),
    pytest.param(2, (4, 5, 1), (0, 0, 0, 0), id="none"),
])
def test_cropping2d(device, N, shape, sides):
    compare(Probe("cropping2d", {"cropping": sides}, [], [shape], N), device)


# ------------------------------------------------------------------------------ rescaling

@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("N,shape,scale,offset", [
    pytest.param(1, (4, 4, 3), [1 / 255], [0.0], id="scalar-batch1"),
    pytest.param(3, (2, 5, 3), [0.5, -2.0, 3.0], [0.1, 0.2, -1.0], id="per-channel"),
    pytest.param(2, (3, 70), list(np.linspace(-2, 2, 70)), list(np.linspace(1, -1, 70)), id="70-channels"),
    pytest.param(2, (6,), [2.0], [-1.0], id="flat"),
])
def test_rescaling(device, N, shape, scale, offset):
    # more than 64 channels: the kernels take the constants 64 channels per launch
    compare(Probe("rescaling", {"scale": scale, "offset": offset}, [], [shape], N), device)


# ------------------------------------------------------------------------------ image filters

@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("N,shape", [(1, (2, 2, 1)), (2, (3, 5, 2)), (2, (6, 4, 3)), (1, (2, 7, 1))],
                         ids=["2x2-batch1", "3x5", "6x4", "2x7"])
def test_sobel_edges(device, N, shape):
    # 2 rows (or columns): the reflected neighbours are one pixel, so that derivative is 0 (up to round-off)
    compare(Probe("sobel_edges", {}, [], [shape], N), device)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("axis", [0, 1])
@pytest.mark.parametrize("N,shape", [(1, (1, 1, 2)), (2, (4, 3, 2)), (3, (1, 5, 1)), (2, (5, 1, 3))],
                         ids=["1x1", "4x3", "1x5", "5x1"])
def test_image_gradient(device, axis, N, shape):
    if shape[axis] == 1:  # the output is all zeros: nothing reaches the input
        c_loss, _, c_grads, c_out, _ = Probe("image_gradient", {"axis": axis}, [], [shape], N).run(ops.Network)
        d_loss, _, d_grads, d_out, _ = Probe("image_gradient", {"axis": axis}, [], [shape], N).run(
            cuda.network_class(device))
        assert not c_out.any() and not d_out.any() and not d_grads[0].any()
        assert d_loss == pytest.approx(c_loss, rel=1e-6)
        return
    compare(Probe("image_gradient", {"axis": axis}, [], [shape], N), device)


# ------------------------------------------------------------------------------ depthwise, separable

def _pair(v):
    return [v, v] if isinstance(v, int) else list(v)


DEPTHWISE = [  # N, H, W, C, KH, KW, M, strides, padding, dilation
    pytest.param(1, 5, 5, 1, 3, 3, 1, 1, "valid", 1, id="batch1-C1"),
    pytest.param(2, 7, 6, 3, 3, 3, 1, 1, "same", 1, id="same-odd"),
    pytest.param(2, 8, 9, 5, 3, 3, 2, 2, "same", 1, id="M2-stride2"),
    pytest.param(2, 6, 7, 4, 4, 2, 3, 1, "same", 1, id="even-kernel-M3"),
    pytest.param(2, 9, 8, 3, 3, 3, 1, 1, "same", 2, id="dilated-same"),
    pytest.param(2, 9, 10, 2, 2, 3, 2, 1, "valid", (3, 2), id="rect-dilated-M2"),
    pytest.param(2, 9, 9, 3, 3, 3, 1, 2, "same", 2, id="stride-and-dilation"),
    pytest.param(1, 1, 1, 6, 3, 3, 2, 1, "same", 1, id="1x1-input"),
    pytest.param(2, 5, 4, 3, 5, 4, 1, 1, "valid", 1, id="out1x1"),
    pytest.param(2, 11, 13, 7, 3, 3, 1, (2, 3), "same", 1, id="odd-rect-strides"),
    pytest.param(2, 7, 8, 3, 3, 2, 5, 2, "same", 2, id="M5"),
    pytest.param(3, 200, 1, 2, 3, 1, 1, 1, "same", 1, id="many-rows"),  # dweight sums 512 rows a block: 2 blocks
]
DARGS = "N,H,W,C,KH,KW,M,strides,padding,dilation"


def _window(strides, padding, dilation, activation):
    return dict(strides=_pair(strides), padding=padding, dilation_rate=_pair(dilation), activation=activation)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(DARGS, DEPTHWISE)
@pytest.mark.parametrize("activation,bias", [("linear", True), ("relu", False), ("gelu", True)])
def test_depthwise_conv2d(device, N, H, W, C, KH, KW, M, strides, padding, dilation, activation, bias):
    rng = np.random.default_rng(N * H + C)
    w = rng.standard_normal((KH, KW, C, M)) / math.sqrt(KH * KW)
    b = rng.standard_normal(C * M) * 0.1 if bias else None
    compare(Probe("depthwise_conv2d", _window(strides, padding, dilation, activation), [w, b], [(H, W, C)], N),
            device)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(DARGS, DEPTHWISE[:8] + DEPTHWISE[10:])
@pytest.mark.parametrize("F,activation,bias", [(4, "linear", True), (1, "tanh", False), (5, "softmax", True)])
def test_separable_conv2d(device, N, H, W, C, KH, KW, M, strides, padding, dilation, F, activation, bias):
    rng = np.random.default_rng(N * W + C)
    dw = rng.standard_normal((KH, KW, C, M)) / math.sqrt(KH * KW)
    pw = rng.standard_normal((1, 1, C * M, F)) / math.sqrt(C * M)
    b = rng.standard_normal(F) * 0.1 if bias else None
    compare(Probe("separable_conv2d", _window(strides, padding, dilation, activation), [dw, pw, b], [(H, W, C)], N),
            device)


@pytest.mark.parametrize("device", DEVICES)
def test_depthwise_frozen_kernel(device):
    """A frozen depthwise kernel: only the bias and the input get gradients."""
    rng = np.random.default_rng(3)
    params = [rng.standard_normal((3, 3, 4, 2)), rng.standard_normal(8)]
    compare(Probe("depthwise_conv2d", _window(1, "same", 1, "relu"), params, [(5, 6, 4)], 2,
                  trained=[False, True]), device)


# ------------------------------------------------------------------------------ batchnorm

def bn_params(rng, C, gamma=True, beta=True):
    return [rng.standard_normal(C) if gamma else None, rng.standard_normal(C) if beta else None,
            rng.standard_normal(C), rng.random(C) + 0.2]


BN_SHAPES = [(1, (4,)), (7, (3,)), (2, (4, 4, 6)), (3, (5, 5, 7)), (1, (1, 1, 130)), (4, (9, 9, 3)), (4, (3, 5))]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("N,shape", BN_SHAPES, ids=[f"{n}x{s}" for n, s in BN_SHAPES])
@pytest.mark.parametrize("affine", [(True, True), (False, True), (True, False), (False, False)],
                         ids=lambda a: f"gamma{int(a[0])}-beta{int(a[1])}")
@pytest.mark.parametrize("training", [1, 0])
def test_batchnorm(device, N, shape, affine, training):
    if training and N * math.prod(shape[:-1]) == 1:
        pytest.skip("one row: the batch variance is 0 and every output is beta")
    rng = np.random.default_rng(N + shape[-1])
    params = bn_params(rng, shape[-1], *affine)
    probe = Probe("batchnorm", {"training": training, "epsilon": 1e-3, "momentum": 0.9}, params, [shape], N,
                  trained=[affine[0], affine[1], False, False])
    c_arrays, d_arrays = compare(probe, device, out_tol=dict(rtol=2e-5, atol=2e-6))
    # the moving statistics: committed (momentum 0.9 towards the batch's) in training, untouched in inference
    for k in (2, 3):
        np.testing.assert_allclose(d_arrays["p"][k], c_arrays["p"][k], rtol=1e-6, atol=1e-7)
        moved = not np.array_equal(c_arrays["p"][k], probe.params[k])
        assert moved == bool(training)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("activation", ["relu", "sigmoid", "tanh", "gelu", "gelu_approximate", "leaky_relu", "softmax"])
@pytest.mark.parametrize("training", [1, 0])
def test_batchnorm_activation(device, activation, training):
    rng = np.random.default_rng(5)
    probe = Probe("batchnorm", {"training": training, "activation": activation}, bn_params(rng, 5), [(3, 3, 5)], 4,
                  trained=[True, True, False, False])
    compare(probe, device, out_tol=dict(rtol=2e-5, atol=2e-6))


@pytest.mark.parametrize("device", DEVICES)
def test_batchnorm_many_rows(device):
    """More rows than one reduction block (256): the two-level sums."""
    rng = np.random.default_rng(6)
    probe = Probe("batchnorm", {"training": 1, "momentum": 0.0}, bn_params(rng, 3), [(13, 11, 3)], 5,
                  trained=[True, True, False, False])
    c_arrays, d_arrays = compare(probe, device, out_tol=dict(rtol=2e-5, atol=2e-6))
    # momentum 0: the moving statistics become the batch's mean and (biased) variance
    x = probe.x_in[0].reshape(-1, 3).astype(np.float64)
    np.testing.assert_allclose(d_arrays["p"][2], x.mean(0), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(d_arrays["p"][3], x.var(0), rtol=1e-5)


@pytest.mark.parametrize("device", DEVICES)
def test_batchnorm_non_finite_step_commits_nothing(device):
    rng = np.random.default_rng(7)
    probe = Probe("batchnorm", {"training": 1, "momentum": 0.5}, bn_params(rng, 4), [(2, 2, 4)], 3,
                  trained=[True, True, False, False])
    w_bad = probe.w_out.copy()
    w_bad[0, 0] = np.inf
    for network_class in (ops.Network, cuda.network_class(device)):
        loss, _, _, _, arrays = probe.run(network_class, w_out=w_bad)
        assert not np.isfinite(loss)
        for k in (2, 3):
            np.testing.assert_array_equal(arrays["p"][k], probe.params[k])
    # and the same probe with a finite head does move them
    _, _, _, _, arrays = probe.run(cuda.network_class(device))
    assert not np.array_equal(arrays["p"][2], probe.params[2])


# ------------------------------------------------------------------------------ a model

def toolbox_model(seed: int = 4) -> pycnn.Model:
    """Every op of this file in one graph: rescaling, padding and cropping, batch normalization
    (trained statistics, fused activation), depthwise and separable conv2d, add, multiply,
    concatenate, the image filters."""
    pycnn.set_random_seed(seed)
    inp = layers.Input((10, 9, 3))
    x = layers.Rescaling(0.5, offset=-0.25)(inp)
    x = layers.ZeroPadding2D(((1, 0), (2, 1)))(x)
    a = layers.DepthwiseConv2D(3, depth_multiplier=2, padding="same", activation="relu")(x)
    a = layers.BatchNormalization()(a)
    # no bias before a normalization: its gradient would be 0 up to round-off, which Adam amplifies
    b = layers.SeparableConv2D(6, 3, padding="same", depth_multiplier=2, use_bias=False)(x)
    b = layers.BatchNormalization(center=False)(b)
    s = layers.Add()([a, b])
    m = layers.Multiply()([a, b])
    c = layers.Concatenate()([s, m, x])
    c = layers.Cropping2D(((1, 1), (0, 2)))(c)
    c = layers.SeparableConv2D(8, 3, strides=2, dilation_rate=1, activation="relu")(c)
    c = layers.BatchNormalization(scale=False)(c)
    c = layers.DepthwiseConv2D(2, strides=2, dilation_rate=1, use_bias=False)(c)
    c = layers.GlobalAveragePooling2D()(c)
    out = layers.Dense(5, activation="softmax")(c)
    return pycnn.Model(inp, out)


@pytest.mark.parametrize("device", DEVICES)
def test_model_trains_as_on_the_cpu(device):
    rng = np.random.default_rng(0)
    x = f32(rng.standard_normal((24, 10, 9, 3)) * 2 + 1)
    y = rng.integers(0, 5, 24)
    runs = {}
    for dev in ("cpu", device):
        model = toolbox_model()
        model.compile(pycnn.optimizers.Adam(1e-2), "sparse_categorical_crossentropy", device=dev)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a fallback to the CPU would warn: the device must run every step
            history = model.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
        runs[dev] = (model, history.history["loss"])
    (cpu, cpu_loss), (dev, dev_loss) = runs["cpu"], runs[device]
    np.testing.assert_allclose(dev_loss, cpu_loss, rtol=1e-5)
    for u, v in zip(dev.get_weights(), cpu.get_weights()):  # the moving statistics included
        np.testing.assert_allclose(u, v, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(dev.predict(x, verbose=0), cpu.predict(x, verbose=0), rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------------------------ conv2d, pooling, dense, activation, loss
# The per-op sweeps of the retired host-bodies tests (test_cuda_bodies.py), now through the
# executor's device ops (activation.cu, conv2d.cu, pool2d.cu, dense.cu, softmax.cu).

CONV_CASES = [  # N, H, W, C, F, KH, KW, strides, padding
    pytest.param(1, 5, 5, 1, 1, 3, 3, (1, 1), "valid", id="batch1-C1"),
    pytest.param(2, 7, 6, 3, 4, 3, 3, (1, 1), "same", id="same-odd-kernel"),
    pytest.param(2, 6, 7, 3, 2, 2, 4, (1, 1), "same", id="same-even-kernel"),
    pytest.param(2, 9, 8, 2, 3, 3, 2, (2, 3), "valid", id="stride!=kernel"),
    pytest.param(3, 8, 9, 3, 5, 3, 3, (2, 2), "same", id="stride2-same"),
    pytest.param(2, 4, 5, 3, 2, 4, 5, (1, 1), "valid", id="out1x1"),
    pytest.param(2, 12, 12, 6, 16, 5, 5, (1, 1), "valid", id="lenet-conv2"),
]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("N,H,W,C,F,KH,KW,strides,padding", CONV_CASES)
@pytest.mark.parametrize("activation,bias", [("linear", True), ("relu", True), ("tanh", False)])
def test_conv2d(device, N, H, W, C, F, KH, KW, strides, padding, activation, bias):
    rng = np.random.default_rng(N * H + F)
    w = rng.standard_normal((KH, KW, C, F)) * 0.3
    b = rng.standard_normal(F) if bias else None
    attrs = {"strides": list(strides), "padding": padding, "activation": activation}
    compare(Probe("conv2d", attrs, [w, b], [(H, W, C)], N), device)


POOL_CASES = [  # N, H, W, C, pool, strides, padding
    pytest.param(1, 4, 4, 1, (2, 2), (2, 2), "valid", id="batch1-C1"),
    pytest.param(3, 7, 5, 3, (2, 2), (2, 2), "valid", id="non-tiling-odd"),
    pytest.param(2, 6, 7, 3, (3, 3), (1, 1), "valid", id="overlapping"),
    pytest.param(2, 9, 8, 2, (3, 2), (2, 3), "valid", id="rect-stride!=pool"),
    pytest.param(2, 5, 4, 3, (5, 4), (5, 4), "valid", id="out1x1"),
    pytest.param(2, 5, 5, 3, (2, 2), (2, 2), "same", id="asym-pad"),
    pytest.param(2, 7, 6, 3, (3, 3), (2, 2), "same", id="odd-window"),
    pytest.param(2, 6, 7, 2, (2, 4), (1, 1), "same", id="even-window-overlap"),
    pytest.param(1, 3, 3, 2, (4, 4), (1, 1), "same", id="window-larger-than-input"),
]


def distinct(shape, seed):
    """Distinct values (no ties), many negative so a padded zero would win if allowed to."""
    rng = np.random.default_rng(seed)
    n = math.prod(shape)
    return f32(rng.permutation(n).reshape(shape) - n / 2 + rng.uniform(0, 0.5, shape)) / n


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("kind", ["maxpool2d", "avgpool2d"])
@pytest.mark.parametrize("N,H,W,C,pool,strides,padding", POOL_CASES)
def test_pooling(device, kind, N, H, W, C, pool, strides, padding):
    probe = Probe(kind, {"pool_size": list(pool), "strides": list(strides), "padding": padding}, [], [(H, W, C)], N)
    probe.x_in[0] = distinct(probe.x_in[0].shape, N * H + W)
    compare(probe, device)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("kind", ["global_maxpool2d", "global_avgpool2d"])
def test_global_pooling(device, kind):
    probe = Probe(kind, {}, [], [(5, 4, 2)], 3)
    probe.x_in[0] = distinct(probe.x_in[0].shape, 7)
    compare(probe, device)


@pytest.mark.parametrize("device", DEVICES)
def test_maxpool2d_ties_go_to_the_first_maximum(device):
    probe = Probe("maxpool2d", {}, [], [(4, 4, 2)], 1)
    probe.x_in[0][:] = 0.0  # every window is a tie
    c = probe.run(ops.Network)
    d = probe.run(cuda.network_class(device))
    dinp = d[2][0].reshape(4, 4, 2)
    np.testing.assert_array_equal(dinp, c[2][0].reshape(4, 4, 2))
    assert dinp[::2, ::2].all()  # each window's gradient goes to its top-left (first) element
    dinp[::2, ::2] = 0
    assert not dinp.any()


@pytest.mark.parametrize("device", DEVICES)
def test_maxpool2d_nan_wins_like_the_cpu(device):
    probe = Probe("maxpool2d", {}, [], [(4, 4, 1)], 1)
    x = distinct((4, 4, 1), 4)
    x[1, 0, 0] = np.nan
    probe.x_in[0][:] = x.reshape(1, -1)
    c = probe.run(ops.Network)
    d = probe.run(cuda.network_class(device))
    np.testing.assert_array_equal(np.isnan(d[3]), np.isnan(c[3]))
    assert np.isnan(d[3]).any()
    np.testing.assert_array_equal(d[3], c[3])  # NaN in the same places, the rest equal


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("N,IN,OUT", [(1, 1, 1), (3, 7, 5), (8, 400, 120), (5, 84, 10)])
@pytest.mark.parametrize("activation", ["linear", "relu", "sigmoid", "tanh"])
def test_dense(device, N, IN, OUT, activation):
    rng = np.random.default_rng(7)
    params = [rng.standard_normal((IN, OUT)) / math.sqrt(IN), rng.standard_normal(OUT)]
    compare(Probe("dense", {"activation": activation}, params, [(IN,)], N), device)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("activation", ["relu", "sigmoid", "tanh", "gelu", "softmax"])
def test_activation(device, activation):
    probe = Probe("activation", {"activation": activation}, [], [(5, 3)], 4)
    probe.x_in[0] *= 3
    probe.x_in[0][np.abs(probe.x_in[0]) < 1e-3] = 0.5  # away from relu's kink
    compare(probe, device)


def loss_step(network_class, logits, labels, weights):
    """The fused loss alone: logits = I @ W with W = logits, so W's gradient is d loss / d logits."""
    N, K = logits.shape
    W = logits.copy()
    nodes = [("dense", None, [0], [W, None], {"activation": "linear"}, [0, -1])]
    eye = np.eye(N, dtype=np.float32)
    grad = np.empty_like(W)
    if network_class is ops.Network:
        loss, hits = ops.Network([(N,)], nodes, [1], False).train_step([eye], labels, LOSS, [grad], weights)
    else:
        net = network_class([(N,)], nodes, [1])
        loss, hits = net.train_step([eye], labels, LOSS, weights)
        net.download_gradients([grad])
    return loss, hits, grad


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("N,K", [(1, 1), (1, 10), (7, 3), (64, 10)])
@pytest.mark.parametrize("weighted", [False, True])
def test_softmax_crossentropy(device, N, K, weighted):
    rng = np.random.default_rng(6)
    logits = f32(rng.standard_normal((N, K)) * 4)
    labels = rng.integers(0, K, N)
    w = f32(rng.random(N)) if weighted else None
    closs, chits, cgrad = loss_step(ops.Network, logits, labels, w)
    dloss, dhits, dgrad = loss_step(cuda.network_class(device), logits, labels, w)
    assert dloss == pytest.approx(closs, rel=1e-6, abs=1e-6)
    assert dhits == chits == int((logits.argmax(axis=1) == labels).sum())
    np.testing.assert_allclose(dgrad, cgrad, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("device", DEVICES)
def test_softmax_crossentropy_large_logits_stay_finite(device):
    logits = np.array([[1000.0, 0.0, -1000.0], [-5e4, 5e4, 0.0]], np.float32)
    labels = np.array([2, 0])
    closs, _, cgrad = loss_step(ops.Network, logits, labels, None)
    dloss, _, dgrad = loss_step(cuda.network_class(device), logits, labels, None)
    assert np.isfinite(dloss) and np.all(np.isfinite(dgrad))
    assert dloss == pytest.approx(closs, rel=1e-6)
    np.testing.assert_allclose(dgrad, cgrad, rtol=1e-6)
