"""Image-classification datasets in their official file formats, with Keras's shapes.

    from pycnn.datasets import cifar10, fashion_mnist, mnist
    (x_train, y_train), (x_test, y_test) = cifar10.load_data()

Each ``load_data(path=None)`` looks in ``path``, then ``$PYCNN_DATA_DIR``, then the
per-user cache (``$PYCNN_CACHE_DIR``, ``$XDG_CACHE_HOME/pycnn/datasets`` or
``~/.cache/pycnn/datasets``), and downloads into the cache (MD5-checked, atomic) as a
last resort; ``$PYCNN_DATASETS_URL`` replaces the official addresses.

| dataset | x | y |
| --- | --- | --- |
| cifar10 | uint8 (N, 32, 32, 3) | uint8 (N, 1) |
| fashion_mnist, mnist | uint8 (N, 28, 28) | uint8 (N,) |

``load(name, path=None)`` is the same by name, and ``load_float(name, ...)`` returns
float32 images in [0, 1] with a channel axis always present, as the CLI trains on them.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from . import cifar10, fashion_mnist, mnist
from ._files import CorruptDatasetError, ChecksumError, DatasetNotFoundError, cache_dir

_MODULES = {"cifar10": cifar10, "fashion_mnist": fashion_mnist, "mnist": mnist}
NAMES = tuple(_MODULES)


def _module(name: str):
    key = name.lower().replace("-", "_") if isinstance(name, str) else name
    if key not in _MODULES:
        raise ValueError(f"Unknown dataset: expected one of {', '.join(NAMES)}. Received: name={name!r}.")
    return _MODULES[key]


def load(name: str, path: str | Path | None = None):
    """``<name>.load_data(path)`` for name in cifar10, fashion_mnist, mnist."""
    return _module(name).load_data(path)


def class_names(name: str) -> tuple[str, ...]:
    """The class names of a dataset, index = label."""
    return _module(name).CLASS_NAMES


def to_float(x: np.ndarray) -> np.ndarray:
    """uint8 images -> float32 in [0, 1], adding a channel axis to (N, H, W) arrays."""
    x = np.asarray(x)
    if x.ndim == 3:
        x = x[..., None]
    return x.astype(np.float32) / np.float32(255.0)


def load_float(name: str, path: str | Path | None = None):
    """Like :func:`load`, with x as float32 NHWC in [0, 1] and y as int64 (N,).

    Returns:
        ``(x_train, y_train), (x_test, y_test)``.
    """
    (x_train, y_train), (x_test, y_test) = load(name, path)
    return ((to_float(x_train), y_train.reshape(-1).astype(np.int64)),
            (to_float(x_test), y_test.reshape(-1).astype(np.int64)))


__all__ = ["cifar10", "fashion_mnist", "mnist", "load", "load_float", "class_names",
           "to_float", "NAMES", "CorruptDatasetError", "ChecksumError",
           "DatasetNotFoundError", "cache_dir"]
