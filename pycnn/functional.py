"""``Model``: a graph of layer calls, and the executor every model runs on.

A model is a :class:`Graph`: K input values, then nodes in topological order, each one
call of a layer on earlier values (value ``K + i`` is node ``i``'s output), and the values
that are the outputs. ``pycnn.Model(inputs, outputs)`` finds the graph by walking back
from the output tensors (pycnn/symbolic.py); ``Sequential`` (pycnn/sequential.py) is the
chain ``node i reads value i``. Both run, train, save and summarise through the same code:

* :func:`run_forward` / :func:`run_backward` (here): eager execution layer by layer. The
  state backward needs stays in the returned :class:`Trace`, one entry per node, so a layer
  called twice (shared weights) gets the sum of both calls' gradients, a value read by
  several nodes gets the sum of theirs, and concurrent ``predict`` calls share nothing;
* pycnn/fused_step.py: the same graph as one native call per batch;
* pycnn/trainer.py (compile / fit / evaluate / predict), pycnn/saving.py, pycnn/summary.py.

``model.layers`` and ``get_weights()`` follow Keras's order (layers by decreasing depth,
ties in the order a depth-first walk from the outputs meets them: for a chain, the order
of the calls), so weights move between pycnn and Keras by position.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from . import utils
from .layers.base import Layer, Shape
from .layers.core import InputLayer
from .symbolic import KerasTensor, Node, is_symbolic
from .trainer import Trainer


class GraphNode:
    """One layer call of a graph: ``layer`` applied to the values ``inputs``."""

    __slots__ = ("layer", "inputs")

    def __init__(self, layer: Layer, inputs: Tuple[int, ...]) -> None:
        self.layer = layer
        self.inputs = inputs


class Graph:
    """The executable form of a model (see the module docstring for the value numbering)."""

    def __init__(self, input_shapes: Sequence[Shape], nodes: Sequence[GraphNode], outputs: Sequence[int]) -> None:
        self.input_shapes = [tuple(s) for s in input_shapes]
        self.nodes = list(nodes)
        self.outputs = list(outputs)
        self._shapes: Dict[Tuple[Shape, ...], List[Shape]] = {}  # value_shapes, by input shapes
        self.plans: Dict[Any, Any] = {}  # fused_step plans, by what they depend on

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
            needs.append(bool(layer.trainable and layer.weights) or any(needs[j] for j in node.inputs))
        return needs

    def consumers(self) -> List[int]:
        """Per value: how many node inputs read it (a value read twice by one node counts twice)."""
        counts = [0] * (self.num_inputs + len(self.nodes))
        for node in self.nodes:
            for j in node.inputs:
                counts[j] += 1
        return counts


class Trace:
    """What one forward pass leaves for its backward: each node's ctx (and the values)."""

    __slots__ = ("ctxs",)

    def __init__(self, ctxs: List[Any]) -> None:
        self.ctxs = ctxs


