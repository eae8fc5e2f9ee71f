"""Training callbacks with Keras's hooks and semantics.

``fit`` calls, in order: ``on_train_begin``, then per epoch ``on_epoch_begin(epoch)``,
per batch ``on_batch_begin(batch)`` / ``on_batch_end(batch, logs)`` (logs hold the
running ``loss`` and ``accuracy`` of the epoch so far), ``on_epoch_end(epoch, logs)``
(logs hold the epoch's ``loss``, ``accuracy``, ``val_loss``, ``val_accuracy``), and
finally ``on_train_end``. ``epoch`` and ``batch`` are 0-based. A callback stops training
by setting ``self.model.stop_training = True``; ``fit`` checks it after every batch.
"""
from __future__ import annotations

import math
import os
import sys
import warnings
from typing import Any, Callable, Dict, List, Optional

import numpy as np

Logs = Optional[Dict[str, float]]


class Callback:
    """Base class; override any of the hooks. ``self.model`` is set by ``fit``."""

    def __init__(self) -> None:
        self.model: Any = None
        self.params: Dict[str, Any] = {}

    def set_model(self, model: Any) -> None:
        self.model = model

    def set_params(self, params: Dict[str, Any]) -> None:
        self.params = params

    def on_train_begin(self, logs: Logs = None) -> None:
        pass

    def on_train_end(self, logs: Logs = None) -> None:
        pass

    def on_epoch_begin(self, epoch: int, logs: Logs = None) -> None:
        pass

    def on_epoch_end(self, epoch: int, logs: Logs = None) -> None:
        pass

    def on_batch_begin(self, batch: int, logs: Logs = None) -> None:
        pass

    def on_batch_end(self, batch: int, logs: Logs = None) -> None:
        pass


class History(Callback):
    """Records the epoch logs: ``history.history['loss']`` is the list of epoch losses.

    ``fit`` returns one; ``history.epoch`` lists the (0-based) epochs that ran.
    """

    def __init__(self) -> None:
        super().__init__()
        self.history: Dict[str, List[float]] = {}
        self.epoch: List[int] = []

    def on_train_begin(self, logs: Logs = None) -> None:
        self.epoch = []
        self.history = {}

    def on_epoch_end(self, epoch: int, logs: Logs = None) -> None:
        self.epoch.append(epoch)
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(value)


def _resolve_mode(mode: str, monitor: str, owner: str) -> str:
    if not isinstance(mode, str) or mode.lower() not in ("auto", "min", "max"):
        raise ValueError(f"Invalid value for argument 'mode' of {owner}: expected 'auto', 'min' or 'max'. "
                         f"Received: mode={mode!r}.")
    mode = mode.lower()
    if mode == "auto":
        mode = "max" if ("acc" in monitor or monitor.endswith("auc")) else "min"
    return mode


def _check_monitor(monitor: Any, owner: str) -> str:
    if not isinstance(monitor, str) or not monitor:
        raise ValueError(f"Invalid value for argument 'monitor' of {owner}: expected a metric name such as "
                         f"'val_loss'. Received: monitor={monitor!r}.")
    return monitor


def _monitor_value(logs: Logs, monitor: str, owner: str) -> Optional[float]:
    value = (logs or {}).get(monitor)
    if value is None:
        warnings.warn(f"{owner} is monitoring '{monitor}', which is not in the epoch logs. Available: "
                      f"{', '.join(sorted(logs or {})) or 'none'}. Pass validation_data or validation_split "
                      "to fit() to get 'val_loss'.", RuntimeWarning, stacklevel=3)
    return value


