"""compile / fit / evaluate / predict / train_on_batch / test_on_batch, once for every model.

Who owns what
-------------
=====================  =====================================================================
pycnn/functional.py    the graph (nodes, Keras layer order, weights) and its eager executor:
                       per-call state for backward, gradients summed over fan-out and shared
                       layers
pycnn/sequential.py    the chain case: a list of layers -> a graph
pycnn/trainer.py       (this) the loop: batching, shuffling, the loss and accuracy, callbacks,
                       the progress bar, and for each batch the choice between the one-call
                       native step and the layer-by-layer executor
pycnn/fused_step.py    a graph -> the native step's node list (each layer gives its twin)
pycnn/optimizers.py    the update rules; an optimizer says itself whether the native step
                       can apply its update (``native_step_args``)
pycnn/saving.py        files: architecture + weights (+ optimizer state), atomic, no pickle
pycnn/summary.py       the printed table
pycnn/ops.py           the only door to the compiled kernels
=====================  =====================================================================

Data conventions: images are NHWC arrays ``(N, H, W, C)``; any real numeric dtype is
accepted and converted to float32 batch by batch (uint8 is converted, **not rescaled**:
divide by 255 yourself, as the lecture does). Labels for
``sparse_categorical_crossentropy`` are integer class indices ``(N,)`` or ``(N, 1)``;
``categorical_crossentropy`` takes one-hot rows (:func:`pycnn.utils.to_categorical`). A
model with several inputs takes a list of arrays, one per input, in ``model.inputs`` order.
"""
from __future__ import annotations

import math
import warnings
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from . import callbacks as callbacks_module
from . import fused_step, ops
from . import losses as losses_module
from . import optimizers as optimizers_module
from . import utils
from .progress import Progbar

_ACCURACY_NAMES = ("accuracy", "acc")
_NONFINITE_CHOICES = ("raise", "ignore")
#: A batch loss above both this and 1000x the run's first batch loss draws one warning per fit.
_EXPLODING_LOSS = 1e6


class NonFiniteLossError(FloatingPointError):
    """fit() met a batch whose loss is NaN or infinite. The step was not applied: the model
    keeps the weights of the last finite step. ``epoch`` (0-based), ``step`` (1-based within
    the epoch) and ``loss`` say where."""

    def __init__(self, epoch: int, step: int, loss: float) -> None:
        super().__init__(f"fit() stopped: the loss of epoch {epoch + 1}, step {step} is {loss}. The model keeps the "
                         f"weights of the last finite step (that step was not applied). Look for NaN or inf in the "
                         f"inputs or targets of that batch, or lower the learning rate; fit(..., "
                         f"nonfinite_loss='ignore') or a TerminateOnNaN callback lets training go on or stop quietly.")
        self.epoch, self.step, self.loss = epoch, step, loss


