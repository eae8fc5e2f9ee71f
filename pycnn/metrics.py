"""Metrics, as ``keras.metrics``: functions of ``(y_true, y_pred)`` that return one value per
sample, and stateful objects that average them over an epoch (weighted by ``sample_weight``
when given, as Keras's ``weighted_metrics``).

``compile(metrics=[...])`` takes names, functions or objects::

    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                  metrics=["accuracy", pycnn.metrics.SparseTopKCategoricalAccuracy(k=3), "mae"])

``'accuracy'`` / ``'acc'`` pick binary, sparse categorical or categorical accuracy from the
shapes of the targets and the outputs, as Keras does; the logged name is the name given.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional

import numpy as np

from . import utils

# ----------------------------------------------------------------------------- functions


def _pred(y_pred: Any) -> np.ndarray:
    return np.asarray(y_pred)


def _sparse_labels(y_true: Any, y_pred: np.ndarray) -> np.ndarray:
    """Integer labels with y_pred's shape minus its class axis (a trailing 1 is dropped)."""
    y = np.asarray(y_true)
    if y.ndim == y_pred.ndim and y.shape[-1] == 1:
        y = y[..., 0]
    return y.reshape(y_pred.shape[:-1]).astype(np.int64)


def sparse_categorical_accuracy(y_true: Any, y_pred: Any) -> np.ndarray:
    """1.0 where the largest output is the integer label, else 0.0 (per sample / position)."""
    p = _pred(y_pred)
    return (p.argmax(axis=-1) == _sparse_labels(y_true, p)).astype(np.float32)


def categorical_accuracy(y_true: Any, y_pred: Any) -> np.ndarray:
    """1.0 where the largest output is the one-hot target's class."""
    p = _pred(y_pred)
    return (p.argmax(axis=-1) == np.asarray(y_true).reshape(p.shape).argmax(axis=-1)).astype(np.float32)


def binary_accuracy(y_true: Any, y_pred: Any, threshold: float = 0.5) -> np.ndarray:
    """Mean over the last axis of (y_pred > threshold) == y_true."""
    p = _pred(y_pred)
    t = np.asarray(y_true).reshape(p.shape)
    return np.mean((p > threshold) == (t > 0.5), axis=-1, dtype=np.float32)


def _in_top_k(scores: np.ndarray, target_scores: np.ndarray, k: int) -> np.ndarray:
    # TensorFlow's in_top_k: classes tied with the target's score count in its favour.
    higher = (scores > target_scores[..., None]).sum(axis=-1)
    return (higher < k).astype(np.float32)


def sparse_top_k_categorical_accuracy(y_true: Any, y_pred: Any, k: int = 5) -> np.ndarray:
    """1.0 where the integer label is among the k largest outputs."""
    p = _pred(y_pred)
    labels = _sparse_labels(y_true, p)
    target = np.take_along_axis(p, labels[..., None], axis=-1)[..., 0]
    return _in_top_k(p, target, k)


def top_k_categorical_accuracy(y_true: Any, y_pred: Any, k: int = 5) -> np.ndarray:
    """1.0 where the one-hot target's class is among the k largest outputs."""
    p = _pred(y_pred)
    labels = np.asarray(y_true).reshape(p.shape).argmax(axis=-1)
    target = np.take_along_axis(p, labels[..., None], axis=-1)[..., 0]
    return _in_top_k(p, target, k)


def _targets(y_true: Any, p: np.ndarray) -> np.ndarray:
    """Targets of p's shape; one value per sample (labels of shape (N, 1)) broadcasts over
    the last axis, as Keras's element-wise arithmetic does."""
    y = np.asarray(y_true, dtype=np.float32)
    if y.size == p.size:
        return y.reshape(p.shape)
    if y.size == p.size // p.shape[-1]:
        return y.reshape(p.shape[:-1] + (1,))
    raise ValueError(f"Expected targets with the predictions' shape {p.shape}. Received: y_true.shape={y.shape}.")


def mean_absolute_error(y_true: Any, y_pred: Any) -> np.ndarray:
    """Mean over the last axis of |y_true - y_pred|."""
    p = _pred(y_pred)
    return np.mean(np.abs(_targets(y_true, p) - p), axis=-1)


