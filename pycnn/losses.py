"""Loss functions with Keras's names, defaults and reductions.

Each loss is a callable ``loss(y_true, y_pred) -> float`` (the mean over samples and any
spatial positions) with ``loss.gradient(y_true, y_pred)`` giving ``dloss / dy_pred`` as
float32 in ``y_pred``'s shape. ``from_logits=False`` (the default, as in Keras) means
``y_pred`` holds probabilities; they are clipped to ``[1e-7, 1 - 1e-7]`` like Keras.

Training with a cross-entropy loss on a model whose last layer has a softmax never goes
through the softmax Jacobian: the model asks the last layer for its logits and calls
:meth:`CategoricalCrossentropy.logits_value_and_gradient`, which uses the fused
softmax-cross-entropy kernel (``dlogits = (softmax(z) - onehot(y)) / N``).

Labels: ``SparseCategoricalCrossentropy`` takes integer class indices, one per row of
``y_pred`` (shape ``(N,)``, ``(N, 1)`` as CIFAR-10 ships them, or ``y_pred.shape[:-1]``
for spatial outputs); integer-valued floats are accepted. ``CategoricalCrossentropy``
takes one-hot (or soft) targets of ``y_pred``'s shape (see
:func:`pycnn.utils.to_categorical`). ``MeanSquaredError`` takes targets of ``y_pred``'s
size.
"""
from __future__ import annotations

import math
from typing import Any, Dict, List, Tuple, Union

import numpy as np

from . import ops, utils

EPSILON = 1e-7


class Loss:
    """Base class. Subclasses implement ``__call__`` and ``gradient``."""

    name = "loss"

    def __call__(self, y_true: Any, y_pred: Any) -> float:
        raise NotImplementedError

    def gradient(self, y_true: Any, y_pred: Any) -> np.ndarray:
        raise NotImplementedError

    def sample_losses(self, y_true: Any, y_pred: Any, logits: bool = False) -> np.ndarray:
        """float64 (N,): each sample's loss (its mean over positions), so that the loss is
        their mean; with per-sample weights w it is ``mean(w * sample_losses)``, Keras's
        sum-over-batch-size weighting. ``logits``: y_pred holds the softmax's input."""
        raise NotImplementedError(f"{type(self).__name__} does not support sample weights: it has no "
                                  "sample_losses(y_true, y_pred, logits) method.")

    def get_config(self) -> Dict[str, Any]:
        return {}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


def _pred(y_pred: Any, who: str) -> np.ndarray:
    p = utils.as_float32(y_pred, who, "y_pred")
    if p.ndim < 1 or p.shape[-1] < 1 or p.size == 0:
        raise ValueError(f"{who} expected predictions of shape (N, ..., classes). Received: y_pred.shape={p.shape}.")
    return p


def sparse_labels(y_true: Any, y_pred_shape: Tuple[int, ...], who: str) -> np.ndarray:
    """Check class indices against predictions of ``y_pred_shape``; returns int64 of shape (rows,).

    Raises:
        TypeError: for a non-numeric dtype.
        ValueError: wrong number of labels, non-integral values, or labels outside [0, classes).
    """
    y = utils.check_real_array(y_true, who, "y_true")
    classes = int(y_pred_shape[-1])
    rows = math.prod(int(d) for d in y_pred_shape[:-1])
    if y.size != rows or (y.ndim >= 1 and len(y_pred_shape) >= 2 and y.shape[0] != y_pred_shape[0]):
        raise ValueError(
            f"{who} expected one integer label per prediction row: labels of shape {tuple(y_pred_shape[:-1])} "
            f"(or ({y_pred_shape[0]}, 1)) for predictions of shape {tuple(y_pred_shape)}. "
            f"Received: y_true.shape={y.shape}.")
    flat = y.reshape(-1)
    if flat.dtype.kind == "f":
        if not np.all(np.isfinite(flat)) or not np.array_equal(flat, np.floor(flat)):
            bad = flat[~(np.isfinite(flat) & (flat == np.floor(flat)))][0]
            raise ValueError(f"{who} expected integer class labels. Received: a non-integral label {float(bad)!r}. "
                             "Use integer class indices, or CategoricalCrossentropy for one-hot targets.")
    elif flat.dtype.kind == "b":
        flat = flat.astype(np.int64)
    lo, hi = flat.min(), flat.max()
    if lo < 0 or hi >= classes:
        raise ValueError(f"{who} expected class labels in [0, {classes}) for predictions with {classes} classes. "
                         f"Received: labels with min={lo:g}, max={hi:g}.")
    return flat.astype(np.int64, copy=False)


