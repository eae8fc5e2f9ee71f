"""``Sequential`` (build, compile, fit, evaluate, predict, summary, save/load) and the
lecture's ready-made models.

Data conventions
----------------
Images are NHWC arrays ``(N, H, W, C)``; any real numeric dtype is accepted and converted
to float32 batch by batch. Integer images (uint8) are converted, **not rescaled**: divide
by 255 yourself, as the lecture does (``x_train = x_train / 255.0``). Grayscale data of
shape ``(N, 28, 28)`` needs a channel axis: ``x[..., None]``.

Labels for ``sparse_categorical_crossentropy`` are integer class indices of shape ``(N,)``
or ``(N, 1)`` (integer-valued floats are accepted); ``categorical_crossentropy`` takes
one-hot rows (:func:`pycnn.utils.to_categorical`).

Weight files
------------
``save_weights(path)`` writes an uncompressed NumPy ``.npz`` archive (the name is used
as given) holding:

* ``layer_{i:02d}_{name}/{weight}``: one float32 array per weight, e.g.
  ``layer_00_conv2d/kernel`` (KH, KW, C, F) and ``layer_00_conv2d/bias`` (F,), where ``i``
  is the layer's position in ``model.layers`` and ``weight`` is ``kernel`` or ``bias``;
* ``__pycnn_manifest__``: a 0-d unicode array holding JSON::

      {"format": "pycnn.weights", "version": 1, "model": "sequential",
       "input_shape": [null, 32, 32, 3],
       "layers": [{"index": 0, "name": "conv2d", "class": "Conv2D",
                   "weights": [{"name": "kernel", "key": "layer_00_conv2d/kernel",
                                "shape": [5, 5, 3, 6]}, ...]}, ...]}

  ``save(path)`` writes the same archive with an extra ``"config"`` entry (the model's
  ``get_config()``) so :func:`load_model` can rebuild the architecture.

Files are written atomically (a temporary file in the same folder, then ``os.replace``).
``load_weights`` pairs the layers that have weights in order, checks every class and
shape before assigning anything, and refuses a mismatching file with a message naming
the layer and both shapes. Layer names may differ (they depend on how many layers a
session has created). Optimizer state is not saved.
"""
from __future__ import annotations

import json
import math
import os
import tempfile
import warnings
import zipfile
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from . import _core, _native
from . import callbacks as callbacks_module
from . import layers as layers_module
from . import losses as losses_module
from . import optimizers as optimizers_module
from . import utils
from .layers.base import Layer, Shape
from .progress import Progbar

MANIFEST_KEY = "__pycnn_manifest__"
WEIGHTS_FORMAT = "pycnn.weights"

_ACCURACY_NAMES = ("accuracy", "acc")


