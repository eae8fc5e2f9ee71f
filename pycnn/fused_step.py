"""A model's graph as the one-call native step (csrc/network.h).

Training layer by layer crosses into C++ and wakes the OpenMP threads once per layer and
direction; ``ops.network_train_step`` runs forward, the fused softmax cross-entropy and
backward of the whole graph in one call, each thread taking a share of the batch. This
module turns a :class:`pycnn.functional.Graph` into that call's node tuples
``(kind, inputs, params, grads, ints, strs)``: each layer gives its own twin
(``Layer.native_twin``), so no table here lists layer types. When some layer has none,
:func:`plan` returns None and the model runs layer by layer, with the same results up to
float32 summation order.

Set ``PYCNN_NATIVE_STEP=0`` to always run layer by layer.
"""
from __future__ import annotations

import os
from typing import Any, List, NamedTuple, Optional

import numpy as np


class Plan(NamedTuple):
    nodes: list                 # node tuples for ops.network_train_step / network_predict
    trained: List[np.ndarray]   # the trained weights, in the order the step meets them
    gradients: list             # (layer, gradient buffer or None per weight) for every layer the step trains
    stateful: list              # (layer, twin) for every twin with state, for finish_step
    front: list = []            # preprocessing layers run in NumPy before the step (run_front)
    refresh: list = []          # callables that update derived arrays before each call (refresh)


def enabled() -> bool:
    return os.environ.get("PYCNN_NATIVE_STEP", "1") != "0"


def _gradient_buffers(layer: Any) -> List[np.ndarray]:
    """Persistent float32 arrays the native step writes the layer's gradients into."""
    buffers = getattr(layer, "_native_grads", None)
    if buffers is None or len(buffers) != len(layer.weights) or \
            any(b.shape != p.shape for b, p in zip(buffers, layer.weights)):
        buffers = [np.empty_like(p) for p in layer.weights]
        layer._native_grads = buffers
    return buffers


def plan(graph: Any, train: bool, training: bool, logits: bool) -> Optional[Plan]:
    """The native step's plan for ``graph``, or None when it cannot run natively.

    Plans are kept on the graph (a graph's layers and their weight arrays do not change;
    what can change between steps, ``trainable``, is part of the key).

    Args:
        graph: a model's Graph (one output, produced by its last node).
        train: give trainable layers gradient buffers (for ``network_train_step``).
        training: forward in training mode (Dropout with rate > 0 then has no twin).
        logits: the output layer's softmax is left out (the caller applies it, or fuses it
            into the loss).
    """
    if not enabled() or not graph.nodes or len(graph.outputs) != 1:
        return None
    key = (train, training, logits, tuple(node.layer.trainable for node in graph.nodes))
    if key in graph.plans:
        return graph.plans[key]
    result = _make_plan(graph, train, training, logits)
    graph.plans[key] = result
    return result


def _front_length(graph: Any, training: bool) -> int:
    """How many leading nodes run in NumPy before a training step: up to the last
    preprocessing layer (RandomFlip, RandomCrop, ...: no twin in training), when those nodes
    are a chain from the single input without trained weights and nothing after them reads
    inside it. 0 when there is no such layer, -1 when they cannot be split off."""
    if not training:
        return 0
    cut = -1
    for i, node in enumerate(graph.nodes):
        if getattr(node.layer, "_preprocessing", False) and node.layer.native_twin(True, False) is None:
            cut = i
    if cut < 0:
        return 0
    K = graph.num_inputs
    for i, node in enumerate(graph.nodes[:cut + 1]):
        if K != 1 or tuple(node.inputs) != ((0,) if i == 0 else (K + i - 1,)) or node.layer.trainable_weights:
            return -1
    if any(v < K + cut for node in graph.nodes[cut + 1:] for v in node.inputs):
        return -1
    return cut + 1


def _make_plan(graph: Any, train: bool, training: bool, logits: bool) -> Optional[Plan]:
    last = len(graph.nodes) - 1
    if graph.outputs[0] != graph.num_inputs + last:
        return None
    front = _front_length(graph, training)
    if front < 0 or front > last:
        return None
    # With a front of F nodes the step's one input is node F-1's output (value K + F - 1).
    shift = graph.num_inputs + front - 1 if front else 0
    nodes: list = []
    trained: List[np.ndarray] = []
    layers: list = []
    stateful: list = []
    seen: set = set()
    for i, node in enumerate(graph.nodes[front:], start=front):
        layer = node.layer
        if layer.weights:
            if id(layer) in seen:
                return None  # the step writes one gradient per node: shared weights run layer by layer
            seen.add(id(layer))
        twin = layer.native_twin(training, logits and i == last)
        if twin is None:
            return None
        grads = None
        if train and layer.trainable_weights:
            buffers = _gradient_buffers(layer)
            by_param = {id(p): b for p, b in zip(layer.weights, buffers) if layer._is_trainable_weight(p)}
            grads = tuple(by_param.get(id(p)) for p in twin.params)
            trained.extend(p for p in twin.params if p is not None and id(p) in by_param)
            # What get_gradients() returns after a step: None for weights nothing trains.
            layers.append((layer, [by_param.get(id(w)) for w in layer.weights]))
        if twin.state:
            stateful.append((layer, twin))
        inputs = tuple(v - shift for v in node.inputs)
        nodes.append((twin.kind, inputs, tuple(twin.params), grads, tuple(twin.ints), tuple(twin.strs),
                      tuple(float(f) for f in twin.floats), tuple(twin.state)))
    refresh: list = []
    if not train and not training and not front:
        refresh = _fold_batchnorm(graph, nodes)
    if not front:
        _fuse_batchnorm_activation(graph, nodes)
    return Plan(nodes, trained, layers, stateful, [n.layer for n in graph.nodes[:front]], refresh)


