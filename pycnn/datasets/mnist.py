"""MNIST handwritten digits, read from the official IDX gzip files.

``load_data()`` returns Keras's shapes and dtypes exactly::

    (x_train, y_train), (x_test, y_test) = pycnn.datasets.mnist.load_data()
    x_train.shape == (60000, 28, 28), x_train.dtype == uint8   # no channel axis
    y_train.shape == (60000,),        y_train.dtype == uint8   # digits 0-9

Add the channel axis yourself for a Conv2D model: ``x_train[..., None] / 255.0``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ._files import load_idx_pair
from ._locate import DownloadSpec, FileSpec, locate

CLASS_NAMES = tuple(str(d) for d in range(10))

_TRAIN_IMAGES = "train-images-idx3-ubyte"
_TRAIN_LABELS = "train-labels-idx1-ubyte"
_TEST_IMAGES = "t10k-images-idx3-ubyte"
_TEST_LABELS = "t10k-labels-idx1-ubyte"
IDX_NAMES = (_TRAIN_IMAGES, _TRAIN_LABELS, _TEST_IMAGES, _TEST_LABELS)

SPEC = DownloadSpec(
    title="MNIST",
    url_folder="mnist",
    official_bases=("https://ossci-datasets.s3.amazonaws.com/mnist/",
                    "https://yann.lecun.com/exdb/mnist/"),
    files=(
        FileSpec(_TRAIN_IMAGES + ".gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
        FileSpec(_TRAIN_LABELS + ".gz", "d53e105ee54ea40749a09fcbcd1e9432"),
        FileSpec(_TEST_IMAGES + ".gz", "9fb629c4189551a2d022fa330f9573f3"),
        FileSpec(_TEST_LABELS + ".gz", "ec29112dd5afa0611ce80d1b7f02629c"),
    ),
    cache_subdir="mnist",
    layout_hint="the four files " + ", ".join(f"mnist/{n}.gz" for n in IDX_NAMES),
)


def find_idx_files(root: Path, folder: str) -> dict[str, Path] | None:
    """The four IDX files under ``root`` or ``root/folder``, gzipped or not; None if incomplete."""
    for directory in (root, root / folder):
        if not directory.is_dir():
            continue
        found = {}
        for name in IDX_NAMES:
            for candidate in (directory / (name + ".gz"), directory / name):
                if candidate.is_file():
                    found[name] = candidate
                    break
        if len(found) == len(IDX_NAMES):
            return found
    return None


def describe_missing_idx(root: Path, folder: str) -> str:
    """One sentence saying which IDX files are missing under ``root`` (for error messages)."""
    if not root.exists():
        return "That path does not exist."
    directory = root / folder if (root / folder).is_dir() else root
    missing = [n + ".gz" for n in IDX_NAMES
               if not (directory / (n + ".gz")).is_file() and not (directory / n).is_file()]
    return f"Missing in {str(directory)!r}: {', '.join(missing)}."


def load_idx_dataset(spec: DownloadSpec, path: str | Path | None, num_classes: int = 10):
    """Locate (or download) an MNIST-format dataset and decode it. See ``load_data``."""
    folder = spec.cache_subdir
    files = locate(spec, path, lambda root: find_idx_files(root, folder),
                   lambda root: describe_missing_idx(root, folder))
    train = load_idx_pair(files[_TRAIN_IMAGES], files[_TRAIN_LABELS], (28, 28), num_classes)
    test = load_idx_pair(files[_TEST_IMAGES], files[_TEST_LABELS], (28, 28), num_classes)
    return train, test


def load_data(path: str | Path | None = None) -> tuple[tuple[np.ndarray, np.ndarray],
                                                          tuple[np.ndarray, np.ndarray]]:
    """Load MNIST: 60000 training and 10000 test images of handwritten digits.

    Args:
        path: a folder holding ``mnist/`` or the four IDX files themselves (``.gz`` or
            uncompressed). When None: ``$PYCNN_DATA_DIR/mnist``, then the cache
            (``$PYCNN_CACHE_DIR``, ``$XDG_CACHE_HOME/pycnn/datasets`` or
            ``~/.cache/pycnn/datasets``), then a download into the cache (MD5-checked).

    Returns:
        ``(x_train, y_train), (x_test, y_test)``: x uint8 (N, 28, 28), y uint8 (N,), as in
        ``keras.datasets.mnist.load_data()``.

    Raises:
        DatasetNotFoundError: not on disk and not downloadable (the message says which
            files to put where).
        CorruptDatasetError: a file is truncated or malformed (the message names it).
    """
    return load_idx_dataset(SPEC, path)