class Sequential:
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

    def __init__(self, layers: Optional[Sequence[Layer]] = None, name: Optional[str] = None) -> None:
        if name is None:
            name = utils.unique_name("sequential")
        elif not isinstance(name, str) or not name:
            raise ValueError(f"Invalid value for argument 'name' of Sequential: expected a non-empty string. "
                             f"Received: name={name!r}.")
        self.name = name
        self._layers: List[Layer] = []
        self._input_layer: Optional[layers_module.InputLayer] = None
        self._batch_input_shape: Optional[Shape] = None
        self.built = False
        self.optimizer: Optional[optimizers_module.Optimizer] = None
        self.loss: Any = None
        self.metrics_names: List[str] = []
        self.compiled = False
        self.stop_training = False
        self.history: Optional[callbacks_module.History] = None
        if layers is not None:
            if isinstance(layers, Layer):
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
            TypeError: if ``layer`` is not a pycnn layer.
            ValueError: for a second Input, a duplicate name, or a layer that cannot take
                the previous layer's output (e.g. Dense after an undefined dimension).
        """
        if not isinstance(layer, Layer):
            raise TypeError(f"Sequential.add() expected a pycnn layer instance. Received: layer={layer!r} "
                            f"of type {type(layer).__name__}.")
        if isinstance(layer, layers_module.InputLayer):
            if self._layers or self._input_layer is not None:
                raise ValueError(f"Sequential.add() expected an Input only as the first entry of model "
                                 f"'{self.name}'. Received: Input {layer.name!r} after "
                                 f"{len(self._layers) + (self._input_layer is not None)} layer(s).")
            self._input_layer = layer
            self._batch_input_shape = layer.batch_input_shape
            self.built = True
            return
        if any(existing.name == layer.name for existing in self._layers):
            raise ValueError(f"All layers added to a Sequential model should have unique names. Name "
                             f"'{layer.name}' is already the name of a layer in model '{self.name}'. Pass a unique "
                             "name= to the layer.")
        if not self._layers and self._batch_input_shape is None and layer.batch_input_shape is not None:
            self._batch_input_shape = layer.batch_input_shape
            self.built = True
        if self._batch_input_shape is not None:
            self._build_layer(layer, self._current_output_shape())
        self._layers.append(layer)

    def pop(self) -> Layer:
        """Remove and return the last layer."""
        if not self._layers:
            raise ValueError(f"Model '{self.name}' has no layers to pop.")
        return self._layers.pop()

    def _current_output_shape(self) -> Shape:
        shape = self._batch_input_shape
        for layer in self._layers:
            shape = layer.compute_output_shape(shape)
        return shape

    @staticmethod
    def _build_layer(layer: Layer, shape: Shape) -> None:
        if layer.built:
            layer._check_ndim(shape)
            layer._check_input(shape)
            layer.compute_output_shape(shape)
        else:
            layer.build(shape)

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
            self._build_layer(layer, current)
            current = layer.compute_output_shape(current)
        if self._batch_input_shape is None:
            self._batch_input_shape = shape
        self.built = True

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

    def _require_built(self, what: str) -> None:
        if not self.built or self._batch_input_shape is None:
            raise RuntimeError(f"Model '{self.name}' has not been built yet, so {what} is unknown. Start the model "
                               "with Input(shape=...), give the first layer input_shape=..., call "
                               "build(input_shape), or call the model on a batch of data.")

    # ----------------------------------------------------------------- weights

    @property
    def weights(self) -> List[np.ndarray]:
        return [w for layer in self._layers for w in layer.weights]

    @property
    def trainable_weights(self) -> List[np.ndarray]:
        return [w for layer in self._layers for w in layer.trainable_weights]

    def get_weights(self) -> List[np.ndarray]:
        """Copies of every layer's weights, layer by layer, Keras order."""
        return [w for layer in self._layers for w in layer.get_weights()]

    def set_weights(self, weights: Sequence[Any]) -> None:
        """Set every layer's weights from a flat list (``get_weights()`` order).

        Raises:
            ValueError: wrong number of arrays or a wrong shape (nothing is changed then).
        """
        self._require_built("the weights")
        weights = list(weights)
        expected = sum(len(layer.weights) for layer in self._layers)
        if len(weights) != expected:
            raise ValueError(f"Model '{self.name}' expected a list of {expected} weight arrays. "
                             f"Received: a list of {len(weights)} arrays.")
        chunks, pos = [], 0
        for layer in self._layers:
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
        """Total number of weights (scalars)."""
        self._require_built("the number of parameters")
        return int(sum(layer.count_params() for layer in self._layers))

    # ----------------------------------------------------------------- summary

    def summary(self, print_fn: Optional[Callable[[str], Any]] = None, line_length: int = 65) -> None:
        """Print a Keras-style table of layers, output shapes and parameter counts.

        Args:
            print_fn: called with each line (default ``print``).
            line_length: minimum table width; columns widen to fit long names.
        """
        self._require_built("its summary")
        rows = []
        shape = self._batch_input_shape
        for layer in self._layers:
            shape = layer.compute_output_shape(shape)
            rows.append((f"{layer.name} ({type(layer).__name__})", utils.shape_str(shape), str(layer.count_params())))
        header = ("Layer (type)", "Output Shape", "Param #")
        widths = [max([int(line_length * 0.45) - 1] + [len(r[0]) + 2 for r in rows]),
                  max([int(line_length * 0.40)] + [len(r[1]) + 2 for r in rows]),
                  max([line_length - int(line_length * 0.85)] + [len(r[2]) + 1 for r in rows])]
        total_width = 1 + sum(widths)

        def fmt(cells: Tuple[str, str, str]) -> str:
            return (" " + "".join(c.ljust(w) for c, w in zip(cells, widths))).rstrip()

        trainable = sum(layer.count_params() for layer in self._layers if layer.trainable)
        total = self.count_params()
        lines = [f'Model: "{self.name}"', "_" * total_width, fmt(header), "=" * total_width]
        lines += [fmt(r) for r in rows]
        lines += ["=" * total_width, f"Total params: {total:,}", f"Trainable params: {trainable:,}",
                  f"Non-trainable params: {total - trainable:,}", "_" * total_width]
        emit = print if print_fn is None else print_fn
        for line in lines:
            emit(line)

    # ----------------------------------------------------------------- compile

    def compile(self, optimizer: Union[str, optimizers_module.Optimizer] = "rmsprop",
                loss: Union[str, losses_module.Loss, None] = None, metrics: Optional[Sequence[str]] = None) -> None:
        """Configure training.

        Args:
            optimizer: 'adam', 'sgd', 'rmsprop' (Keras defaults) or an optimizer object.
            loss: 'sparse_categorical_crossentropy', 'categorical_crossentropy', 'mse' or a
                :class:`pycnn.losses.Loss`.
            metrics: None or ``['accuracy']``.

        Raises:
            ValueError / TypeError: for unknown names or wrong types.
        """
        if loss is None:
            raise ValueError("compile() expected a loss, e.g. loss='sparse_categorical_crossentropy'. "
                             "Received: loss=None.")
        self.optimizer = optimizers_module.get(optimizer)
        self.loss = losses_module.get(loss)
        names: List[str] = []
        if metrics is not None:
            if isinstance(metrics, str):
                metrics = [metrics]
            for m in metrics:
                if not isinstance(m, str) or m.lower() not in _ACCURACY_NAMES:
                    raise ValueError(f"compile() supports the metric 'accuracy' only. Received: metrics={metrics!r}.")
                if "accuracy" not in names:
                    names.append("accuracy")
        self.metrics_names = names
        self.compiled = True
        if getattr(self.loss, "from_logits", False) and self._layers and \
                getattr(self._layers[-1], "activation", None) == "softmax":
            warnings.warn(f"Model '{self.name}': the loss has from_logits=True but the last layer "
                          f"'{self._layers[-1].name}' applies a softmax, so its outputs are not logits. "
                          "Use from_logits=False or a linear last layer.", UserWarning, stacklevel=2)

    def _fused(self) -> bool:
        """Softmax last layer + cross-entropy on probabilities: train on logits with the fused kernel."""
        return (isinstance(self.loss, (losses_module.SparseCategoricalCrossentropy,
                                       losses_module.CategoricalCrossentropy))
                and not self.loss.from_logits and bool(self._layers)
                and getattr(self._layers[-1], "activation", None) == "softmax")

    def _require_compiled(self, what: str) -> None:
        if not self.compiled:
            raise RuntimeError(f"You must call compile() before {what}() on model '{self.name}', e.g. "
                               "model.compile(optimizer='adam', loss='sparse_categorical_crossentropy', "
                               "metrics=['accuracy']).")

    # ----------------------------------------------------------------- forward / backward

    def __call__(self, x: Any, training: bool = False) -> np.ndarray:
        """Forward pass on one batch (no batching); returns float32 output."""
        x = utils.check_real_array(x, f"Model '{self.name}'", "x")
        self._prepare_input(x)
        return self._forward(utils.as_float32(x, f"Model '{self.name}'"), training)

    def _forward(self, x: np.ndarray, training: bool, logits: bool = False) -> np.ndarray:
        last = len(self._layers) - 1
        for i, layer in enumerate(self._layers):
            x = layer._forward(x, training=training, logits=logits and i == last)
        return x

    def _backward(self, dout: np.ndarray) -> None:
        """Backpropagate ``dout``; layers before the first trainable one are skipped entirely."""
        first = next((i for i, layer in enumerate(self._layers) if layer.trainable and layer.weights), None)
        if first is None:
            return
        for i in range(len(self._layers) - 1, first - 1, -1):
            dout = self._layers[i].backward(dout, need_input_grad=i > first)

    def _prepare_input(self, x: np.ndarray) -> None:
        """Build from the data if needed, then check x against the model's input shape."""
        if x.ndim < 1 or x.shape[0] < 1:
            raise ValueError(f"Model '{self.name}' expected a non-empty batch of samples. Received: x.shape={x.shape}.")
        if self._batch_input_shape is None:
            self.build((None,) + x.shape[1:])
            return
        expected = self._batch_input_shape
        if len(expected) != x.ndim or any(e is not None and e != d for e, d in zip(expected[1:], x.shape[1:])):
            hint = ""
            if x.ndim + 1 == len(expected) and expected[-1] == 1:
                hint = " Add the channel axis with x[..., None]."
            raise ValueError(f"Model '{self.name}' expected input of shape {utils.shape_str(expected)}, but received "
                             f"input with shape {x.shape}.{hint}")

    # ----------------------------------------------------------------- data checks

    def _check_xy(self, x: Any, y: Any, who: str) -> Tuple[np.ndarray, np.ndarray]:
        """Validate a dataset; returns x (unconverted) and y prepared for batching.

        Sparse labels come back as int64 of shape (N, rows per sample); dense targets as
        float32 of shape (N, ...) matching the output.
        """
        x = utils.check_real_array(x, who, "x")
        if y is None:
            raise ValueError(f"{who} expected targets y. Received: y=None.")
        y = utils.check_real_array(y, who, "y")
        if y.ndim == 0 or x.ndim == 0 or x.shape[0] != y.shape[0]:
            raise ValueError(f"x and y must contain the same number of samples. Received: "
                             f"x.shape[0]={x.shape[0] if x.ndim else 'scalar'}, "
                             f"y.shape[0]={y.shape[0] if y.ndim else 'scalar'}.")
        self._prepare_input(x)
        out_shape = (x.shape[0],) + tuple(self.compute_output_shape((None,) + x.shape[1:])[1:])
        if isinstance(self.loss, losses_module.SparseCategoricalCrossentropy):
            labels = losses_module.sparse_labels(y, out_shape, who)
            return x, labels.reshape(y.shape[0], -1)
        if isinstance(self.loss, (losses_module.CategoricalCrossentropy, losses_module.MeanSquaredError)):
            target = utils.as_float32(y, who, "y")
            if target.size != int(np.prod(out_shape)):
                raise ValueError(f"{who} expected y with the model's output shape {out_shape}. "
                                 f"Received: y.shape={y.shape}.")
            return x, target.reshape(out_shape)
        return x, y

    # ----------------------------------------------------------------- steps

    def _loss_and_grad(self, y: np.ndarray, out: np.ndarray, fused: bool, need_grad: bool
                       ) -> Tuple[float, Optional[np.ndarray]]:
        if fused:
            return self.loss.logits_value_and_gradient(y, out)
        value = float(self.loss(y, out))
        return value, (self.loss.gradient(y, out) if need_grad else None)

    def _correct(self, y: np.ndarray, out: np.ndarray) -> Tuple[int, int]:
        """(number correct, number of predictions) with Keras's choice of accuracy."""
        k = out.shape[-1]
        pred = out.reshape(-1, k)
        if isinstance(self.loss, losses_module.SparseCategoricalCrossentropy) or (
                k > 1 and (y.ndim < out.ndim or y.shape[-1] == 1) and y.size == pred.shape[0]):
            labels = np.asarray(y).reshape(-1)
            hits = pred.argmax(axis=1) == labels
        elif k == 1:
            hits = (pred[:, 0] > 0.5) == (np.asarray(y).reshape(-1) > 0.5)
        else:
            hits = pred.argmax(axis=1) == np.asarray(y).reshape(-1, k).argmax(axis=1)
        return int(hits.sum()), int(hits.size)

    def _native_train_spec(self, yb: np.ndarray) -> Optional[list]:
        """Layer tuples for a one-call native training step, when the model allows it.

        Needs sparse integer labels with a softmax (or from_logits) cross-entropy on a
        (N, classes) output, and layers that all have a native twin.
        """
        loss = self.loss
        if not (_native.enabled() and isinstance(loss, losses_module.SparseCategoricalCrossentropy)):
            return None
        last = self._layers[-1] if self._layers else None
        softmax_last = getattr(last, "activation", None) == "softmax"
        if not (loss.from_logits or softmax_last) or (loss.from_logits and softmax_last):
            return None
        if len(self.compute_output_shape(self._batch_input_shape)) != 2 or yb.ndim != 2 or yb.shape[1] != 1:
            return None
        return _native.network_spec(self._layers, train=True, training=True, logits=True)

    def _train_step(self, xb: np.ndarray, yb: np.ndarray) -> Tuple[float, int, int]:
        spec = self._native_train_spec(yb)
        if spec is not None:
            if type(self.optimizer) is optimizers_module.Adam:
                # The update runs inside the same native call, thread by thread.
                variables = [w for layer in self._layers if layer.trainable for w in layer.weights]
                loss, correct = _core.network_train_step(xb, yb.reshape(-1), spec,
                                                         adam=self.optimizer.fused_step_args(variables))
                _native.publish_gradients(self._layers)
            else:
                loss, correct = _core.network_train_step(xb, yb.reshape(-1), spec)
                _native.publish_gradients(self._layers)
                pairs = [(g, w) for layer in self._layers if layer.trainable
                         for g, w in zip(layer.get_gradients(), layer.weights)]
                self.optimizer.apply_gradients(pairs)
            if not self.metrics_names:
                return float(loss), 0, 0
            return float(loss), int(correct), int(xb.shape[0])
        fused = self._fused()
        out = self._forward(xb, training=True, logits=fused)
        loss, dout = self._loss_and_grad(yb, out, fused, need_grad=True)
        self._backward(dout)
        pairs = [(g, w) for layer in self._layers if layer.trainable
                 for g, w in zip(layer.get_gradients(), layer.weights)]
        self.optimizer.apply_gradients(pairs)
        correct, count = self._correct(yb, out) if self.metrics_names else (0, 0)
        return loss, correct, count

    def _inference(self, xb: np.ndarray, logits: bool = False) -> np.ndarray:
        """Forward in inference mode: one native call when every layer has a native twin."""
        if _native.enabled() and self._layers:
            softmax_last = getattr(self._layers[-1], "activation", None) == "softmax"
            spec = _native.network_spec(self._layers, train=False, training=False, logits=softmax_last)
            if spec is not None:
                try:
                    return _core.network_predict(xb, spec, softmax=softmax_last and not logits)
                except ValueError:
                    pass  # e.g. an input size the layer tuples do not fit: layer by layer explains it
        return self._forward(xb, training=False, logits=logits)

    def _test_step(self, xb: np.ndarray, yb: np.ndarray) -> Tuple[float, int, int]:
        fused = self._fused()
        out = self._inference(xb, logits=fused)
        loss, _ = self._loss_and_grad(yb, out, fused, need_grad=False)
        correct, count = self._correct(yb, out) if self.metrics_names else (0, 0)
        return loss, correct, count

    def _logs(self, loss_sum: float, seen: int, correct: int, count: int, prefix: str = "") -> Dict[str, float]:
        logs: Dict[str, float] = {}
        if self.metrics_names:
            logs[prefix + "accuracy"] = correct / max(count, 1)
        logs[prefix + "loss"] = loss_sum / max(seen, 1)
        return logs

    # ----------------------------------------------------------------- fit / evaluate / predict

    def fit(self, x: Any = None, y: Any = None, batch_size: int = 32, epochs: int = 1, verbose: Union[int, str] = 1,
            callbacks: Optional[Sequence[callbacks_module.Callback]] = None, validation_split: float = 0.0,
            validation_data: Optional[Tuple[Any, Any]] = None, shuffle: bool = True,
            initial_epoch: int = 0) -> callbacks_module.History:
        """Train for ``epochs`` passes over ``(x, y)`` in shuffled mini-batches.

        Args:
            x: inputs (N, H, W, C) (or (N, features) for dense-only models); uint8 is
                converted to float32, not rescaled.
            y: targets (see the module docstring).
            batch_size: samples per gradient step.
            epochs: index of the last epoch (training runs from ``initial_epoch``).
            verbose: 0 silent, 1 progress bar (one line per epoch when stdout is not a
                terminal), 2 one line per epoch; 'auto' means 1.
            callbacks: :mod:`pycnn.callbacks` objects.
            validation_split: fraction of the samples, taken from the end before
                shuffling, held out for validation.
            validation_data: ``(x_val, y_val)``, evaluated after each epoch.
            shuffle: reshuffle the samples every epoch (seeded by
                :func:`pycnn.utils.set_random_seed`).
            initial_epoch: epoch to start from (for resuming).

        Returns:
            A :class:`pycnn.callbacks.History`; ``history.history`` has per-epoch lists
            ``loss``, ``accuracy`` and, with validation, ``val_loss``, ``val_accuracy``.

        Raises:
            RuntimeError: if the model is not compiled.
            ValueError / TypeError: malformed data or arguments.
        """
        self._require_compiled("fit")
        batch_size = utils.positive_int(batch_size, "batch_size", "fit()")
        if isinstance(epochs, bool) or not isinstance(epochs, (int, np.integer)) or epochs < 0:
            raise ValueError(f"Invalid value for argument 'epochs' of fit(): expected a non-negative integer. "
                             f"Received: epochs={epochs!r}.")
        verbose = _check_verbose(verbose, "fit()")
        if isinstance(validation_split, bool) or not isinstance(validation_split, (int, float)) \
                or not 0.0 <= validation_split < 1.0:
            raise ValueError(f"Invalid value for argument 'validation_split' of fit(): expected a number in [0, 1). "
                             f"Received: validation_split={validation_split!r}.")
        x, y = self._check_xy(x, y, "fit()")
        n = x.shape[0]
        val = None
        if validation_data is not None:
            if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
                raise ValueError("fit() expected validation_data to be a tuple (x_val, y_val). "
                                 f"Received: validation_data of type {type(validation_data).__name__}.")
            val = self._check_xy(validation_data[0], validation_data[1], "fit() validation_data")
        elif validation_split > 0.0:
            split_at = int(math.ceil(n * (1.0 - validation_split)))
            if split_at == 0 or split_at == n:
                raise ValueError(f"validation_split={validation_split} leaves an empty training or validation set "
                                 f"for {n} samples. Use a different fraction or pass validation_data.")
            val = (x[split_at:], y[split_at:])
            x, y = x[:split_at], y[:split_at]
            n = split_at

        history = callbacks_module.History()
        cbs: List[callbacks_module.Callback] = [history] + list(callbacks or [])
        for cb in cbs:
            if not isinstance(cb, callbacks_module.Callback):
                raise TypeError(f"fit() expected pycnn.callbacks.Callback objects. Received: {cb!r}.")
        steps = (n + batch_size - 1) // batch_size
        params = {"epochs": epochs, "steps": steps, "verbose": verbose, "batch_size": batch_size, "samples": n}
        for cb in cbs:
            cb.set_model(self)
            cb.set_params(params)
        self.history = history
        self.stop_training = False
        for cb in cbs:
            cb.on_train_begin()
        for epoch in range(initial_epoch, epochs):
            for cb in cbs:
                cb.on_epoch_begin(epoch)
            if verbose:
                print(f"Epoch {epoch + 1}/{epochs}", flush=True)
            bar = Progbar(steps, verbose=verbose)
            order = utils.get_rng().permutation(n) if shuffle else None
            loss_sum, seen, correct, count = 0.0, 0, 0, 0
            logs: Dict[str, float] = {}
            step = 0
            for step, start in enumerate(range(0, n, batch_size), start=1):
                sel = slice(start, min(start + batch_size, n)) if order is None else order[start:start + batch_size]
                xb = utils.as_float32(x[sel], "fit()")
                yb = y[sel]
                for cb in cbs:
                    cb.on_batch_begin(step - 1)
                loss, c, k = self._train_step(xb, yb)
                loss_sum += loss * xb.shape[0]
                seen += xb.shape[0]
                correct += c
                count += k
                logs = self._logs(loss_sum, seen, correct, count)
                for cb in cbs:
                    cb.on_batch_end(step - 1, dict(logs))
                if step < steps:
                    bar.update(step, logs)
                if self.stop_training:
                    break
            epoch_logs = dict(logs)
            if val is not None:
                epoch_logs.update(self._evaluate_arrays(val[0], val[1], batch_size, prefix="val_"))
            bar.update(step, epoch_logs, finalize=True)
            for cb in cbs:
                cb.on_epoch_end(epoch, epoch_logs)
            if self.stop_training:
                break
        for cb in cbs:
            cb.on_train_end()
        return history

    def _evaluate_arrays(self, x: np.ndarray, y: np.ndarray, batch_size: int, prefix: str = "",
                         bar: Optional[Progbar] = None) -> Dict[str, float]:
        n = x.shape[0]
        loss_sum, seen, correct, count = 0.0, 0, 0, 0
        for step, start in enumerate(range(0, n, batch_size), start=1):
            sel = slice(start, min(start + batch_size, n))
            xb = utils.as_float32(x[sel], "evaluate()")
            loss, c, k = self._test_step(xb, y[sel])
            loss_sum += loss * xb.shape[0]
            seen += xb.shape[0]
            correct += c
            count += k
            if bar is not None:
                bar.update(step, self._logs(loss_sum, seen, correct, count, prefix), finalize=start + batch_size >= n)
        return self._logs(loss_sum, seen, correct, count, prefix)

    def evaluate(self, x: Any = None, y: Any = None, batch_size: int = 32, verbose: Union[int, str] = 0,
                 return_dict: bool = False) -> Union[float, List[float], Dict[str, float]]:
        """Loss (and accuracy) over ``(x, y)`` in inference mode.

        Returns:
            ``[loss, accuracy]`` when compiled with ``metrics=['accuracy']``, else the
            loss as a float; a dict ``{'loss': ..., 'accuracy': ...}`` with
            ``return_dict=True``.
        """
        self._require_compiled("evaluate")
        batch_size = utils.positive_int(batch_size, "batch_size", "evaluate()")
        verbose = _check_verbose(verbose, "evaluate()")
        x, y = self._check_xy(x, y, "evaluate()")
        steps = (x.shape[0] + batch_size - 1) // batch_size
        logs = self._evaluate_arrays(x, y, batch_size, bar=Progbar(steps, verbose=verbose) if verbose else None)
        return self._result(logs, return_dict)

    def _result(self, logs: Dict[str, float], return_dict: bool) -> Union[float, List[float], Dict[str, float]]:
        if return_dict:
            return {"loss": logs["loss"], **{k: v for k, v in logs.items() if k != "loss"}}
        if self.metrics_names:
            return [logs["loss"], logs["accuracy"]]
        return logs["loss"]

    def predict(self, x: Any, batch_size: int = 32, verbose: Union[int, str] = 0) -> np.ndarray:
        """Outputs for ``x`` in inference mode, computed ``batch_size`` samples at a time.

        Returns:
            float32 array of shape ``(N,) + output_shape[1:]`` (e.g. class probabilities).
        """
        batch_size = utils.positive_int(batch_size, "batch_size", "predict()")
        verbose = _check_verbose(verbose, "predict()")
        x = utils.check_real_array(x, "predict()", "x")
        self._prepare_input(x)
        n = x.shape[0]
        steps = (n + batch_size - 1) // batch_size
        bar = Progbar(steps, verbose=verbose) if verbose else None
        outputs = []
        for step, start in enumerate(range(0, n, batch_size), start=1):
            xb = utils.as_float32(x[start:start + batch_size], "predict()")
            outputs.append(self._inference(xb))
            if bar is not None:
                bar.update(step, finalize=step == steps)
        return outputs[0] if len(outputs) == 1 else np.concatenate(outputs, axis=0)

    def train_on_batch(self, x: Any, y: Any) -> Union[float, List[float]]:
        """One gradient step on one batch; returns ``[loss, accuracy]`` (or the loss)."""
        self._require_compiled("train_on_batch")
        x, y = self._check_xy(x, y, "train_on_batch()")
        loss, c, k = self._train_step(utils.as_float32(x, "train_on_batch()"), y)
        return self._result(self._logs(loss, 1, c, k), False)

    def test_on_batch(self, x: Any, y: Any) -> Union[float, List[float]]:
        """Loss (and accuracy) of one batch, no update."""
        self._require_compiled("test_on_batch")
        x, y = self._check_xy(x, y, "test_on_batch()")
        loss, c, k = self._test_step(utils.as_float32(x, "test_on_batch()"), y)
        return self._result(self._logs(loss, 1, c, k), False)

    def predict_on_batch(self, x: Any) -> np.ndarray:
        return self(x, training=False)

    # ----------------------------------------------------------------- config and files

    def get_config(self) -> Dict[str, Any]:
        """Architecture as plain data: ``{'name', 'layers': [{'class_name', 'config'}], 'build_input_shape'}``."""
        layer_configs = []
        if self._input_layer is not None:
            layer_configs.append({"class_name": "InputLayer", "config": self._input_layer.get_config()})
        for layer in self._layers:
            layer_configs.append({"class_name": type(layer).__name__, "config": layer.get_config()})
        return {"name": self.name, "layers": layer_configs,
                "build_input_shape": None if self._batch_input_shape is None else list(self._batch_input_shape)}

    @classmethod
    def from_config(cls, config: Dict[str, Any]) -> "Sequential":
        model = cls(name=config.get("name"))
        for entry in config["layers"]:
            layer_cls = layers_module.get(entry["class_name"])
            model.add(layer_cls.from_config(dict(entry["config"])))
        shape = config.get("build_input_shape")
        if shape is not None and model._batch_input_shape is None:
            model.build(tuple(shape))
        return model

    def _manifest(self) -> Tuple[Dict[str, Any], Dict[str, np.ndarray]]:
        arrays: Dict[str, np.ndarray] = {}
        entries = []
        for i, layer in enumerate(self._layers):
            weights = []
            for pname, param in zip(layer.weight_names, layer.weights):
                key = f"layer_{i:02d}_{layer.name}/{pname}"
                arrays[key] = param
                weights.append({"name": pname, "key": key, "shape": list(param.shape)})
            entries.append({"index": i, "name": layer.name, "class": type(layer).__name__, "weights": weights})
        manifest = {"format": WEIGHTS_FORMAT, "version": 1, "model": self.name,
                    "input_shape": None if self._batch_input_shape is None else list(self._batch_input_shape),
                    "layers": entries}
        return manifest, arrays

    def save_weights(self, path: Union[str, os.PathLike]) -> None:
        """Write every weight to ``path`` atomically (temporary file in the same folder + os.replace).

        Layout (an uncompressed .npz, name used as given; details in the module docstring):
        one float32 array per weight under ``layer_{i:02d}_{layer name}/{kernel|bias}``
        (``i`` = position in ``model.layers``), e.g. ``layer_00_conv2d/kernel`` of shape
        (KH, KW, C, F), plus ``__pycnn_manifest__``: JSON with the format tag, the input
        shape and, per layer, its name, class and the name, key and shape of each weight.

        Raises:
            RuntimeError: if the model has not been built.
        """
        self._require_built("the weights")
        manifest, arrays = self._manifest()
        _write_npz(os.fspath(path), manifest, arrays)

    def save(self, path: Union[str, os.PathLike]) -> None:
        """Write the weights plus the architecture (``get_config()``), for :func:`load_model`.

        Callable initialisers are not stored (they do not matter once weights are loaded).
        """
        self._require_built("the weights")
        manifest, arrays = self._manifest()
        manifest["config"] = _jsonable(self.get_config())
        _write_npz(os.fspath(path), manifest, arrays)

    def load_weights(self, path: Union[str, os.PathLike]) -> None:
        """Load weights written by :meth:`save_weights` (or :meth:`save`).

        An unbuilt model is first built with the input shape stored in the file.

        Raises:
            FileNotFoundError: no such file.
            ValueError: not a pycnn weights file, or its layers/shapes do not match this
                model (nothing is changed then); the message names the layer and shapes.
        """
        path = os.fspath(path)
        manifest, arrays = _read_npz(path)
        if not self.built or self._batch_input_shape is None:
            if manifest.get("input_shape") is None:
                raise RuntimeError(f"Model '{self.name}' has not been built and '{path}' stores no input shape. "
                                   "Build the model first.")
            self.build(tuple(manifest["input_shape"]))
        prefix = f"Cannot load weights from '{path}' into model '{self.name}'"
        file_layers = [entry for entry in manifest["layers"] if entry["weights"]]
        model_layers = [layer for layer in self._layers if layer.weights]
        if len(file_layers) != len(model_layers):
            raise ValueError(
                f"{prefix}: the file has weights for {len(file_layers)} layers "
                f"({', '.join(e['name'] + ' (' + e['class'] + ')' for e in file_layers)}), but the model has "
                f"{len(model_layers)} layers with weights "
                f"({', '.join(l.name + ' (' + type(l).__name__ + ')' for l in model_layers)}).")
        assignments = []
        for entry, layer in zip(file_layers, model_layers):
            cls = type(layer).__name__
            if entry["class"] != cls:
                raise ValueError(f"{prefix}: the model's layer '{layer.name}' is a {cls}, but the matching layer "
                                 f"in the file, '{entry['name']}', is a {entry['class']}.")
            file_names = [w["name"] for w in entry["weights"]]
            if file_names != layer.weight_names:
                raise ValueError(f"{prefix}: layer '{layer.name}' ({cls}) has weights {layer.weight_names}, but the "
                                 f"file's layer '{entry['name']}' has {file_names} (use_bias differs?).")
            for w, param in zip(entry["weights"], layer.weights):
                if w["key"] not in arrays:
                    raise ValueError(f"{prefix}: the file is missing the array '{w['key']}' its manifest lists.")
                value = arrays[w["key"]]
                if value.shape != param.shape:
                    raise ValueError(f"{prefix}: layer '{layer.name}' ({cls}) expects {w['name']} of shape "
                                     f"{param.shape}, but the file's layer '{entry['name']}' has {w['name']} of "
                                     f"shape {value.shape}.")
                assignments.append((param, value))
        for param, value in assignments:
            param[...] = value


