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

Classes, for initialisers with arguments: :class:`VarianceScaling` (Keras's), and pycnn's
:class:`Dirac` (PyTorch's ``dirac_``: identity convolutions). A layer keeps such an
initialiser as its serialized form ``{"class_name": ..., "config": ...}`` (Keras's), so
configs and saved files stay JSON. :func:`patch_whitening_kernel` computes a data-derived
kernel (the frozen first layer of fast CIFAR-10 recipes).

Truncated normals are cut at two standard deviations, as in Keras. Values are drawn
from :func:`pycnn.utils.get_rng`, so :func:`pycnn.utils.set_random_seed` fixes them.
A callable ``f(shape) -> array`` is accepted wherever a name is.
"""
from __future__ import annotations

import contextlib
import math
import threading
from typing import Any, Callable, Dict, Iterator, Tuple, Union

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


class Initializer:
    """Base class of the initialisers with arguments: ``initializer(shape) -> float32 array``."""

    def __call__(self, shape: Tuple[int, ...]) -> np.ndarray:
        raise NotImplementedError

    def get_config(self) -> Dict[str, Any]:
        return {}

    @classmethod
    def from_config(cls, config: Dict[str, Any]) -> "Initializer":
        return cls(**config)


class VarianceScaling(Initializer):
    """Keras's: samples with variance ``scale / n``, ``n`` the fan in, out or their mean;
    ``distribution`` 'truncated_normal' (cut at 2 standard deviations), 'untruncated_normal'
    or 'uniform' (``U(-l, l)``, ``l = sqrt(3 scale / n)``). PyTorch's default conv and linear
    init is ``VarianceScaling(1 / 3, 'fan_in', 'uniform')``."""

    def __init__(self, scale: float = 1.0, mode: str = "fan_in", distribution: str = "truncated_normal") -> None:
        ok = isinstance(scale, (int, float, np.floating, np.integer)) and not isinstance(scale, bool)
        if not ok or not math.isfinite(float(scale)) or float(scale) <= 0:
            raise ValueError(f"Invalid value for argument 'scale' of VarianceScaling: expected a positive number. "
                             f"Received: scale={scale!r}.")
        if mode not in ("fan_in", "fan_out", "fan_avg"):
            raise ValueError(f"Invalid value for argument 'mode' of VarianceScaling: expected 'fan_in', 'fan_out' "
                             f"or 'fan_avg'. Received: mode={mode!r}.")
        if distribution not in ("truncated_normal", "untruncated_normal", "uniform"):
            raise ValueError(f"Invalid value for argument 'distribution' of VarianceScaling: expected "
                             f"'truncated_normal', 'untruncated_normal' or 'uniform'. "
                             f"Received: distribution={distribution!r}.")
        self.scale, self.mode, self.distribution = float(scale), mode, distribution

    def __call__(self, shape: Tuple[int, ...]) -> np.ndarray:
        fan_in, fan_out = _fans(shape)
        n = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2.0}[self.mode]
        variance = self.scale / max(1.0, n)
        if self.distribution == "uniform":
            return _uniform(shape, math.sqrt(3.0 * variance))
        if self.distribution == "untruncated_normal":
            return (utils.get_rng().standard_normal(size=shape) * math.sqrt(variance)).astype(np.float32)
        return _truncated_normal(shape, math.sqrt(variance) / _TRUNC_STD)

    def get_config(self) -> Dict[str, Any]:
        return {"scale": self.scale, "mode": self.mode, "distribution": self.distribution}


class Dirac(Initializer):
    """pycnn's (PyTorch's ``torch.nn.init.dirac_`` on the first filters): for a conv kernel
    (KH, KW, C, F), output channel ``f < min(C, F)`` copies input channel ``f`` (a 1 at the
    kernel's centre), an implicit identity a deep plain network starts from; the other
    ``F - C`` filters are drawn from ``others`` (default PyTorch's default init,
    ``VarianceScaling(1 / 3, 'fan_in', 'uniform')``, drawn for the whole kernel)."""

    def __init__(self, others: Any = None) -> None:
        self.others = get(VarianceScaling(1.0 / 3.0, "fan_in", "uniform") if others is None else others,
                          "others", "Dirac")

    def __call__(self, shape: Tuple[int, ...]) -> np.ndarray:
        if len(shape) != 4:
            raise ValueError(f"Dirac expected a conv kernel shape (KH, KW, C, F). Received: shape={tuple(shape)}.")
        kh, kw, c, f = shape
        kernel = initialize(self.others, tuple(shape))
        k = min(c, f)
        kernel[:, :, :, :k] = 0.0
        kernel[(kh - 1) // 2, (kw - 1) // 2, np.arange(k), np.arange(k)] = 1.0
        return kernel

    def get_config(self) -> Dict[str, Any]:
        return {"others": self.others}


_CLASSES = {cls.__name__: cls for cls in (VarianceScaling, Dirac)}


def _deserialize(config: Dict[str, Any]) -> Initializer:
    return _CLASSES[config["class_name"]].from_config(dict(config.get("config", {})))


def get(identifier: Union[str, Callable[..., Any], Dict[str, Any]], arg: str, owner: str) -> Any:
    """Check an initialiser argument; returns the lower-case name, the serialized form
    (``{"class_name", "config"}``) of an :class:`Initializer`, or a plain callable itself.

    Raises:
        ValueError: for an unknown name or class.
    """
    if isinstance(identifier, str) and identifier.lower() in _ALL:
        return identifier.lower()
    if isinstance(identifier, Initializer):
        return {"class_name": type(identifier).__name__, "config": identifier.get_config()}
    if isinstance(identifier, dict):
        if identifier.get("class_name") in _CLASSES and isinstance(identifier.get("config", {}), dict):
            try:
                _deserialize(identifier)
            except TypeError as err:
                raise ValueError(f"Invalid value for argument '{arg}' of {owner}: {err}.") from None
            return {"class_name": identifier["class_name"], "config": dict(identifier.get("config", {}))}
        raise ValueError(f"Invalid value for argument '{arg}' of {owner}: expected a serialized initializer of "
                         f"class {', '.join(sorted(_CLASSES))}. Received: {arg}={identifier!r}.")
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
    if isinstance(identifier, dict):
        fn: Callable[..., Any] = _deserialize(identifier)
    else:
        fn = _ALL[identifier] if isinstance(identifier, str) else identifier
    values = np.ascontiguousarray(fn(tuple(shape)), dtype=np.float32)
    if values.shape != tuple(shape):
        raise ValueError(
            f"Initializer {identifier!r} expected to return an array of shape {tuple(shape)}. "
            f"Received: shape={values.shape}.")
    return values


def patch_whitening_kernel(images: np.ndarray, kernel_size: int = 2, epsilon: float = 5e-4) -> np.ndarray:
    """A conv kernel (k, k, C, 2 k^2 C) that whitens the k x k patches of ``images`` (N, H, W, C):
    the eigenvectors of the patches' (uncentred) covariance, largest eigenvalue first, each
    divided by ``sqrt(eigenvalue + epsilon)``, then the same filters negated (Page's "How to
    train your ResNet" / airbench's frozen first layer; followed by an activation, the two
    signs keep what a one-sided activation would cut)."""
    x = np.asarray(images)
    if x.ndim != 4 or x.shape[0] < 1 or min(x.shape[1:3]) < kernel_size:
        raise ValueError(f"patch_whitening_kernel() expected images (N, H, W, C) at least {kernel_size} pixels "
                         f"high and wide. Received: shape={x.shape}.")
    if not (isinstance(kernel_size, (int, np.integer)) and kernel_size >= 1):
        raise ValueError(f"patch_whitening_kernel() expected a positive integer kernel_size. "
                         f"Received: kernel_size={kernel_size!r}.")
    if not (isinstance(epsilon, (int, float)) and epsilon >= 0):
        raise ValueError(f"patch_whitening_kernel() expected epsilon >= 0. Received: epsilon={epsilon!r}.")
    x = x.astype(np.float64)
    if not np.all(np.isfinite(x)):
        raise ValueError("patch_whitening_kernel() expected finite images. Received: NaN or infinite values.")
    n, h, w, c = x.shape
    k = kernel_size
    # Every k x k patch as a row in (dy, dx, channel) order: the kernel's (KH, KW, C) order.
    windows = np.lib.stride_tricks.sliding_window_view(x, (k, k), axis=(1, 2))  # (N, H', W', C, k, k)
    patches = windows.transpose(0, 1, 2, 4, 5, 3).reshape(-1, k * k * c)
    covariance = patches.T @ patches / patches.shape[0]
    eigenvalues, eigenvectors = np.linalg.eigh(covariance)
    order = np.argsort(eigenvalues)[::-1]
    filters = eigenvectors[:, order] / np.sqrt(eigenvalues[order] + epsilon)  # columns: one filter each
    kernel = np.concatenate([filters, -filters], axis=1).reshape(k, k, c, 2 * k * k * c)
    return kernel.astype(np.float32)
