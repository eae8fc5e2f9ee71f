"""A model's graph: K input values, then nodes in topological order, each one call of a layer.

Value ``K + i`` is node ``i``'s output; ``outputs`` are the values the model returns.
``pycnn.Model(inputs, outputs)`` finds its graph by walking back from the output tensors
(pycnn/functional.py); ``Sequential`` is the chain ``node i reads value i``. Below the model
classes, this module imports none of them: a node whose layer is itself a model (a model used
as a layer) is recognised by its ``_graph()`` and expanded in place by :meth:`Graph.expanded`,
so executors only ever see leaf layers.

Also here, the eager executor: :func:`run_forward` / :func:`run_backward` run the graph layer by
layer (each layer's one-op network, or its Python ``call``). The state backward needs stays
in the returned :class:`Trace`, one entry per node, so a layer called twice (shared weights)
gets the sum of both calls' gradients, a value read by several nodes gets the sum of theirs,
and concurrent ``predict`` calls share nothing. Training normally runs compiled
(pycnn/executor.py); this path is the debugging reference (``PYCNN_NATIVE_STEP=0``).
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from .layers.base import Layer, Shape
from . import ops


class GraphNode:
    """One layer call of a graph: ``layer`` applied to the values ``inputs``."""

    __slots__ = ("layer", "inputs")

    def __init__(self, layer: Any, inputs: Tuple[int, ...]) -> None:
        self.layer = layer
        self.inputs = inputs


class _Passthrough(Layer):
    """The identity, standing for a nested model's output that is one of its inputs."""

    def spec(self, training: bool = False) -> ops.OpSpec:
        return ops.OpSpec("identity", {})


def is_model(layer: Any) -> bool:
    return callable(getattr(layer, "_graph", None))


class Graph:
    """The executable form of a model (see the module docstring for the value numbering)."""

    def __init__(self, input_shapes: Sequence[Shape], nodes: Sequence[GraphNode], outputs: Sequence[int]) -> None:
        self.input_shapes = [tuple(s) for s in input_shapes]
        self.nodes = list(nodes)
        self.outputs = list(outputs)
        self._shapes: Dict[Tuple[Shape, ...], List[Shape]] = {}  # value_shapes, by input shapes
        self.plans: Dict[Any, Any] = {}  # compiled forms (pycnn/executor.py), by what they depend on
        self._expanded: Optional[Graph] = None

    @property
    def num_inputs(self) -> int:
        return len(self.input_shapes)

    def producer(self, value: int) -> Optional[GraphNode]:
        k = self.num_inputs
        return None if value < k else self.nodes[value - k]

    def output_layer(self, index: int = 0) -> Optional[Layer]:
        node = self.producer(self.outputs[index])
        return None if node is None else node.layer

    def value_shapes(self, input_shapes: Sequence[Shape]) -> List[Shape]:
        """The shape of every value for inputs of ``input_shapes``; raises the layers' errors.
        (Memoised: a graph's layers are built, so the answer for given shapes never changes.)"""
        key = tuple(tuple(s) for s in input_shapes)
        known = self._shapes.get(key)
        if known is not None:
            return list(known)
        shapes = [tuple(s) for s in input_shapes]
        for node in self.nodes:
            args = [shapes[j] for j in node.inputs] if node.layer._multi_input else shapes[node.inputs[0]]
            shapes.append(node.layer._shape_for(args))
        if len(self._shapes) < 64:
            self._shapes[key] = shapes
        return list(shapes)

    def needs_grad(self, inputs: bool = False) -> List[bool]:
        """Per value: whether it depends on a trainable weight (or, with ``inputs``, on an
        input): whether backward must reach it."""
        needs = [bool(inputs)] * self.num_inputs
        for node in self.nodes:
            layer = node.layer
            needs.append(bool(layer.trainable_weights) or any(needs[j] for j in node.inputs))
        return needs

    def consumers(self) -> List[int]:
        """Per value: how many node inputs read it (a value read twice by one node counts twice)."""
        counts = [0] * (self.num_inputs + len(self.nodes))
        for node in self.nodes:
            for j in node.inputs:
                counts[j] += 1
        return counts

    def expanded(self) -> "Graph":
        """This graph with every node whose layer is a model replaced by that model's own
        (expanded) nodes: the leaf layers an executor runs. The same graph when there is none."""
        if self._expanded is not None:
            return self._expanded
        if not any(is_model(n.layer) for n in self.nodes):
            self._expanded = self
            return self
        k = self.num_inputs
        value_of = list(range(k))  # this graph's value -> the expanded graph's value
        nodes: List[GraphNode] = []
        for node in self.nodes:
            ins = [value_of[j] for j in node.inputs]
            if not is_model(node.layer):
                nodes.append(GraphNode(node.layer, tuple(ins)))
                value_of.append(k + len(nodes) - 1)
                continue
            inner = node.layer._graph().expanded()
            if len(inner.outputs) != 1:
                raise ValueError(f"Model '{node.layer.name}' has {len(inner.outputs)} outputs; a model used as a "
                                 "layer must have exactly one.")
            local = list(ins)  # the inner graph's value -> the expanded graph's value
            for inner_node in inner.nodes:
                nodes.append(GraphNode(inner_node.layer, tuple(local[j] for j in inner_node.inputs)))
                local.append(k + len(nodes) - 1)
            out = local[inner.outputs[0]]
            if out != k + len(nodes) - 1:  # the inner output is not its last node's: pass it through
                nodes.append(GraphNode(_PASSTHROUGH, (out,)))
            value_of.append(k + len(nodes) - 1)
        self._expanded = Graph(self.input_shapes, nodes, [value_of[o] for o in self.outputs])
        return self._expanded