def _check_verbose(verbose: Any, who: str) -> int:
    if verbose == "auto":
        return 1
    if isinstance(verbose, bool) or verbose not in (0, 1, 2):
        raise ValueError(f"Invalid value for argument 'verbose' of {who}: expected 0, 1, 2 or 'auto'. "
                         f"Received: verbose={verbose!r}.")
    return int(verbose)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items() if not callable(v)}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _write_npz(path: str, manifest: Dict[str, Any], arrays: Dict[str, np.ndarray]) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **{MANIFEST_KEY: np.array(json.dumps(manifest))}, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _read_npz(path: str) -> Tuple[Dict[str, Any], Dict[str, np.ndarray]]:
    if not os.path.exists(path):
        raise FileNotFoundError(f"No weights file at '{path}'.")
    unreadable = (OSError, ValueError, EOFError, zipfile.BadZipFile)  # truncated or foreign files
    try:
        loaded = np.load(path, allow_pickle=False)
    except unreadable as exc:
        raise ValueError(f"'{path}' is not a readable pycnn weights file ({type(exc).__name__}: {exc}).") from exc
    if not isinstance(loaded, np.lib.npyio.NpzFile):
        raise ValueError(f"'{path}' is not a pycnn weights file: it holds a single array, not an .npz archive.")
    with loaded as data:
        if MANIFEST_KEY not in data.files:
            raise ValueError(f"'{path}' is not a pycnn weights file: it has no '{MANIFEST_KEY}' entry. "
                             "Write weights with model.save_weights().")
        try:
            manifest = json.loads(str(data[MANIFEST_KEY]))
            arrays = {k: data[k] for k in data.files if k != MANIFEST_KEY}
        except unreadable as exc:
            raise ValueError(f"'{path}' is not a readable pycnn weights file ({type(exc).__name__}: {exc}).") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != WEIGHTS_FORMAT or "layers" not in manifest:
        raise ValueError(f"'{path}' is not a pycnn weights file: its manifest has no format '{WEIGHTS_FORMAT}'.")
    return manifest, arrays


