"""compile / fit / evaluate / predict / train_on_batch / test_on_batch: the loop, once for
every model.

Who owns what
-------------
=====================  =====================================================================
pycnn/functional.py    ``Model``: symbolic inputs and outputs -> a graph; a model is a layer
pycnn/sequential.py    the chain case: a list of layers -> a graph
pycnn/graph.py         the graph itself (nodes in topological order, nested models expanded)
                       and its eager, layer-by-layer executor
pycnn/trainer.py       (this) the loop: batches, callbacks, the progress bar, the History
pycnn/step.py          one step: the loss (fused or NumPy), weight penalties, the optimizer's
                       update (native or NumPy), the MPI gradient reducer
pycnn/executor.py      a graph compiled into native networks and run; returns the loss, the
                       hit count and the gradients aligned with ``trainable_weights``
pycnn/ops.py           the only door to the compiled core (ops, networks, components)
pycnn/data_adapter.py  batches: arrays (shuffled) or generators / iterables of batches;
                       sample_weight and class_weight -> per-sample weights
pycnn/metrics.py       metric functions and objects, compile(metrics=, weighted_metrics=)
pycnn/optimizers.py    the update rules; an optimizer names its native update component
pycnn/saving.py        files: architecture + weights (+ optimizer state), atomic, no pickle
pycnn/summary.py       the printed table
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
from . import data_adapter, distributed, ops
from . import losses as losses_module
from . import metrics as metrics_module
from . import optimizers as optimizers_module
from . import step as step_module
from . import tta as tta_module
from . import utils
from .progress import Progbar, check_verbose

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


_DEVICES = ("cpu", "cuda", "cuda-emulated")
_default_device = "cpu"


def set_device(device: str) -> None:
    """The device ``compile()`` trains on when it is not given one: ``'cpu'`` (the default),
    ``'cuda'`` or ``'cuda-emulated'`` (see :meth:`Trainer.compile`).

    Raises:
        TypeError / ValueError: for anything but those names.
    """
    global _default_device
    _default_device = _device_name(device, "set_device()")


def _device_name(device: Any, who: str) -> str:
    if not isinstance(device, str):
        raise TypeError(f"{who} expected device to be a string, 'cpu', 'cuda' or 'cuda-emulated'. "
                        f"Received: device={device!r}.")
    name = device.lower()
    if name not in _DEVICES:
        raise ValueError(f"{who} expected device 'cpu', 'cuda' or 'cuda-emulated'. Received: device={device!r}.")
    return name


def _check_device(device: Any) -> Optional[step_module.DeviceRunner]:
    """compile(device=...): None for 'cpu'; the CUDA executor's runner for 'cuda' (RuntimeError
    saying why when CUDA is not usable here) or 'cuda-emulated'."""
    name = _device_name(_default_device if device is None else device, "compile()")
    if name == "cpu":
        return None
    try:
        return step_module.DeviceRunner(name)
    except RuntimeError as err:
        raise RuntimeError(f"compile() was asked to train on device={name!r}, but {err} Use device='cpu' (the "
                           "default), or device='cuda-emulated' to run the CUDA executor on the host.") from None


class Trainer:
    """The training half of every model (``Model`` and ``Sequential`` inherit it).

    A model supplies ``_graph()``, ``_prepare_inputs(x, who)``, ``_output_shape_for(shapes)``,
    ``layers``, ``trainable_weights``, ``_leaf_layers()`` and ``name``; everything here works
    on those.
    """

    def __init__(self) -> None:
        self.optimizer: Optional[optimizers_module.Optimizer] = None
        self.loss: Any = None
        self.metrics_names: List[str] = []
        self._metrics = metrics_module.CompiledMetrics()
        self.compiled = False
        self.stop_training = False
        self.history: Optional[callbacks_module.History] = None
        self._step = step_module.Step(self)
        self._step.reducer = distributed.GradientExchange()

    # ----------------------------------------------------------------- compile

    def compile(self, optimizer: Union[str, optimizers_module.Optimizer] = "rmsprop",
                loss: Union[str, losses_module.Loss, None] = None, metrics: Any = None,
                weighted_metrics: Any = None, device: Optional[str] = None) -> None:
        """Configure training.

        Args:
            optimizer: 'adam', 'sgd', 'rmsprop' (Keras defaults) or an optimizer object.
            loss: 'sparse_categorical_crossentropy', 'categorical_crossentropy', 'mse' or a
                :class:`pycnn.losses.Loss`.
            metrics: names ('accuracy', 'sparse_top_k_categorical_accuracy', 'mae', ...),
                :mod:`pycnn.metrics` objects or functions ``(y_true, y_pred) -> per-sample
                values``; shown in the progress bar and the History under their names.
                They ignore sample weights, as in Keras.
            weighted_metrics: the same, weighted by ``sample_weight`` / ``class_weight``.
            device: ``'cpu'``, ``'cuda'`` or ``'cuda-emulated'``; None (the default): the device
                :func:`pycnn.set_device` chose, ``'cpu'`` unless changed. ``'cuda'`` trains on
                the GPU with the CUDA executor: the weights and the optimizer's slots stay on
                the device during ``fit`` and come back to the host arrays at every epoch end
                (before validation and callbacks), at the end of ``fit`` and after each
                ``train_on_batch``; evaluate and predict run on the device too (the CPU when
                the model has Python layers). ``'cuda-emulated'``
                runs the same CUDA executor on the host emulation of the device runtime, on
                any machine (slow: for tests). A step the device cannot run (another loss,
                Python layers, regularizers, EMA) runs on the CPU with a warning.

        Raises:
            ValueError / TypeError: for unknown names or wrong types.
            RuntimeError: for ``device='cuda'`` where CUDA is not usable (the message says why).
        """
        runner = _check_device(device)
        if loss is None:
            raise ValueError("compile() expected a loss, e.g. loss='sparse_categorical_crossentropy'. "
                             "Received: loss=None.")
        self.optimizer = optimizers_module.get(optimizer)
        self.loss = losses_module.get(loss)
        self._metrics = metrics_module.CompiledMetrics(metrics, weighted_metrics)
        self.metrics_names = list(self._metrics.names)
        self._step.device_sync()  # a previous compile's device weights come home first
        self._step.device = runner
        self.compiled = True
        last = self._output_layer_or_none()
        if getattr(self.loss, "from_logits", False) and last is not None and last.output_activation == "softmax":
            warnings.warn(f"Model '{self.name}': the loss has from_logits=True but the last layer "
                          f"'{last.name}' applies a softmax, so its outputs are not logits. "
                          "Use from_logits=False or a linear last layer.", UserWarning, stacklevel=2)

    def _output_layer_or_none(self) -> Any:
        try:
            return self._graph().expanded().output_layer(0)
        except RuntimeError:  # an unbuilt Sequential
            layers = self.layers
            return layers[-1] if layers else None

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
            if target.size != math.prod(out_shape):
                raise ValueError(f"{who} expected y with the model's output shape {out_shape}. "
                                 f"Received: y.shape={y.shape}.")
            return xs, target.reshape(out_shape)
        return xs, y

    def _batches(self, x: Any, y: Any, sample_weight: Any, class_weight: Any, batch_size: int, shuffle: bool,
                 steps: Optional[int], who: str) -> Any:
        """Arrays -> ArrayBatches; a generator or other iterable of batches -> IterableBatches."""
        if data_adapter.is_batch_source(x):
            if y is not None or sample_weight is not None:
                raise ValueError(f"{who} takes the targets (and sample weights) from the generator's batches "
                                 f"when x is a generator or iterable of batches: pass y=None and sample_weight="
                                 f"None. Received: y of type {type(y).__name__}"
                                 f"{', and a sample_weight' if sample_weight is not None else ''}.")
            return data_adapter.IterableBatches(x, steps, self._check_xy, class_weight, who)
        xs, targets = self._check_xy(x, y, who)
        weights = data_adapter.sample_weights(targets, xs[0].shape[0], sample_weight, class_weight, who)
        return data_adapter.ArrayBatches(xs, targets, weights, batch_size, shuffle)

    def _update_metrics(self, yb: np.ndarray, out: Optional[np.ndarray], is_logits: bool,
                        sample_weight: Optional[np.ndarray]) -> None:
        if out is None or not self._metrics:
            return
        if isinstance(out, step_module.Hits):
            self._metrics.add_hits(out.correct, out.count)
            return

        def probabilities() -> np.ndarray:
            if not is_logits:
                return out
            rows = out.reshape(-1, out.shape[-1])
            return ops.run("activation", [rows], attrs={"activation": "softmax"}).reshape(out.shape)

        self._metrics.update(yb, out, probabilities, sample_weight)

    def _logs(self, loss: float, prefix: str = "") -> Dict[str, float]:
        """Keras's log order: names sorted (``accuracy``, ``loss``, ``mae``...)."""
        logs = self._metrics.results(prefix)
        logs[prefix + "loss"] = loss
        return dict(sorted(logs.items()))

    # ----------------------------------------------------------------- fit / evaluate / predict

    def fit(self, x: Any = None, y: Any = None, batch_size: Optional[int] = None, epochs: int = 1,
            verbose: Union[int, str] = 1, callbacks: Optional[Sequence[callbacks_module.Callback]] = None,
            validation_split: float = 0.0, validation_data: Any = None, shuffle: bool = True,
            class_weight: Optional[Dict[int, float]] = None, sample_weight: Any = None, initial_epoch: int = 0,
            steps_per_epoch: Optional[int] = None, validation_steps: Optional[int] = None,
            validation_batch_size: Optional[int] = None, validation_freq: int = 1,
            nonfinite_loss: str = "raise") -> callbacks_module.History:
        """Train for ``epochs`` passes over the data, as ``keras.Model.fit``.

        Args:
            x: inputs (N, H, W, C) (or (N, features) for dense-only models), or a list of
                arrays for a model with several inputs; uint8 is converted to float32, not
                rescaled. Or a generator / iterable of batches ``(x, y)`` or
                ``(x, y, sample_weight)`` (see :mod:`pycnn.data_adapter`): then ``y`` is None
                and ``batch_size`` does not apply.
            y: targets (see the module docstring).
            batch_size: samples per gradient step (default 32).
            epochs: index of the last epoch (training runs from ``initial_epoch``).
            verbose: 0 silent, 1 progress bar (one line per epoch when stdout is not a
                terminal), 2 one line per epoch; 'auto' means 1.
            callbacks: :mod:`pycnn.callbacks` objects.
            validation_split: fraction of the samples, taken from the end before
                shuffling, held out for validation (arrays only).
            validation_data: ``(x_val, y_val)``, ``(x_val, y_val, sample_weight_val)`` or a
                generator / iterable of batches, evaluated after each epoch.
            shuffle: reshuffle the samples every epoch (seeded by
                :func:`pycnn.utils.set_random_seed`); arrays only.
            class_weight: ``{class index: weight}``: each sample's loss is weighted by its
                class's weight (1 for classes left out), as in Keras.
            sample_weight: (N,) weights of the samples' losses; the loss is
                ``mean(w * per-sample loss)``. Not together with ``class_weight``.
            initial_epoch: epoch to start from (for resuming).
            steps_per_epoch: batches per epoch. With a generator, the epochs continue it
                where the previous one stopped; default: until the source is exhausted.
                With arrays, at most this many batches of each shuffled pass.
            validation_steps: batches of a validation generator per evaluation.
            validation_batch_size: batch size of array validation data (default batch_size).
            validation_freq: validate every this many epochs.
            nonfinite_loss: what a batch with a NaN or infinite loss does (that batch's
                update is never applied): 'raise' (default) stops with
                :class:`NonFiniteLossError` after the batch's callbacks ran, unless one of
                them (e.g. ``TerminateOnNaN``) stopped training; 'ignore' goes on with the
                next batch, leaves the skipped batches out of the epoch's loss and metrics,
                records their number per epoch as ``skipped_batches`` in the logs and the
                History, and warns (``RuntimeWarning``) after an epoch that skipped any.
                Not in Keras, which applies the non-finite update.

        Returns:
            A :class:`pycnn.callbacks.History`; ``history.history`` has per-epoch lists
            ``loss``, one per metric and, with validation, ``val_loss``, ``val_<metric>``.

        Raises:
            RuntimeError: if the model is not compiled.
            ValueError / TypeError: malformed data or arguments.
            NonFiniteLossError: a non-finite batch loss, with ``nonfinite_loss='raise'``.
        """
        self._require_compiled("fit")
        if nonfinite_loss not in _NONFINITE_CHOICES:
            raise ValueError(f"Invalid value for argument 'nonfinite_loss' of fit(): expected one of "
                             f"{_NONFINITE_CHOICES}. Received: nonfinite_loss={nonfinite_loss!r}.")
        batch_size = 32 if batch_size is None else utils.positive_int(batch_size, "batch_size", "fit()")
        if isinstance(epochs, bool) or not isinstance(epochs, (int, np.integer)) or epochs < 0:
            raise ValueError(f"Invalid value for argument 'epochs' of fit(): expected a non-negative integer. "
                             f"Received: epochs={epochs!r}.")
        verbose = check_verbose(verbose, "fit()")
        if isinstance(validation_split, bool) or not isinstance(validation_split, (int, float)) \
                or not 0.0 <= validation_split < 1.0:
            raise ValueError(f"Invalid value for argument 'validation_split' of fit(): expected a number in [0, 1). "
                             f"Received: validation_split={validation_split!r}.")
        steps_per_epoch = data_adapter.check_steps(steps_per_epoch, "steps_per_epoch", "fit()")
        validation_steps = data_adapter.check_steps(validation_steps, "validation_steps", "fit()")
        validation_freq = utils.positive_int(validation_freq, "validation_freq", "fit()")
        val_batch = (batch_size if validation_batch_size is None
                     else utils.positive_int(validation_batch_size, "validation_batch_size", "fit()"))
        dist = distributed.active()
        if dist and not distributed.is_primary():
            verbose = 0  # rank 0 prints
        train = self._batches(x, y, sample_weight, class_weight, batch_size, shuffle, steps_per_epoch, "fit()")
        val = None
        if validation_data is not None:
            if data_adapter.is_batch_source(validation_data):
                val = self._batches(validation_data, None, None, None, val_batch, False, validation_steps,
                                    "fit() validation_data")
            elif isinstance(validation_data, (tuple, list)) and len(validation_data) in (2, 3):
                vw = validation_data[2] if len(validation_data) == 3 else None
                val = self._batches(validation_data[0], validation_data[1], vw, None, val_batch, False, None,
                                    "fit() validation_data")
            else:
                raise ValueError("fit() expected validation_data to be a tuple (x_val, y_val) or (x_val, y_val, "
                                 "sample_weight_val), or a generator of batches. Received: validation_data of type "
                                 f"{type(validation_data).__name__}.")
        elif validation_split > 0.0:
            if not isinstance(train, data_adapter.ArrayBatches):
                raise ValueError("fit() cannot split validation data off a generator: pass validation_data instead "
                                 "of validation_split.")
            n = train.samples
            split_at = int(math.ceil(n * (1.0 - validation_split)))
            if split_at == 0 or split_at == n:
                raise ValueError(f"validation_split={validation_split} leaves an empty training or validation set "
                                 f"for {n} samples. Use a different fraction or pass validation_data.")
            w = train.weights
            val = data_adapter.ArrayBatches([a[split_at:] for a in train.xs], train.y[split_at:],
                                            None if w is None else w[split_at:], val_batch, False)
            train = data_adapter.ArrayBatches([a[:split_at] for a in train.xs], train.y[:split_at],
                                              None if w is None else w[:split_at], batch_size, shuffle)
        if steps_per_epoch is not None and isinstance(train, data_adapter.ArrayBatches):
            train.steps = min(train.steps, steps_per_epoch)
        if dist:
            if not isinstance(train, data_adapter.ArrayBatches):
                raise ValueError("fit() on several MPI ranks takes arrays (each rank then takes its share of every "
                                 "global batch); a generator would have to yield each rank's share itself.")
            train.shard = True
            if isinstance(val, data_adapter.ArrayBatches):
                val = self._local_share(val)
            distributed.sync_training_state(self)  # rank 0's weights, optimizer state and generator

        history = callbacks_module.History()
        # History last, as in Keras: it records what the other callbacks add to the logs (learning_rate).
        cbs: List[callbacks_module.Callback] = list(callbacks or []) + [history]
        for cb in cbs:
            if not isinstance(cb, callbacks_module.Callback):
                raise TypeError(f"fit() expected pycnn.callbacks.Callback objects. Received: {cb!r}.")
        params = {"epochs": epochs, "steps": train.steps, "verbose": verbose, "batch_size": batch_size,
                  "samples": train.samples}
        for cb in cbs:
            cb.set_model(self)
            cb.set_params(params)
        self.history = history
        self.stop_training = False
        for cb in cbs:
            cb.on_train_begin()
        first_loss: Optional[float] = None
        warned = False
        # With a device, a callback that runs at every batch sees (and may change) the host arrays.
        batch_sync = self._step.device is not None and any(_batch_hooks(cb) for cb in cbs)
        # Ctrl-C is recorded and raised between steps (utils.interrupt_guard says why).
        with utils.interrupt_guard() as guard, _device_synced(self._step):
            for epoch in range(initial_epoch, epochs):
                for cb in cbs:
                    cb.on_epoch_begin(epoch)
                self._step.device_invalidate()  # the callbacks so far may have changed the weights
                if verbose:
                    print(f"Epoch {epoch + 1}/{epochs}", flush=True)
                bar = Progbar(train.steps or 0, verbose=verbose)
                self._metrics.reset()
                loss_sum, seen, skipped = 0.0, 0, 0
                logs: Dict[str, float] = {}
                step = 0
                for step, (xb_raw, yb, wb) in enumerate(train.epoch(), start=1):
                    xb = [utils.as_float32(a, "fit()") for a in xb_raw]
                    if batch_sync:
                        self._step.device_invalidate()
                    for cb in cbs:
                        cb.on_batch_begin(step - 1)
                    loss, out, is_logits = self._step.train(xb, yb, wb, train.global_count if dist else None)
                    guard.check()  # a Ctrl-C lands here, between steps
                    if first_loss is None and math.isfinite(loss):
                        first_loss = loss
                    if (not warned and math.isfinite(loss) and first_loss is not None
                            and loss > max(_EXPLODING_LOSS, 1e3 * first_loss)):
                        warned = True
                        warnings.warn(f"fit(): the loss of epoch {epoch + 1}, step {step} is {loss:.4g}, "
                                      f"{loss / max(first_loss, 1e-30):.3g}x the first batch's ({first_loss:.4g}): "
                                      f"training is diverging; lower the learning rate.", RuntimeWarning, stacklevel=2)
                    batch_logs = None
                    if math.isfinite(loss) or nonfinite_loss == "raise":
                        m = train.global_count if dist else xb[0].shape[0]
                        loss_sum += loss * m
                        seen += m
                        self._update_metrics(yb, out, is_logits, wb)
                        logs = self._logs(loss_sum / max(seen, 1))
                    else:  # skipped: not applied, and left out of the epoch's averages
                        skipped += 1
                        logs = self._logs(loss_sum / seen if seen else math.nan)
                        batch_logs = {**logs, "loss": loss}  # callbacks (TerminateOnNaN) see the batch's loss
                    if batch_sync:
                        self._step.device_invalidate()
                    for cb in cbs:
                        cb.on_batch_end(step - 1, dict(logs if batch_logs is None else batch_logs))
                    if not math.isfinite(loss) and nonfinite_loss == "raise" and not self.stop_training:
                        raise NonFiniteLossError(epoch, step, loss)
                    if train.steps is None or step < train.steps:
                        bar.update(step, logs)
                    if self.stop_training:
                        break
                if step == 0:  # a generator with nothing left: IterableBatches warned
                    break
                if dist and not self._metrics.counts_only:
                    self._metrics.reduce_()  # the epoch's metrics over every rank's shares
                    logs = self._logs(loss_sum / seen if seen else math.nan)
                epoch_logs = dict(logs)
                self._step.device_sync()  # validation and the epoch's callbacks read the host arrays
                if nonfinite_loss == "ignore":
                    epoch_logs["skipped_batches"] = skipped  # every epoch, so History's lists stay aligned
                    if skipped:
                        warnings.warn(f"fit(): skipped {skipped} of {step} batches of epoch {epoch + 1} whose loss "
                                      f"was NaN or infinite (nonfinite_loss='ignore'); the epoch's loss and metrics "
                                      f"average the other batches.", RuntimeWarning, stacklevel=2)
                if val is not None and (epoch + 1 - initial_epoch) % validation_freq == 0:
                    epoch_logs.update(self._evaluate_batches(val, prefix="val_", guard=guard,
                                                             reduce=dist and isinstance(val, data_adapter.ArrayBatches)))
                bar.update(step, epoch_logs, finalize=True)
                self._epochs_done = epoch + 1  # a checkpoint written now records it
                for cb in cbs:
                    cb.on_epoch_end(epoch, epoch_logs)
                if getattr(train, "exhausted", False):
                    self.stop_training = True
                if self.stop_training:
                    break
        if epochs > initial_epoch:  # Keras: the EMA's averages become the weights at the end
            self.optimizer.finalize_variable_values(self.trainable_weights)
        for cb in cbs:
            cb.on_train_end()
        return history

    @staticmethod
    def _local_share(batches: Any) -> Any:
        """This rank's contiguous share of an evaluation set (distributed runs)."""
        part = distributed.share(batches.samples)
        w = batches.weights
        return data_adapter.ArrayBatches([a[part] for a in batches.xs], batches.y[part],
                                         None if w is None else w[part], batches.batch_size, False)

    def _evaluate_batches(self, batches: Any, prefix: str = "", bar: Optional[Progbar] = None,
                          reduce: bool = False, guard: Optional[utils.interrupt_guard] = None,
                          tta: Optional[str] = None) -> Dict[str, float]:
        """Loss and metrics over ``batches``; ``reduce``: each rank holds a share, sum them."""
        self._metrics.reset()
        loss_sum, seen = 0.0, 0
        step = 0
        for step, (xb_raw, yb, wb) in enumerate(batches.epoch(), start=1):
            xb = [utils.as_float32(a, "evaluate()") for a in xb_raw]
            loss, out, is_logits = self._step.test(xb, yb, wb, tta=tta)
            if guard is not None:
                guard.check()
            m = xb[0].shape[0]
            loss_sum += loss * m
            seen += m
            self._update_metrics(yb, out, is_logits, wb)
            if bar is not None:
                bar.update(step, self._logs(loss_sum / seen, prefix),
                           finalize=batches.steps is not None and step >= batches.steps)
        if reduce:
            loss_sum, seen = distributed.sum_values([loss_sum, seen])
            self._metrics.reduce_()
        return self._logs(loss_sum / max(seen, 1), prefix)

    def evaluate(self, x: Any = None, y: Any = None, batch_size: Optional[int] = None,
                 verbose: Union[int, str] = "auto", sample_weight: Any = None, steps: Optional[int] = None,
                 return_dict: bool = False, tta: Optional[str] = None) -> Union[float, List[float], Dict[str, float]]:
        """Loss (and metrics) over ``(x, y)`` (or a generator of batches) in inference mode.

        Args:
            verbose: 'auto' (the default, as in Keras 3) and 1 show a progress bar (one line
                at the end when stdout is not a terminal), 2 one line at the end, 0 nothing.
            sample_weight: (N,) weights: the loss is ``mean(w * per-sample loss)`` and the
                ``weighted_metrics`` are weighted means.
            steps: batches to take from a generator (default: until it ends).
            tta: pycnn's test-time augmentation: None, 'flip' or 'flip_translate'
                (:mod:`pycnn.tta`); loss and metrics of the averaged outputs.

        Returns:
            ``[loss, metric...]`` (compile order) when compiled with metrics, else the loss
            as a float; a dict with ``return_dict=True``.
        """
        self._require_compiled("evaluate")
        tta = tta_module.check(tta, "evaluate()")
        batch_size = 32 if batch_size is None else utils.positive_int(batch_size, "batch_size", "evaluate()")
        verbose = check_verbose(verbose, "evaluate()")
        steps = data_adapter.check_steps(steps, "steps", "evaluate()")
        batches = self._batches(x, y, sample_weight, None, batch_size, False, steps, "evaluate()")
        if steps is not None and isinstance(batches, data_adapter.ArrayBatches):
            batches.steps = min(batches.steps, steps)
        shard = distributed.active() and isinstance(batches, data_adapter.ArrayBatches) and steps is None
        if shard:
            batches = self._local_share(batches)
        if distributed.active() and not distributed.is_primary():
            verbose = 0
        bar = Progbar(batches.steps or 0, verbose=verbose) if verbose else None
        logs = self._evaluate_batches(batches, bar=bar, reduce=shard, tta=tta)
        return self._result(logs, return_dict)

    def _result(self, logs: Dict[str, float], return_dict: bool) -> Union[float, List[float], Dict[str, float]]:
        if return_dict:
            return logs
        if self.metrics_names:
            return [logs["loss"]] + [logs[name] for name in self.metrics_names]
        return logs["loss"]

    def predict(self, x: Any, batch_size: Optional[int] = None, verbose: Union[int, str] = "auto",
                steps: Optional[int] = None, tta: Optional[str] = None) -> Any:
        """Outputs for ``x`` in inference mode, computed ``batch_size`` samples at a time.

        ``verbose`` as in :meth:`evaluate`: a progress bar by default, as in Keras 3.

        ``x`` may also be a generator / iterable of batches: arrays, or tuples whose first
        item is the input (``(x, y)`` batches are accepted and their targets ignored);
        ``steps`` limits how many are taken. ``tta``: pycnn's test-time augmentation (None,
        'flip' or 'flip_translate': the outputs averaged over mirrored and shifted views,
        :mod:`pycnn.tta`).

        Safe to call from several threads on one model: each call keeps its own state.

        Returns:
            float32 array of shape ``(N,) + output_shape[1:]`` (e.g. class probabilities),
            or a list of arrays for a model with several outputs.
        """
        batch_size = 32 if batch_size is None else utils.positive_int(batch_size, "batch_size", "predict()")
        verbose = check_verbose(verbose, "predict()")
        tta = tta_module.check(tta, "predict()")
        steps = data_adapter.check_steps(steps, "steps", "predict()")
        batches: List[List[np.ndarray]] = []
        if data_adapter.is_batch_source(x):
            known = steps if steps is not None else (len(x) if hasattr(x, "__len__") else 0)
            bar = Progbar(known, verbose=verbose) if verbose else None
            for item in data_adapter.items(x, steps):
                xb = item[0] if isinstance(item, tuple) else item
                batches.append(self._step.infer([utils.as_float32(a, "predict()")
                                                 for a in self._prepare_inputs(xb, "predict()")], tta=tta))
                if bar is not None:
                    bar.update(len(batches))
            if bar is not None and batches:
                bar.update(len(batches), finalize=True)
        else:
            xs = self._prepare_inputs(x, "predict()")
            n = xs[0].shape[0]
            total = (n + batch_size - 1) // batch_size
            if steps is not None:
                total = min(total, steps)
            bar = Progbar(total, verbose=verbose) if verbose else None
            for step in range(1, total + 1):
                start = (step - 1) * batch_size
                xb = [utils.as_float32(a[start:start + batch_size], "predict()") for a in xs]
                batches.append(self._step.infer(xb, tta=tta))
                if bar is not None:
                    bar.update(step, finalize=step == total)
        if not batches:
            raise ValueError("predict() received no data: the generator yielded no batches.")
        outs = [b[0] if len(batches) == 1 else np.concatenate(b, axis=0) for b in zip(*batches)]
        return outs[0] if self._single_output else outs

    def _one_batch(self, x: Any, y: Any, sample_weight: Any, class_weight: Any, who: str
                   ) -> Tuple[List[np.ndarray], np.ndarray, Optional[np.ndarray]]:
        xs, y = self._check_xy(x, y, who)
        weights = data_adapter.sample_weights(y, xs[0].shape[0], sample_weight, class_weight, who)
        return [utils.as_float32(a, who) for a in xs], y, weights

    def train_on_batch(self, x: Any, y: Any, sample_weight: Any = None, class_weight: Any = None,
                       return_dict: bool = False) -> Union[float, List[float], Dict[str, float]]:
        """One gradient step on one batch; returns ``[loss, metric...]`` (or the loss)."""
        self._require_compiled("train_on_batch")
        xs, y, weights = self._one_batch(x, y, sample_weight, class_weight, "train_on_batch()")
        with utils.interrupt_guard(), _device_synced(self._step):  # a Ctrl-C during the step is raised after it
            self._step.device_invalidate()
            loss, out, is_logits = self._step.train(xs, y, weights)
        self._metrics.reset()
        self._update_metrics(y, out, is_logits, weights)
        return self._result(self._logs(loss), return_dict)

    def test_on_batch(self, x: Any, y: Any, sample_weight: Any = None,
                      return_dict: bool = False) -> Union[float, List[float], Dict[str, float]]:
        """Loss (and metrics) of one batch, no update."""
        self._require_compiled("test_on_batch")
        xs, y, weights = self._one_batch(x, y, sample_weight, None, "test_on_batch()")
        loss, out, is_logits = self._step.test(xs, y, weights)
        self._metrics.reset()
        self._update_metrics(y, out, is_logits, weights)
        return self._result(self._logs(loss), return_dict)

    def predict_on_batch(self, x: Any) -> Any:
        return self(x, training=False)


def _batch_hooks(cb: callbacks_module.Callback) -> bool:
    """The callback runs code at every batch that may read or write the weights."""
    if isinstance(cb, (callbacks_module.History, callbacks_module.TerminateOnNaN)):
        return False  # they read the logs only
    return any(hook in vars(cb) or getattr(type(cb), hook) is not getattr(callbacks_module.Callback, hook)
               for hook in ("on_batch_begin", "on_batch_end"))


class _device_synced:
    """The device's weights and slots back in the host arrays when the block ends, however it ends."""

    def __init__(self, step: Any) -> None:
        self.step = step

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: Any) -> None:
        self.step.device_sync()