def _dense_targets(y_true: Any, y_pred: np.ndarray, who: str) -> np.ndarray:
    y = utils.as_float32(y_true, who, "y_true")
    if y.shape != y_pred.shape:
        if y.size != y_pred.size or (y.ndim >= 1 and y_pred.ndim >= 1 and y.shape[0] != y_pred.shape[0]):
            raise ValueError(f"{who} expected y_true with the predictions' shape {y_pred.shape}. "
                             f"Received: y_true.shape={y.shape}.")
        y = y.reshape(y_pred.shape)
    return y


def _probability_ce(targets: np.ndarray, p: np.ndarray) -> Tuple[float, np.ndarray]:
    """Keras's cross-entropy on probabilities: normalise rows, clip, -sum(y log q), mean.

    ``targets`` and ``p`` are (rows, K). Returns (loss, dloss/dp).
    """
    rows = p.shape[0]
    total = p.sum(axis=1, keepdims=True, dtype=np.float64)
    q = p / total
    inside = (q > EPSILON) & (q < 1.0 - EPSILON)
    qc = np.clip(q, EPSILON, 1.0 - EPSILON)
    loss = float(-(targets * np.log(qc)).sum(dtype=np.float64) / rows)
    # dL/dq = -y / q inside the clip range (0 outside); q = p / sum(p) gives
    # dL/dp_j = (dL/dq_j - sum_k dL/dq_k q_k) / sum(p).
    dq = np.where(inside, -targets / qc, 0.0) / rows
    dp = (dq - (dq * q).sum(axis=1, keepdims=True)) / total
    return loss, dp.astype(np.float32)


#: The loss component the training step fuses with a final softmax (csrc/softmax.cpp).
_FUSED = "sparse_softmax_crossentropy"


def _smoothing(value: Any, owner: str) -> float:
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))
    if not ok or not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"Invalid value for argument 'label_smoothing' of {owner}: expected a number in [0, 1]. "
                         f"Received: label_smoothing={value!r}.")
    return float(value)


def _smooth(y: np.ndarray, smoothing: float) -> np.ndarray:
    """Keras's label smoothing of (rows, K) targets: ``y (1 - s) + s / K``."""
    if smoothing == 0.0:
        return y
    return y * (1.0 - smoothing) + smoothing / y.shape[-1]


def _log_softmax(z: np.ndarray) -> np.ndarray:
    shifted = z - z.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


class _CrossEntropy(Loss):
    """The arguments both cross-entropies share."""

    def __init__(self, from_logits: bool = False, label_smoothing: float = 0.0) -> None:
        self.from_logits = _flag(from_logits, "from_logits", type(self).__name__)
        self.label_smoothing = _smoothing(label_smoothing, type(self).__name__)

    def get_config(self) -> Dict[str, Any]:
        config: Dict[str, Any] = {"from_logits": self.from_logits}
        if self.label_smoothing:
            config["label_smoothing"] = self.label_smoothing
        return config