class EarlyStopping(Callback):
    """Stop training when a monitored quantity stops improving (Keras semantics).

    After each epoch the counter ``wait`` grows by one unless the value improved on the
    best so far by more than ``min_delta``; training stops once ``wait >= patience``
    (never after the first epoch).

    Args:
        monitor: a key of the epoch logs ('val_loss', 'val_accuracy', 'loss', ...).
        min_delta: smallest change that counts as an improvement (absolute value used).
        patience: epochs without improvement before stopping.
        verbose: 1 prints a line when stopping.
        mode: 'min', 'max' or 'auto' (max for accuracies, min otherwise).
        baseline: training stops unless the value beats this within ``patience`` epochs.
        restore_best_weights: when stopping, restore the weights of the best epoch.
        start_from_epoch: epochs to wait before starting to monitor.
    """

    def __init__(self, monitor: str = "val_loss", min_delta: float = 0.0, patience: int = 0, verbose: int = 0,
                 mode: str = "auto", baseline: Optional[float] = None, restore_best_weights: bool = False,
                 start_from_epoch: int = 0) -> None:
        super().__init__()
        owner = "EarlyStopping"
        self.monitor = _check_monitor(monitor, owner)
        if isinstance(patience, bool) or not isinstance(patience, (int, np.integer)) or patience < 0:
            raise ValueError(f"Invalid value for argument 'patience' of {owner}: expected a non-negative integer. "
                             f"Received: patience={patience!r}.")
        if isinstance(min_delta, bool) or not isinstance(min_delta, (int, float, np.number)):
            raise ValueError(f"Invalid value for argument 'min_delta' of {owner}: expected a number. "
                             f"Received: min_delta={min_delta!r}.")
        self.patience = int(patience)
        self.min_delta = abs(float(min_delta))
        self.verbose = verbose
        self.mode = _resolve_mode(mode, self.monitor, owner)
        self.baseline = baseline
        self.restore_best_weights = bool(restore_best_weights)
        self.start_from_epoch = int(start_from_epoch)
        self.stopped_epoch = 0
        self.best_epoch = 0
        self.wait = 0
        self.best: float = math.inf
        self.best_weights: Optional[List[np.ndarray]] = None

    def _improved(self, value: float, reference: Optional[float]) -> bool:
        if reference is None:
            return True
        if self.mode == "min":
            return value + self.min_delta < reference
        return value - self.min_delta > reference

    def on_train_begin(self, logs: Logs = None) -> None:
        self.wait = 0
        self.stopped_epoch = 0
        self.best_epoch = 0
        self.best = math.inf if self.mode == "min" else -math.inf
        self.best_weights = None

    def on_epoch_end(self, epoch: int, logs: Logs = None) -> None:
        value = _monitor_value(logs, self.monitor, "EarlyStopping")
        if value is None or epoch < self.start_from_epoch:
            return
        if self.restore_best_weights and self.best_weights is None:
            self.best_weights = self.model.get_weights()
        self.wait += 1
        if self._improved(value, self.best):
            self.best = value
            self.best_epoch = epoch
            if self.restore_best_weights:
                self.best_weights = self.model.get_weights()
            if self.baseline is None or self._improved(value, self.baseline):
                self.wait = 0
            return
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            self.model.stop_training = True
            if self.restore_best_weights and self.best_weights is not None:
                self.model.set_weights(self.best_weights)

    def on_train_end(self, logs: Logs = None) -> None:
        if self.stopped_epoch > 0 and self.verbose > 0:
            print(f"Epoch {self.stopped_epoch + 1}: early stopping")
            if self.restore_best_weights:
                print(f"Restoring model weights from the end of the best epoch: {self.best_epoch + 1}.")


