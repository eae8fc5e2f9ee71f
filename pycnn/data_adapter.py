"""Where fit / evaluate / predict get their batches: arrays in memory, or any iterable of
batches (a generator, a list of batches, an object with ``__len__`` and ``__getitem__``
as Keras's ``PyDataset``) for data that does not fit in memory.

A batch is ``(x, y)`` or ``(x, y, sample_weight)``; ``x`` is an array or a list of arrays
(one per model input). Per-sample weights come from ``sample_weight`` or, as in Keras,
from ``class_weight``: ``{class index: weight}``, the class of a sample being its integer
label or the argmax of its one-hot target, missing classes weighing 1.
"""
from __future__ import annotations

import warnings
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import numpy as np

from . import utils

#: (inputs, targets, per-sample weights or None) of one batch, unconverted.
Batch = Tuple[List[np.ndarray], np.ndarray, Optional[np.ndarray]]


def is_batch_source(x: Any) -> bool:
    """True for the iterables fit() takes batch by batch (not arrays or lists of arrays)."""
    if isinstance(x, (list, tuple)) and x and all(isinstance(item, tuple) for item in x):
        return True  # a list of (x, y[, sample_weight]) batches
    if x is None or isinstance(x, (np.ndarray, list, tuple, str, bytes, dict)) or np.isscalar(x):
        return False
    if hasattr(x, "__array__") or hasattr(x, "__array_interface__"):
        return False
    return hasattr(x, "__iter__") or hasattr(x, "__next__") or (hasattr(x, "__getitem__") and hasattr(x, "__len__"))


def sample_weights(y: np.ndarray, n: int, sample_weight: Any, class_weight: Any, who: str) -> Optional[np.ndarray]:
    """float32 (n,) weights from ``sample_weight`` or ``class_weight`` (not both), or None.

    Raises:
        ValueError: both given, a wrong shape, negative or non-finite weights, a class_weight
            that is not a dict of class index -> number.
    """
    if sample_weight is not None and class_weight is not None:
        raise ValueError(f"{who} accepts sample_weight or class_weight, not both (as Keras).")
    if class_weight is not None:
        return class_weights_to_sample_weights(y, class_weight, who)
    if sample_weight is None:
        return None
    w = utils.check_real_array(sample_weight, who, "sample_weight")
    if w.ndim == 2 and w.shape[1] == 1:
        w = w[:, 0]
    if w.ndim != 1 or w.shape[0] != n:
        raise ValueError(f"{who} expected sample_weight of shape ({n},), one weight per sample. "
                         f"Received: sample_weight.shape={w.shape}.")
    return _checked(w.astype(np.float32), who, "sample_weight")


def _checked(w: np.ndarray, who: str, arg: str) -> np.ndarray:
    bad = ~np.isfinite(w) | (w < 0)
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(f"{who} expected finite {arg} >= 0. Received: {arg}[{i}]={w[i]!r}.")
    return np.ascontiguousarray(w)


def class_weights_to_sample_weights(y: Any, class_weight: Any, who: str) -> np.ndarray:
    """Keras's rule: the weight of each sample's class (integer label, or argmax of a one-hot
    row; a trailing axis of 1 is dropped), 1.0 for classes the dict leaves out."""
    if not isinstance(class_weight, dict) or not all(
            isinstance(k, (int, np.integer)) and not isinstance(k, bool) for k in class_weight):
        raise ValueError(f"{who} expected class_weight to be a dict of integer class index -> weight, e.g. "
                         f"{{0: 1.0, 1: 5.0}}. Received: class_weight={class_weight!r}.")
    y = np.asarray(y)
    if y.ndim > 1:
        y = np.argmax(y, axis=-1) if y.shape[-1] != 1 else y[..., 0]
    if y.ndim > 1:
        raise ValueError(f"{who} can weigh classes for one label per sample only. Received targets of shape "
                         f"{np.shape(y)}; pass sample_weight instead.")
    labels = np.round(y).astype(np.int64)
    table = np.ones(max(int(labels.max(initial=0)), max(class_weight, default=0)) + 1, dtype=np.float32)
    for k, v in class_weight.items():
        if k >= 0:
            table[int(k)] = v
    w = table[np.clip(labels, 0, None)]
    return _checked(w, who, "class_weight")