def run_forward(graph: Graph, xs: Sequence[np.ndarray], training: bool, logits: bool = False,
                keep_trace: bool = True, record_on_layers: bool = False) -> Tuple[List[np.ndarray], Optional[Trace]]:
    """Runs every node on the float32 inputs ``xs``; returns the outputs and the trace.

    ``logits``: the layer producing output 0 leaves out its softmax (the loss fuses it).
    Without ``keep_trace`` (inference) each value is released after its last reader.
    ``record_on_layers``: also leave each layer its call's state, so that a user can
    differentiate layer by layer with ``layer.backward`` after ``model(x)`` (a layer
    called twice keeps its last call).
    """
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
                 input_grads: Optional[List[Optional[np.ndarray]]] = None
                 ) -> Dict[int, Tuple[Layer, List[np.ndarray]]]:
    """Backpropagates ``dout`` (gradient w.r.t. output ``output_index``) through the trace.

    Returns ``{id(layer): (layer, weight gradients)}`` for every trainable layer with
    weights, each summed over the layer's calls. Nodes no trainable weight depends on are
    skipped, and a node computes its input gradient only when something upstream needs it.
    ``input_grads``: a list to receive the gradient w.r.t. each model input (None where the
    output does not depend on it); asking for it makes backward run down to the inputs.
    """
    k = graph.num_inputs
    needs = graph.needs_grad(inputs=input_grads is not None)
    grads: List[Optional[np.ndarray]] = [None] * (k + len(graph.nodes))
    grads[graph.outputs[output_index]] = dout
    per_layer: Dict[int, Tuple[Layer, List[np.ndarray]]] = {}
    for i in range(len(graph.nodes) - 1, -1, -1):
        g = grads[k + i]
        if g is None:
            continue
        grads[k + i] = None
        node = graph.nodes[i]
        layer = node.layer
        trains = bool(layer.trainable and layer.weights)
        need_input = any(needs[j] for j in node.inputs)
        if not (trains or need_input):
            continue
        dinp, wgrads = layer._backward(trace.ctxs[i], g, need_input)
        trace.ctxs[i] = None  # free what this node kept as soon as it is used
        if trains:
            entry = per_layer.get(id(layer))
            if entry is None:
                per_layer[id(layer)] = (layer, list(wgrads))
            else:
                per_layer[id(layer)] = (layer, [a + b for a, b in zip(entry[1], wgrads)])
        if need_input:
            pieces = dinp if layer._multi_input else [dinp]
            for j, d in zip(node.inputs, pieces):
                if needs[j] and d is not None:
                    grads[j] = d if grads[j] is None else grads[j] + d
    if input_grads is not None:
        input_grads[:] = grads[:k]
    return per_layer


# --------------------------------------------------------------------------- the model