class ModelCheckpoint(Callback):
    """Save the weights (or the whole model) after every epoch, or only when it improves.

    Args:
        filepath: where to save; may contain ``str.format`` fields filled from the epoch
            (1-based) and the logs, e.g. ``'ckpt-{epoch:02d}-{val_loss:.2f}.npz'``.
        monitor: log key compared when ``save_best_only`` (default 'val_loss').
        verbose: 1 prints a line per save.
        save_best_only: save only when ``monitor`` improves on the best so far.
        save_weights_only: False (the default, as in Keras) writes ``model.save``: the
            architecture, weights and optimizer state, which ``load_model`` reads and
            training resumes from; True writes ``model.save_weights`` only.
        mode: 'min', 'max' or 'auto'.
    """

    def __init__(self, filepath: Any, monitor: str = "val_loss", verbose: int = 0, save_best_only: bool = False,
                 save_weights_only: bool = False, mode: str = "auto") -> None:
        super().__init__()
        owner = "ModelCheckpoint"
        if not isinstance(filepath, (str, os.PathLike)):
            raise ValueError(f"Invalid value for argument 'filepath' of {owner}: expected a path. "
                             f"Received: filepath={filepath!r}.")
        self.filepath = os.fspath(filepath)
        self.monitor = _check_monitor(monitor, owner)
        self.verbose = verbose
        self.save_best_only = bool(save_best_only)
        self.save_weights_only = bool(save_weights_only)
        self.mode = _resolve_mode(mode, self.monitor, owner)
        self.best = math.inf if self.mode == "min" else -math.inf

    def on_train_begin(self, logs: Logs = None) -> None:
        self.best = math.inf if self.mode == "min" else -math.inf

    def on_epoch_end(self, epoch: int, logs: Logs = None) -> None:
        logs = logs or {}
        path = self.filepath.format(epoch=epoch + 1, **logs)
        if self.save_best_only:
            value = _monitor_value(logs, self.monitor, "ModelCheckpoint")
            if value is None:
                return
            better = value < self.best if self.mode == "min" else value > self.best
            if not better:
                if self.verbose > 0:
                    print(f"Epoch {epoch + 1}: {self.monitor} did not improve from {self.best:.5f}")
                return
            if self.verbose > 0:
                print(f"Epoch {epoch + 1}: {self.monitor} improved from {self.best:.5f} to {value:.5f}, "
                      f"saving model to {path}")
            self.best = value
        elif self.verbose > 0:
            print(f"Epoch {epoch + 1}: saving model to {path}")
        if self.save_weights_only:
            self.model.save_weights(path)
        else:
            self.model.save(path)


class TerminateOnNaN(Callback):
    """Stop training as soon as a batch loss is NaN or infinite."""

    def on_batch_end(self, batch: int, logs: Logs = None) -> None:
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(loss):
            print(f"Batch {batch}: Invalid loss, terminating training", file=sys.stdout)
            self.model.stop_training = True


class LambdaCallback(Callback):
    """A callback from plain functions, e.g. ``LambdaCallback(on_epoch_end=lambda epoch, logs: ...)``."""

    def __init__(self, on_epoch_begin: Optional[Callable] = None, on_epoch_end: Optional[Callable] = None,
                 on_batch_begin: Optional[Callable] = None, on_batch_end: Optional[Callable] = None,
                 on_train_begin: Optional[Callable] = None, on_train_end: Optional[Callable] = None) -> None:
        super().__init__()
        for hook, fn in (("on_epoch_begin", on_epoch_begin), ("on_epoch_end", on_epoch_end),
                         ("on_batch_begin", on_batch_begin), ("on_batch_end", on_batch_end),
                         ("on_train_begin", on_train_begin), ("on_train_end", on_train_end)):
            if fn is not None:
                setattr(self, hook, fn)


class LearningRateScheduler(Callback):
    """Set the optimizer's learning rate at the start of every epoch to
    ``schedule(epoch, lr)`` (or ``schedule(epoch)``), as ``keras.callbacks.LearningRateScheduler``;
    the rate is also written to the epoch logs as ``learning_rate``."""

    def __init__(self, schedule: Callable, verbose: int = 0) -> None:
        super().__init__()
        if not callable(schedule):
            raise TypeError(f"LearningRateScheduler expected a callable schedule(epoch, lr). Received: {schedule!r}.")
        self.schedule = schedule
        self.verbose = verbose

    def on_epoch_begin(self, epoch: int, logs: Logs = None) -> None:
        optimizer = self.model.optimizer
        lr = float(optimizer.learning_rate)
        try:
            new_lr = self.schedule(epoch, lr)
        except TypeError:  # a schedule of the epoch only, as Keras allows
            new_lr = self.schedule(epoch)
        if isinstance(new_lr, bool) or not isinstance(new_lr, (int, float, np.floating, np.integer)) \
                or not math.isfinite(float(new_lr)):
            raise ValueError(f"The output of the 'schedule' function should be a finite float. Got: {new_lr!r}")
        optimizer.learning_rate = float(new_lr)
        if self.verbose > 0:
            print(f"\nEpoch {epoch + 1}: LearningRateScheduler setting learning rate to {float(new_lr)}.")

    def on_epoch_end(self, epoch: int, logs: Logs = None) -> None:
        if logs is not None:
            logs["learning_rate"] = float(self.model.optimizer.learning_rate)