def load_model(path: Union[str, os.PathLike]) -> Sequential:
    """Rebuild a model written by :meth:`Sequential.save` and load its weights.

    The model is not compiled (call ``compile()`` before training or evaluating).

    Raises:
        ValueError: if the file holds only weights (written by ``save_weights``).
    """
    path = os.fspath(path)
    manifest, _ = _read_npz(path)
    if "config" not in manifest:
        raise ValueError(f"'{path}' holds weights only (written by save_weights()), not an architecture. Build the "
                         "model in code and call model.load_weights(path).")
    model = Sequential.from_config(manifest["config"])
    model.load_weights(path)
    return model


# --------------------------------------------------------------------------- lecture models

def lenet(input_shape: Sequence[int] = (32, 32, 3), num_classes: int = 10) -> Sequential:
    """LeNet exactly as the lecture writes it.

    conv 6@5x5 'same' relu -> max pool 2 -> conv 16@5x5 'valid' relu -> max pool 2 ->
    flatten -> dense 120 relu -> dense 84 relu -> dense ``num_classes`` softmax.
    On CIFAR-10 (32, 32, 3): 83,126 parameters.
    """
    L = layers_module
    return Sequential([
        L.Input(shape=tuple(input_shape)),
        L.Conv2D(6, (5, 5), padding="same", activation="relu"),
        L.MaxPooling2D(pool_size=2),
        L.Conv2D(filters=16, kernel_size=5, activation="relu"),
        L.MaxPooling2D(pool_size=2),
        L.Flatten(),
        L.Dense(120, activation="relu"),
        L.Dense(84, activation="relu"),
        L.Dense(num_classes, activation="softmax"),
    ], name="lenet")