class Trainer:
    """The training half of every model (``Model`` and ``Sequential`` inherit it).

    A model supplies ``_graph()``, ``_prepare_inputs(x, who)``, ``_output_shape_for(shapes)``,
    ``layers`` and ``name``; everything here works on those.
    """

    def __init__(self) -> None:
        self.optimizer: Optional[optimizers_module.Optimizer] = None
        self.loss: Any = None
        self.metrics_names: List[str] = []
        self.compiled = False
        self.stop_training = False
        self.history: Optional[callbacks_module.History] = None

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
        last = self._output_layer_or_none()
        if getattr(self.loss, "from_logits", False) and getattr(last, "activation", None) == "softmax":
            warnings.warn(f"Model '{self.name}': the loss has from_logits=True but the last layer "
                          f"'{last.name}' applies a softmax, so its outputs are not logits. "
                          "Use from_logits=False or a linear last layer.", UserWarning, stacklevel=2)

    def _output_layer_or_none(self) -> Any:
        try:
            return self._graph().output_layer(0)
        except RuntimeError:  # an unbuilt Sequential
            layers = self.layers
            return layers[-1] if layers else None

    def _softmax_output(self) -> bool:
        return getattr(self._graph().output_layer(0), "activation", None) == "softmax"

    def _fused(self) -> bool:
        """Softmax last layer + cross-entropy on probabilities: train on logits with the fused kernel."""
        return (isinstance(self.loss, (losses_module.SparseCategoricalCrossentropy,
                                       losses_module.CategoricalCrossentropy))
                and not self.loss.from_logits and self._softmax_output() and self._output_read_once())

    def _output_read_once(self) -> bool:
        graph = self._graph()
        return graph.consumers()[graph.outputs[0]] == 0 and graph.producer(graph.outputs[0]) is not None

    def _require_compiled(self, what: str) -> None:
        if not self.compiled:
            raise RuntimeError(f"You must call compile() before {what}() on model '{self.name}', e.g. "
                               "model.compile(optimizer='adam', loss='sparse_categorical_crossentropy', "
                               "metrics=['accuracy']).")

    # ----------------------------------------------------------------- data checks

    def _check_xy(self, x: Any, y: Any, who: str) -> Tuple[List[np.ndarray], np.ndarray]:
        """Validate a dataset; returns the input arrays (unconverted) and y prepared for batching.

        Sparse labels come back as int64 of shape (N, rows per sample); dense targets as
        float32 of shape (N, ...) matching the output.
        """
        if not isinstance(x, (list, tuple)):
            x = utils.check_real_array(x, who, "x")
        if y is None:
            raise ValueError(f"{who} expected targets y. Received: y=None.")
        y = utils.check_real_array(y, who, "y")
        if isinstance(x, np.ndarray) and (y.ndim == 0 or x.ndim == 0 or x.shape[0] != y.shape[0]):
            raise ValueError(f"x and y must contain the same number of samples. Received: "
                             f"x.shape[0]={x.shape[0] if x.ndim else 'scalar'}, "
                             f"y.shape[0]={y.shape[0] if y.ndim else 'scalar'}.")
        xs = self._prepare_inputs(x, who)
        if y.ndim == 0 or xs[0].shape[0] != y.shape[0]:
            raise ValueError(f"x and y must contain the same number of samples. Received: "
                             f"x.shape[0]={xs[0].shape[0]}, y.shape[0]={y.shape[0] if y.ndim else 'scalar'}.")
        out = self._output_shape_for([(None,) + a.shape[1:] for a in xs])
        out_shape = (xs[0].shape[0],) + tuple(out[1:])
        if isinstance(self.loss, losses_module.SparseCategoricalCrossentropy):
            labels = losses_module.sparse_labels(y, out_shape, who)
            return xs, labels.reshape(y.shape[0], -1)
        if isinstance(self.loss, (losses_module.CategoricalCrossentropy, losses_module.MeanSquaredError)):
            target = utils.as_float32(y, who, "y")
            if target.size != int(np.prod(out_shape)):
                raise ValueError(f"{who} expected y with the model's output shape {out_shape}. "
                                 f"Received: y.shape={y.shape}.")
            return xs, target.reshape(out_shape)
        return xs, y

    # ----------------------------------------------------------------- one batch

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

    def _native_train_plan(self, yb: np.ndarray) -> Optional[fused_step.Plan]:
        """The one-call native training step's plan, when the model and loss allow it.

        Needs sparse integer labels with a softmax (or from_logits) cross-entropy on one
        (N, classes) output, and layers that all have a native twin.
        """
        loss = self.loss
        if not (fused_step.enabled() and isinstance(loss, losses_module.SparseCategoricalCrossentropy)):
            return None
        graph = self._graph()
        if len(graph.outputs) != 1:
            return None
        softmax_last = self._softmax_output()
        if not (loss.from_logits or softmax_last) or (loss.from_logits and softmax_last):
            return None
        if len(self._output_shape_for(graph.input_shapes)) != 2 or yb.ndim != 2 or yb.shape[1] != 1:
            return None
        return fused_step.plan(graph, train=True, training=True, logits=True)

    def _train_step(self, xs: List[np.ndarray], yb: np.ndarray) -> Tuple[float, int, int]:
        plan = self._native_train_plan(yb)
        if plan is not None:
            x_arg = xs[0] if len(xs) == 1 else xs
            adam = self.optimizer.native_step_args(plan.trained)
            # A step whose loss is not finite applies no update (its gradients are not finite
            # either): the weights stay those of the last finite step, for fit() to report.
            if adam is not None:  # the update runs inside the same native call, thread by thread
                loss, correct = ops.network_train_step(x_arg, yb.reshape(-1), plan.nodes, adam=adam)
                fused_step.publish_gradients(plan)
                if not math.isfinite(loss):
                    self.optimizer.native_step_skipped()
            else:
                loss, correct = ops.network_train_step(x_arg, yb.reshape(-1), plan.nodes)
                fused_step.publish_gradients(plan)
                if math.isfinite(loss):
                    self.optimizer.apply_gradients(self._gradient_pairs())
            if math.isfinite(loss):
                fused_step.finish_step(plan)
            if not self.metrics_names:
                return float(loss), 0, 0
            return float(loss), int(correct), int(xs[0].shape[0])
        from .functional import run_backward, run_forward
        fused = self._fused()
        graph = self._graph()
        outs, trace = run_forward(graph, xs, training=True, logits=fused)
        out = outs[0]
        loss, dout = self._loss_and_grad(yb, out, fused, need_grad=True)
        for layer in self.layers:
            layer._grads = [None] * len(layer.weights)  # a layer backward does not reach gets no update
        for layer, grads in run_backward(graph, trace, dout).values():
            layer._grads = grads
        if math.isfinite(loss):
            self.optimizer.apply_gradients(self._gradient_pairs())
        correct, count = self._correct(yb, out) if self.metrics_names else (0, 0)
        return loss, correct, count

    def _gradient_pairs(self) -> List[Tuple[np.ndarray, np.ndarray]]:
        return [(g, w) for layer in self.layers if layer.trainable
                for g, w in zip(layer.get_gradients(), layer.weights)]

    def _inference(self, xs: List[np.ndarray], logits: bool = False) -> List[np.ndarray]:
        """Forward in inference mode: one native call when every layer has a native twin."""
        graph = self._graph()
        if len(graph.outputs) == 1:
            softmax_last = self._softmax_output() and self._output_read_once()
            plan = fused_step.plan(graph, train=False, training=False, logits=softmax_last)
            if plan is not None:
                try:
                    return [ops.network_predict(xs[0] if len(xs) == 1 else xs, plan.nodes,
                                                softmax=softmax_last and not logits)]
                except ValueError:
                    pass  # e.g. an input size the nodes do not fit: layer by layer explains it
        from .functional import run_forward
        outs, _ = run_forward(graph, xs, training=False, logits=logits, keep_trace=False)
        return outs

    def _test_step(self, xs: List[np.ndarray], yb: np.ndarray) -> Tuple[float, int, int]:
        fused = self._fused()
        out = self._inference(xs, logits=fused)[0]
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
            initial_epoch: int = 0, nonfinite_loss: str = "raise") -> callbacks_module.History:
        """Train for ``epochs`` passes over ``(x, y)`` in shuffled mini-batches.

        Args:
            x: inputs (N, H, W, C) (or (N, features) for dense-only models), or a list of
                arrays for a model with several inputs; uint8 is converted to float32, not
                rescaled.
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
            nonfinite_loss: what a batch with a NaN or infinite loss does (that batch's
                update is never applied): 'raise' (default) stops with
                :class:`NonFiniteLossError` after the batch's callbacks ran, unless one of
                them (e.g. ``TerminateOnNaN``) stopped training; 'ignore' goes on with the
                next batch. Not in Keras, which applies the non-finite update.

        Returns:
            A :class:`pycnn.callbacks.History`; ``history.history`` has per-epoch lists
            ``loss``, ``accuracy`` and, with validation, ``val_loss``, ``val_accuracy``.

        Raises:
            RuntimeError: if the model is not compiled.
            ValueError / TypeError: malformed data or arguments.
            NonFiniteLossError: a non-finite batch loss, with ``nonfinite_loss='raise'``.
        """
        self._require_compiled("fit")
        if nonfinite_loss not in _NONFINITE_CHOICES:
            raise ValueError(f"Invalid value for argument 'nonfinite_loss' of fit(): expected one of "
                             f"{_NONFINITE_CHOICES}. Received: nonfinite_loss={nonfinite_loss!r}.")
        batch_size = utils.positive_int(batch_size, "batch_size", "fit()")
        if isinstance(epochs, bool) or not isinstance(epochs, (int, np.integer)) or epochs < 0:
            raise ValueError(f"Invalid value for argument 'epochs' of fit(): expected a non-negative integer. "
                             f"Received: epochs={epochs!r}.")
        verbose = _check_verbose(verbose, "fit()")
        if isinstance(validation_split, bool) or not isinstance(validation_split, (int, float)) \
                or not 0.0 <= validation_split < 1.0:
            raise ValueError(f"Invalid value for argument 'validation_split' of fit(): expected a number in [0, 1). "
                             f"Received: validation_split={validation_split!r}.")
        xs, y = self._check_xy(x, y, "fit()")
        n = xs[0].shape[0]
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
            val = ([a[split_at:] for a in xs], y[split_at:])
            xs, y = [a[:split_at] for a in xs], y[:split_at]
            n = split_at

        history = callbacks_module.History()
        # History last, as in Keras: it records what the other callbacks add to the logs (learning_rate).
        cbs: List[callbacks_module.Callback] = list(callbacks or []) + [history]
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
        first_loss: Optional[float] = None
        warned = False
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
                xb = [utils.as_float32(a[sel], "fit()") for a in xs]
                yb = y[sel]
                for cb in cbs:
                    cb.on_batch_begin(step - 1)
                with utils.deferred_interrupt():  # Ctrl-C lands between steps, never inside one
                    loss, c, k = self._train_step(xb, yb)
                if first_loss is None and math.isfinite(loss):
                    first_loss = loss
                if (not warned and math.isfinite(loss) and first_loss is not None
                        and loss > max(_EXPLODING_LOSS, 1e3 * first_loss)):
                    warned = True
                    warnings.warn(f"fit(): the loss of epoch {epoch + 1}, step {step} is {loss:.4g}, "
                                  f"{loss / max(first_loss, 1e-30):.3g}x the first batch's ({first_loss:.4g}): "
                                  f"training is diverging; lower the learning rate.", RuntimeWarning, stacklevel=2)
                m = xb[0].shape[0]
                loss_sum += loss * m
                seen += m
                correct += c
                count += k
                logs = self._logs(loss_sum, seen, correct, count)
                for cb in cbs:
                    cb.on_batch_end(step - 1, dict(logs))
                if not math.isfinite(loss) and nonfinite_loss == "raise" and not self.stop_training:
                    raise NonFiniteLossError(epoch, step, loss)
                if step < steps:
                    bar.update(step, logs)
                if self.stop_training:
                    break
            epoch_logs = dict(logs)
            if val is not None:
                epoch_logs.update(self._evaluate_arrays(val[0], val[1], batch_size, prefix="val_"))
            bar.update(step, epoch_logs, finalize=True)
            self._epochs_done = epoch + 1  # a checkpoint written now records it
            for cb in cbs:
                cb.on_epoch_end(epoch, epoch_logs)
            if self.stop_training:
                break
        for cb in cbs:
            cb.on_train_end()
        return history

    def _evaluate_arrays(self, xs: List[np.ndarray], y: np.ndarray, batch_size: int, prefix: str = "",
                         bar: Optional[Progbar] = None) -> Dict[str, float]:
        n = xs[0].shape[0]
        loss_sum, seen, correct, count = 0.0, 0, 0, 0
        for step, start in enumerate(range(0, n, batch_size), start=1):
            sel = slice(start, min(start + batch_size, n))
            xb = [utils.as_float32(a[sel], "evaluate()") for a in xs]
            loss, c, k = self._test_step(xb, y[sel])
            m = xb[0].shape[0]
            loss_sum += loss * m
            seen += m
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
        xs, y = self._check_xy(x, y, "evaluate()")
        steps = (xs[0].shape[0] + batch_size - 1) // batch_size
        logs = self._evaluate_arrays(xs, y, batch_size, bar=Progbar(steps, verbose=verbose) if verbose else None)
        return self._result(logs, return_dict)

    def _result(self, logs: Dict[str, float], return_dict: bool) -> Union[float, List[float], Dict[str, float]]:
        if return_dict:
            return {"loss": logs["loss"], **{k: v for k, v in logs.items() if k != "loss"}}
        if self.metrics_names:
            return [logs["loss"], logs["accuracy"]]
        return logs["loss"]

    def predict(self, x: Any, batch_size: int = 32, verbose: Union[int, str] = 0) -> Any:
        """Outputs for ``x`` in inference mode, computed ``batch_size`` samples at a time.

        Safe to call from several threads on one model: each call keeps its own state.

        Returns:
            float32 array of shape ``(N,) + output_shape[1:]`` (e.g. class probabilities),
            or a list of arrays for a model with several outputs.
        """
        batch_size = utils.positive_int(batch_size, "batch_size", "predict()")
        verbose = _check_verbose(verbose, "predict()")
        xs = self._prepare_inputs(x, "predict()")
        n = xs[0].shape[0]
        steps = (n + batch_size - 1) // batch_size
        bar = Progbar(steps, verbose=verbose) if verbose else None
        batches: List[List[np.ndarray]] = []
        for step, start in enumerate(range(0, n, batch_size), start=1):
            xb = [utils.as_float32(a[start:start + batch_size], "predict()") for a in xs]
            batches.append(self._inference(xb))
            if bar is not None:
                bar.update(step, finalize=step == steps)
        outs = [b[0] if len(batches) == 1 else np.concatenate(b, axis=0) for b in zip(*batches)]
        return outs[0] if self._single_output else outs

    def train_on_batch(self, x: Any, y: Any) -> Union[float, List[float]]:
        """One gradient step on one batch; returns ``[loss, accuracy]`` (or the loss)."""
        self._require_compiled("train_on_batch")
        xs, y = self._check_xy(x, y, "train_on_batch()")
        xs = [utils.as_float32(a, "train_on_batch()") for a in xs]
        with utils.deferred_interrupt():
            loss, c, k = self._train_step(xs, y)
        return self._result(self._logs(loss, 1, c, k), False)

    def test_on_batch(self, x: Any, y: Any) -> Union[float, List[float]]:
        """Loss (and accuracy) of one batch, no update."""
        self._require_compiled("test_on_batch")
        xs, y = self._check_xy(x, y, "test_on_batch()")
        loss, c, k = self._test_step([utils.as_float32(a, "test_on_batch()") for a in xs], y)
        return self._result(self._logs(loss, 1, c, k), False)

    def predict_on_batch(self, x: Any) -> Any:
        return self(x, training=False)


def _check_verbose(verbose: Any, who: str) -> int:
    if verbose == "auto":
        return 1
    if isinstance(verbose, bool) or verbose not in (0, 1, 2):
        raise ValueError(f"Invalid value for argument 'verbose' of {who}: expected 0, 1, 2 or 'auto'. "
                         f"Received: verbose={verbose!r}.")
    return int(verbose)
