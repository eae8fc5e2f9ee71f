"""CIFAR-10: 60000 32x32 colour images in 10 classes, read from the official files.

``load_data()`` returns Keras's shapes and dtypes exactly::

    (x_train, y_train), (x_test, y_test) = pycnn.datasets.cifar10.load_data()
    x_train.shape == (50000, 32, 32, 3), x_train.dtype == uint8   # NHWC, RGB
    y_train.shape == (50000, 1),         y_train.dtype == uint8   # note the (N, 1) shape

Accepted on-disk forms, searched in this order inside each candidate folder: the binary
version's folder ``cifar-10-batches-bin/`` (``data_batch_1.bin`` ... ``data_batch_5.bin``,
``test_batch.bin``), the python version's folder ``cifar-10-batches-py/`` (read through a
restricted unpickler that cannot run code), and the archives ``cifar-10-binary.tar.gz`` /
``cifar-10-python.tar.gz`` (members are read in memory, never extracted). A download
fetches ``cifar-10-binary.tar.gz`` (MD5 c32a1d4ab5d03f1284b67883e8d87530, 170052171 bytes).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ._files import (CorruptDatasetError, MissingArchiveMembersError, decode_cifar_bin,
                     decode_cifar_python, read_tar_members)
from ._locate import DownloadSpec, FileSpec, locate

CLASS_NAMES = ("airplane", "automobile", "bird", "cat", "deer",
               "dog", "frog", "horse", "ship", "truck")

BIN_FOLDER = "cifar-10-batches-bin"
PY_FOLDER = "cifar-10-batches-py"
BIN_ARCHIVE = "cifar-10-binary.tar.gz"
PY_ARCHIVE = "cifar-10-python.tar.gz"
BATCHES = ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5",
           "test_batch")

SPEC = DownloadSpec(
    title="CIFAR-10",
    url_folder="cifar10",
    official_bases=("https://www.cs.toronto.edu/~kriz/",),
    files=(FileSpec(BIN_ARCHIVE, "c32a1d4ab5d03f1284b67883e8d87530"),),
    cache_subdir="",
    layout_hint=(f"{BIN_ARCHIVE} (https://www.cs.toronto.edu/~kriz/{BIN_ARCHIVE}) or its "
                 f"extracted folder {BIN_FOLDER}/ holding "
                 + ", ".join(b + ".bin" for b in BATCHES)),
)


def _find(root: Path) -> tuple[str, Path] | None:
    """(kind, location) of the first CIFAR-10 copy at ``root``; kind in bin_dir, py_dir, archive."""
    if root.is_file():
        return ("archive", root)
    if not root.is_dir():
        return None
    for directory in (root, root / BIN_FOLDER):
        if all((directory / (b + ".bin")).is_file() for b in BATCHES):
            return ("bin_dir", directory)
    for directory in (root, root / PY_FOLDER):
        if all((directory / b).is_file() for b in BATCHES):
            return ("py_dir", directory)
    for name in (BIN_ARCHIVE, PY_ARCHIVE):
        if (root / name).is_file():
            return ("archive", root / name)
    return None


def _describe_missing(root: Path) -> str:
    if not root.exists():
        return "That path does not exist."
    directory = root / BIN_FOLDER if (root / BIN_FOLDER).is_dir() else root
    missing = [b + ".bin" for b in BATCHES if not (directory / (b + ".bin")).is_file()]
    return (f"Found neither {BIN_ARCHIVE}, {PY_ARCHIVE}, {PY_FOLDER}/ nor a complete "
            f"{BIN_FOLDER}/ (missing in {str(directory)!r}: {', '.join(missing)}).")


def _read_batches(kind: str, location: Path) -> list[tuple[np.ndarray, np.ndarray]]:
    """Decode the six batches, in BATCHES order."""
    if kind == "bin_dir":
        return [decode_cifar_bin((location / (b + ".bin")).read_bytes(), str(location / (b + ".bin")))
                for b in BATCHES]
    if kind == "py_dir":
        return [decode_cifar_python((location / b).read_bytes(), str(location / b)) for b in BATCHES]
    # An archive: the binary version unless its name says python; a wrong guess is
    # retried with the other layout so a renamed archive still loads.
    layouts = [(BIN_FOLDER, ".bin", decode_cifar_bin), (PY_FOLDER, "", decode_cifar_python)]
    if "python" in location.name:
        layouts.reverse()
    first_error = None
    for folder, ext, decode in layouts:
        try:
            members = read_tar_members(location, {b: f"{folder}/{b}{ext}" for b in BATCHES})
        except MissingArchiveMembersError as exc:
            first_error = first_error or exc
            continue
        return [decode(members[b], f"{location}:{folder}/{b}{ext}") for b in BATCHES]
    raise first_error


def load_data(path: str | Path | None = None) -> tuple[tuple[np.ndarray, np.ndarray],
                                                          tuple[np.ndarray, np.ndarray]]:
    """Load CIFAR-10: 50000 training and 10000 test 32x32 RGB images, 10 classes.

    Args:
        path: a folder holding one of the forms listed in the module docstring, that
            folder's contents themselves, or an archive file. When None:
            ``$PYCNN_DATA_DIR``, then the cache (``$PYCNN_CACHE_DIR``,
            ``$XDG_CACHE_HOME/pycnn/datasets`` or ``~/.cache/pycnn/datasets``), then a
            download of the binary archive into the cache (MD5-checked).

    Returns:
        ``(x_train, y_train), (x_test, y_test)``: x uint8 (N, 32, 32, 3) channels-last,
        y uint8 (N, 1), as in ``keras.datasets.cifar10.load_data()``. Class names:
        ``CLASS_NAMES``.

    Raises:
        DatasetNotFoundError: not on disk and not downloadable (the message says which
            files to put where).
        CorruptDatasetError: a file is truncated or malformed (the message names it).
    """
    kind, location = locate(SPEC, path, _find, _describe_missing)
    batches = _read_batches(kind, location)
    counts = [len(y) for _, y in batches]
    if len(set(counts)) != 1:
        raise CorruptDatasetError(
            f"CIFAR-10 batches in {str(location)!r} expected the same number of records each "
            f"(10000 in the official files). Received: "
            + ", ".join(f"{b}={c}" for b, c in zip(BATCHES, counts))
            + ". A file is truncated; delete it and download it again."
        )
    x_train = np.concatenate([x for x, _ in batches[:5]])
    y_train = np.concatenate([y for _, y in batches[:5]]).reshape(-1, 1)
    x_test, y_test = batches[5][0], batches[5][1].reshape(-1, 1)
    return (x_train, y_train), (x_test, y_test)