def vgg16(input_shape: Sequence[int] = (224, 224, 1), num_classes: int = 1000) -> Sequential:
    """VGG-16 as the lecture writes it (``input_shape=`` on the first convolution).

    Five blocks of 3x3 'same' relu convolutions (64, 64 | 128, 128 | 256 x3 | 512 x3 |
    512 x3), each followed by 2x2 max pooling, then dense 4096 relu, 4096 relu and
    ``num_classes`` softmax. With the defaults: 138,356,392 parameters (about 553 MB of
    float32 weights).
    """
    L = layers_module
    model = Sequential(name="vgg16")
    model.add(L.Convolution2D(64, 3, padding="same", activation="relu", input_shape=tuple(input_shape)))
    model.add(L.Convolution2D(64, 3, padding="same", activation="relu"))
    model.add(L.MaxPooling2D((2, 2), strides=(2, 2)))
    for filters, repeats in ((128, 2), (256, 3), (512, 3), (512, 3)):
        for _ in range(repeats):
            model.add(L.Convolution2D(filters, 3, padding="same", activation="relu"))
        model.add(L.MaxPooling2D((2, 2), strides=(2, 2)))
    model.add(L.Flatten())
    model.add(L.Dense(4096, activation="relu"))
    model.add(L.Dense(4096, activation="relu"))
    model.add(L.Dense(num_classes, activation="softmax"))
    return model


