"""Compiled networks (csrc/network.h, executor.h) on graphs: concatenate, add, multiply,
global pooling, Sobel edges and image gradients as nodes, against a float64 NumPy forward
and backward.

Each network starts with trainable 1x1 convolutions (so the gradients of the ops under test
reach parameters the step reports) and ends in a dense head; the reference computes the
loss, the logits and every parameter gradient by hand from the oracle (tests/oracle).
"""
from __future__ import annotations

import itertools

import numpy as np
import pytest

import oracle as ref
from pycnn import ops

TOL = dict(rtol=2e-4, atol=2e-5)


def node(kind, inputs, params=(), attrs=None, weights=()):
    """A network node tuple (kind, name, inputs, params, attrs, trained-weight indices)."""
    return (kind, None, list(inputs), list(params), dict(attrs or {}), list(weights) or [-1] * len(params))


class Conv1x1:
    """A trainable 1x1 convolution node and its float64 reference."""

    counter = itertools.count()

    def __init__(self, rng, cin, cout, reads):
        self.w = (rng.standard_normal((1, 1, cin, cout)) * 0.5).astype(np.float32)
        self.b = (rng.standard_normal(cout) * 0.1).astype(np.float32)
        self.gw, self.gb = np.zeros_like(self.w), np.zeros_like(self.b)
        self.reads = reads

    def node(self, first_weight):
        return node("conv2d", [self.reads], [self.w, self.b], {}, [first_weight, first_weight + 1])

    def forward(self, x):
        return np.einsum("nhwc,cf->nhwf", x.astype(np.float64), self.w[0, 0].astype(np.float64)) + self.b

    def grads(self, x, dout):
        return (np.einsum("nhwc,nhwf->cf", x.astype(np.float64), dout)[None, None], dout.sum(axis=(0, 1, 2)))


class Head:
    """flatten (when needed) + dense to the logits, and the mean cross-entropy's gradients."""

    def __init__(self, rng, features, classes=5):
        self.w = (rng.standard_normal((features, classes)) * 0.2).astype(np.float32)
        self.b = (rng.standard_normal(classes) * 0.1).astype(np.float32)
        self.gw, self.gb = np.zeros_like(self.w), np.zeros_like(self.b)

    def node(self, reads, first_weight):
        return node("dense", [reads], [self.w, self.b], {}, [first_weight, first_weight + 1])

    def loss_and_dfeatures(self, feats, labels):
        logits = feats @ self.w.astype(np.float64) + self.b
        loss, probs = ref.softmax_crossentropy_forward(logits, labels)
        dlogits = ref.softmax_crossentropy_backward(probs, labels)
        return logits, loss, dlogits @ self.w.T.astype(np.float64), (feats.T @ dlogits, dlogits.sum(axis=0))


def check_step(x, labels, nodes, logits, loss, expected_grads, buffers):
    """The compiled network's predicted logits, and its training step's loss, hits and
    gradients (written into ``buffers``, one per trained weight in index order)."""
    xs = x if isinstance(x, list) else [x]
    net = ops.Network([a.shape[1:] for a in xs], nodes, [len(xs) + len(nodes) - 1])
    ref.assert_close(net.predict(xs)[0], logits, **TOL, name="logits", scale_atol=True)
    got_loss, correct = net.train_step(xs, labels, "sparse_softmax_crossentropy", buffers)
    assert abs(got_loss - loss) <= 1e-4 * max(1.0, abs(loss))
    assert correct == int((np.argmax(logits, axis=1) == labels).sum())
    for i, (got, want) in enumerate(zip(buffers, expected_grads)):
        ref.assert_close(got, want, **TOL, name=f"gradient {i}", scale_atol=True)
    # The same gradients from forward + backward with the loss's gradient as dout.
    outs, tape = net.forward(xs)
    _, _, dlogits = ops.loss("sparse_softmax_crossentropy", outs[0], labels)
    again = [np.empty_like(b) for b in buffers]
    net.backward(tape, [dlogits], again)
    for i, (got, want) in enumerate(zip(again, buffers)):
        ref.assert_close(got, want, rtol=1e-5, atol=1e-7, name=f"backward gradient {i}", scale_atol=True)


