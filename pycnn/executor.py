"""The executor: a model's graph compiled once into native networks, and run.

A :class:`CompiledGraph` is one graph compiled for one mode (training or inference, the output
as logits or not, which weights train) and one set of input sizes. Each leaf layer gives its
op spec (pycnn/layers/base.py); consecutive layers with a spec form a *segment*, compiled into
one native network (pycnn.ops.Network, csrc/network.h); a layer without one (a user's
Python layer, Dropout or random augmentation in training) runs its ``call`` / ``gradient``
between segments. A model that is all native is one segment, and a training step on it is one
native call: forward, the fused loss, backward and the optimizer's update.

Before compiling, two rewrites of the specs, derived from the ops' own declarations (no
list of kinds): an activation layer right after a node that applies an ``activation``
attribute itself joins that node (conv -> relu becomes one node), and at inference a
BatchNormalization right after a linear node whose parameters are ``kernel`` and ``bias``
folds into them (recomputed from the live weights before each call).

The executor returns what it computed (:class:`StepResult`); it never writes gradients onto
layers. Who owns what above it: pycnn/step.py decides the step (loss, penalties, optimizer,
MPI), pycnn/trainer.py loops.

Set ``PYCNN_NATIVE_STEP=0`` to run layer by layer instead (pycnn/graph.py, for debugging).
"""
from __future__ import annotations

import math
import os
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np

from . import ops
from .graph import Graph

Shape = Tuple[Optional[int], ...]


def enabled() -> bool:
    return os.environ.get("PYCNN_NATIVE_STEP", "1") != "0"


class StepResult(NamedTuple):
    loss: float                         # the mean loss of the batch (penalties not included)
    hits: Optional[int]                 # rows whose largest output is the label (fused loss only)
    outputs: Optional[np.ndarray]       # output 0 when asked for (logits when ``logits``)
    gradients: List[Optional[np.ndarray]]  # aligned with the trained weights
    applied: bool                       # the update ran inside the native call


class _Segment(NamedTuple):
    network: Any                # ops.Network
    inputs: List[int]           # graph values it reads
    outputs: List[int]          # graph values it writes for others
    weights: List[int]          # its trained weights -> index into CompiledGraph.trained
    input_grads: bool
    args: tuple                 # (input_shapes, nodes, outputs): what ops.Network was made from


class _PythonNode(NamedTuple):
    layer: Any
    node: int                   # index into the graph's nodes
    inputs: List[int]
    output: int


def _attrs_of(kind: str) -> set:
    return {a.name for a in ops.registered_ops()[kind].attrs}


def _param_names(kind: str) -> List[str]:
    return [p.name for p in ops.registered_ops()[kind].params]


def _readers(graph: Graph) -> List[set]:
    """Per value: the nodes that read it (-1 for a graph output)."""
    k = graph.num_inputs
    readers: List[set] = [set() for _ in range(k + len(graph.nodes))]
    for i, node in enumerate(graph.nodes):
        for j in node.inputs:
            readers[j].add(i)
    for o in graph.outputs:
        readers[o].add(-1)
    return readers


def _private(graph: Graph, value: int, reader: int, readers: List[set]) -> bool:
    """``value`` is read by node ``reader`` alone and is no graph output."""
    return readers[value] == {reader} and graph.consumers()[value] == 1


def node_specs(graph: Graph, training: bool, logits: bool, rewrite: bool = True
               ) -> Tuple[List[Optional[ops.OpSpec]], List[Callable[[], None]]]:
    """The op spec each node of ``graph`` runs as (None: a Python layer), after the two
    rewrites (module docstring) unless ``rewrite`` is False, and the functions that recompute
    the arrays a batchnorm folding derived from live weights (each already run once).
    pycnn.quantization starts from these specs too."""
    k = graph.num_inputs
    out_node = graph.outputs[0] - k
    specs = [node.layer._spec_for(training, logits and i == out_node) for i, node in enumerate(graph.nodes)]
    refresh: List[Callable[[], None]] = []
    if rewrite:
        readers = _readers(graph)
        if not training:
            _fold_batchnorm(graph, specs, readers, refresh)
        _fuse_activations(graph, specs, readers)
    return specs, refresh


def _fuse_activations(graph: Graph, specs: List[Optional[ops.OpSpec]], readers: List[set]) -> None:
    """An ``activation`` node reading (alone) the output of a node with a linear
    ``activation`` attribute becomes part of that node; it turns into an identity."""
    k = graph.num_inputs
    for i, spec in enumerate(specs):
        if spec is None or spec.kind != "activation":
            continue
        src, reader = graph.nodes[i].inputs[0] - k, i
        # Look through the identities a batchnorm folding left (conv -> BN -> relu).
        while src >= 0 and specs[src] is not None and specs[src].kind == "identity" and \
                _private(graph, k + src, reader, readers):
            src, reader = graph.nodes[src].inputs[0] - k, src
        if src < 0 or specs[src] is None or not _private(graph, k + src, reader, readers):
            continue
        producer = specs[src]
        if "activation" in _attrs_of(producer.kind) and producer.attrs.get("activation", "linear") == "linear":
            specs[src] = producer.with_attrs(activation=spec.attrs["activation"])
            specs[i] = ops.OpSpec("identity", {})