_PASSTHROUGH = _Passthrough(name="passthrough")


class Trace:
    """What one forward pass leaves for its backward: each node's ctx."""

    __slots__ = ("ctxs",)

    def __init__(self, ctxs: List[Any]) -> None:
        self.ctxs = ctxs


def run_forward(graph: Graph, xs: Sequence[np.ndarray], training: bool, logits: bool = False,
                keep_trace: bool = True, record_on_layers: bool = False) -> Tuple[List[np.ndarray], Optional[Trace]]:
    """Runs every node of ``graph`` (expanded) on the float32 inputs ``xs``; returns the
    outputs and the trace.

    ``logits``: the layer producing output 0 leaves out its softmax (the loss fuses it).
    Without ``keep_trace`` (inference) each value is released after its last reader.
    ``record_on_layers``: also leave each layer its call's state, so that a user can
    differentiate layer by layer with ``layer.backward`` after ``model(x)`` (a layer
    called twice keeps its last call).
    """
    graph = graph.expanded()
    k = graph.num_inputs
    values: List[Optional[np.ndarray]] = list(xs) + [None] * len(graph.nodes)
    ctxs: List[Any] = [None] * len(graph.nodes)
    logit_node = graph.outputs[0] - k if logits else -1
    remaining = None if keep_trace else graph.consumers()
    outputs = set(graph.outputs)
    for i, node in enumerate(graph.nodes):
        layer = node.layer
        args = [values[j] for j in node.inputs] if layer._multi_input else values[node.inputs[0]]
        out, ctx = layer._run(args, training, i == logit_node)
        values[k + i] = out
        if record_on_layers:
            layer._last_call = (ctx, out.shape)
        if keep_trace:
            ctxs[i] = ctx
        else:
            for j in node.inputs:
                remaining[j] -= 1
                if remaining[j] == 0 and j not in outputs:
                    values[j] = None
    return [values[o] for o in graph.outputs], (Trace(ctxs) if keep_trace else None)


def run_backward(graph: Graph, trace: Trace, dout: np.ndarray, output_index: int = 0,
                 input_grads: Optional[List[Optional[np.ndarray]]] = None) -> Dict[int, Tuple[np.ndarray, np.ndarray]]:
    """Backpropagates ``dout`` (gradient w.r.t. output ``output_index``) through the trace.

    Returns ``{id(weight): (weight, gradient)}`` for every trainable weight a gradient
    reaches, each summed over the calls of its layer. Nodes no trainable weight depends on
    are skipped, and a node computes its input gradient only when something upstream needs
    it. ``input_grads``: a list to receive the gradient w.r.t. each model input (None where
    the output does not depend on it); asking for it makes backward run down to the inputs.
    """
    graph = graph.expanded()
    k = graph.num_inputs
    needs = graph.needs_grad(inputs=input_grads is not None)
    grads: List[Optional[np.ndarray]] = [None] * (k + len(graph.nodes))
    grads[graph.outputs[output_index]] = dout
    per_weight: Dict[int, Tuple[np.ndarray, np.ndarray]] = {}
    for i in range(len(graph.nodes) - 1, -1, -1):
        g = grads[k + i]
        if g is None:
            continue
        grads[k + i] = None
        node = graph.nodes[i]
        layer = node.layer
        trains = bool(layer.trainable_weights)
        need_input = any(needs[j] for j in node.inputs)
        if not (trains or need_input):
            continue
        dinp, wgrads = layer._backward(trace.ctxs[i], g, need_input)
        trace.ctxs[i] = None  # free what this node kept as soon as it is used
        if trains:
            trainable = {id(w) for w in layer.trainable_weights}
            for w, gw in zip(layer.weights, wgrads):
                if gw is None or id(w) not in trainable:
                    continue
                entry = per_weight.get(id(w))
                per_weight[id(w)] = (w, gw if entry is None else entry[1] + gw)
        if need_input:
            pieces = dinp if layer._multi_input else [dinp]
            for j, d in zip(node.inputs, pieces):
                if needs[j] and d is not None:
                    grads[j] = d if grads[j] is None else grads[j] + d
    if input_grads is not None:
        input_grads[:] = grads[:k]
    return per_weight