class Model(Trainer):
    """A model from symbolic inputs to outputs, like ``keras.Model(inputs, outputs)``.

    Example (the lecture's case study)::

        inp = pycnn.Input(shape=[32, 32, 3])
        edges = pycnn.layers.Reshape((32, 32, 6))(pycnn.image.sobel_edges(inp))
        dy, dx = pycnn.image.image_gradients(inp)
        x = pycnn.layers.Concatenate(axis=3)([dy, dx, edges])
        x = pycnn.layers.Dense(10, activation="softmax")(pycnn.layers.Flatten()(x))
        model = pycnn.Model(inputs=[inp], outputs=x)

    Args:
        inputs: the tensor (or list of tensors) ``Input`` returned.
        outputs: a tensor or a list of tensors computed from ``inputs``. Training uses the
            first output (one output is what the losses support).
        name: default ``functional``, ``functional_1``, ...

    With several inputs, ``fit``, ``evaluate`` and ``predict`` take a list of arrays in
    the order of ``inputs``; with several outputs ``predict`` returns a list.
    """

    def __init__(self, inputs: Any = None, outputs: Any = None, name: Optional[str] = None) -> None:
        super().__init__()
        self.name = _model_name(name, "functional", type(self).__name__)
        if type(self) is Model or inputs is not None or outputs is not None:
            self._init_graph(inputs, outputs)

    def _init_graph(self, inputs: Any, outputs: Any) -> None:
        in_list = _tensor_list(inputs, "inputs")
        out_list = _tensor_list(outputs, "outputs")
        for t in in_list:
            if not isinstance(t.node.layer, InputLayer):
                raise ValueError(f"Model '{self.name}' expected its inputs to be tensors returned by Input(). "
                                 f"Received: {t!r}, the output of layer '{t.node.layer.name}'.")
        if len(set(map(id, in_list))) != len(in_list):
            raise ValueError(f"Model '{self.name}' received the same input tensor twice: {in_list!r}.")
        self._inputs = in_list
        self._outputs = out_list
        self._single_output = not isinstance(outputs, (list, tuple)) or len(out_list) == 1
        nodes, order = _walk(in_list, out_list, self.name)
        value_of: Dict[int, int] = {id(t.node): k for k, t in enumerate(in_list)}
        graph_nodes = []
        for node in nodes:
            value_of[id(node)] = len(in_list) + len(graph_nodes)
            graph_nodes.append(GraphNode(node.layer, tuple(value_of[id(t.node)] for t in node.inputs)))
        self._symbolic_nodes = nodes
        self._graph_cache = Graph([t.shape for t in in_list], graph_nodes, [value_of[id(t.node)] for t in out_list])
        self._layer_order = order
        names = [layer.name for layer in order]
        for n in names:
            if names.count(n) > 1:
                raise ValueError(f"The name '{n}' is used {names.count(n)} times in model '{self.name}'. All layer "
                                 "names should be unique: pass name= to the layers.")
        self.built = True

    # ---------------------------------------------------------------- structure

    def _graph(self) -> Graph:
        return self._graph_cache

    @property
    def layers(self) -> List[Layer]:
        """Every layer, InputLayers included, in Keras's order (see the module docstring)."""
        return list(self._layer_order)

    @property
    def inputs(self) -> List[KerasTensor]:
        return list(self._inputs)

    @property
    def outputs(self) -> List[KerasTensor]:
        return list(self._outputs)

    @property
    def input_shape(self) -> Union[Shape, List[Shape]]:
        shapes = self._graph().input_shapes
        return shapes[0] if len(shapes) == 1 else list(shapes)

    @property
    def output_shape(self) -> Union[Shape, List[Shape]]:
        shapes = [t.shape for t in self._outputs]
        return shapes[0] if self._single_output else shapes

    def compute_output_shape(self, input_shape: Any) -> Union[Shape, List[Shape]]:
        shapes = [input_shape] if self._graph().num_inputs == 1 else list(input_shape)
        values = self._graph().value_shapes(shapes)
        outs = [values[o] for o in self._graph().outputs]
        return outs[0] if self._single_output else outs

    def _require_built(self, what: str) -> None:
        pass  # a graph model is built when it is made

    def _output_shape_for(self, input_shapes: Sequence[Shape]) -> Shape:
        """Shape of output 0 for inputs of ``input_shapes`` (batch axis included)."""
        graph = self._graph()
        return graph.value_shapes(input_shapes)[graph.outputs[0]]

    def _weighted_layers(self) -> List[Layer]:
        return [layer for layer in self.layers if layer.weights]

    # ---------------------------------------------------------------- weights

    @property
    def weights(self) -> List[np.ndarray]:
        return [w for layer in self.layers for w in layer.weights]

    @property
    def trainable_weights(self) -> List[np.ndarray]:
        return [w for layer in self.layers for w in layer.trainable_weights]

    @property
    def non_trainable_weights(self) -> List[np.ndarray]:
        return [w for layer in self.layers for w in layer.non_trainable_weights]

    def get_weights(self) -> List[np.ndarray]:
        """Copies of every layer's weights, layer by layer in ``layers`` order (Keras's)."""
        self._require_built("the weights")
        return [w for layer in self.layers for w in layer.get_weights()]

    def set_weights(self, weights: Sequence[Any]) -> None:
        """Set every layer's weights from a flat list (``get_weights()`` order).

        Raises:
            ValueError: wrong number of arrays or a wrong shape (nothing is changed then).
        """
        self._require_built("the weights")
        weights = list(weights)
        layers = self.layers
        expected = sum(len(layer.weights) for layer in layers)
        if len(weights) != expected:
            raise ValueError(f"Model '{self.name}' expected a list of {expected} weight arrays. "
                             f"Received: a list of {len(weights)} arrays.")
        chunks, pos = [], 0
        for layer in layers:
            count = len(layer.weights)
            chunk = weights[pos:pos + count]
            for pname, param, value in zip(layer.weight_names, layer.weights, chunk):
                if np.shape(value) != param.shape:
                    raise ValueError(f"Layer '{layer.name}' expected weight '{pname}' with shape {param.shape}. "
                                     f"Received: shape={np.shape(value)}.")
            chunks.append((layer, chunk))
            pos += count
        for layer, chunk in chunks:
            layer.set_weights(chunk)

    def count_params(self) -> int:
        """Total number of weights (scalars); a layer called several times counts once."""
        self._require_built("the number of parameters")
        return int(sum(layer.count_params() for layer in self.layers))

    def get_layer(self, name: Optional[str] = None, index: Optional[int] = None) -> Layer:
        """A layer by name or by position in ``layers``."""
        if index is not None:
            return self.layers[index]
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise ValueError(f"No such layer: {name!r}. Existing layers are: {[l.name for l in self.layers]}.")

    # ---------------------------------------------------------------- calling

    def __call__(self, x: Any, training: bool = False) -> Any:
        """Forward pass on one batch (no batching); returns float32 output(s)."""
        if is_symbolic(x):
            raise NotImplementedError(f"Calling model '{self.name}' on symbolic tensors (a model inside another "
                                      "model) is not supported yet; call its layers on the tensors instead.")
        xs = self._prepare_inputs(x, f"Model '{self.name}'")
        outs, _ = run_forward(self._graph(), [utils.as_float32(v, f"Model '{self.name}'") for v in xs],
                              training, keep_trace=False, record_on_layers=True)
        return outs[0] if self._single_output else outs

    def _prepare_inputs(self, x: Any, who: str) -> List[np.ndarray]:
        """``x`` as a list of arrays, one per input, checked against the input shapes."""
        shapes = self._graph().input_shapes
        if isinstance(x, (list, tuple)) and not (len(shapes) == 1 and _looks_like_data(x)):
            xs = list(x)
        else:
            xs = [x]
        if len(xs) != len(shapes):
            raise ValueError(f"{who} expected {len(shapes)} input arrays (one per model input, "
                             f"{', '.join(utils.shape_str(s) for s in shapes)}). Received: {len(xs)} arrays.")
        given = [utils.check_real_array(v, who, "x" if len(xs) == 1 else f"x[{i}]") for i, v in enumerate(xs)]
        arrays = [_adjust_rank(arr, expected) for arr, expected in zip(given, shapes)]
        for i, (arr, expected) in enumerate(zip(arrays, shapes)):
            if arr.ndim < 1 or arr.shape[0] < 1:
                raise ValueError(f"Model '{self.name}' expected a non-empty batch of samples. "
                                 f"Received: x.shape={arr.shape}.")
            if len(expected) != arr.ndim or any(e is not None and e != d for e, d in zip(expected[1:], arr.shape[1:])):
                which = "" if len(shapes) == 1 else f" {i} ('{self._input_name(i)}')"
                raise ValueError(f"Model '{self.name}' expected input{which} of shape {utils.shape_str(expected)}, "
                                 f"but received input with shape {given[i].shape}.")
        if len({a.shape[0] for a in arrays}) > 1:
            raise ValueError(f"Model '{self.name}' expected every input array to hold the same number of samples. "
                             f"Received: {[a.shape[0] for a in arrays]}.")
        return arrays

    def _input_name(self, i: int) -> str:
        return self._inputs[i].name

    # ---------------------------------------------------------------- delegated jobs

    def summary(self, print_fn: Optional[Callable[[str], Any]] = None, line_length: Optional[int] = None) -> None:
        """Print a Keras-style table: layers, output shapes, parameters (and, for graphs,
        what each layer is connected to). See :mod:`pycnn.summary`."""
        from . import summary
        summary.print_summary(self, print_fn=print_fn, line_length=line_length)

    def get_config(self) -> Dict[str, Any]:
        """The architecture as plain data (layers and the calls between them)."""
        from . import saving
        return saving.functional_config(self)

    @classmethod
    def from_config(cls, config: Dict[str, Any]) -> "Model":
        from . import saving
        return saving.functional_from_config(config)

    def save(self, path: Any) -> None:
        """Write architecture, weights and (when compiled) the optimizer's state to one
        ``.npz`` file, atomically; :func:`pycnn.models.load_model` reads it back. See
        :mod:`pycnn.saving` for the layout."""
        from . import saving
        saving.save_model(self, path)

    def save_weights(self, path: Any) -> None:
        """Write the weights only (:mod:`pycnn.saving` documents the layout)."""
        from . import saving
        saving.save_weights(self, path)

    def load_weights(self, path: Any) -> None:
        """Load weights written by :meth:`save_weights` or :meth:`save`; checks every class
        and shape before changing anything."""
        from . import saving
        saving.load_weights(self, path)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} name={self.name!r}>"