class ArrayBatches:
    """Batches of arrays held in memory, reshuffled each epoch (seeded by set_random_seed)."""

    def __init__(self, xs: List[np.ndarray], y: np.ndarray, weights: Optional[np.ndarray], batch_size: int,
                 shuffle: bool, shard: bool = False) -> None:
        self.xs, self.y, self.weights = xs, y, weights
        self.batch_size, self.shuffle = batch_size, shuffle
        self.samples = xs[0].shape[0]
        self.steps: Optional[int] = (self.samples + batch_size - 1) // batch_size
        # Distributed training (pycnn/distributed.py): every rank walks the same global batches
        # and takes its share of each; global_count is the size of the last global batch.
        self.shard = shard
        self.global_count = 0

    def epoch(self) -> Iterator[Batch]:
        from . import distributed

        n = self.samples
        if self.shard:
            order = distributed.epoch_order(n, self.shuffle)
        else:
            order = utils.get_rng().permutation(n) if self.shuffle else None
        for start in range(0, min(n, self.steps * self.batch_size), self.batch_size):
            stop = min(start + self.batch_size, n)
            sel = slice(start, stop) if order is None else order[start:stop]
            self.global_count = stop - start
            if self.shard:
                part = distributed.share(stop - start)
                sel = slice(start + part.start, start + part.stop) if order is None else sel[part]
            yield [a[sel] for a in self.xs], self.y[sel], None if self.weights is None else self.weights[sel]


class IterableBatches:
    """Batches drawn from an iterable, checked one by one with ``check(x, y, who)``.

    With ``steps`` each epoch takes that many batches from one iterator that lives across
    epochs (a generator goes on where it stopped); without, each epoch iterates the source
    afresh until it ends (a list of batches, a PyDataset-like object). An object with
    ``__len__`` and ``__getitem__`` is indexed ``0 .. len - 1`` and its ``on_epoch_end()``
    is called after each epoch, as Keras does.
    """

    def __init__(self, source: Any, steps: Optional[int], check: Callable[..., Tuple[List[np.ndarray], np.ndarray]],
                 class_weight: Any, who: str) -> None:
        self.source, self.check, self.class_weight, self.who = source, check, class_weight, who
        self.indexed = hasattr(source, "__getitem__") and hasattr(source, "__len__") and not hasattr(source, "__next__")
        self.steps = steps if steps is not None else (len(source) if self.indexed else None)
        self.samples: Optional[int] = None
        self._iterator: Optional[Iterator[Any]] = None
        self.exhausted = False

    def _items(self) -> Iterator[Any]:
        if self.indexed:
            count = self.steps if self.steps is not None else len(self.source)
            for i in range(count):
                yield self.source[i % len(self.source)]
            end = getattr(self.source, "on_epoch_end", None)
            if callable(end):
                end()
            return
        if self.steps is None:
            yield from iter(self.source)
            return
        if self._iterator is None:
            self._iterator = iter(self.source)
        for _ in range(self.steps):
            try:
                yield next(self._iterator)
            except StopIteration:
                self.exhausted = True
                return

    def epoch(self) -> Iterator[Batch]:
        count = 0
        for item in self._items():
            count += 1
            yield self.unpack(item)
        if count == 0 or self.exhausted:
            self.exhausted = True
            warnings.warn(f"{self.who}: the input ran out of data after {count} batch(es) of this epoch; training "
                          "stops. Pass steps_per_epoch no larger than the batches the generator yields per pass, "
                          "or a re-iterable source (a list of batches, a PyDataset-like object).", UserWarning,
                          stacklevel=3)
        elif self.steps is None:
            self.steps = count  # known from the first full pass on

    def unpack(self, item: Any) -> Batch:
        if not isinstance(item, tuple) or len(item) not in (2, 3):
            raise ValueError(f"{self.who} expected each batch from the generator to be a tuple (x, y) or "
                             f"(x, y, sample_weight). Received: {type(item).__name__}"
                             f"{' of length ' + str(len(item)) if isinstance(item, tuple) else ''}.")
        xs, y = self.check(item[0], item[1], self.who)
        n = xs[0].shape[0]
        weights = sample_weights(y, n, item[2] if len(item) == 3 else None, self.class_weight, self.who)
        return xs, y, weights


def items(source: Any, steps: Optional[int]) -> Iterator[Any]:
    """The items of a batch source, once: ``source[0 .. len - 1]`` for an indexed one (then its
    ``on_epoch_end()``), else its iterator; at most ``steps`` of them."""
    indexed = hasattr(source, "__getitem__") and hasattr(source, "__len__") and not hasattr(source, "__next__")
    it = (source[i] for i in range(len(source))) if indexed else iter(source)
    for i, item in enumerate(it):
        if steps is not None and i >= steps:
            return
        yield item
    end = getattr(source, "on_epoch_end", None) if indexed else None
    if callable(end):
        end()


def check_steps(value: Any, arg: str, who: str) -> Optional[int]:
    if value is None:
        return None
    return utils.positive_int(value, arg, who)


def describe(batches: Any) -> Dict[str, Any]:
    """The callbacks' params for a source: steps per epoch and samples (None when unknown)."""
    return {"steps": batches.steps, "samples": batches.samples}