class ReduceLROnPlateau(Callback):
    """Multiply the learning rate by ``factor`` when ``monitor`` has not improved by more
    than ``min_delta`` for ``patience`` epochs, then wait ``cooldown`` epochs; never below
    ``min_lr``. Keras's arguments, defaults and rule (``keras.callbacks.ReduceLROnPlateau``)."""

    def __init__(self, monitor: str = "val_loss", factor: float = 0.1, patience: int = 10, verbose: int = 0,
                 mode: str = "auto", min_delta: float = 1e-4, cooldown: int = 0, min_lr: float = 0.0) -> None:
        super().__init__()
        owner = "ReduceLROnPlateau"
        self.monitor = _check_monitor(monitor, owner)
        if not isinstance(factor, (int, float)) or isinstance(factor, bool) or not 0 <= factor < 1.0:
            raise ValueError(f"ReduceLROnPlateau does not support a factor >= 1.0 (or < 0). Received: factor={factor!r}.")
        self.factor = float(factor)
        self.patience, self.cooldown = int(patience), int(cooldown)
        self.min_delta, self.min_lr = abs(float(min_delta)), float(min_lr)
        self.verbose = verbose
        self.mode = _resolve_mode(mode, self.monitor, owner)
        self._reset()

    def _reset(self) -> None:
        self.best = math.inf if self.mode == "min" else -math.inf
        self.wait = 0
        self.cooldown_counter = 0

    def _improved(self, current: float) -> bool:
        if self.mode == "min":
            return current < self.best - self.min_delta
        return current > self.best + self.min_delta

    def on_train_begin(self, logs: Logs = None) -> None:
        self._reset()

    def on_epoch_end(self, epoch: int, logs: Logs = None) -> None:
        optimizer = self.model.optimizer
        if logs is not None:
            logs["learning_rate"] = float(optimizer.learning_rate)
        current = _monitor_value(logs, self.monitor, "ReduceLROnPlateau")
        if current is None:
            return
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.wait = 0
        if self._improved(current):
            self.best = current
            self.wait = 0
        elif self.cooldown_counter <= 0:
            self.wait += 1
            if self.wait >= self.patience:
                old_lr = float(optimizer.learning_rate)
                if old_lr > np.float32(self.min_lr):
                    new_lr = max(old_lr * self.factor, self.min_lr)
                    optimizer.learning_rate = new_lr
                    if self.verbose > 0:
                        print(f"\nEpoch {epoch + 1}: ReduceLROnPlateau reducing learning rate to {new_lr}.")
                    self.cooldown_counter = self.cooldown
                    self.wait = 0


class CSVLogger(Callback):
    """Write each epoch's logs as a CSV row, as ``keras.callbacks.CSVLogger``: a header
    ``epoch,<keys in sorted order>`` then one row per epoch (``epoch`` 0-based); with
    ``append=True`` an existing file is continued (resumed runs) and no second header is
    written. Each row is flushed, so a killed run keeps the epochs it finished."""

    def __init__(self, filename: Any, separator: str = ",", append: bool = False) -> None:
        super().__init__()
        self.filename = os.fspath(filename)
        self.sep = separator
        self.append = bool(append)
        self.keys: Optional[List[str]] = None
        self._file = None

    def on_train_begin(self, logs: Logs = None) -> None:
        from . import distributed

        if not distributed.is_primary():
            return  # under MPI only rank 0 writes
        has_rows = self.append and os.path.exists(self.filename) and os.path.getsize(self.filename) > 0
        self._file = open(self.filename, "a" if self.append else "w", newline="")
        self.keys = None
        if has_rows:
            with open(self.filename, newline="") as f:
                header = f.readline().rstrip("\r\n").split(self.sep)
            self.keys = header[1:]

    def on_epoch_end(self, epoch: int, logs: Logs = None) -> None:
        if self._file is None:
            return
        logs = dict(logs or {})
        if self.keys is None:
            self.keys = sorted(logs)
            self._file.write(self.sep.join(["epoch"] + self.keys) + "\n")
        row = [str(epoch)] + [_csv_value(logs.get(k, "NA")) for k in self.keys]
        self._file.write(self.sep.join(row) + "\n")
        self._file.flush()

    def on_train_end(self, logs: Logs = None) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def _csv_value(value: Any) -> str:
    if isinstance(value, (float, np.floating)):
        return repr(float(value))
    return str(value)