class SparseCategoricalCrossentropy(_CrossEntropy):
    """Cross-entropy between integer labels and predicted class probabilities.

    ``loss = mean_r -log p[r, y_r]`` over every row r of ``y_pred.reshape(-1, classes)``.

    Args:
        from_logits: if True, ``y_pred`` holds logits and the softmax is applied inside
            (the fused kernel); otherwise probabilities, clipped to [1e-7, 1 - 1e-7].
        label_smoothing: in [0, 1]; the one-hot targets become ``onehot (1 - s) + s / K``
            (Keras's formula for CategoricalCrossentropy; Keras's sparse loss has no such
            argument, PyTorch's ``CrossEntropyLoss(label_smoothing=s)`` is the same rule).
    """

    name = "sparse_categorical_crossentropy"


    @property
    def native_loss(self) -> Tuple[str, List[float]]:
        """The registered loss component (csrc/softmax.cpp) and its hyper-parameters."""
        return (_FUSED, [self.label_smoothing])

    def _who(self) -> str:
        return type(self).__name__

    def _labels(self, y_true: Any, p: np.ndarray) -> np.ndarray:
        return sparse_labels(y_true, p.shape, self._who())

    def __call__(self, y_true: Any, y_pred: Any) -> float:
        p = _pred(y_pred, self._who())
        labels = self._labels(y_true, p)
        rows = p.reshape(-1, p.shape[-1])
        if self.from_logits:
            return ops.loss(self.native_loss, rows, labels, need_grad=False)[0]
        return _probability_ce(_smooth(_onehot(labels, rows.shape[1]), self.label_smoothing), rows)[0]

    def gradient(self, y_true: Any, y_pred: Any) -> np.ndarray:
        p = _pred(y_pred, self._who())
        labels = self._labels(y_true, p)
        rows = p.reshape(-1, p.shape[-1])
        if self.from_logits:
            return self.logits_value_and_gradient(y_true, p)[1]
        return _probability_ce(_smooth(_onehot(labels, rows.shape[1]), self.label_smoothing), rows)[1].reshape(p.shape)

    def sample_losses(self, y_true: Any, y_pred: Any, logits: bool = False) -> np.ndarray:
        p = _pred(y_pred, self._who())
        labels = self._labels(y_true, p)
        rows = p.reshape(-1, p.shape[-1]).astype(np.float64)
        targets = _smooth(_onehot(labels, rows.shape[1]).astype(np.float64), self.label_smoothing)
        if logits or self.from_logits:
            per_row = -(targets * _log_softmax(rows)).sum(axis=1)
        else:
            q = np.clip(rows / rows.sum(axis=1, keepdims=True), EPSILON, 1.0 - EPSILON)
            per_row = -(targets * np.log(q)).sum(axis=1)
        return per_row.reshape(p.shape[0], -1).mean(axis=1)

    def logits_value_and_gradient(self, y_true: Any, logits: Any) -> Tuple[float, np.ndarray]:
        """Fused softmax + cross-entropy on logits: ``(loss, (softmax(z) - targets) / rows)``."""
        z = _pred(logits, self._who())
        labels = self._labels(y_true, z)
        rows = z.reshape(-1, z.shape[-1])
        loss, _, dz = ops.loss(self.native_loss, rows, labels)
        return loss, dz.reshape(z.shape)


class CategoricalCrossentropy(_CrossEntropy):
    """Cross-entropy between one-hot (or soft) targets and predicted class probabilities.

    ``loss = mean_r -sum_k y[r, k] log p[r, k]``; targets have ``y_pred``'s shape.

    Args:
        from_logits: if True, ``y_pred`` holds logits; otherwise probabilities, clipped
            to [1e-7, 1 - 1e-7].
        label_smoothing: in [0, 1]; targets become ``y (1 - s) + s / K`` (Keras).
    """

    name = "categorical_crossentropy"


    def _targets(self, y_true: Any, p: np.ndarray) -> np.ndarray:
        """The (rows, K) targets, smoothed."""
        y = _dense_targets(y_true, p, type(self).__name__).reshape(-1, p.shape[-1])
        return _smooth(y, self.label_smoothing)

    def __call__(self, y_true: Any, y_pred: Any) -> float:
        if self.from_logits:
            return self.logits_value_and_gradient(y_true, y_pred)[0]
        p = _pred(y_pred, type(self).__name__)
        return _probability_ce(self._targets(y_true, p), p.reshape(-1, p.shape[-1]))[0]

    def gradient(self, y_true: Any, y_pred: Any) -> np.ndarray:
        if self.from_logits:
            return self.logits_value_and_gradient(y_true, y_pred)[1]
        p = _pred(y_pred, type(self).__name__)
        return _probability_ce(self._targets(y_true, p), p.reshape(-1, p.shape[-1]))[1].reshape(p.shape)

    def sample_losses(self, y_true: Any, y_pred: Any, logits: bool = False) -> np.ndarray:
        p = _pred(y_pred, type(self).__name__)
        y = self._targets(y_true, p).astype(np.float64)
        rows = p.reshape(-1, p.shape[-1]).astype(np.float64)
        if logits or self.from_logits:
            per_row = -(y * _log_softmax(rows)).sum(axis=1)
        else:
            q = np.clip(rows / rows.sum(axis=1, keepdims=True), EPSILON, 1.0 - EPSILON)
            per_row = -(y * np.log(q)).sum(axis=1)
        return per_row.reshape(p.shape[0], -1).mean(axis=1)

    def logits_value_and_gradient(self, y_true: Any, logits: Any) -> Tuple[float, np.ndarray]:
        """Fused softmax + cross-entropy on logits.

        One-hot targets go through the fused kernel; soft targets use the same formulas
        in NumPy: ``loss = mean_r -sum_k y log_softmax(z)``, ``dz = (p * sum_k y - y) / rows``.
        """
        z = _pred(logits, type(self).__name__)
        y = _dense_targets(y_true, z, type(self).__name__)
        k = z.shape[-1]
        z2, y2 = z.reshape(-1, k), y.reshape(-1, k)
        if np.all((y2 == 0) | (y2 == 1)) and np.all(y2.sum(axis=1) == 1):
            labels = y2.argmax(axis=1).astype(np.int64)
            loss, _, dz = ops.loss((_FUSED, [self.label_smoothing]), z2, labels)
            return loss, dz.reshape(z.shape)
        y2 = _smooth(y2, self.label_smoothing)
        rows = z2.shape[0]
        loss = float(-(y2 * _log_softmax(z2)).sum(dtype=np.float64) / rows)
        probs = ops.run("activation", [z2], attrs={"activation": "softmax"})
        dz = (probs * y2.sum(axis=1, keepdims=True) - y2) / np.float32(rows)
        return loss, dz.astype(np.float32).reshape(z.shape)