def mean_squared_error(y_true: Any, y_pred: Any) -> np.ndarray:
    """Mean over the last axis of (y_true - y_pred)^2."""
    p = _pred(y_pred)
    return np.mean(np.square(_targets(y_true, p) - p), axis=-1)


mae = mean_absolute_error
mse = mean_squared_error

#: Metric functions whose result depends only on the order of the outputs along the class
#: axis: the trainer may give them logits instead of softmax probabilities.
_ORDER_ONLY = {sparse_categorical_accuracy, categorical_accuracy, sparse_top_k_categorical_accuracy,
               top_k_categorical_accuracy}

# ----------------------------------------------------------------------------- objects


class Metric:
    """A running value over batches: ``update_state(y_true, y_pred, sample_weight=None)``,
    ``result()``, ``reset_state()``, as ``keras.metrics.Metric``."""

    #: True when the result depends only on the order of the outputs (logits will do).
    order_only: bool = False

    def __init__(self, name: Optional[str] = None, dtype: Any = None) -> None:
        self.name = name or utils.snake_case(type(self).__name__)

    def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> None:
        raise NotImplementedError

    def result(self) -> float:
        raise NotImplementedError

    def reset_state(self) -> None:
        raise NotImplementedError

    def get_config(self) -> Dict[str, Any]:
        return {"name": self.name}

    def __repr__(self) -> str:
        return f"<{type(self).__name__} name={self.name!r}>"


class Mean(Metric):
    """The (weighted) mean of the values given to ``update_state(values, sample_weight)``."""

    def __init__(self, name: str = "mean", dtype: Any = None) -> None:
        super().__init__(name=name)
        self.reset_state()

    def reset_state(self) -> None:
        self.total, self.count = 0.0, 0.0

    def _add(self, values: Any, sample_weight: Any = None) -> None:
        v = np.asarray(values, dtype=np.float64)
        v = v.reshape(v.shape[0], -1) if v.ndim else v.reshape(1, 1)
        if sample_weight is None:
            self.total += float(v.sum())
            self.count += float(v.size)
            return
        w = np.asarray(sample_weight, dtype=np.float64).reshape(-1)
        if w.size == 1:
            w = np.full(v.shape[0], float(w[0]))
        if w.shape[0] != v.shape[0]:
            raise ValueError(f"Metric '{self.name}' expected one sample weight per sample ({v.shape[0]}). "
                             f"Received: {w.shape[0]} weights.")
        self.total += float((v * w[:, None]).sum())
        self.count += float(w.sum()) * v.shape[1]

    def update_state(self, values: Any, sample_weight: Any = None) -> None:  # type: ignore[override]
        self._add(values, sample_weight)

    def result(self) -> float:
        return self.total / self.count if self.count else 0.0


class MeanMetricWrapper(Mean):
    """The weighted mean of ``fn(y_true, y_pred, **kwargs)`` over every sample seen."""

    def __init__(self, fn: Callable[..., Any], name: Optional[str] = None, dtype: Any = None, **kwargs: Any) -> None:
        super().__init__(name=name or getattr(fn, "__name__", "metric"))
        self._fn = fn
        self._fn_kwargs = kwargs
        self.order_only = fn in _ORDER_ONLY

    def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> None:  # type: ignore[override]
        self._add(self._fn(y_true, y_pred, **self._fn_kwargs), sample_weight)

    def get_config(self) -> Dict[str, Any]:
        return {"name": self.name, **self._fn_kwargs}


class SparseCategoricalAccuracy(MeanMetricWrapper):
    def __init__(self, name: str = "sparse_categorical_accuracy", dtype: Any = None) -> None:
        super().__init__(sparse_categorical_accuracy, name=name)


class CategoricalAccuracy(MeanMetricWrapper):
    def __init__(self, name: str = "categorical_accuracy", dtype: Any = None) -> None:
        super().__init__(categorical_accuracy, name=name)


class BinaryAccuracy(MeanMetricWrapper):
    def __init__(self, name: str = "binary_accuracy", dtype: Any = None, threshold: float = 0.5) -> None:
        super().__init__(binary_accuracy, name=name, threshold=float(threshold))


def _k(k: Any, owner: str) -> int:
    return utils.positive_int(k, "k", owner)