#: Node kinds whose kernel's last axis is the output channels, and where their activation is in strs.
_FOLDABLE = {"conv2d": 1, "dense": 0}


def _fold_batchnorm(graph: Any, nodes: list) -> list:
    """At inference, a BatchNormalization right after a linear conv2d or dense node is a
    per-channel scale and shift, which folds exactly into that node's kernel and bias:
    ``kernel * s`` and ``(bias - moving_mean) * s + beta`` with ``s = gamma / sqrt(var + eps)``.
    A relu/sigmoid/tanh Activation right after the BN joins the folded node too. The folded
    nodes read arrays derived from the live weights; the returned callables recompute them
    (run before every call, see :func:`refresh`). Nodes that fold become identities."""
    K = graph.num_inputs
    consumers = graph.consumers()
    outputs = set(graph.outputs)

    def private(v: int) -> bool:  # read by exactly one node, not a model output
        return consumers[v] == 1 and v not in outputs

    updates = []
    for j in range(len(nodes) - 1):
        kind, inputs, params, grads, ints, strs, floats, state = nodes[j]
        bn = nodes[j + 1]
        if (kind not in _FOLDABLE or strs[_FOLDABLE[kind]] != "linear" or bn[0] != "batchnorm"
                or bn[1] != (K + j,) or bn[4] != (0,) or not private(K + j)):
            continue
        act, fold_to = "linear", j + 1
        if j + 2 < len(nodes):
            nxt = nodes[j + 2]
            if nxt[0] == "activation" and nxt[1] == (K + j + 1,) and private(K + j + 1):
                act, fold_to = nxt[5][0], j + 2
        kernel, bias = params[0], params[1]
        gamma, beta, mean, var = bn[2]
        epsilon = bn[6][0]
        folded_kernel = np.empty_like(kernel)
        folded_bias = np.empty(kernel.shape[-1], np.float32)

        def update(kernel=kernel, bias=bias, gamma=gamma, beta=beta, mean=mean, var=var, epsilon=epsilon,
                   folded_kernel=folded_kernel, folded_bias=folded_bias) -> None:
            scale = (1.0 / np.sqrt(var.astype(np.float64) + epsilon)) * (1.0 if gamma is None else gamma)
            np.multiply(kernel, scale.astype(np.float32), out=folded_kernel)
            shifted = (0.0 if bias is None else bias.astype(np.float64)) - mean
            folded_bias[...] = shifted * scale + (0.0 if beta is None else beta)

        update()
        updates.append(update)
        new_strs = tuple(act if k == _FOLDABLE[kind] else v for k, v in enumerate(strs))
        nodes[j] = (kind, inputs, (folded_kernel, folded_bias), grads, ints, new_strs, floats, state)
        for k in range(j + 1, fold_to + 1):
            nodes[k] = ("identity", (K + k - 1,), (), None, (), (), (), ())
    return updates


def _fuse_batchnorm_activation(graph: Any, nodes: list) -> None:
    """A relu/sigmoid/tanh Activation right after a batchnorm node (conv -> BN -> relu, the
    usual block) runs inside the batchnorm node: one pass over the values fewer each way."""
    K = graph.num_inputs
    consumers = graph.consumers()
    outputs = set(graph.outputs)
    for j in range(len(nodes) - 1):
        bn, nxt = nodes[j], nodes[j + 1]
        if (bn[0] == "batchnorm" and not bn[5] and nxt[0] == "activation" and nxt[1] == (K + j,)
                and consumers[K + j] == 1 and K + j not in outputs):
            nodes[j] = bn[:5] + (tuple(nxt[5]),) + bn[6:]
            nodes[j + 1] = ("identity", (K + j,), (), None, (), (), (), ())


def refresh(p: Plan) -> None:
    """Recompute the plan's derived arrays (folded batch normalization) from the live weights."""
    for update in p.refresh:
        update()


def run_front(p: Plan, xs: List[np.ndarray]) -> List[np.ndarray]:
    """The step's inputs: ``xs``, or what the plan's preprocessing front makes of them (in
    training mode: random crops, flips...)."""
    if not p.front:
        return xs
    x = xs[0]
    for layer in p.front:
        x, _ = layer._run(x, training=True)
    return [x]


def publish_gradients(p: Plan) -> None:
    """After a native step, make ``get_gradients()`` return the buffers it wrote (None for
    weights the optimizer does not train)."""
    for layer, buffers in p.gradients:
        layer._grads = list(buffers)


def finish_step(p: Plan) -> None:
    """After a native training step with a finite loss: layers take the state it wrote
    (BatchNormalization updates its moving statistics from the batch's moments)."""
    for layer, twin in p.stateful:
        layer.native_step_done(twin)
