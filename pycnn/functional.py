"""``Model``: a model from symbolic inputs to outputs; a model is also a layer.

``pycnn.Model(inputs, outputs)`` walks back from the output tensors (pycnn/symbolic.py) to
find its graph (pycnn/graph.py: K input values, then nodes in topological order). Running,
training, saving and the summary are delegated: the executor (pycnn/executor.py, through
pycnn/step.py) runs the graph, the trainer (pycnn/trainer.py) loops, pycnn/saving.py and
pycnn/summary.py read the model's config and layers.

A model is a :class:`pycnn.layers.Layer`: called on symbolic tensors (or added to a
``Sequential``) it becomes one node of another model, sharing its weights; executors expand
it into its own layers, so it trains natively like any other part.

``model.layers`` and ``get_weights()`` follow Keras's order (layers by decreasing depth,
ties in the order a depth-first walk from the outputs meets them: for a chain, the order
of the calls), so weights move between pycnn and Keras by position.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from . import symbolic, utils
from .graph import Graph, GraphNode, run_forward
from .layers.base import Layer, Shape
from .layers.base import register as register_layer
from .layers.base import structure_changed
from .layers.core import InputLayer
from .symbolic import KerasTensor, Node, is_symbolic
from .trainer import Trainer


# --------------------------------------------------------------------------- the model

class Model(Trainer, Layer):
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

    _builds_itself = True  # a model builds its layers, not weights of its own

    def __init__(self, inputs: Any = None, outputs: Any = None, name: Optional[str] = None,
                 trainable: bool = True) -> None:
        Trainer.__init__(self)
        Layer.__init__(self, name=_model_name(name, "functional", type(self).__name__), trainable=trainable)
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
        self._multi_input = len(in_list) > 1
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
        structure_changed()
        counts: Dict[str, int] = {}
        for layer in order:
            counts[layer.name] = counts.get(layer.name, 0) + 1
        for n, count in counts.items():
            if count > 1:
                raise ValueError(f"The name '{n}' is used {count} times in model '{self.name}'. All layer "
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

    @property
    def class_name(self) -> str:
        return "Functional" if type(self) is Model else type(self).__name__  # Keras's name for it

    @property
    def batch_input_shape(self) -> Optional[Shape]:
        """As a model's first layer: the input shape it fixes (a single-input model's)."""
        if not self._has_graph():
            return None
        try:
            shapes = self._graph().input_shapes
        except RuntimeError:  # an unbuilt Sequential
            return None
        return shapes[0] if len(shapes) == 1 else None

    def _leaf_layers(self) -> List[Layer]:
        """Every layer of the expanded graph (nested models' own layers), each once."""
        seen: Dict[int, Layer] = {}
        for node in self._graph().expanded().nodes:
            seen.setdefault(id(node.layer), node.layer)
        return list(seen.values())

    def _shape_for(self, shape: Any) -> Any:
        """As a layer of another model: checks ``shape`` against the inputs, returns the output shape."""
        shapes = [tuple(shape)] if self._graph().num_inputs == 1 else [tuple(s) for s in shape]
        expected = self._graph().input_shapes
        for got, want in zip(shapes, expected):
            if len(got) != len(want) or any(w is not None and g is not None and w != g
                                            for g, w in zip(got[1:], want[1:])):
                raise ValueError(f"Model '{self.name}' expected input of shape {utils.shape_str(want)}, but "
                                 f"received input with shape {utils.shape_str(got)}.")
        return self.compute_output_shape(shapes[0] if len(shapes) == 1 else shapes)

    @property
    def output_activation(self) -> Optional[str]:
        layer = self._graph().expanded().output_layer(0)
        return None if layer is None else layer.output_activation

    # ---------------------------------------------------------------- weights

    @property
    def trainable(self) -> bool:
        return self._trainable

    @trainable.setter
    def trainable(self, value: bool) -> None:
        """As Keras: freezing (or unfreezing) a model does the same to every layer in it."""
        Layer.trainable.fset(self, value)
        for layer in getattr(self, "layers", []) if self._has_graph() else []:
            layer.trainable = value

    def _has_graph(self) -> bool:
        return getattr(self, "_graph_cache", None) is not None or bool(getattr(self, "_layers", None))

    @property
    def weights(self) -> List[np.ndarray]:
        return [w for layer in self.layers for w in layer.weights]

    @property
    def trainable_weights(self) -> List[np.ndarray]:
        if not self.trainable:
            return []
        return [w for layer in self.layers for w in layer.trainable_weights]

    @property
    def non_trainable_weights(self) -> List[np.ndarray]:
        trainable = {id(w) for w in self.trainable_weights}
        return [w for w in self.weights if id(w) not in trainable]

    @property
    def weight_names(self) -> List[str]:
        """``layer/weight`` for every weight, in ``get_weights()`` order."""
        return [f"{layer.name}/{n}" for layer in self.layers for n in layer.weight_names]

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
        """Forward pass on one batch (no batching); returns float32 output(s). On symbolic
        tensors it records this model as one node of the model being written."""
        if is_symbolic(x):
            if not self._single_output:
                raise ValueError(f"Model '{self.name}' has {len(self.outputs)} outputs; a model used as a layer must "
                                 "have exactly one.")
            return symbolic.call_layer(self, x)
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
        """The architecture as plain data: layers in ``layers`` order; nodes in execution order,
        each naming its layer and the tensors it reads as ``[layer name, call index]`` (an
        Input's tensor is call 0); inputs and outputs likewise."""
        graph = self._graph()
        ref_of_value: List[List[Any]] = [[t.node.layer.name, 0] for t in self.inputs]
        calls: Dict[int, int] = {}
        nodes = []
        for node in graph.nodes:
            call = calls.get(id(node.layer), 0)
            calls[id(node.layer)] = call + 1
            nodes.append({"layer": node.layer.name, "inputs": [list(ref_of_value[j]) for j in node.inputs]})
            ref_of_value.append([node.layer.name, call])
        return {"name": self.name, "trainable": self.trainable,
                "layers": [{"class_name": l.class_name, "config": l.get_config()} for l in self.layers],
                "nodes": nodes,
                "inputs": [list(ref_of_value[k]) for k in range(graph.num_inputs)],
                "outputs": [list(ref_of_value[v]) for v in graph.outputs],
                "single_output": bool(self._single_output)}

    @classmethod
    def from_config(cls, config: Dict[str, Any]) -> "Model":
        """The model :meth:`get_config` describes, its layers rebuilt through the layer
        registry (:func:`pycnn.layers.get`; a user's own inside ``custom_object_scope``)."""
        from .layers import base as layers_base
        from .layers.core import Input
        by_name: Dict[str, Any] = {}
        tensors: Dict[Tuple[str, int], Any] = {}
        for entry in config["layers"]:
            layer_cls = layers_base.get(entry["class_name"])
            cfg = dict(entry["config"])
            if layer_cls is InputLayer:
                tensors[(cfg["name"], 0)] = Input(**cfg)
            else:
                by_name[cfg["name"]] = layer_cls.from_config(cfg)
        calls: Dict[str, int] = {}
        for node in config["nodes"]:
            layer = by_name[node["layer"]]
            args = [tensors[(n, int(i))] for n, i in node["inputs"]]
            call = calls.get(layer.name, 0)
            calls[layer.name] = call + 1
            tensors[(layer.name, call)] = layer(args if layer._multi_input else args[0])
        inputs = [tensors[(n, int(i))] for n, i in config["inputs"]]
        outputs = [tensors[(n, int(i))] for n, i in config["outputs"]]
        return Model(inputs=inputs, outputs=outputs[0] if config.get("single_output", True) else outputs,
                     name=config.get("name"), trainable=config.get("trainable", True))

    def save(self, path: Any) -> None:
        """Write the model to one file, atomically: a Keras 3 ``.keras`` file when ``path`` ends
        in ``.keras`` (Keras's ``load_model`` opens it), else pycnn's ``.npz`` (architecture,
        weights and, when compiled, the optimizer's and the random generator's state, for an
        exact resume). :func:`pycnn.models.load_model` reads both; see :mod:`pycnn.saving`
        and docs/interop.md."""
        from . import saving
        saving.save(self, path)

    def save_weights(self, path: Any) -> None:
        """Write the weights only: Keras 3's weights-file layout when ``path`` ends in ``.h5``
        (``m.weights.h5``, needs h5py), else pycnn's ``.npz`` (:mod:`pycnn.saving`)."""
        from . import saving
        saving.save_weights_any(self, path)

    def load_weights(self, path: Any) -> None:
        """Load weights written by :meth:`save_weights` or :meth:`save`, or by Keras
        (``.weights.h5``, ``.keras``, legacy ``.h5``); checks every class and shape before
        changing anything."""
        from . import saving
        saving.load_weights_any(self, path)

    def export(self, filepath: Any, format: str = "onnx", verbose: Optional[bool] = None,
               input_signature: Any = None, opset_version: Optional[int] = None) -> None:
        """Write the model for inference elsewhere, as Keras 3's ``model.export``. pycnn
        exports ``format='onnx'`` (needs the ``onnx`` package: ``pip install 'pycnn[onnx]'``):
        NHWC float32 inputs as pycnn takes them, a dynamic batch axis, opset
        ``opset_version`` (default :data:`pycnn.interop.onnx_export.DEFAULT_OPSET`); the
        graph is described in docs/interop.md.

        Raises:
            ValueError: another format, or a layer with no ONNX form (a Python layer).
            ImportError: onnx is not installed.
        """
        if format != "onnx":
            raise ValueError(f"Model.export() writes format='onnx' only. Received: format={format!r}. For Keras, "
                             "use model.save('m.keras').")
        if input_signature is not None:
            raise ValueError("Model.export() takes the input shapes from the model; input_signature is not "
                             f"supported. Received: input_signature={input_signature!r}.")
        from .interop import onnx_export
        onnx_export.export(self, filepath, opset=opset_version, verbose=verbose)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} name={self.name!r}>"