def fold_batchnorm(kernel: np.ndarray, bias: Optional[np.ndarray], gamma: Optional[np.ndarray],
                   beta: Optional[np.ndarray], mean: np.ndarray, var: np.ndarray, epsilon: float,
                   out_kernel: np.ndarray, out_bias: np.ndarray) -> None:
    """Inference batch normalization after a linear map, folded into it: writes
    ``out_kernel = kernel * s`` (per output channel, the kernel's last axis) and
    ``out_bias = (bias - mean) * s + beta`` with ``s = gamma / sqrt(var + epsilon)``."""
    channels = mean.shape[0]
    scale = (1.0 / np.sqrt(var.astype(np.float64) + epsilon)) * (1.0 if gamma is None else gamma)
    np.multiply(kernel.reshape(-1, channels), scale.astype(np.float32), out=out_kernel.reshape(-1, channels))
    shifted = (0.0 if bias is None else bias.astype(np.float64)) - mean
    out_bias[...] = shifted * scale + (0.0 if beta is None else beta)


def _fold_batchnorm(graph: Graph, specs: List[Optional[ops.OpSpec]], readers: List[set],
                    refresh: List[Callable[[], None]]) -> None:
    """At inference a batchnorm right after a linear node whose parameters are ``kernel``
    and ``bias`` (the last axis of the kernel the output channels) is a per-channel scale
    and shift, which folds exactly into them (:func:`fold_batchnorm`)."""
    k = graph.num_inputs
    for i, spec in enumerate(specs):
        if spec is None or spec.kind != "batchnorm" or spec.attrs.get("training"):
            continue
        src = graph.nodes[i].inputs[0] - k
        if src < 0 or specs[src] is None or not _private(graph, k + src, i, readers):
            continue
        producer = specs[src]
        if _param_names(producer.kind)[:2] != ["kernel", "bias"] or \
                producer.attrs.get("activation", "linear") != "linear":
            continue
        kernel, bias = producer.params[0], producer.params[1]
        gamma, beta, mean, var = spec.params
        epsilon = float(spec.attrs["epsilon"])
        channels = mean.shape[0]
        if kernel.size % channels or (bias is not None and bias.shape != (channels,)):
            continue
        folded_kernel = np.empty_like(kernel)
        folded_bias = np.empty(channels, np.float32)

        def update(args=(kernel, bias, gamma, beta, mean, var, epsilon, folded_kernel, folded_bias)) -> None:
            fold_batchnorm(*args)

        update()
        refresh.append(update)
        params = (folded_kernel, folded_bias) + tuple(producer.params[2:])
        specs[src] = producer._replace(params=params).with_attrs(activation=spec.attrs.get("activation", "linear"))
        specs[i] = ops.OpSpec("identity", {})


