"""Session state and small helpers shared by layers, models and the trainer.

* One module-level NumPy ``Generator`` drives weight initialisation, shuffling in ``fit``
  and dropout masks; :func:`set_random_seed` replaces it, so a seed makes runs repeatable.
* Per-type name counters give Keras-style automatic names (``conv2d``, ``conv2d_1``, ...);
  :func:`clear_session` resets them, like ``keras.backend.clear_session()``.
* Argument normalisers used by every layer (``kernel_size=3`` -> ``(3, 3)``, padding
  strings) and the input converter that turns user arrays into C-contiguous float32.
"""
from __future__ import annotations

import random as _random
import re
import _signal
import signal
import threading
from typing import Any, Iterable, Optional, Tuple

import numpy as np

_rng: np.random.Generator = np.random.default_rng()
_name_counters: dict[str, int] = {}


# --------------------------------------------------------------------------- session state

def set_random_seed(seed: int) -> None:
    """Make weight initialisation, shuffling and dropout repeatable.

    Replaces pycnn's module-level NumPy generator with ``np.random.default_rng(seed)``
    and, like ``keras.utils.set_random_seed``, also seeds Python's ``random`` module and
    NumPy's legacy global generator.

    Args:
        seed: a non-negative integer.

    Raises:
        TypeError: if ``seed`` is not an integer.
        ValueError: if ``seed`` is negative.
    """
    global _rng
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"set_random_seed() expected an integer seed. Received: seed={seed!r}.")
    if seed < 0:
        raise ValueError(f"set_random_seed() expected a non-negative integer. Received: seed={seed}.")
    seed = int(seed)
    _rng = np.random.default_rng(seed)
    _random.seed(seed)
    np.random.seed(seed % 2**32)


def get_rng() -> np.random.Generator:
    """The generator pycnn draws initial weights, shuffles and dropout masks from."""
    return _rng


_SIGINT = int(signal.SIGINT)


class interrupt_guard:
    """Context manager: inside the block a Ctrl-C (SIGINT) is only recorded, and
    :meth:`check` raises it as KeyboardInterrupt where the caller chooses. fit() checks after
    each training step (and each validation batch), so an interrupted run stops between steps
    with ``optimizer.iterations`` equal to the steps applied.

    Why not Python's own handler: it raises at whatever bytecode the main thread runs next,
    which can be a finalizer or a weakref callback, where the interpreter reports the
    exception as "ignored" and the run goes on as if Ctrl-C never came; or halfway through a
    step's bookkeeping. A second Ctrl-C while one is pending raises at once (a stuck call can
    still be interrupted). Only in the main thread, and only while Python's own SIGINT handler
    is installed (a handler of yours is left alone).
    """

    __slots__ = ("_previous", "_pending")

    def __enter__(self) -> "interrupt_guard":
        self._previous = None
        self._pending = False
        # _signal: the signal module's C functions, without its enum wrapping (a tenth of
        # the cost, which matters around every small step).
        if (threading.current_thread() is threading.main_thread()
                and _signal.getsignal(_SIGINT) is _signal.default_int_handler):
            self._previous = _signal.signal(_SIGINT, self._record)
        return self

    def _record(self, signum, frame) -> None:
        if self._pending:
            raise KeyboardInterrupt
        self._pending = True

    def check(self) -> None:
        """Raise KeyboardInterrupt if a Ctrl-C came since the block began."""
        if self._pending:
            self._pending = False
            raise KeyboardInterrupt

    def __exit__(self, *exc_info) -> None:
        if self._previous is not None:
            _signal.signal(_SIGINT, self._previous)
            if self._pending and exc_info[0] is None:
                raise KeyboardInterrupt


def get_rng_state() -> dict:
    """The state of :func:`get_rng`'s generator, as plain JSON-able data (checkpoints keep it
    so that a resumed run shuffles and drops out exactly as an uninterrupted one)."""
    return _rng.bit_generator.state


def set_rng_state(state: dict) -> None:
    """Restore a state from :func:`get_rng_state`.

    Raises:
        ValueError: ``state`` is not a state of the generator pycnn uses.
    """
    global _rng
    kind = state.get("bit_generator") if isinstance(state, dict) else None
    bit_generator = getattr(np.random, kind, None) if isinstance(kind, str) else None
    if not (isinstance(bit_generator, type) and issubclass(bit_generator, np.random.BitGenerator)):
        raise ValueError(f"set_rng_state() expected a NumPy bit generator state. Received: {state!r:.200}.")
    generator = bit_generator()
    try:
        generator.state = state
    except (TypeError, ValueError, KeyError) as exc:
        raise ValueError(f"set_rng_state() could not restore {kind} state: {exc}") from exc
    _rng = np.random.Generator(generator)