# --------------------------------------------------------------------------- graph walking

def _model_name(name: Optional[str], default: str, owner: str) -> str:
    if name is None:
        return utils.unique_name(default)
    if not isinstance(name, str) or not name:
        raise ValueError(f"Invalid value for argument 'name' of {owner}: expected a non-empty string. "
                         f"Received: name={name!r}.")
    return name


def _tensor_list(value: Any, arg: str) -> List[KerasTensor]:
    items = list(value) if isinstance(value, (list, tuple)) else [value]
    if not items or not all(isinstance(t, KerasTensor) for t in items):
        raise TypeError(f"Model() expected '{arg}' to be a symbolic tensor or a list of them (from pycnn.Input and "
                        f"layer calls). Received: {arg}={value!r}.")
    return items


def _looks_like_data(x: Sequence[Any]) -> bool:
    """A single-input model given a list: a list of arrays is one array per input; a
    nested list of numbers is the data itself."""
    return not any(isinstance(v, np.ndarray) for v in x)


def _walk(inputs: List[KerasTensor], outputs: List[KerasTensor], model_name: str
          ) -> Tuple[List[Node], List[Layer]]:
    """Nodes in topological order (depth-first from the outputs, as Keras's _build_map) and
    the layers in Keras's order (by decreasing depth, ties by first visit)."""
    input_nodes = {id(t.node) for t in inputs}
    finished: set = set()
    in_progress: set = set()
    ordered: List[Node] = []
    first_visit: Dict[int, int] = {}

    def visit(tensor: KerasTensor) -> None:
        node = tensor.node
        if id(node) in finished:
            return
        if id(node) in in_progress:
            raise ValueError(f"Tensor {tensor!r} of layer '{node.layer.name}' is part of a cycle.")
        first_visit.setdefault(id(node.layer), len(first_visit))
        if node.is_input:
            if id(node) not in input_nodes:
                raise ValueError(f"Graph disconnected in model '{model_name}': the output depends on the input "
                                 f"'{tensor.name}' {utils.shape_str(tensor.shape)}, which is not one of the model's inputs "
                                 f"{[t.name for t in inputs]}. Pass it in Model(inputs=[...]).")
            finished.add(id(node))
            return
        in_progress.add(id(node))
        for t in node.inputs:
            visit(t)
        in_progress.discard(id(node))
        finished.add(id(node))
        ordered.append(node)

    for out in outputs:
        visit(out)
    # Depths: an output's node is at depth 0, a node's inputs one deeper than it (the max).
    depth_of_node: Dict[int, int] = {}
    depth_of_layer: Dict[int, int] = {}
    layers: Dict[int, Layer] = {}
    for node in reversed(ordered):
        depth = max(depth_of_node.get(id(node), 0), depth_of_layer.get(id(node.layer), 0))
        depth_of_node[id(node)] = depth
        depth_of_layer[id(node.layer)] = depth
        layers[id(node.layer)] = node.layer
        for parent in node.parent_nodes:
            depth_of_node[id(parent)] = max(depth_of_node.get(id(parent), 0), depth + 1)
    for t in inputs:
        layer = t.node.layer
        layers[id(layer)] = layer
        depth_of_layer[id(layer)] = depth_of_node.get(id(t.node), 0)
        first_visit.setdefault(id(layer), -1)  # an input no output depends on
    order = sorted(layers.values(), key=lambda l: (-depth_of_layer[id(l)], first_visit[id(l)]))
    return ordered, order


def _adjust_rank(arr: np.ndarray, expected: Sequence[Optional[int]]) -> np.ndarray:
    """Keras's rule for data one axis off the model's input: (N, H, W) data for an
    (H, W, 1) input gains the channel axis, and a trailing axis of 1 beyond the input's
    rank is dropped. Anything else is left for the shape check to refuse."""
    if arr.ndim + 1 == len(expected) and expected[-1] == 1:
        return arr[..., None]
    if arr.ndim == len(expected) + 1 and arr.shape[-1] == 1:
        return arr[..., 0]
    return arr
