"""``Sequential``: a linear stack of layers, the chain case of :class:`pycnn.Model`.

It only keeps the list of layers (``add`` / ``pop`` / ``build``) and, from it, the chain
graph ``node i reads value i``; running, training, saving and the summary are the graph
model's (pycnn/functional.py, executor.py, trainer.py, saving.py, summary.py). A model (a
``Sequential`` too) may be one of its layers.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from . import utils
from .functional import Model
from .graph import Graph, GraphNode
from .layers.base import Layer, Shape, structure_changed
from .layers.core import InputLayer
from .symbolic import KerasTensor


class Sequential(Model):
    """A linear stack of layers, like ``keras.Sequential``.

    Args:
        layers: optional list of layers (an ``Input`` first fixes the input shape).
        name: model name; default ``sequential``, ``sequential_1``...

    Example::

        model = Sequential([Input((28, 28, 1)), Conv2D(32, 7, activation="relu"),
                            Flatten(), Dense(10, activation="softmax")])
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                      metrics=["accuracy"])
        model.fit(x_train / 255.0, y_train, epochs=10)
    """

    _chain = True  # summary: no "Connected to" column

    def __init__(self, layers: Optional[Sequence[Layer]] = None, name: Optional[str] = None,
                 trainable: bool = True) -> None:
        if name is None:
            name = utils.unique_name("sequential")
        elif not isinstance(name, str) or not name:
            raise ValueError(f"Invalid value for argument 'name' of Sequential: expected a non-empty string. "
                             f"Received: name={name!r}.")
        super().__init__(name=name, trainable=trainable)
        self._layers: List[Layer] = []
        self._input_layer: Optional[InputLayer] = None
        self._batch_input_shape: Optional[Shape] = None
        self._graph_cache: Optional[Graph] = None
        self._single_output = True
        self.built = False
        if layers is not None:
            if isinstance(layers, (Layer, KerasTensor)):
                layers = [layers]
            for layer in layers:
                self.add(layer)

    # ----------------------------------------------------------------- structure

    @property
    def layers(self) -> List[Layer]:
        """The layers, in order (an ``Input`` is not listed, as in Keras)."""
        return list(self._layers)

    def add(self, layer: Layer) -> None:
        """Append a layer; builds it at once when the model's input shape is known.

        Raises:
            TypeError: if ``layer`` is not a pycnn layer (or the tensor ``Input`` returns).
            ValueError: for a second Input, a duplicate name, or a layer that cannot take
                the previous layer's output (e.g. Dense after an undefined dimension).
        """
        if isinstance(layer, KerasTensor):
            layer = layer._input_layer("Sequential.add()")
        if not isinstance(layer, Layer):
            raise TypeError(f"Sequential.add() expected a pycnn layer instance. Received: layer={layer!r} "
                            f"of type {type(layer).__name__}.")
        if layer._multi_input:
            raise ValueError(f"Sequential.add() expected a layer with one input. Received: '{layer.name}' "
                             f"({type(layer).__name__}), which merges several; use pycnn.Model(inputs, outputs).")
        if isinstance(layer, InputLayer):
            if self._layers or self._input_layer is not None:
                raise ValueError(f"Sequential.add() expected an Input only as the first entry of model "
                                 f"'{self.name}'. Received: Input {layer.name!r} after "
                                 f"{len(self._layers) + (self._input_layer is not None)} layer(s).")
            self._input_layer = layer
            self._set_input_shape(layer.batch_input_shape)
            return
        if any(existing.name == layer.name for existing in self._layers):
            raise ValueError(f"All layers added to a Sequential model should have unique names. Name "
                             f"'{layer.name}' is already the name of a layer in model '{self.name}'. Pass a unique "
                             "name= to the layer.")
        if not self._layers and self._batch_input_shape is None and layer.batch_input_shape is not None:
            self._set_input_shape(layer.batch_input_shape)
        if self._batch_input_shape is not None:
            layer._shape_for(self._current_output_shape())
        self._layers.append(layer)
        self._graph_cache = None
        structure_changed()

    def pop(self) -> Layer:
        """Remove and return the last layer."""
        if not self._layers:
            raise ValueError(f"Model '{self.name}' has no layers to pop.")
        self._graph_cache = None
        structure_changed()
        return self._layers.pop()

    def _set_input_shape(self, shape: Shape) -> None:
        self._batch_input_shape = tuple(shape)
        self._graph_cache = None
        structure_changed()
        self.built = True

    def _current_output_shape(self) -> Shape:
        return self.compute_output_shape(self._batch_input_shape)

    def build(self, input_shape: Optional[Sequence[Optional[int]]] = None) -> None:
        """Build every layer for inputs of ``input_shape`` (batch axis included, e.g. (None, 28, 28, 1)).

        Without an argument, uses the shape given by ``Input`` or ``input_shape=``.
        """
        if input_shape is None:
            if self._batch_input_shape is None:
                raise RuntimeError(f"Model '{self.name}' cannot be built without an input shape. Pass "
                                   "input_shape=(None, H, W, C) to build(), start the model with Input(shape), or "
                                   "call it on data.")
            input_shape = self._batch_input_shape
        shape = tuple(None if d is None else int(d) for d in input_shape)
        current = shape
        for layer in self._layers:
            current = layer._shape_for(current)
        if self._batch_input_shape is None:
            self._set_input_shape(shape)
        self.built = True

    def _graph(self) -> Graph:
        if self._graph_cache is None:
            self._require_built("its graph")
            nodes = [GraphNode(layer, (i,)) for i, layer in enumerate(self._layers)]
            self._graph_cache = Graph([self._batch_input_shape], nodes, [len(nodes)])
        return self._graph_cache

    @property
    def input_shape(self) -> Shape:
        """The model's input shape with the batch axis, e.g. ``(None, 28, 28, 1)``."""
        self._require_built("input_shape")
        return self._batch_input_shape

    @property
    def output_shape(self) -> Shape:
        self._require_built("output_shape")
        return self._current_output_shape()

    def compute_output_shape(self, input_shape: Sequence[Optional[int]]) -> Shape:
        shape = tuple(input_shape)
        for layer in self._layers:
            shape = layer.compute_output_shape(shape)
        return shape


    def _shape_for(self, shape: Any) -> Any:
        """As a layer of another model: builds for ``shape`` when needed, else checks it."""
        if self._batch_input_shape is None:
            self.build(tuple(shape))
        return super()._shape_for(shape)

    def _require_built(self, what: str) -> None:
        if not self.built or self._batch_input_shape is None:
            raise RuntimeError(f"Model '{self.name}' has not been built yet, so {what} is unknown. Start the model "
                               "with Input(shape=...), give the first layer input_shape=..., call "
                               "build(input_shape), or call the model on a batch of data.")

    @property
    def inputs(self) -> List[KerasTensor]:
        raise AttributeError(f"Sequential model '{self.name}' has no symbolic inputs; pycnn builds a Sequential "
                             "from its layers, not from tensors.")

    @property
    def outputs(self) -> List[KerasTensor]:
        raise AttributeError(f"Sequential model '{self.name}' has no symbolic outputs.")

    def _input_name(self, i: int) -> str:
        return self._input_layer.name if self._input_layer is not None else "input"

    def _prepare_inputs(self, x: Any, who: str) -> List[np.ndarray]:
        """Build from the data if needed, then check x against the model's input shape."""
        arr = utils.check_real_array(x, who, "x")
        if self._batch_input_shape is None:
            if arr.ndim < 1 or arr.shape[0] < 1:
                raise ValueError(f"Model '{self.name}' expected a non-empty batch of samples. "
                                 f"Received: x.shape={arr.shape}.")
            self.build((None,) + arr.shape[1:])
        return super()._prepare_inputs([arr], who)

    # ----------------------------------------------------------------- config

    def get_config(self) -> Dict[str, Any]:
        """Architecture as plain data: ``{'name', 'layers': [{'class_name', 'config'}], 'build_input_shape'}``."""
        layer_configs = []
        if self._input_layer is not None:
            layer_configs.append({"class_name": "InputLayer", "config": self._input_layer.get_config()})
        for layer in self.layers:
            layer_configs.append({"class_name": layer.class_name, "config": layer.get_config()})
        shape = self._batch_input_shape
        return {"name": self.name, "trainable": self.trainable, "layers": layer_configs,
                "build_input_shape": None if shape is None else list(shape)}

    @classmethod
    def from_config(cls, config: Dict[str, Any]) -> "Sequential":
        """The model :meth:`get_config` describes, its layers rebuilt through the layer registry."""
        from .layers import base as layers_base
        model = cls(name=config.get("name"))
        for entry in config["layers"]:
            model.add(layers_base.get(entry["class_name"]).from_config(dict(entry["config"])))
        shape = config.get("build_input_shape")
        if shape is not None and model._batch_input_shape is None:
            model.build(tuple(shape))
        model.trainable = config.get("trainable", True)
        return model