def fashion_mnist_cnn(input_shape: Sequence[int] = (28, 28, 1), num_classes: int = 10) -> Sequential:
    """The lecture's first Fashion-MNIST model: four 7x7 'valid' relu convolutions
    (32, 64, 128, 256), flatten, dense softmax. 2,150,410 parameters on (28, 28, 1).
    """
    L = layers_module
    return Sequential([
        L.Input(shape=tuple(input_shape)),
        L.Conv2D(32, (7, 7), activation="relu"),
        L.Conv2D(64, (7, 7), activation="relu"),
        L.Conv2D(128, (7, 7), activation="relu"),
        L.Conv2D(256, (7, 7), activation="relu"),
        L.Flatten(),
        L.Dense(num_classes, activation="softmax"),
    ])


def strided_cnn(input_shape: Sequence[int] = (28, 28, 1), num_classes: int = 10, padding: str = "valid"
                ) -> Sequential:
    """The lecture's strided Fashion-MNIST model: 3x3 relu convolutions 32/64/128/256/512
    with strides 1, 2, 1, 2, 1, flatten, dense softmax. ``padding='same'`` gives the
    lecture's padded variant.
    """
    L = layers_module
    model = Sequential([L.Input(shape=tuple(input_shape))])
    for filters, stride in ((32, 1), (64, 2), (128, 1), (256, 2), (512, 1)):
        model.add(L.Conv2D(filters, (3, 3), strides=stride, padding=padding, activation="relu"))
    model.add(L.Flatten())
    model.add(L.Dense(num_classes, activation="softmax"))
    return model


def fully_convolutional_cnn(input_shape: Sequence[Optional[int]] = (None, None, 1), num_classes: int = 10
                            ) -> Sequential:
    """The lecture's fully convolutional model ("1x1 Convolution, dynamic input sizes").

    3x3 'same' relu convolutions 32/64/128/256 with strides 1, 2, 1, 2, then a 7x7
    'valid' relu convolution with 512 filters and a 1x1 convolution to ``num_classes``
    with softmax. Accepts any input size: (N, 28, 28, 1) -> (N, 1, 1, 10) and
    (N, 64, 64, 1) -> (N, 10, 10, 10).
    """
    L = layers_module
    model = Sequential([L.Input(shape=tuple(input_shape))])
    for filters, stride in ((32, 1), (64, 2), (128, 1), (256, 2)):
        model.add(L.Conv2D(filters, (3, 3), strides=stride, padding="same", activation="relu"))
    model.add(L.Conv2D(512, (7, 7), strides=1, activation="relu"))
    model.add(L.Conv2D(num_classes, (1, 1), strides=1, activation="softmax"))
    return model