def clear_session() -> None:
    """Reset the automatic layer and model names (the next Conv2D is ``conv2d`` again)."""
    _name_counters.clear()


def unique_name(prefix: str) -> str:
    """``prefix`` the first time, then ``prefix_1``, ``prefix_2``... (Keras naming)."""
    count = _name_counters.get(prefix, 0)
    _name_counters[prefix] = count + 1
    return prefix if count == 0 else f"{prefix}_{count}"


def snake_case(class_name: str) -> str:
    """``MaxPooling2D`` -> ``max_pooling2d``, ``Conv2D`` -> ``conv2d`` (Keras's rule)."""
    s = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", class_name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", s).lower()


# --------------------------------------------------------------------------- argument checks

def normalize_tuple(value: Any, n: int, arg: str, owner: str) -> Tuple[int, ...]:
    """An int or a sequence of ``n`` positive ints -> tuple of ``n`` ints.

    Raises:
        ValueError: with the STYLE.md message when a value is not a positive integer.
    """
    if is_int(value):
        values = (int(value),) * n
    else:
        try:
            values = tuple(value)
        except TypeError:
            values = None
        if values is None or len(values) != n or not all(is_int(v) for v in values):
            raise ValueError(
                f"The '{arg}' argument of {owner} must be an int or a tuple of {n} positive integers. "
                f"Received: {arg}={value!r}.")
        values = tuple(int(v) for v in values)
    if min(values) < 1:
        raise ValueError(
            f"The '{arg}' argument of {owner} must be a tuple of {n} positive integers. "
            f"Received: {arg}={value!r}.")
    if max(values) > MAX_WINDOW:
        raise ValueError(f"The '{arg}' argument of {owner} must be at most {MAX_WINDOW} (the kernels' limit). "
                         f"Received: {arg}={value!r}.")
    return values


#: The largest window size or stride the kernels accept (csrc/bindings_common.h).
MAX_WINDOW = 2**31 - 1


def normalize_padding(value: Any, owner: str) -> str:
    """'valid' or 'same' (any case) -> lower-case string."""
    if isinstance(value, str) and value.lower() in ("valid", "same"):
        return value.lower()
    raise ValueError(
        f"Invalid value for argument 'padding' of {owner}: expected 'valid' or 'same'. "
        f"Received: padding={value!r}.")


def positive_int(value: Any, arg: str, owner: str) -> int:
    if not is_int(value) or value < 1:
        raise ValueError(
            f"Invalid value for argument '{arg}' of {owner}: expected a positive integer. "
            f"Received: {arg}={value!r}.")
    return int(value)


def boolean(value: Any, arg: str, owner: str) -> bool:
    """A True/False argument (NumPy bools too); anything else is refused, not truth-tested."""
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"Invalid value for argument '{arg}' of {owner}: expected True or False. "
                         f"Received: {arg}={value!r}.")
    return bool(value)


def is_int(v: Any) -> bool:
    """A Python or NumPy integer, not a bool."""
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


# --------------------------------------------------------------------------- arrays

def shape_str(shape: Iterable[Optional[int]]) -> str:
    """Tuple text as Keras prints it: ``(None, 22, 22, 32)``, ``(None,)``."""
    dims = tuple(None if d is None else int(d) for d in shape)
    return repr(dims)


def as_float32(x: Any, who: str, arg: str = "x") -> np.ndarray:
    """Any real numeric array-like -> C-contiguous float32 (no copy when it already is).

    Integer inputs (e.g. uint8 images) are converted, never rescaled: divide by 255
    yourself, as the lecture does.

    Raises:
        TypeError: for complex, object, string or otherwise non-numeric data.
    """
    arr = x if isinstance(x, np.ndarray) else np.asarray(x)
    if arr.dtype.kind not in "fiub":
        raise TypeError(
            f"{who} expected a real numeric array for '{arg}' (it is converted to float32). "
            f"Received: {arg}.dtype={arr.dtype}.")
    return np.ascontiguousarray(arr, dtype=np.float32)


def check_real_array(x: Any, who: str, arg: str) -> np.ndarray:
    """``np.asarray(x)``, refusing non-numeric dtypes, without converting (fit converts per batch)."""
    arr = x if isinstance(x, np.ndarray) else np.asarray(x)
    if arr.dtype.kind not in "fiub":
        raise TypeError(
            f"{who} expected a real numeric array for '{arg}'. Received: {arg}.dtype={arr.dtype}.")
    return arr


