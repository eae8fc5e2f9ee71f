"""Weight initialisers with Keras's names and formulas.

Fans follow Keras: for a conv kernel (KH, KW, C, F), ``fan_in = KH*KW*C`` and
``fan_out = KH*KW*F``; for a dense kernel (in, out), ``fan_in = in``, ``fan_out = out``.

=================  =========================================================
name               distribution
=================  =========================================================
glorot_uniform     U(-l, l), l = sqrt(6 / (fan_in + fan_out))   (default)
glorot_normal      truncated N(0, s), s = sqrt(2 / (fan_in + fan_out)) / .8796
he_uniform         U(-l, l), l = sqrt(6 / fan_in)
he_normal          truncated N(0, s), s = sqrt(2 / fan_in) / .8796
lecun_uniform      U(-l, l), l = sqrt(3 / fan_in)
lecun_normal       truncated N(0, s), s = sqrt(1 / fan_in) / .8796
random_uniform     U(-0.05, 0.05)
random_normal      N(0, 0.05)
zeros, ones        constants
=================  =========================================================

Truncated normals are cut at two standard deviations, as in Keras. Values are drawn
from :func:`pycnn.utils.get_rng`, so :func:`pycnn.utils.set_random_seed` fixes them.
A callable ``f(shape) -> array`` is accepted wherever a name is.
"""
from __future__ import annotations

import contextlib
import math
import threading
from typing import Any, Callable, Iterator, Tuple, Union

import numpy as np

from . import utils

# Standard deviation of a unit normal truncated to [-2, 2] (Keras divides by it).
_TRUNC_STD = 0.87962566103423978


def _fans(shape: Tuple[int, ...]) -> Tuple[int, int]:
    if len(shape) < 2:
        n = int(shape[0]) if shape else 1
        return n, n
    receptive = int(np.prod(shape[:-2])) if len(shape) > 2 else 1
    return shape[-2] * receptive, shape[-1] * receptive


def _uniform(shape: Tuple[int, ...], limit: float) -> np.ndarray:
    return utils.get_rng().uniform(-limit, limit, size=shape).astype(np.float32)


def _truncated_normal(shape: Tuple[int, ...], stddev: float) -> np.ndarray:
    rng = utils.get_rng()
    values = rng.standard_normal(size=shape)
    bad = np.abs(values) > 2.0
    while bad.any():  # redraws the out-of-range entries; each pass keeps ~95% of them
        values[bad] = rng.standard_normal(size=int(bad.sum()))
        bad = np.abs(values) > 2.0
    return (values * stddev).astype(np.float32)


def glorot_uniform(shape: Tuple[int, ...]) -> np.ndarray:
    fan_in, fan_out = _fans(shape)
    return _uniform(shape, math.sqrt(6.0 / (fan_in + fan_out)))


def glorot_normal(shape: Tuple[int, ...]) -> np.ndarray:
    fan_in, fan_out = _fans(shape)
    return _truncated_normal(shape, math.sqrt(2.0 / (fan_in + fan_out)) / _TRUNC_STD)


def he_uniform(shape: Tuple[int, ...]) -> np.ndarray:
    return _uniform(shape, math.sqrt(6.0 / _fans(shape)[0]))


def he_normal(shape: Tuple[int, ...]) -> np.ndarray:
    return _truncated_normal(shape, math.sqrt(2.0 / _fans(shape)[0]) / _TRUNC_STD)


def lecun_uniform(shape: Tuple[int, ...]) -> np.ndarray:
    return _uniform(shape, math.sqrt(3.0 / _fans(shape)[0]))


def lecun_normal(shape: Tuple[int, ...]) -> np.ndarray:
    return _truncated_normal(shape, math.sqrt(1.0 / _fans(shape)[0]) / _TRUNC_STD)


def random_uniform(shape: Tuple[int, ...]) -> np.ndarray:
    return _uniform(shape, 0.05)


def random_normal(shape: Tuple[int, ...]) -> np.ndarray:
    return (utils.get_rng().standard_normal(size=shape) * 0.05).astype(np.float32)


def zeros(shape: Tuple[int, ...]) -> np.ndarray:
    return np.zeros(shape, dtype=np.float32)


def ones(shape: Tuple[int, ...]) -> np.ndarray:
    return np.ones(shape, dtype=np.float32)


_ALL = {f.__name__: f for f in (glorot_uniform, glorot_normal, he_uniform, he_normal, lecun_uniform,
                                lecun_normal, random_uniform, random_normal, zeros, ones)}


def get(identifier: Union[str, Callable[..., Any]], arg: str, owner: str) -> Union[str, Callable[..., Any]]:
    """Check an initialiser argument; returns the lower-case name or the callable itself.

    Raises:
        ValueError: for an unknown name.
    """
    if isinstance(identifier, str) and identifier.lower() in _ALL:
        return identifier.lower()
    if callable(identifier) and not isinstance(identifier, str):
        return identifier
    raise ValueError(
        f"Invalid value for argument '{arg}' of {owner}: expected one of {', '.join(sorted(_ALL))} "
        f"or a callable f(shape). Received: {arg}={identifier!r}.")


_LOADING = threading.local()  # per thread: [values left, the file] while a file's model is rebuilt


@contextlib.contextmanager
def loading(budget: int, path: str) -> Iterator[None]:
    """Within the block (a model being rebuilt from the file ``path``), weights are created as
    zeros (the file's values replace them, and pycnn's generator is left alone) and count
    against ``budget``, the number of weight values the file stores: a layer asking for more
    raises ValueError before anything is allocated, so a file cannot declare a layer larger
    than what it holds. Thread-local; nests."""
    saved = getattr(_LOADING, "state", None)
    _LOADING.state = [int(budget), path]
    try:
        yield
    finally:
        _LOADING.state = saved


def initialize(identifier: Union[str, Callable[..., Any]], shape: Tuple[int, ...]) -> np.ndarray:
    """Draw a float32 C-contiguous array of ``shape`` from the named (or callable) initialiser
    (zeros, counted, inside :func:`loading`)."""
    state = getattr(_LOADING, "state", None)
    if state is not None:
        size = math.prod(int(d) for d in shape)
        if size > state[0]:
            raise ValueError(f"'{state[1]}' declares an architecture with more weights than the file stores: a "
                             f"weight of shape {tuple(shape)} ({size} values) does not fit in the {state[0]} values "
                             "left.")
        state[0] -= size
        return np.zeros(tuple(shape), dtype=np.float32)
    fn = _ALL[identifier] if isinstance(identifier, str) else identifier
    values = np.ascontiguousarray(fn(tuple(shape)), dtype=np.float32)
    if values.shape != tuple(shape):
        raise ValueError(
            f"Initializer {identifier!r} expected to return an array of shape {tuple(shape)}. "
            f"Received: shape={values.shape}.")
    return values