register_layer("Functional", Model)  # the class name Keras (and pycnn's files) write for it





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

    def enter(tensor: KerasTensor) -> bool:
        """First sight of ``tensor``'s node: True when its inputs must be visited."""
        node = tensor.node
        if id(node) in finished:
            return False
        if id(node) in in_progress:
            raise ValueError(f"Tensor {tensor!r} of layer '{node.layer.name}' is part of a cycle.")
        first_visit.setdefault(id(node.layer), len(first_visit))
        if node.is_input:
            if id(node) not in input_nodes:
                raise ValueError(f"Graph disconnected in model '{model_name}': the output depends on the input "
                                 f"'{tensor.name}' {utils.shape_str(tensor.shape)}, which is not one of the model's inputs "
                                 f"{[t.name for t in inputs]}. Pass it in Model(inputs=[...]).")
            finished.add(id(node))
            return False
        in_progress.add(id(node))
        return True

    # Depth-first with an explicit stack (a chain of thousands of layers must not recurse):
    # each entry is a node and the position of the next input to visit.
    for out in outputs:
        if not enter(out):
            continue
        stack = [(out.node, 0)]
        while stack:
            node, i = stack[-1]
            if i < len(node.inputs):
                stack[-1] = (node, i + 1)
                if enter(node.inputs[i]):
                    stack.append((node.inputs[i].node, 0))
                continue
            stack.pop()
            in_progress.discard(id(node))
            finished.add(id(node))
            ordered.append(node)
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