class TopKCategoricalAccuracy(MeanMetricWrapper):
    def __init__(self, k: int = 5, name: str = "top_k_categorical_accuracy", dtype: Any = None) -> None:
        super().__init__(top_k_categorical_accuracy, name=name, k=_k(k, "TopKCategoricalAccuracy"))


class SparseTopKCategoricalAccuracy(MeanMetricWrapper):
    def __init__(self, k: int = 5, name: str = "sparse_top_k_categorical_accuracy", dtype: Any = None) -> None:
        super().__init__(sparse_top_k_categorical_accuracy, name=name, k=_k(k, "SparseTopKCategoricalAccuracy"))


class MeanAbsoluteError(MeanMetricWrapper):
    def __init__(self, name: str = "mean_absolute_error", dtype: Any = None) -> None:
        super().__init__(mean_absolute_error, name=name)


class MeanSquaredError(MeanMetricWrapper):
    def __init__(self, name: str = "mean_squared_error", dtype: Any = None) -> None:
        super().__init__(mean_squared_error, name=name)


_BY_NAME: Dict[str, Callable[[], Metric]] = {
    "sparse_categorical_accuracy": SparseCategoricalAccuracy,
    "categorical_accuracy": CategoricalAccuracy,
    "binary_accuracy": BinaryAccuracy,
    "top_k_categorical_accuracy": TopKCategoricalAccuracy,
    "sparse_top_k_categorical_accuracy": SparseTopKCategoricalAccuracy,
    "mean_absolute_error": MeanAbsoluteError, "mae": MeanAbsoluteError,
    "mean_squared_error": MeanSquaredError, "mse": MeanSquaredError,
}
_ACCURACY = ("accuracy", "acc")


def check(identifier: Any, arg: str = "metrics") -> None:
    """Raises ValueError / TypeError for something :func:`get` could never resolve."""
    if isinstance(identifier, Metric) or (callable(identifier) and not isinstance(identifier, type)):
        return
    if isinstance(identifier, str) and (identifier.lower() in _ACCURACY or identifier in _BY_NAME):
        return
    if isinstance(identifier, str):
        raise ValueError(f"compile() does not know the metric {identifier!r} (argument '{arg}'). Expected one of "
                         f"{', '.join(repr(n) for n in _ACCURACY + tuple(_BY_NAME))}, a pycnn.metrics.Metric or a "
                         "function (y_true, y_pred) -> per-sample values.")
    raise TypeError(f"compile() expected metric names, pycnn.metrics.Metric objects or functions in '{arg}'. "
                    f"Received: {identifier!r}.")


def get(identifier: Any, y_true_shape: tuple, y_pred_shape: tuple) -> Metric:
    """A fresh metric object for ``identifier``, resolving 'accuracy' from the shapes of the
    targets and outputs of the first batch (Keras's is_binary_or_sparse_categorical)."""
    check(identifier)
    if isinstance(identifier, Metric):
        return identifier
    if isinstance(identifier, str) and identifier.lower() in _ACCURACY:
        if y_pred_shape[-1] == 1:
            metric: Metric = BinaryAccuracy(name=identifier)
        elif len(y_true_shape) < len(y_pred_shape) or (y_true_shape[-1] == 1 and y_pred_shape[-1] > 1):
            metric = SparseCategoricalAccuracy(name=identifier)
        else:
            metric = CategoricalAccuracy(name=identifier)
        return metric
    if isinstance(identifier, str):
        metric = _BY_NAME[identifier]()
        metric.name = identifier
        return metric
    return MeanMetricWrapper(identifier)


# ----------------------------------------------------------------------------- compile(metrics=...)


def _spec_name(spec: Any) -> str:
    if isinstance(spec, str):
        return spec
    if isinstance(spec, Metric):
        return spec.name
    return getattr(spec, "__name__", type(spec).__name__)