class Lookahead(Callback):
    """Lookahead weight averaging (Zhang et al. 2019; the form airbench uses): from epoch
    ``start_epoch`` on, every ``sync_period`` training steps the "slow" copy of the weights
    moves toward the model's, ``slow += alpha * (weights - slow)``, and the model's weights
    take the slow values; at the end of every epoch after that, too (``alpha = 0``: the model
    ends each epoch on the slow weights). The first sync only takes the copy.

    Args:
        sync_period: steps between syncs.
        slow_step_size: ``alpha`` in [0, 1], or a callable ``f(step) -> alpha`` of the global
            step count (airbench: ``1 - 0.95**5 * (step / total_steps)**3``).
        start_epoch: the first epoch (0-based) that syncs.
        include_non_trainable: average the layers' own statistics too (BatchNormalization's
            moving mean and variance), as airbench's state-dict average does.
    """

    def __init__(self, sync_period: int = 5, slow_step_size: Any = 0.5, start_epoch: int = 0,
                 include_non_trainable: bool = True) -> None:
        super().__init__()
        if isinstance(sync_period, bool) or not isinstance(sync_period, int) or sync_period < 1:
            raise ValueError(f"Invalid value for argument 'sync_period' of Lookahead: expected a positive integer. "
                             f"Received: sync_period={sync_period!r}.")
        if not callable(slow_step_size) and not (isinstance(slow_step_size, (int, float))
                                                 and not isinstance(slow_step_size, bool)
                                                 and 0.0 <= slow_step_size <= 1.0):
            raise ValueError(f"Invalid value for argument 'slow_step_size' of Lookahead: expected a number in "
                             f"[0, 1] or a callable f(step). Received: slow_step_size={slow_step_size!r}.")
        if isinstance(start_epoch, bool) or not isinstance(start_epoch, int) or start_epoch < 0:
            raise ValueError(f"Invalid value for argument 'start_epoch' of Lookahead: expected an integer >= 0. "
                             f"Received: start_epoch={start_epoch!r}.")
        self.sync_period, self.slow_step_size, self.start_epoch = sync_period, slow_step_size, start_epoch
        self.include_non_trainable = bool(include_non_trainable)
        self._epoch = 0
        self._steps = 0
        self._slow: Optional[List[np.ndarray]] = None

    def _weights(self) -> List[np.ndarray]:
        if self.include_non_trainable:
            return self.model.weights
        return self.model.trainable_weights

    def _alpha(self) -> float:
        alpha = self.slow_step_size(self._steps) if callable(self.slow_step_size) else self.slow_step_size
        alpha = float(alpha)
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"Lookahead's slow_step_size({self._steps}) must be in [0, 1]. Received: {alpha!r}.")
        return alpha

    def _sync(self, alpha: float) -> None:
        weights = self._weights()
        if self._slow is None or len(self._slow) != len(weights):
            self._slow = [w.copy() for w in weights]
            return
        a = np.float32(alpha)
        for slow, w in zip(self._slow, weights):
            slow += a * (w - slow)
            w[...] = slow

    def on_epoch_begin(self, epoch: int, logs: Logs = None) -> None:
        self._epoch = epoch

    def on_batch_end(self, batch: int, logs: Logs = None) -> None:
        self._steps += 1
        if self._epoch >= self.start_epoch and self._steps % self.sync_period == 0:
            self._sync(self._alpha())

    def on_epoch_end(self, epoch: int, logs: Logs = None) -> None:
        if self._slow is not None:
            self._sync(0.0)