class CompiledGraph:
    """``graph`` (expanded) compiled for inputs of ``input_shapes`` (batch axis included).

    Args:
        training: layers in training mode (batch statistics, dropout, augmentation).
        logits: the producer of output 0 leaves out its final softmax (a fused loss, or a
            loss computed from logits).
        trained: the weights to train, in the order gradients are returned; [] for inference.
        rewrite: fold batch normalization and fuse activations (False: the layers' specs are
            final, as those of a quantized graph, pycnn/quantization.py).
    """

    def __init__(self, graph: Graph, input_shapes: Sequence[Shape], training: bool, logits: bool,
                 trained: Sequence[np.ndarray], rewrite: bool = True) -> None:
        self.graph = graph
        self.training = training
        self.trained = list(trained)
        self._index = {id(w): i for i, w in enumerate(self.trained)}
        k = graph.num_inputs
        shapes = graph.value_shapes(input_shapes)
        self.value_shapes = shapes
        specs, self._refresh = node_specs(graph, training, logits, rewrite)
        self.specs = specs
        self._grads: Optional[Tuple[List[Optional[np.ndarray]], List[np.ndarray]]] = None
        self.steps: List[Any] = []
        needs = graph.needs_grad()
        readers = _readers(graph)
        i = 0
        while i < len(specs):
            if specs[i] is None:
                node = graph.nodes[i]
                self.steps.append(_PythonNode(node.layer, i, list(node.inputs), k + i))
                i += 1
                continue
            j = i
            while j < len(specs) and specs[j] is not None:
                j += 1
            self.steps.append(self._segment(i, j, shapes, needs, readers))
            i = j
        last = self.steps[-1] if self.steps else None
        self._in_order = isinstance(last, _Segment) and last.weights == list(range(len(self.trained)))

    # ------------------------------------------------------------------ compile

    def _segment(self, start: int, stop: int, shapes: List[Shape], needs: List[bool], readers: List[set]) -> _Segment:
        """Nodes [start, stop) as one native network."""
        k = self.graph.num_inputs
        produced = set(range(k + start, k + stop))
        inputs: List[int] = []
        for node in self.graph.nodes[start:stop]:
            for v in node.inputs:
                if v not in produced and v not in inputs:
                    inputs.append(v)
        outputs = [v for v in sorted(produced) if any(r >= stop or r < 0 for r in readers[v])]
        local = {v: n for n, v in enumerate(inputs)}
        for i in range(start, stop):
            local[k + i] = len(inputs) + i - start
        weights: List[int] = []
        nodes = []
        for i in range(start, stop):
            node, spec = self.graph.nodes[i], self.specs[i]
            w = []
            schema = ops.registered_ops()[spec.kind].params
            for p, param in enumerate(spec.params):
                gi = self._index.get(id(param)) if param is not None and not schema[p].state else None
                if gi is None:
                    w.append(-1)
                    continue
                if gi not in weights:
                    weights.append(gi)
                w.append(weights.index(gi))
            nodes.append(ops.node(spec, node.layer.name, [local[v] for v in node.inputs], w))
        input_grads = any(needs[v] for v in inputs)
        args = ([tuple(shapes[v][1:]) for v in inputs], nodes, [local[v] for v in outputs])
        network = ops.Network(*args, input_grads)
        return _Segment(network, inputs, outputs, weights, input_grads, args)

    # ------------------------------------------------------------------ run

    @property
    def fusable(self) -> bool:
        """A training step can be one native call: the last network makes the graph's only
        output and nothing before it needs a gradient (what comes first, e.g. rescaling and
        random augmentation, runs ahead of it on each batch)."""
        last = self.steps[-1]
        return (isinstance(last, _Segment) and last.outputs == self.graph.outputs and len(self.graph.outputs) == 1
                and not last.input_grads)

    def refresh(self) -> None:
        """Recompute arrays derived from the live weights (folded batch normalization)."""
        for update in self._refresh:
            update()

    def predict(self, xs: Sequence[np.ndarray]) -> List[np.ndarray]:
        """The graph's outputs for one batch."""
        self.refresh()
        values: Dict[int, np.ndarray] = dict(enumerate(xs))
        for step in self.steps:
            if isinstance(step, _Segment):
                outs = step.network.predict([values[v] for v in step.inputs])
                values.update(zip(step.outputs, outs))
            else:
                values[step.output] = self._python_call(step, values)
        return [values[o] for o in self.graph.outputs]

    def _python_call(self, step: _PythonNode, values: Dict[int, np.ndarray]) -> np.ndarray:
        from . import utils

        layer = step.layer
        args = [values[v] for v in step.inputs]
        out = layer.call(args if layer._multi_input else args[0], training=self.training)
        return utils.as_float32(out, f"Layer '{layer.name}'.call()", "output")

    def fused_step(self, xs: Sequence[np.ndarray], targets: np.ndarray, loss: Any,
                   sample_weight: Optional[np.ndarray], want_outputs: bool, update: Optional[tuple]) -> StepResult:
        """The one-call step (``fusable`` graphs): forward, the registered ``loss`` (its name or
        (name, hyper-parameters)), backward and the optional ``update`` = (name, hyper, slots
        per trained weight[, decay per trained weight])."""
        if len(self.steps) > 1:
            values, tapes = self._run_ahead(xs, self.steps[:-1])
            inputs = [values[v] for v in self.steps[-1].inputs]
        else:
            values, tapes, inputs = {}, [], list(xs)
        segment = self.steps[-1]
        grads, seg_grads = self._gradient_buffers()
        out = None
        if want_outputs:
            out = np.empty((xs[0].shape[0],) + tuple(self.value_shapes[self.graph.outputs[0]][1:]), np.float32)
        native_update = None
        if update is not None:
            # (name, hyper, slots[, decay]): hyper one list or one per weight, decay per weight.
            name, hyper, slots = update[:3]
            decay = update[3] if len(update) > 3 else None
            per_weight = bool(hyper) and isinstance(hyper[0], (list, tuple))
            if self._in_order:
                native_update = (name, hyper, self.trained, slots, decay)
            else:
                pick = segment.weights
                native_update = (name, [hyper[g] for g in pick] if per_weight else hyper,
                                 [self.trained[g] for g in pick], [slots[g] for g in pick],
                                 None if decay is None else [decay[g] for g in pick])
        value, hits = segment.network.train_step(inputs, targets, loss, seg_grads, sample_weight, out, native_update)
        finite = math.isfinite(value)
        if finite and tapes:
            self.commit((values, tapes))
        return StepResult(value, hits, out, grads, update is not None and finite)

    def _gradient_buffers(self) -> Tuple[List[Optional[np.ndarray]], List[np.ndarray]]:
        """The fused step's gradient arrays, made once and written by every step (None for a
        trained weight this graph does not read), and the last segment's share of them."""
        if self._grads is None:
            segment = self.steps[-1]
            grads: List[Optional[np.ndarray]] = [None] * len(self.trained)
            for g in segment.weights:
                grads[g] = np.empty_like(self.trained[g])
            self._grads = (grads, [grads[g] for g in segment.weights])
        return self._grads

    def _run_ahead(self, xs: Sequence[np.ndarray], steps: Sequence[Any]) -> Tuple[Dict[int, np.ndarray], List[Any]]:
        """``steps`` forward, keeping what backward (and commit) need -> (values, tapes)."""
        values: Dict[int, np.ndarray] = dict(enumerate(xs))
        tapes: List[Any] = []
        for step in steps:
            if isinstance(step, _Segment):
                outs, tape = step.network.forward([values[v] for v in step.inputs])
                values.update(zip(step.outputs, outs))
                tapes.append(tape)
            else:
                values[step.output] = self._python_call(step, values)
                tapes.append(None)
        return values, tapes

    def forward(self, xs: Sequence[np.ndarray]) -> Tuple[List[np.ndarray], Any]:
        """Forward keeping what backward needs -> (outputs, state)."""
        values, tapes = self._run_ahead(xs, self.steps)
        return [values[o] for o in self.graph.outputs], (values, tapes)

    def backward(self, state: Any, douts: Sequence[Optional[np.ndarray]]) -> List[Optional[np.ndarray]]:
        """Gradients of the trained weights (None where none reaches) from the outputs' gradients."""
        values, tapes = state
        grad: Dict[int, np.ndarray] = {}
        for o, d in zip(self.graph.outputs, douts):
            if d is not None:
                grad[o] = d if o not in grad else grad[o] + d
        result: List[Optional[np.ndarray]] = [None] * len(self.trained)

        def add(index: int, g: np.ndarray) -> None:
            result[index] = g if result[index] is None else result[index] + g

        for step, tape in zip(reversed(self.steps), reversed(tapes)):
            if isinstance(step, _Segment):
                d = [grad.pop(v, None) for v in step.outputs]
                if all(x is None for x in d):
                    continue
                seg_grads = [np.empty_like(self.trained[g]) for g in step.weights]
                dinputs = step.network.backward(tape, d, seg_grads)
                for g, arr in zip(step.weights, seg_grads):
                    add(g, arr)
                if step.input_grads:
                    for v, dv in zip(step.inputs, dinputs):
                        grad[v] = dv if v not in grad else grad[v] + dv
            else:
                d = grad.pop(step.output, None)
                if d is None:
                    continue
                layer = step.layer
                args = [values[v] for v in step.inputs]
                dinputs, dweights = layer.gradient(args if layer._multi_input else args[0], values[step.output], d)
                per_weight = layer._python_weight_grads(dweights)
                for w, g in zip(layer.weights, per_weight):
                    if g is not None and id(w) in self._index:
                        add(self._index[id(w)], g)
                pieces = dinputs if layer._multi_input else [dinputs]
                for v, dv in zip(step.inputs, pieces):
                    if dv is not None:
                        dv = np.asarray(dv, dtype=np.float32)
                        grad[v] = dv if v not in grad else grad[v] + dv
        return result

    def commit(self, state: Any) -> None:
        """After a finite training step: the native nodes' state (moving statistics)."""
        _, tapes = state
        for step, tape in zip(self.steps, tapes):
            if isinstance(step, _Segment) and tape is not None:
                step.network.commit(tape)


def compiled(graph: Graph, input_shapes: Sequence[Shape], training: bool, logits: bool,
             trained: Sequence[np.ndarray]) -> CompiledGraph:
    """The graph compiled for this mode, kept on the graph (recompiled only when what it
    depends on changes: input sizes, the trainable flags, the trained weights)."""
    graph = graph.expanded()
    key = (tuple(tuple(s[1:]) for s in input_shapes), bool(training), bool(logits),
           tuple(id(w) for w in trained), tuple(node.layer.trainable for node in graph.nodes))
    found = graph.plans.get(key)
    if found is None:
        if len(graph.plans) >= 32:
            graph.plans.clear()
        found = CompiledGraph(graph, [(None,) + tuple(s[1:]) for s in input_shapes], training, logits, trained)
        graph.plans[key] = found
    return found