class CompiledMetrics:
    """The metrics of ``compile(metrics=..., weighted_metrics=...)`` as Keras 3 runs them:
    ``metrics`` ignore sample weights, ``weighted_metrics`` use them; names are the strings
    given (or the objects' names), a weighted metric whose name is taken gets ``weighted_``
    in front. 'accuracy' is resolved on the first batch, from its shapes."""

    def __init__(self, metrics: Any = None, weighted_metrics: Any = None) -> None:
        self.specs = self._specs(metrics, "metrics")
        self.weighted_specs = self._specs(weighted_metrics, "weighted_metrics")
        names: List[str] = [_spec_name(s) for s in self.specs]
        self.names = list(names)
        for s in self.weighted_specs:
            name = _spec_name(s)
            self.names.append(name if name not in names else f"weighted_{name}")
            names.append(self.names[-1])
        self._objects: Optional[List[Metric]] = None

    @staticmethod
    def _specs(value: Any, arg: str) -> List[Any]:
        if value is None:
            return []
        items = [value] if isinstance(value, (str, Metric)) or callable(value) else list(value)
        for item in items:
            check(item, arg)
        return items

    def __bool__(self) -> bool:
        return bool(self.names)

    def build(self, y: np.ndarray, out: np.ndarray) -> None:
        if self._objects is None:
            self._objects = [get(s, y.shape, out.shape) for s in self.specs + self.weighted_specs]
            for obj, name in zip(self._objects, self.names):
                obj.name = name

    def reset(self) -> None:
        for obj in self._objects or []:
            obj.reset_state()

    @property
    def needs_probabilities(self) -> bool:
        """Whether some metric needs softmax probabilities rather than logits (before build: assume so)."""
        return self._objects is None or any(not m.order_only for m in self._objects)

    @property
    def counts_only(self) -> bool:
        """True once built when every metric is an unweighted sparse categorical accuracy: the
        native step's hit count then updates them (:meth:`add_hits`), no outputs needed."""
        return bool(self._objects) and not self.weighted_specs and all(
            type(m) is SparseCategoricalAccuracy for m in self._objects)

    def reduce_(self) -> None:
        """Sum the running totals of every Mean-based metric over the MPI ranks."""
        from . import distributed

        means = [m for m in self._objects or [] if isinstance(m, Mean)]
        if not distributed.active():
            return
        sums = distributed.sum_values([v for m in means for v in (m.total, m.count)])
        for i, m in enumerate(means):
            m.total, m.count = sums[2 * i], sums[2 * i + 1]

    def add_hits(self, correct: int, count: int) -> None:
        for m in self._objects or []:
            m.total += correct
            m.count += count

    def update(self, y: np.ndarray, out: np.ndarray, probabilities: Callable[[], np.ndarray],
               sample_weight: Optional[np.ndarray]) -> None:
        """``out`` is the model's output, or its logits when ``probabilities`` computes the
        softmax from them (called at most once, only for metrics that need it)."""
        self.build(y, out)
        probs: Optional[np.ndarray] = None
        weighted_from = len(self.specs)
        for i, metric in enumerate(self._objects or []):
            pred = out
            if not metric.order_only:
                if probs is None:
                    probs = probabilities()
                pred = probs
            metric.update_state(y, pred, sample_weight if i >= weighted_from else None)

    def results(self, prefix: str = "") -> Dict[str, float]:
        return {prefix + m.name: float(m.result()) for m in self._objects or []}

    def config(self) -> Dict[str, Any]:
        """For saved models: what compile() got, by name (objects by class and config)."""
        def one(spec: Any) -> Any:
            if isinstance(spec, str):
                return spec
            if isinstance(spec, Metric) and type(spec).__name__ in _CLASSES:
                return {"class_name": type(spec).__name__, "config": spec.get_config()}
            return getattr(spec, "__name__", None) if getattr(spec, "__name__", None) in _BY_NAME else None
        return {"metrics": [one(s) for s in self.specs], "weighted_metrics": [one(s) for s in self.weighted_specs]}


_CLASSES = {c.__name__: c for c in (SparseCategoricalAccuracy, CategoricalAccuracy, BinaryAccuracy,
                                    TopKCategoricalAccuracy, SparseTopKCategoricalAccuracy, MeanAbsoluteError,
                                    MeanSquaredError)}


def deserialize(spec: Any) -> Any:
    """Inverse of CompiledMetrics.config's entries (None for what could not be saved)."""
    if isinstance(spec, dict) and spec.get("class_name") in _CLASSES:
        return _CLASSES[spec["class_name"]](**spec.get("config", {}))
    return spec