def test_the_lecture_arrangement_sobel_gradients_reshape_concatenate_pool(rng):
    N, H, W, C, F = 3, 8, 6, 3, 2
    x = rng.standard_normal((N, H, W, C)).astype(np.float32)
    labels = rng.integers(0, 5, N)
    conv = Conv1x1(rng, C, F, 0)                                       # value 1
    head = Head(rng, (H // 2) * (W // 2) * 4 * F)
    nodes = [conv.node(0),
             node("sobel_edges", [1]),                                  # 2: (H, W, F, 2)
             node("image_gradient", [1], attrs={"axis": 0}),            # 3
             node("image_gradient", [1], attrs={"axis": 1}),            # 4
             node("reshape", [2], attrs={"target_shape": (H, W, 2 * F)}),  # 5
             node("concatenate", [3, 4, 5], attrs={"axis": 2}),         # 6: (H, W, 4F)
             node("maxpool2d", [6], attrs={"pool_size": (2, 2), "strides": (2, 2)}),  # 7
             node("flatten", [7]),                                      # 8
             head.node(8, 2)]
    a = conv.forward(x)
    dy, dx, sob = ref.image_gradient_forward(a, 0), ref.image_gradient_forward(a, 1), ref.sobel_edges_forward(a)
    cat = ref.concatenate_forward([dy, dx, sob.reshape(N, H, W, 2 * F)], axis=3)
    pooled = ref.maxpool2d_forward(cat, 2)
    logits, loss, dfeat, (dw2, db2) = head.loss_and_dfeatures(pooled.reshape(N, -1), labels)
    dcat = ref.maxpool2d_backward(dfeat.reshape(pooled.shape), cat, 2)
    ddy, ddx, dsob = ref.concatenate_backward(dcat, [F, F, 2 * F], axis=3)
    da = (ref.image_gradient_backward(ddy, 0) + ref.image_gradient_backward(ddx, 1)
          + ref.sobel_edges_backward(dsob.reshape(N, H, W, F, 2)))
    dw1, db1 = conv.grads(x, da)
    check_step(x, labels, nodes, logits, loss, [dw1, db1, dw2, db2], [conv.gw, conv.gb, head.gw, head.gb])


@pytest.mark.parametrize("axis", [0, 1, 2], ids=["H", "W", "C"])
def test_concatenate_of_three_network_inputs_along_each_axis(rng, axis):
    N, base = 2, [5, 4, 3]
    sizes = [2, 3, 1]
    shapes = []
    for s in sizes:
        shape = list(base)
        shape[axis] = s if axis < 2 else shape[axis]
        shapes.append(shape)
    F = [2, 3, 1] if axis == 2 else [2, 2, 2]
    xs = [rng.standard_normal([N] + s).astype(np.float32) for s in shapes]
    labels = rng.integers(0, 5, N)
    convs = [Conv1x1(rng, s[2], f, k) for k, (s, f) in enumerate(zip(shapes, F))]  # values 3, 4, 5
    outs = [c.forward(x) for c, x in zip(convs, xs)]
    cat = ref.concatenate_forward(outs, axis=axis + 1)
    head = Head(rng, cat[0].size)
    nodes = [c.node(2 * k) for k, c in enumerate(convs)] + [node("concatenate", [3, 4, 5], attrs={"axis": axis}),
                                                            node("flatten", [6]), head.node(7, 6)]
    logits, loss, dfeat, head_grads = head.loss_and_dfeatures(cat.reshape(N, -1), labels)
    parts = ref.concatenate_backward(dfeat.reshape(cat.shape), [o.shape[axis + 1] for o in outs], axis=axis + 1)
    expected, buffers = [], []
    for c, x, d in zip(convs, xs, parts):
        expected += list(c.grads(x, d))
        buffers += [c.gw, c.gb]
    check_step(xs, labels, nodes, logits, loss, expected + list(head_grads), buffers + [head.gw, head.gb])


def test_add_with_one_value_twice_and_multiply(rng):
    N, H, W, C = 3, 4, 5, 2
    x = rng.standard_normal((N, H, W, C)).astype(np.float32)
    labels = rng.integers(0, 5, N)
    c1, c2 = Conv1x1(rng, C, 3, 0), Conv1x1(rng, C, 3, 0)               # values 1, 2
    head = Head(rng, H * W * 3 * 2)
    nodes = [c1.node(0), c2.node(2),
             node("add", [1, 2, 1]),                                    # 3 = a + b + a
             node("multiply", [1, 3]),                                  # 4 = a * (2a + b)
             node("concatenate", [3, 4], attrs={"axis": 2}),            # 5
             node("flatten", [5]), head.node(6, 4)]
    a, b = c1.forward(x), c2.forward(x)
    s = ref.add_forward([a, b, a])
    m = ref.multiply_forward([a, s])
    cat = ref.concatenate_forward([s, m], axis=3)
    logits, loss, dfeat, head_grads = head.loss_and_dfeatures(cat.reshape(N, -1), labels)
    ds, dm = ref.concatenate_backward(dfeat.reshape(cat.shape), [3, 3], axis=3)
    dm_a, dm_s = ref.multiply_backward(dm, [a, s])
    ds = ds + dm_s
    da = 2 * ds + dm_a
    check_step(x, labels, nodes, logits, loss, [*c1.grads(x, da), *c2.grads(x, ds), *head_grads],
               [c1.gw, c1.gb, c2.gw, c2.gb, head.gw, head.gb])


def test_global_max_and_average_pooling(rng):
    N, H, W, C = 4, 5, 3, 2
    x = rng.standard_normal((N, H, W, C)).astype(np.float32)
    labels = rng.integers(0, 5, N)
    conv = Conv1x1(rng, C, 4, 0)
    head = Head(rng, 8)
    nodes = [conv.node(0), node("global_maxpool2d", [1]), node("global_avgpool2d", [1]),
             node("concatenate", [2, 3], attrs={"axis": 0}), head.node(4, 2)]
    a = conv.forward(x)
    gmax, gavg = ref.global_maxpool2d_forward(a), ref.global_avgpool2d_forward(a)
    logits, loss, dfeat, head_grads = head.loss_and_dfeatures(np.concatenate([gmax, gavg], axis=1), labels)
    da = ref.global_maxpool2d_backward(dfeat[:, :4], a) + ref.global_avgpool2d_backward(dfeat[:, 4:], a.shape)
    check_step(x, labels, nodes, logits, loss, [*conv.grads(x, da), *head_grads],
               [conv.gw, conv.gb, head.gw, head.gb])


def _err(nodes, x, match):
    with pytest.raises(ValueError, match=match):
        ops.Network([x.shape[1:]], nodes, [len(nodes)])


def test_parse_errors_name_the_node_and_the_shapes():
    x = np.zeros((2, 4, 5, 3), np.float32)
    dense = node("dense", [2], [np.zeros((60, 2), np.float32), None])
    _err([node("flatten", [0]), node("concatenate", [0, 1], attrs={"axis": 0}), dense], x,
         r"node 1 \(op 'concatenate'\) expected inputs with matching shapes except along axis 0\. "
         r"Received: input shapes \(None, 4, 5, 3\), \(None, 60\)")
    _err([node("concatenate", [0, 0], attrs={"axis": 3})], x, r"per-sample axis in \[0, 3\)\. Received: axis=3")
    _err([node("flatten", [0]), node("add", [0, 1])], x,
         r"node 1 \(op 'add'\) expected inputs of the same shape\. Received: input shapes \(None, 4, 5, 3\), "
         r"\(None, 60\)")
    _err([node("multiply", [0, 1])], x, r"reads value 1, but only values 0 \.\. 0 exist")
    _err([node("sobel_edges", [0])], np.zeros((2, 1, 5, 3), np.float32),
         r"\(op 'sobel_edges'\) needs images of at least 2x2 pixels.*\(None, 1, 5, 3\)")
    _err([node("image_gradient", [0], attrs={"axis": 2})], x, r"expected axis 0 \(dy\) or 1 \(dx\)\. Received: axis=2")
    _err([node("flatten", [0]), node("global_avgpool2d", [1])], x,
         r"node 1 \(op 'global_avgpool2d'\).*\(None, 60\)")
    _err([node("image_gradient", [0])], x, r"node 0 \(op 'image_gradient'\) needs attribute 'axis'")
    _err([node("add", [0])], x, r"node 0 \(op 'add'\) expected at least 2 input\(s\)\. Received: 1")


@pytest.mark.parametrize("outputs", [[2, 3], [3, 2, 3], [2, 3, 0], [3], [0, 3, 2, 2]])
def test_backward_with_outputs_read_twice_read_by_nodes_or_inputs(rng, outputs):
    """backward() reads an output's gradient straight from the caller's rows only where
    nothing adds to it, and writes the input's gradient straight into the returned array:
    outputs listed twice, read by another node, or the network input itself must still sum
    (and predict, which writes outputs straight into its results, still returns them all)."""
    a, b = Conv1x1(rng, 3, 4, 0), Conv1x1(rng, 4, 2, 1)
    # values: 0 = x, 1 = a(x), 2 = b(a(x)), 3 = relu(b(a(x)))
    nodes = [a.node(0), b.node(2), node("activation", [2], attrs={"activation": "relu"})]
    x = rng.standard_normal((5, 3, 4, 3)).astype(np.float32)
    net = ops.Network([x.shape[1:]], nodes, outputs, input_grads=True)
    outs, tape = net.forward([x])
    for got, want in zip(net.predict([x]), outs):  # predict writes outputs straight to its arrays
        np.testing.assert_array_equal(got, want)
    douts = [rng.standard_normal(o.shape).astype(np.float32) for o in outs]
    grads = [np.empty_like(p) for p in (a.w, a.b, b.w, b.b)]
    kept = [d.copy() for d in douts]
    (dx,) = net.backward(tape, douts, grads)
    # float64 reference: gradients summed per value, then back through relu, b and a
    va = a.forward(x)
    vb = np.einsum("nhwc,cf->nhwf", va, b.w[0, 0].astype(np.float64)) + b.b
    g = {v: np.zeros(s) for v, s in ((0, x.shape), (1, va.shape), (2, vb.shape), (3, vb.shape))}
    for v, d in zip(outputs, douts):
        g[v] += d
    g[2] += g[3] * (vb > 0)
    g[1] += np.einsum("nhwf,cf->nhwc", g[2], b.w[0, 0].astype(np.float64))
    g[0] += np.einsum("nhwf,cf->nhwc", g[1], a.w[0, 0].astype(np.float64))
    gbw, gbb = b.grads(va, g[2])
    gaw, gab = a.grads(x, g[1])
    for got, want, name in zip([dx] + grads, [g[0], gaw, gab, gbw, gbb], ["dx", "a.w", "a.b", "b.w", "b.b"]):
        ref.assert_close(got, want, **TOL, name=name, scale_atol=True)
    for d, k in zip(douts, kept):
        np.testing.assert_array_equal(d, k)  # the caller's gradients are read, never written
