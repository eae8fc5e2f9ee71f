"""Symbolic tensors: what ``Input(shape)`` returns and what layers return when called on one.

Calling a layer on a :class:`KerasTensor` (or a list of them) computes no values: it checks
and builds the layer for the input shapes, records a :class:`Node` (this call of this
layer, on these tensors) and returns the node's output tensor. ``pycnn.Model(inputs,
outputs)`` later walks those nodes back from the outputs (pycnn/functional.py).

A layer called several times has several nodes; its weights are shared by all of them.
Every layer here has exactly one output tensor per call.
"""
from __future__ import annotations

from typing import Any, List, Optional, Sequence, Tuple

from . import utils

Shape = Tuple[Optional[int], ...]


class Node:
    """One call of ``layer`` on ``inputs`` (KerasTensors), producing ``output``."""

    def __init__(self, layer: Any, inputs: Sequence["KerasTensor"], output_shape: Shape) -> None:
        self.layer = layer
        self.inputs: List[KerasTensor] = list(inputs)
        self.index = len(layer._inbound_nodes)  # this node is layer._inbound_nodes[index]
        layer._inbound_nodes.append(self)
        self.output = KerasTensor(output_shape, self)

    @property
    def is_input(self) -> bool:
        return not self.inputs

    @property
    def parent_nodes(self) -> List["Node"]:
        return [t.node for t in self.inputs]

    def __repr__(self) -> str:
        return f"<Node {self.layer.name}[{self.index}]>"


class KerasTensor:
    """A symbolic NHWC float32 tensor: a shape (batch axis None) and the node that made it.

    Attributes:
        shape: e.g. ``(None, 32, 32, 3)``; dimensions other than the batch may be None.
        dtype: always 'float32'.
        node: the layer call that produces it (for an ``Input``, the InputLayer's node).
    """

    dtype = "float32"

    def __init__(self, shape: Shape, node: Node) -> None:
        self.shape: Shape = tuple(shape)
        self.node = node

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def name(self) -> str:
        layer = self.node.layer
        return layer.name if self.node.index == 0 else f"{layer.name}_{self.node.index}"

    @property
    def _keras_history(self) -> Tuple[Any, int, int]:
        """(layer, node index, tensor index), as Keras names a tensor's origin."""
        return self.node.layer, self.node.index, 0

    def __repr__(self) -> str:
        return f"<KerasTensor shape={utils.shape_str(self.shape)}, dtype=float32, name={self.name}>"

    def __array__(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError(f"A symbolic tensor ({self!r}) has no values. It describes the input of a "
                        "pycnn.Model(inputs, outputs); call the model (or predict) on NumPy arrays instead.")

    # An Input tensor stands for its InputLayer when a Sequential model receives it or a
    # config is taken from it (Sequential([Input((28, 28, 1)), ...]), as in Keras).
    def get_config(self) -> dict:
        return self._input_layer("get_config()").get_config()

    def _input_layer(self, what: str) -> Any:
        if not self.node.is_input:
            raise TypeError(f"{what} applies to the tensor an Input() returns. Received: {self!r}, the output "
                            f"of layer '{self.node.layer.name}'.")
        return self.node.layer


def is_symbolic(x: Any) -> bool:
    """True for a KerasTensor or a non-empty list / tuple of them."""
    if isinstance(x, KerasTensor):
        return True
    return isinstance(x, (list, tuple)) and len(x) > 0 and all(isinstance(t, KerasTensor) for t in x)


def call_layer(layer: Any, inputs: Any) -> KerasTensor:
    """Record ``layer(inputs)`` on symbolic inputs; returns the output tensor.

    Builds the layer for the input shapes on its first call and checks later calls against
    its weights, so shape errors surface here, while the graph is being written.
    """
    tensors = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
    if layer._multi_input != isinstance(inputs, (list, tuple)):
        expected = "a list of tensors" if layer._multi_input else "one tensor"
        raise ValueError(f"Layer '{layer.name}' ({type(layer).__name__}) expected {expected}. "
                         f"Received: {inputs!r}.")
    shapes = [t.shape for t in tensors]
    if layer._multi_input:
        out_shape = layer._symbolic_output_shape(shapes, [t.name for t in tensors])
    else:
        out_shape = layer._symbolic_output_shape(shapes[0], [tensors[0].name])
    return Node(layer, tensors, out_shape).output