class MeanSquaredError(Loss):
    """``mean((y_pred - y_true) ** 2)`` over every element; gradient ``2 (y_pred - y_true) / size``."""

    name = "mean_squared_error"

    def __call__(self, y_true: Any, y_pred: Any) -> float:
        p = _pred(y_pred, type(self).__name__)
        diff = p - _dense_targets(y_true, p, type(self).__name__)
        return float(np.mean(np.square(diff, dtype=np.float64)))

    def gradient(self, y_true: Any, y_pred: Any) -> np.ndarray:
        p = _pred(y_pred, type(self).__name__)
        diff = p - _dense_targets(y_true, p, type(self).__name__)
        return (diff * np.float32(2.0 / p.size)).astype(np.float32, copy=False)

    def sample_losses(self, y_true: Any, y_pred: Any, logits: bool = False) -> np.ndarray:
        p = _pred(y_pred, type(self).__name__)
        diff = (p - _dense_targets(y_true, p, type(self).__name__)).astype(np.float64)
        return np.square(diff).reshape(p.shape[0], -1).mean(axis=1)


def _onehot(labels: np.ndarray, classes: int) -> np.ndarray:
    out = np.zeros((labels.shape[0], classes), dtype=np.float32)
    out[np.arange(labels.shape[0]), labels] = 1.0
    return out


def _flag(value: Any, arg: str, owner: str) -> bool:
    return utils.boolean(value, arg, owner)


_ALIASES = {
    "sparse_categorical_crossentropy": SparseCategoricalCrossentropy,
    "categorical_crossentropy": CategoricalCrossentropy,
    "mse": MeanSquaredError,
    "mean_squared_error": MeanSquaredError,
}


def get(identifier: Union[str, Loss]) -> Loss:
    """A loss object from a name ('sparse_categorical_crossentropy', 'categorical_crossentropy',
    'mse' / 'mean_squared_error') or a :class:`Loss` instance (returned as is).

    Raises:
        ValueError: for an unknown name.
        TypeError: for an object without ``__call__`` and ``gradient``.
    """
    if isinstance(identifier, str):
        key = identifier.lower()
        if key in _ALIASES:
            return _ALIASES[key]()
        raise ValueError(f"Unknown loss. Expected one of {', '.join(repr(k) for k in _ALIASES)} or a "
                         f"pycnn.losses.Loss instance. Received: loss={identifier!r}.")
    if isinstance(identifier, type) and issubclass(identifier, Loss):
        return identifier()
    if callable(identifier) and callable(getattr(identifier, "gradient", None)):
        return identifier
    raise TypeError(f"A loss must be a name or an object with __call__(y_true, y_pred) and "
                    f"gradient(y_true, y_pred). Received: loss={identifier!r}.")