def to_categorical(y: Any, num_classes: Optional[int] = None) -> np.ndarray:
    """Integer class vector -> one-hot float32 matrix, like ``keras.utils.to_categorical``.

    Args:
        y: integer labels of shape (N,) or (N, 1).
        num_classes: number of classes; defaults to ``max(y) + 1``.

    Returns:
        float32 array of shape (N, num_classes).
    """
    labels = np.asarray(y)
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.dtype.kind not in "iu":
        if labels.dtype.kind != "f" or not np.all(labels == np.round(labels)):
            raise ValueError(f"to_categorical() expected integer class indices. Received: y.dtype={labels.dtype}.")
        labels = labels.astype(np.int64)
    if labels.size and labels.min() < 0:
        raise ValueError(f"to_categorical() expected non-negative labels. Received: min(y)={labels.min()}.")
    if num_classes is None:
        num_classes = int(labels.max()) + 1 if labels.size else 0
    elif labels.size and labels.max() >= num_classes:
        raise ValueError(
            f"to_categorical() expected labels below num_classes={num_classes}. Received: max(y)={labels.max()}.")
    out = np.zeros(labels.shape + (num_classes,), dtype=np.float32)
    np.put_along_axis(out, labels[..., None].astype(np.intp), 1.0, axis=-1)
    return out




def check_gradients(layer: Any, inputs: Any, training: bool = False, eps: float = 1e-3, max_coords: int = 64,
                    seed: int = 0) -> dict:
    """Compare ``layer``'s gradients with central finite differences: the lecture's backprop
    walk-through, for any layer, your own included.

    The check differentiates ``L = sum(layer(inputs) * G)`` for a random ``G`` (a random
    upstream gradient catches transposition bugs an all-ones one hides): the analytic side is
    ``layer.backward(G)`` and ``layer.get_gradients()``; the numeric side perturbs each
    checked coordinate by +-eps (the float32 step actually taken) and evaluates L in float64.
    Every coordinate of a small tensor is checked, else ``max_coords`` random ones.

    Args:
        layer: a pycnn layer (built on the first call when needed).
        inputs: an array (N, ...), or a list of arrays for a merging layer.
        training: run the layer in training mode (batch statistics); random layers
            (Dropout, RandomFlip) cannot be checked this way in training.
        eps: the perturbation.

    Returns:
        ``{"inputs": error, "<weight name>": error, ...}`` (``"inputs[i]"`` for several inputs),
        each the largest absolute difference over the checked coordinates divided by the
        largest magnitude of either gradient there: about 1e-3 or less for a correct float32
        gradient, of order 1 for a wrong one.
    """
    # A stream of its own: inputs drawn from default_rng(seed) must not come back as G (a G
    # equal to the inputs lies where batch normalization's input gradient vanishes).
    rng = np.random.default_rng([seed, 0x9E3779B9])
    multi = bool(getattr(layer, "_multi_input", False))
    xs = [as_float32(x, "check_gradients()", "inputs").copy() for x in (inputs if multi else [inputs])]
    arg = (lambda: xs) if multi else (lambda: xs[0])
    if not layer.built:
        layer._shape_for([x.shape for x in xs] if multi else xs[0].shape)
    saved = [w.copy() for w in layer.weights]  # state a training call changes (moving statistics)
    out = np.asarray(layer(arg(), training=training))
    G = rng.standard_normal(out.shape)
    dinputs = layer.backward(G.astype(np.float32))
    grads = layer.get_gradients()
    dinputs = list(dinputs) if multi else [dinputs]

    def loss() -> float:
        return float(np.sum(np.asarray(layer(arg(), training=training), dtype=np.float64) * G))

    def error(array: np.ndarray, analytic: Any) -> float:
        analytic = np.asarray(analytic, dtype=np.float64).reshape(array.shape)
        coords = range(array.size) if array.size <= max_coords else rng.choice(array.size, max_coords, replace=False)
        diffs, scale = 0.0, 1e-12
        for flat in coords:
            idx = np.unravel_index(int(flat), array.shape)
            keep = array[idx]
            array[idx] = keep + np.float32(eps)
            up, plus = loss(), float(array[idx])
            array[idx] = keep - np.float32(eps)
            down, minus = loss(), float(array[idx])
            array[idx] = keep
            numeric = (up - down) / (plus - minus)
            diffs = max(diffs, abs(numeric - analytic[idx]))
            scale = max(scale, abs(numeric), abs(analytic[idx]))
        return diffs / scale

    result = {}
    for i, (x, d) in enumerate(zip(xs, dinputs)):
        result["inputs" if not multi else f"inputs[{i}]"] = float(error(x, d))
    trainable = {id(w) for w in layer.trainable_weights}
    for name, w, g in zip(layer.weight_names, layer.weights, grads):
        if id(w) in trainable and g is not None:
            result[name] = float(error(w, g))
    for w, value in zip(layer.weights, saved):
        w[...] = value
    return result
